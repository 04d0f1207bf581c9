"""Reports that were damaged, mixed or left incomplete: the real CLI against the emulator over
loopback and real files. Resuming never loses a row to a torn line, and `smh-async report`
says when what it read cannot be the whole truth (exit 1) instead of passing it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import anyio
import pytest

from smh_async import read_report, summarize_reports
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


def write_rows(path: Path, *rows: Mapping[str, object], tail: bytes = b"") -> Path:
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


@pytest.mark.anyio
async def test_resume_after_a_torn_release_row_loses_no_release_row(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """The same for the --wait-release file beside the report: a resume with --wait-release
    appends its release rows below a cut-off last release row, each one readable."""
    ids = fake.add_spaces(LIBRARY, count=20, items_per_space=1, item_size=10)
    fake.release_delay = 0.1
    report = tmp_path / "r.jsonl"
    again = ["--report", str(report), "--resume", str(report), "--wait-release", "5"]
    first = await cli("purge", *ids[:10], *again, server=server)
    assert first.returncode == 0, first.stderr
    release = release_path(report)
    torn_space = json.loads(lines(release)[-1])["space_id"]  # its report row stays whole
    with release.open("r+b") as f:
        f.truncate(release.stat().st_size - 20)
    resumed = await cli("purge", *ids, *again, server=server)
    assert resumed.returncode == 0, resumed.stderr
    rows = Counter(r["space_id"] for r in read_report(release))
    assert rows == Counter(s for s in ids if s != torn_space) and len(lines(release)) == 20
    assert b'"report.torn_line_ended"' in resumed.stderr and str(release).encode() in resumed.stderr


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


# ---------------------------------------------------------------- R2: unreadable lines


ROWS = (
    {"space_id": "s1", "outcome": "accepted"},
    {"space_id": "s2", "outcome": "accepted"},
)


@pytest.mark.anyio
async def test_report_counts_unreadable_lines_and_exits_1(tmp_path: Path) -> None:
    """A corrupt line mid-file, a foreign JSON line and a torn last line are counted and
    located, the torn one named as a killed run's that a resume finishes: exit 1 (it was 0,
    and the lines vanished silently)."""
    report = tmp_path / "r.jsonl"
    report.write_bytes(
        json.dumps(ROWS[0]).encode()
        + b"\n\x00\x00garbage\n\n[1, 2]\n"
        + json.dumps(ROWS[1]).encode()
        + b'\n{"space_id": "s3", "outcome": "fa'
    )
    proc = await cli("report", str(report))
    assert proc.returncode == 1, proc.stdout
    out = proc.stdout.decode()
    assert "outcomes: accepted=2" in out
    assert f"UNREADABLE: 3 lines (first at {report} line 2): corrupt=2, torn=1" in out
    assert f"TORN: the last line of {report} is cut off" in out and "--resume" in out


@pytest.mark.anyio
async def test_a_cut_row_finished_by_a_later_row_is_not_a_problem(tmp_path: Path) -> None:
    """What a resume leaves of a cut-off row (a fragment naming its space, then a later row
    of that space) is reported as superseded and does not fail `report`; a fragment whose
    space has no later row, or too short to name one, does."""
    report = write_rows(tmp_path / "r.jsonl", ROWS[0], tail=b'{"space_id": "s2", "outc\n')
    with report.open("a") as f:
        f.write(json.dumps(ROWS[1]) + "\n")
    proc = await cli("report", str(report))
    assert proc.returncode == 0, proc.stdout
    assert b"unreadable but superseded: 1 line" in proc.stdout
    assert b"UNREADABLE" not in proc.stdout
    for fragment in (b'{"space_id": "s9", "outc\n', b'{"spa\n'):
        write_rows(report, ROWS[0], tail=fragment + json.dumps(ROWS[1]).encode() + b"\n")
        proc = await cli("report", str(report))
        assert proc.returncode == 1 and b"UNREADABLE: 1 line" in proc.stdout, proc.stdout


@pytest.mark.anyio
async def test_a_utf8_byte_order_mark_hides_no_row(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """A UTF-8 byte-order mark before the first row (a Windows editor) is dropped: `report`
    counts that row (a failure: exit 1; it read as 1 accepted space and exit 0), and a
    resume counts it as done (no second DELETE; it purged that space again)."""
    ids = fake.add_spaces(LIBRARY, count=3, items_per_space=1, item_size=10)
    failed = {"space_id": "s0", "outcome": "failed", "error_code": "InternalServerError"}
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps(failed).encode() + b"\n")
    write_rows(bom.with_name("x"), {"space_id": ids[0], "outcome": "accepted"})
    proc = await cli("report", str(bom), str(bom.with_name("x")))
    assert proc.returncode == 1 and b"failed=1" in proc.stdout, proc.stdout
    done = tmp_path / "done.jsonl"
    done.write_bytes(
        b"\xef\xbb\xbf" + json.dumps({"space_id": ids[0], "outcome": "accepted"}).encode() + b"\n"
    )
    proc = await cli("purge", *ids, "--resume", str(done), "--report", str(done), server=server)
    assert proc.returncode == 0, proc.stderr
    assert sorted(r.space_id or "" for r in fake.requests if r.route == "empty_bin") == ids[1:]


WIDE = {
    "utf-16": lambda text: text.encode("utf-16"),  # with its byte-order mark
    "utf-16-le": lambda text: text.encode("utf-16-le"),  # without one
    "utf-16-be": lambda text: text.encode("utf-16-be"),
    "utf-32": lambda text: text.encode("utf-32"),
}


@pytest.mark.anyio
@pytest.mark.parametrize("encoding", sorted(WIDE))
async def test_a_utf16_or_utf32_report_is_refused(
    fake: FakeSMH, server: FakeServer, tmp_path: Path, encoding: str
) -> None:
    """A report saved as UTF-16/32 (PowerShell's `>`), with or without a byte-order mark:
    `report` and `purge --resume` exit 2 saying how to convert it, nothing sent (`report`
    read no row: "spaces: 0", exit 0; a resume purged everything again)."""
    ids = fake.add_spaces(LIBRARY, count=2, items_per_space=1, item_size=10)
    report = tmp_path / "r.jsonl"
    report.write_bytes(WIDE[encoding]("".join(json.dumps(r) + "\r\n" for r in ROWS)))
    proc = await cli("report", str(report))
    assert proc.returncode == 2 and proc.stdout == b"", proc.stdout
    assert f"{report}: the report is UTF-16 or UTF-32".encode() in proc.stderr
    assert b"Traceback" not in proc.stderr
    proc = await cli("purge", *ids, "--resume", str(report), "--report", str(report), server=server)
    assert proc.returncode == 2 and b"the report is UTF-16 or UTF-32" in proc.stderr
    assert fake.requests == []


def test_a_line_of_nul_bytes_is_damage_not_an_encoding(tmp_path: Path) -> None:
    """NUL bytes a crash can leave in a file (a whole first line of them) are an unreadable
    line, not a reason to refuse the file as UTF-16."""
    report = tmp_path / "r.jsonl"
    report.write_bytes(b"\0" * 300 + b"\n" + json.dumps(ROWS[0]).encode() + b"\n")
    summary = summarize_reports([report])
    assert (summary.spaces, summary.unreadable, summary.first_unreadable) == (
        1,
        1,
        f"{report} line 1",
    )


# ---------------------------------------------------------------- R5: dry run into a report


@pytest.mark.anyio
async def test_a_dry_run_resumed_into_a_purge_report_replaces_no_outcome(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """SMH_REPORT and SMH_RESUME name one file (a nightly env file); a purge stopped by
    --max-spaces, then a --dry-run: its dry_run rows do not replace the NotStarted rows, so
    `report` still exits 1, and `--output` keeps the real rows (it exited 0 for a purge
    that had sent 10 of 30 DELETEs)."""
    ids = fake.add_spaces(LIBRARY, count=30, items_per_space=1, item_size=10)
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join(ids) + "\n")
    report, merged = tmp_path / "r.jsonl", tmp_path / "m.jsonl"
    env = {"SMH_REPORT": str(report), "SMH_RESUME": str(report)}
    stopped = await cli(
        "purge", "--spaces-file", str(ids_file), "--max-spaces", "10", server=server, **env
    )
    assert stopped.returncode == 3, stopped.stderr
    dry = await cli("purge", "--spaces-file", str(ids_file), "--dry-run", server=server, **env)
    assert dry.returncode == 0, dry.stderr
    assert Counter(r["outcome"] for r in read_report(report))["dry_run"] == 20
    proc = await cli("report", str(report), "--output", str(merged))
    assert proc.returncode == 1, proc.stdout
    assert b"outcomes: accepted=10, skipped=20" in proc.stdout
    assert b"NOT STARTED: 20 spaces" in proc.stdout
    assert b"dry_run rows ignored: 20" in proc.stdout
    assert Counter(r["outcome"] for r in read_report(merged)) == {"accepted": 10, "skipped": 20}
    later = await cli("purge", "--spaces-file", str(ids_file), server=server, **env)
    assert later.returncode == 0, later.stderr
    proc = await cli("report", str(report))
    assert proc.returncode == 0 and b"outcomes: accepted=30" in proc.stdout, proc.stdout


@pytest.mark.anyio
async def test_spaces_with_only_dry_run_rows_in_a_purge_report_fail_report(tmp_path: Path) -> None:
    """A purge killed before writing rows for every space, then a dry run into its report:
    the spaces with only dry_run rows were never purged (`DRY RUN ONLY`, exit 1; it exited
    0); a dry run's own report, with no real outcome, still exits 0."""
    purged = [{"space_id": f"a{i}", "outcome": "accepted"} for i in range(3)]
    dry = [{"space_id": f"a{i}", "outcome": "dry_run"} for i in range(5)]
    report = write_rows(tmp_path / "r.jsonl", *purged, *dry)
    proc = await cli("report", str(report))
    assert proc.returncode == 1, proc.stdout
    assert b"outcomes: accepted=3, dry_run=2" in proc.stdout
    assert b"DRY RUN ONLY: 2 spaces" in proc.stdout
    only_dry = write_rows(tmp_path / "d.jsonl", *dry)
    proc = await cli("report", str(only_dry))
    assert proc.returncode == 0 and b"DRY RUN" not in proc.stdout, proc.stdout


# ---------------------------------------------------------------- R6: stale release rows


@pytest.mark.anyio
async def test_a_new_report_does_not_inherit_the_old_release_rows(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """A run with --wait-release, then a new run into the same --report without it: the
    old .release.jsonl is removed, so `report` counts no release of 60 spaces for a report
    of 40 (it said "spaces: 40 … release: released=60"); a resume into the report keeps it."""
    ids = fake.add_spaces(LIBRARY, count=100, items_per_space=1, item_size=10)
    fake.release_delay = 0.1
    report = tmp_path / "r.jsonl"
    first = await cli(
        "purge", *ids[:60], "--wait-release", "5", "--report", str(report), server=server
    )
    assert first.returncode == 0 and b"released: 60" in first.stdout, first.stdout
    again = ["--report", str(report), "--resume", str(report)]
    resumed = await cli("purge", *ids[:60], *again, server=server)
    assert resumed.returncode == 0 and release_path(report).is_file()
    second = await cli("purge", *ids[60:], "--report", str(report), server=server)
    assert second.returncode == 0, second.stderr
    assert not release_path(report).exists()
    proc = await cli("report", str(report))
    assert proc.returncode == 0 and b"spaces: 40" in proc.stdout and b"release" not in proc.stdout


def test_release_rows_of_spaces_not_in_the_reports_are_not_counted(tmp_path: Path) -> None:
    """A release file beside a report whose spaces are not in it (left by an older version,
    or copied) is not counted as this report's: `release_ignored` says how many rows."""
    report = write_rows(tmp_path / "r.jsonl", *ROWS)
    write_rows(
        release_path(report),
        *({"space_id": f"old{i}", "release": "released"} for i in range(5)),
        {"space_id": "s1", "release": "release_pending"},
    )
    summary = summarize_reports([report])
    assert summary.release == {"release_pending": 1} and summary.release_ignored == 5


def test_a_processes_run_into_a_fresh_report_removes_the_old_release_rows(tmp_path: Path) -> None:
    """The --processes parent merging children that wrote no release rows into a fresh
    report removes the release file beside it; when no child wrote a part (the report is
    left as it was), or when it appends to the report, the file stays."""
    target = write_rows(tmp_path / "r.jsonl", *ROWS)
    stale = write_rows(release_path(target), {"space_id": "s1", "release": "released"})
    part = write_rows(tmp_path / "r.jsonl.part0of1", *ROWS)
    assert _merge_release_files([], target, append=False) is None and stale.exists()
    assert _merge_release_files([part], target, append=True) is None and stale.exists()
    assert _merge_release_files([part], target, append=False) is None
    assert not stale.exists()


# ---------------------------------------------------------------- R9: --output, outcomes


@pytest.mark.anyio
async def test_report_output_carries_the_release_rows(tmp_path: Path) -> None:
    """`report r.jsonl --output m.jsonl` writes the final release rows to m.release.jsonl,
    so `report m.jsonl` counts the same releases (they were lost); merging reports without
    release rows removes a release file left beside the output."""
    report, merged = tmp_path / "r.jsonl", tmp_path / "m.jsonl"
    write_rows(report, *ROWS, {"space_id": "s2", "outcome": "accepted"})
    write_rows(
        release_path(report),
        {"space_id": "s1", "release": "release_pending"},
        {"space_id": "s2", "release": "released"},
        {"space_id": "s1", "release": "released"},
    )
    proc = await cli("report", str(report), "--output", str(merged))
    assert proc.returncode == 0 and b"release: released=2" in proc.stdout, proc.stdout
    assert [r["space_id"] for r in read_report(release_path(merged))] == ["s2", "s1"]
    again = await cli("report", str(merged))
    assert again.returncode == 0 and b"release: released=2" in again.stdout, again.stdout
    assert b"files: 2  rows: 4  spaces: 2" in again.stdout
    release_path(report).unlink()
    proc = await cli("report", str(report), "--output", str(merged))
    assert proc.returncode == 0 and not release_path(merged).exists()


@pytest.mark.anyio
async def test_rows_without_a_known_outcome_fail_report(tmp_path: Path) -> None:
    """A row with no `outcome`, or one smh-async never writes, leaves its space's state
    unknown: `UNKNOWN OUTCOME`, exit 1 (they passed with exit 0 and no word)."""
    report = write_rows(
        tmp_path / "r.jsonl",
        ROWS[0],
        {"space_id": "a", "status": "ok"},
        {"space_id": "b", "outcome": "accepted_pending"},
    )
    proc = await cli("report", str(report))
    assert proc.returncode == 1, proc.stdout
    assert b"UNKNOWN OUTCOME: 2 spaces ((none)=1, accepted_pending=1)" in proc.stdout


# ---------------------------------------------------------------- R7: --spaces-file


@pytest.mark.anyio
async def test_report_spaces_file_finds_the_spaces_a_killed_run_never_reported(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """`report R --spaces-file IDS` reads IDS as purge does (byte-order mark, comments,
    blanks, duplicates, an invalid id) and names the input spaces without a row: MISSING,
    exit 1, for a report cut short as by a killed process (it said nothing and exited 0);
    exit 0 with every row there, from a file or from stdin."""
    ids = fake.add_spaces(LIBRARY, count=40, items_per_space=1, item_size=10)
    ids_file = tmp_path / "ids.txt"
    text = "# tonight\n" + "\n".join([*ids[:20], "", ids[3], "bad/id", *ids[20:]]) + "\n"
    ids_file.write_bytes(b"\xef\xbb\xbf" + text.encode())
    report = tmp_path / "r.jsonl"
    purge = await cli(
        "purge", "--spaces-file", str(ids_file), "--report", str(report), server=server
    )
    assert purge.returncode == 1, purge.stderr  # bad/id failed
    whole = await cli("report", str(report), "--spaces-file", str(ids_file))
    assert whole.returncode == 1 and b"input: 41 spaces, every one has a row" in whole.stdout
    rows = lines(report)
    kept = [json.loads(r)["space_id"] for r in rows[:25]]
    report.write_bytes(b"\n".join(rows[:25]) + b"\n")  # the rest never written: killed
    gone = [s for s in [*ids, "bad/id"] if s not in kept]
    proc = await cli("report", str(report), "--spaces-file", str(ids_file))
    assert proc.returncode == 1, proc.stdout
    assert f"MISSING: {len(gone)} spaces of the input (41) have no row".encode() in proc.stdout
    first = sorted(gone, key=[*ids[:20], "bad/id", *ids[20:]].index)[:5]
    assert f"(first: {', '.join(first)}, …)".encode() in proc.stdout
    ok = write_rows(tmp_path / "ok.jsonl", *({"space_id": s, "outcome": "accepted"} for s in ids))
    piped = await anyio.run_process(
        [sys.executable, "-m", "smh_async", "report", str(ok), "--spaces-file", "-"],
        input="\n".join(ids).encode(),
        check=False,
    )
    assert piped.returncode == 0 and b"input: 40 spaces, every one has a row" in piped.stdout


@pytest.mark.anyio
async def test_report_spaces_file_errors_are_usage_errors(tmp_path: Path) -> None:
    """A missing or UTF-16 --spaces-file, or one that --output would replace: exit 2 with
    one line naming the flag, and the output is not written."""
    report = write_rows(tmp_path / "r.jsonl", *ROWS)
    utf16 = tmp_path / "ids16.txt"
    utf16.write_bytes("s1\r\ns2\r\n".encode("utf-16"))
    ids = tmp_path / "ids.txt"
    ids.write_text("s1\n")
    for args in (
        ["--spaces-file", str(tmp_path / "nope.txt")],
        ["--spaces-file", str(utf16)],
        ["--spaces-file", str(ids), "--output", str(ids)],
    ):
        proc = await cli("report", str(report), *args)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith(b"smh-async: error: --") and b"Traceback" not in proc.stderr
    assert ids.read_text() == "s1\n"


@pytest.mark.anyio
async def test_an_undecodable_id_on_the_command_line_gets_its_row(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """A space id with a byte that is not UTF-8 (argv holds it as a lone surrogate) is
    refused as invalid and written as a JSON escape: the row is there and reads back (the
    report writer raised UnicodeEncodeError: a traceback, no row for any space)."""
    (good,) = fake.add_spaces(LIBRARY, count=1, items_per_space=1, item_size=10)
    report = tmp_path / "r.jsonl"
    cmd: list[str | bytes] = [sys.executable, "-m", "smh_async", "purge", b"a\xffb", good]
    cmd += ["--report", str(report)]
    proc = await anyio.run_process(cmd, env=_env(server), check=False)
    assert proc.returncode == 1, proc.stderr
    rows = {r["space_id"]: r for r in read_report(report)}
    assert rows["a\udcffb"]["error_code"] == "InvalidSpaceId"
    assert rows[good]["outcome"] == "accepted"
