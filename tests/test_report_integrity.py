"""Reports that were damaged, mixed or left incomplete: the real CLI against the emulator over
loopback and real files. Resuming never loses a row to a torn line, and `smh-async report`
says when what it read cannot be the whole truth (exit 1) instead of passing it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import anyio
import pytest

from smh_async import read_report
from smh_async._multiproc import _merge_release_files
from smh_async._report import ReportWriter, copy_reports, release_path
from smh_async.testing import FakeServer, FakeSMH
from tests.conftest import LIBRARY, SECRET


def _env(server: FakeServer | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMH_", "JOB_"))}
    if server is not None:
        env.update(SMH_BASE_URL=server.base_url, SMH_LIBRARY_ID=LIBRARY, SMH_LIBRARY_SECRET=SECRET)
    env.update(extra)
    return env


async def cli(
    *args: str, server: FakeServer | None = None, **env: str
) -> subprocess.CompletedProcess[bytes]:
    """Run ``smh-async ARGS`` in a child process (JSON logs for purge)."""
    extra = ["--log-format", "json"] if args[0] == "purge" else []
    return await anyio.run_process(
        [sys.executable, "-m", "smh_async", *args, *extra], env=_env(server, **env), check=False
    )


def lines(path: Path) -> list[bytes]:
    """The lines of a file, without their newlines."""
    return path.read_bytes().splitlines()


def write_rows(path: Path, *rows: dict[str, object], tail: bytes = b"") -> Path:
    """A report of ``rows`` (one JSON object a line), then ``tail`` bytes as they are."""
    path.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in rows) + tail)
    return path


# ---------------------------------------------------------------- R1: torn last line


@pytest.mark.anyio
async def test_resume_after_a_torn_last_line_loses_no_row(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """A report whose last row was cut (killed run, full disk), resumed into itself: the
    first new row (a failed space) starts on a line of its own, so `report` sees it (exit 1);
    the fragment stays as a line by itself, and the cut space is purged again."""
    ids = fake.add_spaces(LIBRARY, count=30, items_per_space=1, item_size=10)
    report = tmp_path / "r.jsonl"
    first = await cli("purge", *ids[:10], "--report", str(report), server=server)
    assert first.returncode == 0, first.stderr
    torn_space = json.loads(lines(report)[-1])["space_id"]
    with report.open("r+b") as f:
        f.truncate(report.stat().st_size - 40)
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join([*ids[:10], "bad/id", *ids[10:]]) + "\n")
    again = ["--spaces-file", str(ids_file), "--resume", str(report), "--report", str(report)]
    resumed = await cli("purge", *again, "--concurrency", "1", server=server)
    assert resumed.returncode == 1, resumed.stderr
    assert b'"report.torn_line_ended"' in resumed.stderr
    rows = list(read_report(report))
    assert Counter(r["space_id"] for r in rows) == Counter([*ids, "bad/id"])
    assert [r["outcome"] for r in rows if r["space_id"] == "bad/id"] == ["failed"]
    unreadable = [line for line in lines(report) if not line.endswith(b"}")]
    assert len(unreadable) == 1 and torn_space.encode() in unreadable[0]
    summary = await cli("report", str(report))
    assert summary.returncode == 1 and b"InvalidSpaceId=1" in summary.stdout, summary.stdout


def test_report_writer_appends_below_a_torn_line_not_onto_it(tmp_path: Path) -> None:
    """ReportWriter(append=True) on a file ending mid-line ends that line first and says so;
    on a complete file, an empty one or a new one it adds nothing."""
    torn = write_rows(tmp_path / "torn.jsonl", {"space_id": "a"}, tail=b'{"space_id": "b", "ou')
    row = {"space_id": "c", "outcome": "failed"}
    for path, sealed in [(torn, True), (write_rows(tmp_path / "whole.jsonl"), False)]:
        with ReportWriter(path, append=True) as writer:
            writer.write_record(row)
        assert writer.sealed_torn_line is sealed and writer.rows == 1
        assert json.loads(lines(path)[-1]) == row
    assert lines(torn) == [b'{"space_id": "a"}', b'{"space_id": "b", "ou', json.dumps(row).encode()]
    assert (tmp_path / "whole.jsonl").read_bytes() == json.dumps(row).encode() + b"\n"


def test_merging_torn_parts_and_release_files_glues_no_rows(tmp_path: Path) -> None:
    """Byte-for-byte merges (the --processes parent's copy of its children's parts and of
    their release files, appended to a resumed run's release file) end a torn last line
    before the next file's first row."""
    parts = [tmp_path / f"r.jsonl.part{i}of2" for i in range(2)]
    write_rows(parts[0], {"space_id": "a1"}, tail=b'{"space_id": "a2", "outc')
    write_rows(parts[1], {"space_id": "b1"})
    merged = tmp_path / "r.jsonl"
    copy_reports(parts, merged)
    assert [r["space_id"] for r in read_report(merged)] == ["a1", "b1"]
    assert len(lines(merged)) == 3

    write_rows(release_path(parts[0]), {"space_id": "a1", "release": "released"}, tail=b'{"sp')
    write_rows(release_path(parts[1]), {"space_id": "b1", "release": "released"})
    earlier = write_rows(release_path(merged), {"space_id": "z", "release": "released"}, tail=b"{")
    assert _merge_release_files(parts, merged, append=True) == str(earlier)
    assert [r["space_id"] for r in read_report(earlier)] == ["z", "a1", "b1"]
    assert len(lines(earlier)) == 5
    assert not any(release_path(p).exists() for p in parts)
