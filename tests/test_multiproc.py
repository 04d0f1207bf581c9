"""``purge --processes N`` against the emulator: shards, one merged report, resume, signals."""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import re
import shutil
import signal
import sys
from collections import Counter
from pathlib import Path

import anyio
import pytest

from smh_async import read_report, summarize_reports
from smh_async._console import PartsProgress
from smh_async._multiproc import (
    _children_totals,
    _merge,
    child_argv,
    exit_code_of,
    totals_path,
)
from smh_async._shard import shard_of
from smh_async.testing import FakeServer, FakeSMH, Fault
from tests.conftest import LIBRARY
from tests.test_operator_cli import _env, deletes, purge, purging

pytestmark = pytest.mark.anyio


def test_child_argv_replaces_processes_report_and_shard() -> None:
    """Each child gets the same run with its own shard, report part and totals file, never
    the parent's --processes (it is told 1, over any SMH_PROCESSES) or --summary-json."""
    argv = ["purge", "--processes", "3", "--report=r.jsonl", "--concurrency", "8", "a", "b"]
    argv += ["--summary-json", "s.json"]
    child = child_argv(argv, 1, 3, Path("r.jsonl.part1of3"))
    assert child == [
        "purge",
        "--concurrency",
        "8",
        "a",
        "b",
        "--shard",
        "1/3",
        "--report",
        "r.jsonl.part1of3",
        "--summary-json",
        "r.jsonl.part1of3.summary.json",
        "--processes",
        "1",
    ]


def test_exit_code_is_the_most_serious_childs() -> None:
    """130 beats 2 beats 3 beats 1 beats 0; an unknown code counts as a failure."""
    assert exit_code_of([0, 1, 0]) == 1
    assert exit_code_of([3, 130, 1]) == 130
    assert exit_code_of([0, 0]) == 0
    assert exit_code_of([0, -9]) == 1


async def test_processes_purge_every_space_once_into_one_report(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """Three shard processes: every space DELETEd once, one merged row each, parts removed."""
    ids = fake.add_spaces(LIBRARY, count=300, items_per_space=1, item_size=10)
    spaces = tmp_path / "ids.txt"
    spaces.write_text("\n".join(ids) + "\n")
    report = tmp_path / "r.jsonl"
    proc = await purge(
        server, "--processes", "3", "--spaces-file", str(spaces), "--report", str(report)
    )
    assert proc.returncode == 0, proc.stderr
    assert Counter(deletes(fake)) == Counter(ids)
    rows = list(read_report(report))
    assert Counter(r["space_id"] for r in rows) == Counter(ids)
    assert {r["outcome"] for r in rows} == {"accepted"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ids.txt", "r.jsonl"]
    assert b"processes: 3" in proc.stdout and b"accepted: 300" in proc.stdout


async def test_processes_resume_into_the_same_report_keeps_earlier_rows(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """Resuming with --processes appends: earlier accepted rows stay, none is DELETEd again."""
    ids = fake.add_spaces(LIBRARY, count=120, items_per_space=1, item_size=10)
    report = tmp_path / "r.jsonl"
    first = await purge(server, *ids[:50], "--report", str(report))
    assert first.returncode == 0, first.stderr
    spaces = tmp_path / "ids.txt"
    spaces.write_text("\n".join(ids) + "\n")
    proc = await purge(
        server,
        "--processes",
        "2",
        "--spaces-file",
        str(spaces),
        "--report",
        str(report),
        "--resume",
        str(report),
    )
    assert proc.returncode == 0, proc.stderr
    assert Counter(deletes(fake)) == Counter(ids)
    rows = list(read_report(report))
    assert Counter(r["space_id"] for r in rows) == Counter(ids)


async def test_sigterm_reaches_every_child_once_and_resume_finishes(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """SIGTERM to the parent: children stop gracefully (exit 130), no orphan keeps sending."""
    ids = fake.add_spaces(LIBRARY, count=200, items_per_space=1, item_size=10)
    fake.latency = 0.05
    spaces = tmp_path / "ids.txt"
    spaces.write_text("\n".join(ids) + "\n")
    report = tmp_path / "r.jsonl"
    args = [
        "purge",
        "--log-format",
        "json",
        "--processes",
        "2",
        "--concurrency",
        "2",
        "--spaces-file",
        str(spaces),
        "--report",
        str(report),
        "--resume",
        str(report),
    ]
    cmd = [sys.executable, "-m", "smh_async", *args]
    async with await anyio.open_process(cmd, env=_env(server)) as process:
        while len(deletes(fake)) < 20:
            await anyio.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        assert await process.wait() == 130
    sent = len(deletes(fake))
    await anyio.sleep(0.3)
    assert len(deletes(fake)) == sent  # nothing is still running after the parent returned
    done = {r["space_id"] for r in read_report(report) if r["outcome"] == "accepted"}
    assert 20 <= len(done) < 200
    proc = await purge(server, *args[3:])
    assert proc.returncode == 0, proc.stderr
    assert Counter(deletes(fake)) == Counter(ids)


async def test_processes_summary_from_children_totals_equals_reading_the_rows(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """With failures in some shards, the parent's counts (from the children's totals, rows
    copied unread) equal those of reading the merged report; --summary-json holds them."""
    ids = fake.add_spaces(LIBRARY, count=120, items_per_space=1, item_size=10)
    for space in ids[::7]:
        fake.add_fault(Fault("status", status=404, code="SpaceNotFound", space_id=space))
    fake.add_fault(Fault("status", status=400, code="InvalidArgument", space_id=ids[1]))
    spaces = tmp_path / "ids.txt"
    spaces.write_text("\n".join(ids) + "\n")
    report, totals = tmp_path / "r.jsonl", tmp_path / "summary.json"
    proc = await purge(
        server,
        *("--processes", "3", "--spaces-file", str(spaces), "--report", str(report)),
        *("--summary-json", str(totals), "--max-attempts", "1"),
    )
    assert proc.returncode == 1, proc.stderr
    read = summarize_reports([report])
    failed = len(ids[::7]) + 1
    assert read.by_outcome == Counter(accepted=len(ids) - failed, failed=failed)
    assert read.by_error_code == Counter(SpaceNotFound=failed - 1, InvalidArgument=1)
    data = json.loads(totals.read_text())
    assert (data["total"], data["accepted"], data["failed"]) == (
        len(ids),
        len(ids) - failed,
        failed,
    )
    assert data["by_error_code"] == dict(read.by_error_code)
    assert (data["processes"], data["exit_code"], data["report"]) == (3, 1, str(report))
    shown = f"spaces: {len(ids)}  accepted: {len(ids) - failed}  failed: {failed}"
    assert shown.encode() in proc.stdout
    assert b"failures by code: InvalidArgument=1, SpaceNotFound=%d" % (failed - 1) in proc.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ids.txt", "r.jsonl", "summary.json"]


async def test_single_process_summary_json(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """--summary-json in one process: the printed summary's figures, plus exit code and report."""
    ids = fake.add_spaces(LIBRARY, count=20, items_per_space=1, item_size=10)
    totals = tmp_path / "s.json"
    proc = await purge(server, *ids, ids[0], "--summary-json", str(totals))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(totals.read_text())
    assert (data["total"], data["accepted"], data["duplicates"], data["exit_code"]) == (
        20,
        20,
        1,
        0,
    )
    assert data["report"] is None and set(data["latency_ms"]) >= {"p50", "p95", "max"}


async def test_merge_from_totals_equals_merge_by_reading(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """Two real shard runs: counting from their totals gives the same summary and the same
    merged bytes as reading every row (the fallback), and is the path taken when possible."""
    ids = fake.add_spaces(LIBRARY, count=60, items_per_space=1, item_size=10)
    fake.add_fault(Fault("status", status=404, code="SpaceNotFound", space_id=ids[3]))
    parts = [tmp_path / f"r.part{i}of2" for i in range(2)]
    for i, part in enumerate(parts):
        args = child_argv(["purge", *ids, "--max-attempts", "1"], i, 2, part)
        await purge(server, *args[1:])
    totals = _children_totals(parts)
    assert totals is not None
    fast = _merge([], parts, tmp_path / "fast.jsonl", totals)
    slow = _merge([], parts, tmp_path / "slow.jsonl", None)
    assert fast == slow and fast.by_outcome == Counter(accepted=59, failed=1)
    assert (tmp_path / "fast.jsonl").read_bytes() == (tmp_path / "slow.jsonl").read_bytes()
    totals_path(parts[1]).unlink()  # a child that left no totals: the rows are read
    assert _children_totals(parts) is None


async def test_a_stale_totals_file_without_its_part_is_not_counted(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """A totals file an earlier run left without its part (it holds no row) is removed
    before the children start: a child that then fails early adds nothing stale."""
    ids = fake.add_spaces(LIBRARY, count=10, items_per_space=1, item_size=10)
    report = tmp_path / "r.jsonl"
    totals_path(tmp_path / "r.jsonl.part1of2").write_text(
        '{"total": 1, "accepted": 1, "failed": 0, "skipped": 0, "dry_run": 0, "by_error_code": {}}'
    )
    # Both children fail before sending anything (their settings are invalid: exit 2).
    proc = await purge(
        server, "--processes", "2", "--report", str(report), *ids, SMH_CONCURRENCY="0"
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == b""  # each child said why; no summary of a run that never ran
    assert list(tmp_path.iterdir()) == []  # stale totals gone, no report made


async def _leave_parts(server: FakeServer, ids: list[str], tmp_path: Path) -> list[Path]:
    """Run --processes 2 into ``tmp_path/r.jsonl`` with its merge made to fail (a directory
    sits where it writes, as a full disk would): the parts are left with every row."""
    (tmp_path / "r.jsonl.partial").mkdir()
    proc = await purge(server, *ids, "--report", str(tmp_path / "r.jsonl"), "--processes", "2")
    assert proc.returncode == 3 and b"REPORT FAILED" in proc.stdout, proc.stdout
    assert b"(then remove the .part files), or the next run resuming into it does" in proc.stdout
    parts = sorted(tmp_path.glob("r.jsonl.part*of2"))
    assert len(parts) == 2
    return parts


@pytest.mark.parametrize("processes", ["1", "2"])
async def test_leftover_parts_are_merged_by_a_resume_and_refused_otherwise(
    fake: FakeSMH, server: FakeServer, tmp_path: Path, processes: str
) -> None:
    """Parts a run left unmerged (REPORT FAILED, or a killed parent) are never thrown away
    (the next run deleted them and purged every space again): a run that does not resume
    into the report is refused (exit 2, nothing sent) naming them and the merge command; a
    resume whose merge still fails is refused too; a resume that can merge them says so and
    sends no DELETE for a space accepted there."""
    ids = fake.add_spaces(LIBRARY, count=60, items_per_space=1, item_size=10)
    report = tmp_path / "r.jsonl"
    parts = await _leave_parts(server, ids, tmp_path)
    kept = [p.read_bytes() for p in parts]
    fresh = await purge(server, *ids, "--report", str(report), "--processes", processes)
    assert fresh.returncode == 2, fresh.stderr
    line = fresh.stderr.decode()
    assert all(str(p) in line for p in parts) and "nothing was sent" in line
    merge = re.search(r"'smh-async report (\S+) (\S+) --output (\S+)'", line)
    assert merge is not None and sorted(merge.groups()) == sorted(map(str, [*parts, report]))
    resume = ["--resume", str(report), "--report", str(report), "--processes", processes]
    still_full = await purge(server, *ids, *resume)
    assert still_full.returncode == 2 and b"they are kept" in still_full.stderr
    assert [p.read_bytes() for p in parts] == kept and Counter(deletes(fake)) == Counter(ids)
    (tmp_path / "r.jsonl.partial").rmdir()
    proc = await purge(server, *ids, *resume)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"merged into {report} the report parts".encode())
    assert Counter(deletes(fake)) == Counter(ids)  # none purged twice
    assert sorted(r["space_id"] for r in read_report(report)) == sorted(ids)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.jsonl"]


async def test_a_part_still_being_written_refuses_the_run(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """A leftover part that a live process still holds (an orphaned child still stopping,
    or another run into the same report) is neither merged nor removed: exit 2, nothing
    sent, the file as it was."""
    ids = fake.add_spaces(LIBRARY, count=10, items_per_space=1, item_size=10)
    report = tmp_path / "r.jsonl"
    part = tmp_path / "r.jsonl.part0of2"
    part.write_text(json.dumps({"space_id": ids[0], "outcome": "accepted"}) + "\n")
    with part.open("rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        proc = await purge(
            server, *ids, "--resume", str(report), "--report", str(report), "--processes", "2"
        )
    assert proc.returncode == 2, proc.stderr
    assert f"{part} is still being written by another smh-async process".encode() in proc.stderr
    assert fake.requests == [] and part.exists() and not report.exists()


def _held(path: Path) -> bool:
    """True while some process holds ``path`` locked (as a running child holds its part)."""
    with path.open("rb") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
    return False


async def test_children_of_a_killed_parent_stop_and_a_resume_merges_their_parts(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """SIGKILL to the --processes parent: its children notice within about a second and stop
    as on SIGTERM (purge.parent_gone), leaving parts with one row per space; they went on
    purging every space unsupervised. The next resume into the report merges the parts and
    sends no second DELETE to any space (it deleted them and purged every space again)."""
    ids = fake.add_spaces(LIBRARY, count=600, items_per_space=1, item_size=10)
    fake.latency = 0.05
    spaces = tmp_path / "ids.txt"
    spaces.write_text("\n".join(ids) + "\n")
    report = tmp_path / "r.jsonl"
    args = ["--spaces-file", str(spaces), "--report", str(report), "--resume", str(report)]
    args += ["--concurrency", "2", "--processes", "2"]
    cmd = [sys.executable, "-m", "smh_async", "purge", "--log-format", "json", *args]
    parts = [tmp_path / f"r.jsonl.part{i}of2" for i in range(2)]
    log = tmp_path / "stderr.log"
    with log.open("wb") as err:  # the children's too: a file, no pipe to fill
        async with await anyio.open_process(cmd, env=_env(server), stderr=err) as process:
            await purging(fake, 2, sent=20)  # both children: one still starting holds no part
            assert all(map(_held, parts))  # each child holds its part while it runs
            process.kill()
            await process.wait()
    with anyio.fail_after(10):
        while any(map(_held, parts)):  # until both children have ended
            await anyio.sleep(0.05)
    gone = [e for e in map(json.loads, log.read_bytes().splitlines()) if "parent_gone" in str(e)]
    assert sorted(e["shard"] for e in gone) == ["0/2", "1/2"]
    assert {e["event"] for e in gone} == {"purge.parent_gone"}
    first = Counter(r["space_id"] for p in parts for r in read_report(p))
    assert first == Counter(ids)  # one row per space: accepted, or NotStarted
    assert len(deletes(fake)) < len(ids)
    proc = await purge(server, *args)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"merged into {report} the report parts".encode())
    assert Counter(deletes(fake)) == Counter(ids)
    assert summarize_reports([report]).by_outcome == {"accepted": len(ids)}


async def test_a_child_whose_parent_is_already_gone_sends_nothing(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """A --processes child that finds its parent gone before its first request (the pid in
    SMH_ASYNC_PARENT_PID is of a process that has ended) stops at once: no DELETE, every
    space reported not started, exit 130, purge.parent_gone logged."""
    ids = fake.add_spaces(LIBRARY, count=10, items_per_space=1, item_size=10)
    report = tmp_path / "r.jsonl.part0of1"
    gone = await anyio.run_process([sys.executable, "-c", "import os; print(os.getpid())"])
    not_parent = gone.stdout.decode().strip()  # a process that has ended: a parent gone
    proc = await purge(server, *ids, "--report", str(report), SMH_ASYNC_PARENT_PID=not_parent)
    assert proc.returncode == 130, proc.stderr
    assert deletes(fake) == []
    assert {(r["outcome"], r["error_code"]) for r in read_report(report)} == {
        ("skipped", "NotStarted")
    }
    assert b'"purge.parent_gone"' in proc.stderr


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
async def test_a_failed_merge_into_a_device_keeps_the_parts(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """--report on a device that cannot be written (/dev/full): the parts, in a scratch
    directory, are kept and named with the merge command (the directory was removed, with
    every row, while the summary said they were kept)."""
    ids = fake.add_spaces(LIBRARY, count=30, items_per_space=1, item_size=10)
    proc = await purge(server, *ids, "--report", "/dev/full", "--processes", "2")
    assert proc.returncode == 3, proc.stderr
    named = re.search(rb"Every row is kept in (\S+) (\S+):", proc.stdout)
    assert named is not None, proc.stdout
    assert b"resuming into it" not in proc.stdout  # a resume does not look in scratch
    parts = [Path(p.decode()) for p in named.groups()]
    try:
        assert sorted(r["space_id"] for p in parts for r in read_report(p)) == sorted(ids)
    finally:
        shutil.rmtree(parts[0].parent, ignore_errors=True)


async def test_max_spaces_holds_for_the_whole_multi_process_run(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """--max-spaces is checked once for all children (per child, 3 processes could purge 3x
    the limit): over it, exit 3 and nothing sent; at it (duplicates and already-accepted ids
    not counted), every space purged; with --all-spaces, a usage error."""
    ids = fake.add_spaces(LIBRARY, count=30, items_per_space=1, item_size=10)
    spaces = tmp_path / "ids.txt"
    spaces.write_text("\n".join([*ids, *ids[:5]]) + "\n")
    multi = ("--processes", "3", "--spaces-file", str(spaces))
    over = await purge(server, *multi, "--max-spaces", "29")
    assert over.returncode == 3 and b"holds 30 spaces to purge" in over.stderr, over.stderr
    assert fake.requests == []
    resume = tmp_path / "done.jsonl"
    resume.write_text(json.dumps({"space_id": ids[0], "outcome": "accepted"}) + "\n")
    at = await purge(server, *multi, "--max-spaces", "29", "--resume", str(resume))
    assert at.returncode == 0, at.stderr
    assert Counter(deletes(fake)) == Counter(ids[1:])
    listing = await purge(server, "--processes", "2", "--all-spaces", "--max-spaces", "5")
    assert listing.returncode == 2 and b"--max-spaces with --processes" in listing.stderr


def test_parts_progress_counts_complete_rows_only(tmp_path: Path) -> None:
    """The parent's live line counts rows as the children append them, failures too, and
    leaves a row still being written for the next update."""
    parts = [tmp_path / "r.part0of2", tmp_path / "r.part1of2"]
    screen = io.StringIO()
    progress = PartsProgress(parts, screen)
    progress.update()  # no part yet
    assert (progress.done, progress.failed) == (0, 0)
    row = {"space_id": "s", "outcome": "accepted"}
    failed = {**row, "outcome": "failed", "error_code": "SpaceNotFound"}
    parts[0].write_text(json.dumps(row) + "\n" + json.dumps(failed) + "\n")
    parts[1].write_text(json.dumps(row) + "\n" + '{"space_id": "t", "outc')
    progress.update()
    assert (progress.done, progress.failed) == (3, 1)
    with parts[1].open("a") as f:
        f.write('ome": "failed"}\n')
    progress.update()
    progress.close()
    assert (progress.done, progress.failed) == (4, 2)
    last = screen.getvalue().rsplit("\r\x1b[K", 1)[1]
    assert last.startswith("purge 4 done  ")
    assert last.endswith("failed 2 (SpaceNotFound=1, unknown=1)  (2 processes)\n")


async def test_processes_on_a_terminal_show_one_line_for_the_whole_run(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """With stderr on a terminal, --processes 2 draws one live line counting all children's
    spaces; the children draw none (two lines took turns on one terminal line before)."""
    ids = fake.add_spaces(LIBRARY, count=200, items_per_space=1, item_size=10)
    spaces = tmp_path / "ids.txt"
    spaces.write_text("\n".join(ids) + "\n")
    primary, secondary = pty.openpty()
    cmd = [sys.executable, "-m", "smh_async", "purge", "--processes", "2"]
    cmd += ["--spaces-file", str(spaces)]
    proc = await anyio.run_process(cmd, env=_env(server), stderr=secondary, check=False)
    os.close(secondary)
    screen = b""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # EIO once the terminal has no writer left
            break
        if not chunk:
            break
        screen += chunk
    os.close(primary)
    assert proc.returncode == 0, screen
    assert b"purge 200 done" in screen and b"(2 processes)" in screen
    assert b"purge.space" not in screen  # children log warnings only on a terminal
    assert not re.search(rb"purge \d+/\d+", screen)  # no child's own "done/total" line
    assert Counter(deletes(fake)) == Counter(ids)


def _line(proc_stdout: bytes, start: bytes) -> bytes:
    """The summary line of ``proc_stdout`` that begins with ``start``."""
    return next(line for line in proc_stdout.splitlines() if line.startswith(start))


async def test_processes_summary_says_what_one_process_says(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """The --processes summary carries the dry run's bin sizes, duplicates, spaces a resume
    found done and the --verify counts, equal to one process's (they used to be dropped);
    a resume into the same report counts this run's spaces, not the whole file's."""
    ids = fake.add_spaces(LIBRARY, count=40, items_per_space=3, item_size=100)
    spaces = tmp_path / "ids.txt"
    spaces.write_text("\n".join([*ids, *ids[:5]]) + "\n")  # five duplicates
    one = await purge(server, "--dry-run", "--spaces-file", str(spaces))
    many = await purge(server, "--dry-run", "--spaces-file", str(spaces), "--processes", "2")
    assert (one.returncode, many.returncode) == (0, 0), many.stderr
    dry = b"dry run: 40 spaces, 120 items, 12000 bytes"
    assert _line(one.stdout, b"dry run:") == _line(many.stdout, b"dry run:")
    assert _line(many.stdout, b"dry run:").startswith(dry)
    assert b"duplicates: 5  processes: 2" in many.stdout
    report = tmp_path / "r.jsonl"
    first = await purge(server, *ids[:12], "--report", str(report))
    assert first.returncode == 0, first.stderr
    resumed = await purge(
        server,
        *("--spaces-file", str(spaces), "--processes", "2", "--verify"),
        *("--resume", str(report), "--report", str(report)),
    )
    assert resumed.returncode == 0, resumed.stderr
    first_line = _line(resumed.stdout, b"spaces:")
    assert first_line.startswith(b"spaces: 28  accepted: 28  failed: 0")  # this run's
    assert b"duplicates: 5  already done (resume): 12  processes: 2" in first_line
    assert _line(resumed.stdout, b"verify:").startswith(b"verify: 28 empty after the purge")
    assert Counter(deletes(fake)) == Counter(ids)


async def test_a_refused_processes_run_leaves_the_report_alone(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """A config error in every child (exit 2, nothing sent) prints no summary and leaves an
    existing --report as it was; the merge used to replace it with an empty file."""
    ids = fake.add_spaces(LIBRARY, count=10, items_per_space=1, item_size=10)
    report = tmp_path / "r.jsonl"
    first = await purge(server, *ids, "--report", str(report))
    assert first.returncode == 0, first.stderr
    before = report.read_bytes()
    proc = await purge(server, *ids, "--report", str(report), "--processes", "2", SMH_LIBRARY_ID="")
    assert proc.returncode == 2
    assert b"library id is empty" in proc.stderr
    # Each child's error is one whole line (print wrote text and newline apart: interleaved).
    assert [line[:18] for line in proc.stderr.splitlines()] == [b"smh-async: error: "] * 2
    assert proc.stdout == b""
    assert report.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.jsonl"]


async def test_processes_summary_counts_releases_and_names_the_release_report(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """--wait-release with --processes: the summary adds up the children's release counts
    and names the merged release report, as one process's summary does."""
    ids = fake.add_spaces(LIBRARY, count=30, items_per_space=2, item_size=100)
    empty = fake.add_space(LIBRARY)
    report = tmp_path / "r.jsonl"
    proc = await purge(
        server, *ids, empty, "--report", str(report), "--processes", "2", "--wait-release", "5"
    )
    assert proc.returncode == 0, proc.stderr
    release_report = tmp_path / "r.release.jsonl"
    assert len(list(read_report(release_report))) == 31
    assert b"release: released: 30  release_pending: 0  nothing_to_release: 1" in proc.stdout
    assert _line(proc.stdout, b"release report:") == f"release report: {release_report}".encode()


def _starting_hook(tmp_path: Path, condition: str) -> str:
    """A PYTHONPATH whose sitecustomize ends a child with exit 130 while it starts, before
    it opens its report part (as a Ctrl-C during its imports does) when ``condition`` holds."""
    hook = tmp_path / "hook"
    hook.mkdir()
    code = f"import os, sys\nif {condition}:\n    os._exit(130)\n"
    (hook / "sitecustomize.py").write_text(code)
    return str(hook)


async def test_a_child_ended_while_starting_is_named_and_resume_finishes(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """A child that ends before opening its report part (shard 1/2, exit 130) is named in
    the summary and in --summary-json: its spaces are in no row (the summary used to read as
    the whole run's); a resume purges them."""
    ids = fake.add_spaces(LIBRARY, count=40, items_per_space=1, item_size=10)
    spaces = tmp_path / "ids.txt"
    spaces.write_text("\n".join(ids) + "\n")
    report, totals = tmp_path / "r.jsonl", tmp_path / "summary.json"
    args = ["--spaces-file", str(spaces), "--report", str(report), "--resume", str(report)]
    args += ["--processes", "2"]
    hook = _starting_hook(tmp_path, '"1/2" in sys.argv')
    proc = await purge(server, *args, "--summary-json", str(totals), PYTHONPATH=hook)
    assert proc.returncode == 130, proc.stderr
    assert b"NOT STARTED: shard 1/2 (exit 130) ended before its first space" in proc.stdout
    assert json.loads(totals.read_text())["unreported_shards"] == ["1/2 (exit 130)"]
    shard0 = {i for i in ids if shard_of(i, 2) == 0}
    assert {r["space_id"] for r in read_report(report)} == shard0 == set(deletes(fake))
    proc = await purge(server, *args)
    assert proc.returncode == 0, proc.stderr
    assert Counter(deletes(fake)) == Counter(ids)


async def test_processes_interrupted_while_starting_send_nothing_and_say_so(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """Every child ended (exit 130) before its report part: exit 130 and one line saying
    nothing was sent, as one process says; no summary naming a report that does not exist."""
    ids = fake.add_spaces(LIBRARY, count=10, items_per_space=1, item_size=10)
    report = tmp_path / "r.jsonl"
    hook = _starting_hook(tmp_path, '"--shard" in sys.argv')
    proc = await purge(server, *ids, "--report", str(report), "--processes", "2", PYTHONPATH=hook)
    assert proc.returncode == 130
    assert proc.stdout == b""
    assert b"interrupted before any space was started: nothing was sent" in proc.stderr
    assert not report.exists()
    assert deletes(fake) == []


async def test_a_child_started_through_a_launcher_watches_the_launcher(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """A child whose own parent is not the --processes parent but that parent is alive (a
    launcher that runs Python as a child of its own) purges as usual: it used to take the
    live parent for gone and send nothing."""
    ids = fake.add_spaces(LIBRARY, count=5, items_per_space=1, item_size=10)
    report = tmp_path / "r.jsonl.part0of1"
    async with await anyio.open_process(["sleep", "30"]) as launcher_like:
        live = str(launcher_like.pid)  # alive, and not the child's parent (pytest is)
        proc = await purge(server, *ids, "--report", str(report), SMH_ASYNC_PARENT_PID=live)
        launcher_like.kill()
    assert proc.returncode == 0, proc.stderr
    assert sorted(deletes(fake)) == sorted(ids)
    assert b'"purge.parent_gone"' not in proc.stderr
