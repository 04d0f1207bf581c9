"""Operator-grade runs of the real CLI process against the emulator over loopback sockets:
reports, resume after SIGINT, dry run, shards, rate cap, thresholds, release, exit codes."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import stat
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import anyio
import pytest

from smh_async import read_report, shard_of, summarize_reports
from smh_async.testing import FakeServer, FakeSMH, Fault
from tests.conftest import LIBRARY, SECRET

pytestmark = pytest.mark.anyio


def _env(server: FakeServer, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMH_", "JOB_"))}
    env.update(
        SMH_BASE_URL=server.base_url,
        SMH_LIBRARY_ID=LIBRARY,
        SMH_LIBRARY_SECRET=SECRET,
        SMH_BACKOFF_INITIAL="0.001",
        SMH_BACKOFF_MAX="0.01",
    )
    env.update(extra)
    return env


async def purge(server: FakeServer, *args: str, **env: str) -> subprocess.CompletedProcess[bytes]:
    """Run ``smh-async purge ARGS`` in a child process with JSON logs."""
    return await anyio.run_process(
        [sys.executable, "-m", "smh_async", "purge", "--log-format", "json", *args],
        env=_env(server, **env),
        check=False,
    )


def deletes(fake: FakeSMH) -> list[str]:
    """Space ids of every DELETE that reached the emulator, in arrival order."""
    return [r.space_id or "" for r in fake.requests if r.route == "empty_bin"]


async def purging(fake: FakeSMH, processes: int, *, sent: int = 10) -> None:
    """Wait until ``sent`` DELETEs reached the emulator, with ``--processes``, from every
    shard: on a busy machine a child still starting when the run is signalled ends before
    its first space, named in the summary but with no rows (a case tested on its own)."""
    while (
        len(done := deletes(fake)) < sent or len({shard_of(s, processes) for s in done}) < processes
    ):
        await anyio.sleep(0.02)


def stopped_rows(report: Path, ids: Sequence[str], sent: Sequence[str]) -> set[str]:
    """Check the report of a run that stopped early and return its accepted spaces: one row
    per input space; a real outcome for each space that reached the server, and
    ``skipped``/``NotStarted`` for every other (it used to have no row at all)."""
    rows = list(read_report(report))
    assert Counter(r["space_id"] for r in rows) == Counter(ids)
    started = {r["space_id"] for r in rows if r["outcome"] != "skipped"}
    assert started == set(sent)
    rest = {
        (r["outcome"], r["error_code"], r["attempts"]) for r in rows if r["space_id"] not in started
    }
    assert rest <= {("skipped", "NotStarted", 0)}
    return {r["space_id"] for r in rows if r["outcome"] == "accepted"}


def events(proc: subprocess.CompletedProcess[bytes], name: str) -> list[dict[str, object]]:
    """The JSON log events called ``name`` from a child's stderr."""
    rows = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith(b"{")]
    return [e for e in rows if e.get("event") == name]


async def test_report_has_exactly_one_row_per_input_space(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """Good, unknown, invalid and repeated ids: one report row per distinct input id, exit 1."""
    good = fake.add_spaces(LIBRARY, count=40, items_per_space=1, item_size=10)
    inputs = [*good, "nosuch1", "bad/id", good[0], good[5], "nosuch1"]
    spaces = tmp_path / "ids.txt"
    spaces.write_text("\n".join(inputs) + "\n")
    report = tmp_path / "r.jsonl"
    proc = await purge(server, "--spaces-file", str(spaces), "--report", str(report))
    assert proc.returncode == 1, proc.stderr
    rows = list(read_report(report))
    assert Counter(r["space_id"] for r in rows) == Counter(set(inputs))
    assert {r["space_id"] for r in rows if r["outcome"] == "failed"} == {"nosuch1", "bad/id"}


@pytest.mark.parametrize("event_loop", ["asyncio", "uvloop"])
async def test_sigint_mid_run_exits_130_and_resume_finishes_the_rest(
    fake: FakeSMH, server: FakeServer, tmp_path: Path, event_loop: str
) -> None:
    """SIGINT halfway: exit 130, report flushed; resume into it: all accepted once, no re-DELETE
    (on either --event-loop, and the one asked for is the one that ran)."""
    ids = fake.add_spaces(LIBRARY, count=120, items_per_space=1, item_size=10)
    fake.latency = 0.05
    report = tmp_path / "r.jsonl"
    args = [*ids, "--report", str(report), "--resume", str(report), "--concurrency", "4"]
    args += ["--event-loop", event_loop]
    cmd = [sys.executable, "-m", "smh_async", "purge", "--log-format", "json", *args]
    log = tmp_path / "stderr.log"
    with log.open("wb") as err:  # a file, not a pipe that could fill while stdout is read
        async with await anyio.open_process(cmd, env=_env(server), stderr=err) as process:
            while not report.exists() or len(report.read_text().splitlines()) < 30:
                await anyio.sleep(0.02)
            process.send_signal(signal.SIGINT)
            assert process.stdout is not None
            stdout = b"".join([chunk async for chunk in process.stdout])
            assert await process.wait() == 130
    stderr = log.read_bytes()
    assert b"INTERRUPTED" in stdout and SECRET.encode() not in stdout
    plan = [json.loads(x) for x in stderr.splitlines() if b'"purge.plan"' in x]
    assert [p["event_loop"] for p in plan] == [event_loop]
    first = stopped_rows(report, ids, deletes(fake))
    assert 30 <= len(first) < 120
    sent_before = len(fake.requests)

    proc = await purge(server, *args)
    assert proc.returncode == 0, proc.stderr
    resumed = [r.space_id or "" for r in fake.requests[sent_before:] if r.route == "empty_bin"]
    assert not set(resumed) & first and sorted(resumed) == sorted(set(ids) - first)
    assert Counter(deletes(fake)) == Counter(ids)  # every space emptied exactly once
    merged = summarize_reports([report])
    assert merged.spaces == 120 and merged.by_outcome == {"accepted": 120}
    assert SECRET not in report.read_text()


async def test_uvloop_missing_is_a_usage_error_before_any_request(
    fake: FakeSMH, server: FakeServer
) -> None:
    """--event-loop uvloop without uvloop installed: exit 2 naming the extra, nothing sent
    (with --processes too, before any child starts)."""
    ids = fake.add_spaces(LIBRARY, count=3, items_per_space=1, item_size=10)
    hide = (
        "import sys, runpy; sys.modules['uvloop'] = None; "
        "runpy.run_module('smh_async', run_name='__main__')"
    )
    for extra in ([], ["--processes", "2"]):
        proc = await anyio.run_process(
            [sys.executable, "-c", hide, "purge", *ids, "--event-loop", "uvloop", *extra],
            env=_env(server),
            check=False,
        )
        assert proc.returncode == 2, proc.stderr
        assert b"pip install 'smh-async[uvloop]'" in proc.stderr
        assert b"Traceback" not in proc.stderr
    assert fake.requests == []


@pytest.mark.parametrize("processes", ["1", "2"])
async def test_max_duration_exits_3_and_resume_finishes_the_rest(
    fake: FakeSMH, server: FakeServer, tmp_path: Path, processes: str
) -> None:
    """--max-duration: no new space after the window, exit 3 with the reason and the way on
    in the summary (also from the --processes parent); `report` exits 1 on the report while
    spaces are not started; a resume finishes the rest, each space emptied exactly once."""
    ids = fake.add_spaces(LIBRARY, count=150, items_per_space=1, item_size=10)
    fake.latency = 0.05
    spaces = tmp_path / "ids.txt"
    spaces.write_text("\n".join(ids) + "\n")
    report = tmp_path / "r.jsonl"
    args = ["--spaces-file", str(spaces), "--report", str(report), "--resume", str(report)]
    args += ["--concurrency", "4", "--processes", processes]
    totals = tmp_path / "summary.json"
    first = await purge(server, *args, "--max-duration", "0.5", "--summary-json", str(totals))
    assert first.returncode == 3, first.stderr
    assert b"ABORTED: max_duration: re-run with --resume REPORT to finish the rest" in first.stdout
    written = json.loads(totals.read_text())
    assert (written["aborted"], written["interrupted"], written["exit_code"]) == (
        "max_duration",
        False,
        3,
    )
    # The rate counts the spaces worked on, not those never started (it did with 2 processes).
    worked = written["accepted"] + written["failed"]
    assert written["rate_per_s"] <= worked / written["elapsed_s"] * 1.01 + 0.1
    done = stopped_rows(report, ids, deletes(fake))
    assert 0 < len(done) < 150
    assert f"skipped: {150 - len(done)}".encode() in first.stdout
    check = [sys.executable, "-m", "smh_async", "report", str(report)]
    incomplete = await anyio.run_process(check, check=False)
    assert incomplete.returncode == 1  # it said all was well (exit 0) before NotStarted rows
    assert f"NOT STARTED: {150 - len(done)} spaces".encode() in incomplete.stdout
    second = await purge(server, *args)
    assert second.returncode == 0, second.stderr
    assert Counter(deletes(fake)) == Counter(ids)
    assert summarize_reports([report]).by_outcome == {"accepted": 150}
    complete = await anyio.run_process(check, check=False)
    assert complete.returncode == 0 and b"NOT STARTED" not in complete.stdout


async def test_without_a_report_the_stop_line_does_not_offer_a_resume(
    fake: FakeSMH, server: FakeServer
) -> None:
    """A run stopped early with no --report says a re-run sends every space again, instead of
    pointing at a --resume REPORT that does not exist."""
    ids = fake.add_spaces(LIBRARY, count=60, items_per_space=1, item_size=10)
    fake.latency = 0.05
    proc = await purge(server, *ids, "--concurrency", "2", "--max-duration", "0.3")
    assert proc.returncode == 3, proc.stderr
    assert b"ABORTED: max_duration: no --report was kept, so a re-run sends every" in proc.stdout
    assert b"--resume" not in proc.stdout


async def test_a_listing_that_gives_out_mid_run_exits_1_and_resume_finishes(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """--all-spaces whose second listing page fails (a 400, not retried): the first page's
    spaces are purged and reported, the summary says the input broke off, exit 1, no
    traceback (it used to end in an ExceptionGroup traceback); a resume finishes the rest."""
    ids = fake.add_spaces(LIBRARY, count=1500, items_per_space=1, item_size=10)
    fake.latency = 0.002
    report = tmp_path / "r.jsonl"
    args = ["--all-spaces", "--report", str(report), "--resume", str(report), "--no-progress"]
    cmd = [sys.executable, "-m", "smh_async", "purge", "--log-format", "json", *args]
    log = tmp_path / "stderr.log"
    with log.open("wb") as err:  # a file: 1,000 log lines would fill a pipe nobody reads yet
        async with await anyio.open_process(cmd, env=_env(server), stderr=err) as process:
            while not any(r.route == "space_list" for r in fake.requests):
                await anyio.sleep(0.01)
            fault = fake.add_fault(
                Fault("status", status=400, code="ParamInvalid", route="space_list")
            )
            assert process.stdout is not None
            stdout = b"".join([chunk async for chunk in process.stdout])
            assert await process.wait() == 1
    stderr = log.read_bytes()
    assert fault.applied == 1 and b"Traceback" not in stderr
    assert b"INPUT FAILED" in stdout
    failed = [json.loads(x) for x in stderr.splitlines() if b'"purge.source_failed"' in x]
    assert [e["error_code"] for e in failed] == ["ParamInvalid"]
    first = [r for r in read_report(report)]
    assert len(first) == 1000 and {r["outcome"] for r in first} == {"accepted"}
    fake.clear_faults()
    proc = await purge(server, *args)
    assert proc.returncode == 0, proc.stderr
    assert Counter(deletes(fake)) == Counter(ids)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
async def test_a_report_on_a_full_disk_stops_the_run_with_exit_3(
    fake: FakeSMH, server: FakeServer
) -> None:
    """--report on a full disk (/dev/full: every write is ENOSPC): the run stops launching,
    in-flight spaces finish and are logged, the summary says REPORT FAILED, exit 3, no
    traceback (it used to end in one, with no summary)."""
    ids = fake.add_spaces(LIBRARY, count=300, items_per_space=1, item_size=10)
    fake.latency = 0.01
    proc = await purge(server, *ids, "--report", "/dev/full", "--concurrency", "8")
    assert proc.returncode == 3, proc.stderr
    assert b"Traceback" not in proc.stderr
    assert b"REPORT FAILED: cannot write /dev/full: No space left on device" in proc.stdout
    sent = deletes(fake)
    assert 0 < len(sent) <= 8 + 1  # what was in flight when the first row failed
    logged = [str(e["space_id"]) for e in events(proc, "purge.space")]
    assert sorted(logged) == sorted(sent)  # nothing done without a trace
    assert [e["path"] for e in events(proc, "purge.report_failed")] == ["/dev/full"]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
async def test_a_summary_on_a_full_disk_is_named_and_the_exit_code_kept(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """A --summary-json that cannot be written is named by its path (--processes children
    are given one the user never typed), and the run's own exit code stands."""
    ids = fake.add_spaces(LIBRARY, count=3, items_per_space=1, item_size=10)
    report = tmp_path / "r.jsonl"
    proc = await purge(server, *ids, "--report", str(report), "--summary-json", "/dev/full")
    assert proc.returncode == 0, proc.stderr
    assert b"cannot write the summary /dev/full: [Errno 28] No space left" in proc.stderr
    assert len(report.read_text().splitlines()) == 3


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
async def test_a_processes_summary_on_a_full_disk_is_named_and_the_exit_code_kept(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """--processes with a --summary-json that cannot be written: one error line naming it,
    the summary on stdout and the run's exit code, as one process does (the parent ended in
    a traceback, exit 1)."""
    ids = fake.add_spaces(LIBRARY, count=20, items_per_space=1, item_size=10)
    report = tmp_path / "r.jsonl"
    proc = await purge(
        server, *ids, "--report", str(report), "--summary-json", "/dev/full", "--processes", "2"
    )
    assert proc.returncode == 0, proc.stderr
    assert b"Traceback" not in proc.stderr
    assert b"smh-async: error: cannot write the summary /dev/full: [Errno 28]" in proc.stderr
    assert b"spaces: 20  accepted: 20" in proc.stdout
    assert sorted(r["space_id"] for r in read_report(report)) == sorted(ids)


@pytest.mark.parametrize("value", ["0", "nan", "inf"])
async def test_max_duration_must_be_positive(server: FakeServer, value: str) -> None:
    """--max-duration 0, nan or inf is a usage error, exit 2 (nan used to end in a traceback)."""
    proc = await purge(server, "space1", "--max-duration", value)
    assert proc.returncode == 2, proc.stderr
    assert b"--max-duration must be a positive number of seconds" in proc.stderr


async def test_dry_run_sends_no_delete_and_prints_totals(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """--dry-run lists bins (items, bytes) per space, totals them and sends zero DELETEs."""
    ids = fake.add_spaces(LIBRARY, count=25, items_per_space=3, item_size=1000)
    report = tmp_path / "dry.jsonl"
    proc = await purge(server, "--all-spaces", "--dry-run", "--report", str(report))
    assert proc.returncode == 0, proc.stderr
    assert deletes(fake) == []
    rows = list(read_report(report))
    assert sorted(r["space_id"] for r in rows) == sorted(ids)
    assert all((r["outcome"], r["bin_items"], r["bin_bytes"]) == ("dry_run", 3, 3000) for r in rows)
    assert b"dry run: 25 spaces, 75 items, 75000 bytes" in proc.stdout


async def test_shards_partition_the_input_exactly(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """Shards 0..2 (I/N, /N + JOB_COMPLETION_INDEX, SMH_SHARD_*) purge disjoint sets, all."""
    ids = fake.add_spaces(LIBRARY, count=90, items_per_space=1, item_size=10)
    ways: list[tuple[list[str], dict[str, str]]] = [
        (["--shard", "0/3"], {}),
        (["--shard", "/3"], {"JOB_COMPLETION_INDEX": "1"}),
        ([], {"SMH_SHARD_COUNT": "3", "SMH_SHARD_INDEX": "2"}),
    ]
    owned: list[set[str]] = []
    for n, (flags, env) in enumerate(ways):
        report = tmp_path / f"shard-{n}.jsonl"
        proc = await purge(server, "--all-spaces", *flags, "--report", str(report), **env)
        assert proc.returncode == 0, proc.stderr
        owned.append({r["space_id"] for r in read_report(report)})
    assert all(owned) and sum(map(len, owned)) == 90 and set().union(*owned) == set(ids)
    assert Counter(deletes(fake)) == Counter(ids)


async def test_rate_cap_holds_within_ten_percent(fake: FakeSMH, server: FakeServer) -> None:
    """--rate 40: DELETEs reach the server at 40/s ±10% over ~3 s (emulator timestamps)."""
    ids = fake.add_spaces(LIBRARY, count=121, items_per_space=1, item_size=10)
    proc = await purge(server, *ids, "--rate", "40", "--concurrency", "8")
    assert proc.returncode == 0, proc.stderr
    starts = sorted(r.started_at for r in fake.requests if r.route == "empty_bin")
    rate = (len(starts) - 1) / (starts[-1] - starts[0])
    assert 36 <= rate <= 44, rate


async def test_failure_threshold_stops_with_exit_3(fake: FakeSMH, server: FakeServer) -> None:
    """--max-failure-rate 0.5 --min-sample 10 with every DELETE failing stops early, exit 3."""
    ids = fake.add_spaces(LIBRARY, count=300, items_per_space=1, item_size=10)
    fake.add_fault(Fault("status", status=404, code="SpaceNotFound", route="empty_bin"))
    proc = await purge(server, *ids, "--max-failure-rate", "0.5", "--min-sample", "10")
    assert proc.returncode == 3, proc.stderr
    assert b"ABORTED: failure_rate" in proc.stdout and len(deletes(fake)) < 60


async def test_max_spaces_guard_purges_n_then_exits_3(fake: FakeSMH, server: FakeServer) -> None:
    """--max-spaces 10 of 30 spaces: exactly 10 DELETEs, exit 3; --max-spaces 30: exit 0."""
    ids = fake.add_spaces(LIBRARY, count=30, items_per_space=1, item_size=10)
    proc = await purge(server, "--all-spaces", "--max-spaces", "10")
    assert proc.returncode == 3 and b"ABORTED: max_spaces" in proc.stdout
    assert len(deletes(fake)) == 10
    proc = await purge(server, *ids, "--max-spaces", "30")
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("shard", ["3/3", "x/2", "/2", "1-2", "0/0"])
async def test_bad_shard_is_a_usage_error(server: FakeServer, shard: str) -> None:
    """A malformed or out-of-range --shard (or /N without JOB_COMPLETION_INDEX) exits 2;
    a count of 0 says so (it said "index must be in 0..-1")."""
    proc = await purge(server, "s1", "--shard", shard)
    assert proc.returncode == 2 and b"--shard" in proc.stderr
    assert b"0..-1" not in proc.stderr
    if shard == "0/0":
        assert b"shard count must be at least 1" in proc.stderr


async def test_report_command_can_compact_a_report_in_place(tmp_path: Path) -> None:
    """`report r.jsonl --output r.jsonl` leaves the merged rows in r.jsonl (it used to
    truncate the input before its second pass: an empty report, "spaces: 0", exit 0)."""
    report = tmp_path / "r.jsonl"
    rows = [("a", "accepted"), ("b", "failed"), ("b", "accepted")]
    report.write_text("".join(json.dumps({"space_id": s, "outcome": o}) + "\n" for s, o in rows))
    cmd = [sys.executable, "-m", "smh_async", "report", str(report), "--output", str(report)]
    proc = await anyio.run_process(cmd, check=False)
    assert proc.returncode == 0 and b"spaces: 2" in proc.stdout, proc.stdout
    assert [(r["space_id"], r["outcome"]) for r in read_report(report)] == [
        ("a", "accepted"),
        ("b", "accepted"),
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.jsonl"]
    bad = await anyio.run_process([*cmd[:-1], "/proc/nope/m.jsonl"], check=False)
    assert bad.returncode == 2 and b"smh-async: error: --output: cannot" in bad.stderr
    assert b"Traceback" not in bad.stderr


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        *((f, "-1") for f in ("--max-spaces", "--wait-release", "--grace", "--min-sample")),
        ("--progress-interval", "-1"),
        *((f, "nan") for f in ("--wait-release", "--grace", "--progress-interval")),
    ],
)
async def test_negative_counts_and_durations_are_usage_errors(
    fake: FakeSMH, server: FakeServer, flag: str, value: str
) -> None:
    """A negative (or NaN) count or duration exits 2 naming the flag; nothing is sent."""
    proc = await purge(server, "s1", flag, value)
    assert proc.returncode == 2, proc.stderr
    assert f"{flag} must be a number, not negative".encode() in proc.stderr
    assert fake.requests == []


async def test_wait_release_marks_slow_spaces_pending_not_failed(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """A release slower than --wait-release: rows release_pending, exit 0, usage batched ≤100;
    checked_at is written like the report's finished_at (UTC, milliseconds, Z)."""
    ids = fake.add_spaces(LIBRARY, count=150, items_per_space=2, item_size=100)
    empty = fake.add_space(LIBRARY)
    fake.release_delay = 60
    report = tmp_path / "r.jsonl"
    proc = await purge(server, *ids, empty, "--wait-release", "1.2", "--report", str(report))
    assert proc.returncode == 0, proc.stderr
    release = {r["space_id"]: r for r in read_report(tmp_path / "r.release.jsonl")}
    assert release.keys() == {*ids, empty}
    assert release[empty]["release"] == "nothing_to_release"
    assert {release[s]["release"] for s in ids} == {"release_pending"}
    assert all(release[s]["size_before"] == 200 for s in ids)
    stamp = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
    assert all(stamp.fullmatch(row["checked_at"]) for row in release.values())
    usage = [r for r in fake.requests if r.route == "usage_spaces"]
    assert usage and max(len((r.space_id or "").split(",")) for r in usage) <= 100
    assert b"release_pending: 150" in proc.stdout


async def test_progress_events_say_n_of_m_off_a_tty(fake: FakeSMH, server: FakeServer) -> None:
    """Off a TTY, purge.progress events appear during the run and end with "M of M"."""
    fake.add_spaces(LIBRARY, count=60, items_per_space=1, item_size=10)
    fake.latency = 0.05
    proc = await purge(server, "--all-spaces", "--concurrency", "4", "--progress-interval", "0.5")
    assert proc.returncode == 0, proc.stderr
    progress = events(proc, "purge.progress")
    assert len(progress) >= 2 and progress[-1]["progress"] == "60 of 60"
    assert any(0 < int(str(e["done"])) < 60 for e in progress)
    assert not events(await purge(server, "--all-spaces", "--no-progress"), "purge.progress")


async def test_report_command_merges_shards_last_row_wins(tmp_path: Path) -> None:
    """`smh-async report` merges files (last row per space wins) and exits 1 on a final failure."""
    a, b, merged = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "m.jsonl"
    row = {"http_status": None, "error_message": None, "request_id": None}
    a.write_text(
        "".join(
            json.dumps({"space_id": s, "outcome": o, "error_code": c, **row}) + "\n"
            for s, o, c in [("s1", "failed", "InternalServerError"), ("s2", "accepted", None)]
        )
        + '{"space_id": "s3", "outc'  # a torn last line is skipped
    )
    b.write_text(json.dumps({"space_id": "s3", "outcome": "failed", "error_code": "X"}) + "\n")
    cmd = [sys.executable, "-m", "smh_async", "report", str(a), str(b), "--output", str(merged)]
    proc = await anyio.run_process(cmd, check=False)
    assert proc.returncode == 1 and b"failed=2" in proc.stdout and b"X=1" in proc.stdout
    a.write_text(a.read_text() + "\n" + json.dumps({"space_id": "s1", "outcome": "accepted"}))
    b.write_text(b.read_text() + json.dumps({"space_id": "s3", "outcome": "accepted"}) + "\n")
    proc = await anyio.run_process(cmd, check=False)
    assert proc.returncode == 0, proc.stdout
    assert sorted(r["space_id"] for r in read_report(merged)) == ["s1", "s2", "s3"]
    missing = await anyio.run_process([*cmd[:4], str(tmp_path / "nope")], check=False)
    assert missing.returncode == 2


async def test_second_sigint_cancels_in_flight_and_still_reports(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """A second SIGINT cuts the grace short: in-flight spaces are 'Interrupted', exit 130."""
    ids = fake.add_spaces(LIBRARY, count=20, items_per_space=1, item_size=10)
    report = tmp_path / "r.jsonl"
    cmd = [sys.executable, "-m", "smh_async", "purge", "--log-format", "json", *ids]
    cmd += ["--report", str(report), "--concurrency", "4", "--grace", "60"]
    fake.latency = 30.0  # every DELETE hangs far beyond the test
    async with await anyio.open_process(cmd, env=_env(server)) as process:
        while fake.in_flight_by_route.get("empty_bin", 0) < 4:
            await anyio.sleep(0.02)
        process.send_signal(signal.SIGINT)
        await anyio.sleep(0.3)
        process.send_signal(signal.SIGINT)
        assert process.stdout is not None
        stdout = b"".join([chunk async for chunk in process.stdout])
        assert await process.wait() == 130
    rows = list(read_report(report))
    assert [r["error_code"] for r in rows].count("Interrupted") == 4
    assert b"INTERRUPTED" in stdout and b"Interrupted=4" in stdout


async def _stop_then_signal_while_finishing(
    server: FakeServer, fake: FakeSMH, tmp_path: Path, *extra: str
) -> tuple[int, bytes, str]:
    """SIGTERM a purge mid-run; once its summary is out (the run is finishing: its
    --summary-json is a FIFO nobody reads yet, so it waits there), send SIGTERM, SIGINT and
    SIGHUP; then read the FIFO. Returns the exit status, stdout and the summary JSON."""
    ids = fake.add_spaces(LIBRARY, count=200, items_per_space=1, item_size=10)
    fake.latency = 0.05
    fifo = tmp_path / "summary.fifo"
    os.mkfifo(fifo)
    cmd = [sys.executable, "-m", "smh_async", "purge", "--log-format", "json", *ids]
    cmd += ["--report", str(tmp_path / "r.jsonl"), "--concurrency", "4"]
    cmd += ["--summary-json", str(fifo), *extra]
    with (tmp_path / "stderr.log").open("wb") as err:
        async with await anyio.open_process(cmd, env=_env(server), stderr=err) as process:
            shards = int(extra[extra.index("--processes") + 1]) if "--processes" in extra else 1
            await purging(fake, shards)
            process.send_signal(signal.SIGTERM)
            assert process.stdout is not None
            stdout = b""
            with anyio.fail_after(20):
                while b"INTERRUPTED" not in stdout:
                    stdout += await process.stdout.receive()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                with contextlib.suppress(ProcessLookupError):  # killed by the one before
                    process.send_signal(sig)
                await anyio.sleep(0.2)  # one at a time: pending signals of a kind merge
            summary = await _read_fifo(fifo, process)
            stdout += b"".join([chunk async for chunk in process.stdout])
            return await process.wait(), stdout, summary


async def _read_fifo(fifo: Path, writer: anyio.abc.Process) -> str:
    """What ``writer`` writes into ``fifo``, or "" if it ends without writing (a blocking
    open would wait for it for ever, in a thread no timeout can stop)."""
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    data = b""
    try:
        with anyio.fail_after(20):
            while True:
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:  # the writer has it open, nothing written yet
                    chunk = None
                if chunk:
                    data += chunk
                elif chunk == b"" and (data or writer.returncode is not None):
                    return data.decode()  # the writer closed it, or is gone
                else:
                    await anyio.sleep(0.02)
    finally:
        os.close(fd)


@pytest.mark.parametrize("event_loop", ["asyncio", "uvloop"])
async def test_signals_while_a_stopped_run_finishes_do_not_kill_it(
    fake: FakeSMH, server: FakeServer, tmp_path: Path, event_loop: str
) -> None:
    """SIGTERM, SIGINT and SIGHUP after a graceful stop, while the summary is being written,
    are recorded (purge.signal_ignored), not fatal: exit 130 with the summary and
    --summary-json complete (a second SIGTERM then killed it: exit 143, often without them)."""
    code, stdout, summary = await _stop_then_signal_while_finishing(
        server, fake, tmp_path, "--event-loop", event_loop
    )
    assert code == 130, stdout
    assert b"INTERRUPTED" in stdout
    written = json.loads(summary)
    assert (written["exit_code"], written["interrupted"]) == (130, True)
    log = (tmp_path / "stderr.log").read_bytes().splitlines()
    ignored = [json.loads(line) for line in log if b'"purge.signal_ignored"' in line]
    assert [e["signals"] for e in ignored] == [["SIGTERM", "SIGINT", "SIGHUP"]]


async def test_signals_while_the_processes_parent_merges_do_not_kill_it(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """--processes: signals that reach the parent once its children have ended (it merges
    and writes the summary) do not kill it: exit 130 with the merged report and
    --summary-json (its handlers were restored first, and the default action killed it)."""
    code, stdout, summary = await _stop_then_signal_while_finishing(
        server, fake, tmp_path, "--processes", "2"
    )
    assert code == 130, stdout
    assert b"processes: 2" in stdout
    assert json.loads(summary)["exit_code"] == 130
    rows = list(read_report(tmp_path / "r.jsonl"))
    assert len(rows) == len({r["space_id"] for r in rows}) == 200


async def test_purge_in_a_host_gives_its_signal_handlers_back(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """main() run inside a host program: once a purge returns, the host's own SIGINT,
    SIGTERM and SIGHUP handlers are in place again (they were left at the default action,
    so a later SIGTERM killed the host), with one process and with --processes."""
    ids = fake.add_spaces(LIBRARY, count=5, items_per_space=1, item_size=10)
    host = (
        "import signal, sys\n"
        "from smh_async.cli import main\n"
        "def mine(signum, frame):\n"
        "    print('host got', signal.Signals(signum).name)\n"
        "watched = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)\n"
        "for sig in watched:\n"
        "    signal.signal(sig, mine)\n"
        "for extra in ([], ['--processes', '2']):\n"
        "    code = main(['purge', *sys.argv[1:], *extra])\n"
        "    assert all(signal.getsignal(sig) is mine for sig in watched), extra\n"
        "    signal.raise_signal(signal.SIGTERM)\n"
        "    print('exit', code)\n"
    )
    proc = await anyio.run_process(
        [sys.executable, "-c", host, *ids, "--log-format", "json"], env=_env(server), check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count(b"host got SIGTERM\nexit 0\n") == 2


@pytest.mark.parametrize("processes", ["1", "2"])
@pytest.mark.parametrize(
    ("flag", "path"),
    [
        ("--report", "/proc/nope/out.json"),
        ("--summary-json", "/proc/nope/out.json"),
        ("--report", "/proc"),
        ("--resume", "/proc"),
    ],
)
async def test_unusable_file_paths_are_usage_errors_before_any_request(
    fake: FakeSMH, server: FakeServer, flag: str, path: str, processes: str
) -> None:
    """--report or --summary-json that cannot be written, --resume that cannot be read:
    exit 2, one clear line naming the flag, no traceback, no request reaches the server."""
    ids = fake.add_spaces(LIBRARY, count=3, items_per_space=1, item_size=10)
    proc = await purge(server, *ids, flag, path, "--processes", processes)
    assert proc.returncode == 2, proc.stderr
    assert f"smh-async: error: {flag}: cannot".encode() in proc.stderr
    assert b"Traceback" not in proc.stderr
    assert fake.requests == []


async def test_an_unwritable_release_report_is_named_as_such(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """--wait-release writes REPORT.release.jsonl; when that cannot be written the error
    says so (it used to blame --report, whose own file was fine) and no DELETE is sent."""
    ids = fake.add_spaces(LIBRARY, count=3, items_per_space=1, item_size=10)
    report = tmp_path / "r.jsonl"
    (tmp_path / "r.release.jsonl").mkdir()
    proc = await purge(server, *ids, "--report", str(report), "--wait-release", "1")
    assert proc.returncode == 2, proc.stderr
    assert b"smh-async: error: --wait-release report: cannot write " in proc.stderr
    assert b"r.release.jsonl" in proc.stderr and b"Traceback" not in proc.stderr
    assert deletes(fake) == []


@pytest.mark.parametrize("processes", ["1", "2"])
@pytest.mark.parametrize(
    "roles",
    [
        ("--spaces-file", "--report"),
        ("--spaces-file", "--summary-json"),
        ("--report", "--summary-json"),
        ("--resume", "--summary-json"),
    ],
)
async def test_an_output_that_is_also_an_input_is_refused(
    fake: FakeSMH, server: FakeServer, tmp_path: Path, roles: tuple[str, str], processes: str
) -> None:
    """Two roles for one file (``--report ids.txt --spaces-file ids.txt`` used to truncate
    the id list and purge nothing, exit 0): exit 2, the file untouched, nothing sent."""
    ids = fake.add_spaces(LIBRARY, count=3, items_per_space=1, item_size=10)
    shared = tmp_path / "shared.txt"
    shared.write_text("\n".join(ids) + "\n")
    before = shared.read_bytes()
    args = [arg for role in roles for arg in (role, str(shared))]
    if "--spaces-file" not in roles:
        args += ids
    proc = await purge(server, *args, "--processes", processes)
    assert proc.returncode == 2, proc.stderr
    assert b"it would be overwritten" in proc.stderr
    assert shared.read_bytes() == before and fake.requests == []


def _device_node(path: Path) -> Path:
    """A character device like /dev/null, made in the test's own directory (root only), so
    that a bug replacing it cannot touch the machine's /dev."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("creating a device node needs root (CI runs as root)")
    return path


@pytest.mark.parametrize("processes", ["1", "2"])
async def test_outputs_that_are_devices_are_written_to_not_replaced(
    fake: FakeSMH, server: FakeServer, tmp_path: Path, processes: str
) -> None:
    """--report and --summary-json naming a device (as /dev/stdout or /dev/null would):
    written to, never replaced by a regular file (the atomic move did that, so as root
    '--summary-json /dev/stdout' replaced /dev/stdout), and no part or --wait-release
    sibling files beside it (the release rows go to the same stream)."""
    ids = fake.add_spaces(LIBRARY, count=20, items_per_space=1, item_size=10)
    devices = tmp_path / "dev"
    devices.mkdir()
    report, summary = _device_node(devices / "report"), _device_node(devices / "summary")
    proc = await purge(
        server, *ids, "--report", str(report), "--summary-json", str(summary),
        "--processes", processes, "--wait-release", "3",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert stat.S_ISCHR(report.stat().st_mode) and stat.S_ISCHR(summary.stat().st_mode)
    assert sorted(p.name for p in devices.iterdir()) == ["report", "summary"]


async def test_an_output_that_is_a_symlink_stays_a_symlink(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """A --summary-json that is a symbolic link: the file it names gets the summary, the
    link itself is kept (the atomic move used to replace the link with a file)."""
    sid = fake.add_space(LIBRARY)
    real = tmp_path / "real.json"
    real.write_text("{}")
    link = tmp_path / "latest.json"
    link.symlink_to(real)
    proc = await purge(server, sid, "--summary-json", str(link))
    assert proc.returncode == 0, proc.stderr
    assert link.is_symlink() and json.loads(real.read_text())["accepted"] == 1


def _pids_with_args(*needle: str, parent: int) -> list[int]:
    """Children of ``parent`` whose command line contains ``needle`` as consecutive
    arguments (only this test's: other runs on the machine may have the same arguments)."""
    want = "\0".join(needle).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                if ppid == parent and want in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
    return found


async def test_a_killed_process_is_named_in_the_parent_summary(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """--processes 2 with one child killed (SIGKILL, as the OOM killer does): exit 1 and
    the summary names the shard and the way on (it used to say 'accepted N, failed 0' and
    exit 1 with no reason); a resume finishes every space."""
    ids = fake.add_spaces(LIBRARY, count=400, items_per_space=1, item_size=10)
    fake.latency = 0.02
    report, totals = tmp_path / "r.jsonl", tmp_path / "summary.json"
    args = ["--all-spaces", "--report", str(report), "--resume", str(report), "--no-progress"]
    args += ["--concurrency", "2", "--processes", "2"]
    cmd = [sys.executable, "-m", "smh_async", "purge", "--log-format", "json", *args]
    cmd += ["--summary-json", str(totals)]
    part = tmp_path / "r.jsonl.part1of2"
    with (tmp_path / "stderr.log").open("wb") as err:
        async with await anyio.open_process(cmd, env=_env(server), stderr=err) as process:
            while not part.exists() or len(part.read_bytes().splitlines()) < 5:
                await anyio.sleep(0.02)
            shard1 = _pids_with_args("--shard", "1/2", parent=process.pid)
            assert len(shard1) == 1
            os.kill(shard1[0], signal.SIGKILL)
            assert process.stdout is not None
            stdout = b"".join([chunk async for chunk in process.stdout])
            assert await process.wait() == 1
    assert b"PROCESS FAILED: shard 1/2 killed by SIGKILL" in stdout
    assert json.loads(totals.read_text())["broken_processes"] == ["1/2 killed by SIGKILL"]
    proc = await purge(server, *args)
    assert proc.returncode == 0, proc.stderr
    assert set(deletes(fake)) == set(ids)
    assert summarize_reports([report]).by_outcome == {"accepted": 400}


async def test_a_failed_merge_keeps_the_parts_and_says_how_to_merge_them(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """--processes whose merged report cannot be written (here a directory sits where the
    merge writes; a full disk does the same): exit 3, REPORT FAILED with the command that
    merges the kept parts, counts read from the parts, no traceback (it used to end in one
    with no summary); that command then gives every space its row."""
    ids = fake.add_spaces(LIBRARY, count=60, items_per_space=1, item_size=10)
    report = tmp_path / "r.jsonl"
    (tmp_path / "r.jsonl.partial").mkdir()  # where the merge writes before moving into place
    proc = await purge(server, *ids, "--report", str(report), "--processes", "2")
    assert proc.returncode == 3, proc.stderr
    assert b"Traceback" not in proc.stderr
    assert b"spaces: 60  accepted: 60" in proc.stdout
    assert b"REPORT FAILED: cannot write " in proc.stdout
    parts = sorted(tmp_path.glob("r.jsonl.part*of2"))
    assert len(parts) == 2 and not report.exists()
    (tmp_path / "r.jsonl.partial").rmdir()
    merge = [sys.executable, "-m", "smh_async", "report", *map(str, parts), "--output", str(report)]
    assert (await anyio.run_process(merge, check=False)).returncode == 0
    assert sorted(r["space_id"] for r in read_report(report)) == sorted(ids)


async def test_a_spaces_file_that_is_a_pipe_is_read_once_in_full(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """--spaces-file <(generate-ids) hands over a pipe: it used to be refused as 'no such
    file' (and the progress count would have drained half of it). Every id is purged once;
    --processes, which needs to read the input once per process, refuses it with exit 2."""
    ids = fake.add_spaces(LIBRARY, count=300, items_per_space=1, item_size=10)
    fifo = tmp_path / "ids.fifo"
    os.mkfifo(fifo)

    def feed() -> None:
        with fifo.open("w") as f:  # blocks until the CLI opens it for reading
            f.write("\n".join(ids) + "\n")

    report = tmp_path / "r.jsonl"
    async with anyio.create_task_group() as tg:
        tg.start_soon(anyio.to_thread.run_sync, feed)
        proc = await purge(server, "--spaces-file", str(fifo), "--report", str(report))
    assert proc.returncode == 0, proc.stderr
    assert Counter(deletes(fake)) == Counter(ids)
    assert sorted(r["space_id"] for r in read_report(report)) == sorted(ids)
    refused = await purge(server, "--spaces-file", str(fifo), "--processes", "2")
    assert refused.returncode == 2
    assert b"--processes needs --spaces-file to be a regular file" in refused.stderr


async def test_a_log_reader_that_goes_away_stops_the_run_and_loses_nothing(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """`smh-async purge … 2>&1 | head`: once the log's reader has gone, the run stops as on
    SIGTERM (exit 130) and every space sent a DELETE has its report row. Before, the broken
    pipe ended the run mid-way with purged spaces missing from the report."""
    ids = fake.add_spaces(LIBRARY, count=400, items_per_space=1, item_size=10)
    fake.latency = 0.01
    report = tmp_path / "r.jsonl"
    cmd = [sys.executable, "-m", "smh_async", "purge", *ids, "--report", str(report)]
    cmd += ["--log-format", "json", "--concurrency", "8"]
    # The exit status of the purge, not of head, thanks to pipefail.
    line = f"set -o pipefail; {shlex.join(cmd)} 2>&1 >/dev/null | head -c 3000 >/dev/null"
    proc = await anyio.run_process(["bash", "-c", line], env=_env(server), check=False)
    assert proc.returncode == 130, proc.stderr
    assert 0 < len(stopped_rows(report, ids, deletes(fake))) < 400


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
@pytest.mark.parametrize("processes", ["1", "2"])
async def test_a_log_on_a_full_disk_aborts_the_run_with_exit_3_not_130(
    fake: FakeSMH, server: FakeServer, tmp_path: Path, processes: str
) -> None:
    """stderr on a full disk (cron's `2>>/var/log/smh.log` with /var/log full: /dev/full
    here): the run stops as when the log's reader goes away, but says why, `ABORTED:
    log_unwritable`, exit 3 (it was 130, "interrupted", which nobody did); the report still
    has a row for every space, and --summary-json the reason."""
    ids = fake.add_spaces(LIBRARY, count=50, items_per_space=1, item_size=10)
    report, summary, spaces = tmp_path / "r.jsonl", tmp_path / "s.json", tmp_path / "ids.txt"
    spaces.write_text("".join(f"{i}\n" for i in ids))
    cmd = [sys.executable, "-m", "smh_async", "purge", "--spaces-file", str(spaces)]
    cmd += ["--report", str(report), "--processes", processes]
    cmd += ["--log-format", "json", "--summary-json", str(summary)]
    line = f"exec {shlex.join(cmd)} 2>/dev/full"
    proc = await anyio.run_process(["sh", "-c", line], env=_env(server), check=False)
    assert proc.returncode == 3, proc.stdout
    assert b"ABORTED: log_unwritable" in proc.stdout
    stopped_rows(report, ids, deletes(fake))
    totals = json.loads(summary.read_text())
    assert (totals["aborted"], totals["interrupted"]) == ("log_unwritable", False)


@pytest.mark.parametrize("closed", ["2>&-", ">&- 2>&-"])
async def test_closed_stdout_or_stderr_at_start_is_not_a_crash(
    fake: FakeSMH, server: FakeServer, tmp_path: Path, closed: str
) -> None:
    """Started with stderr (and stdout) closed, as some schedulers do: the purge runs and
    the report is complete, exit 0 (it used to exit 1 before sending anything, silently)."""
    ids = fake.add_spaces(LIBRARY, count=20, items_per_space=1, item_size=10)
    report = tmp_path / "r.jsonl"
    line = shlex.join([sys.executable, "-m", "smh_async", "purge", *ids, "--report", str(report)])
    shell = ["sh", "-c", f"exec {line} {closed}"]
    proc = await anyio.run_process(shell, env=_env(server), check=False)
    assert proc.returncode == 0
    assert sorted(r["space_id"] for r in read_report(report)) == sorted(ids)


@pytest.mark.parametrize("processes", ["1", "2"])
async def test_sighup_stops_gracefully_like_sigterm(
    fake: FakeSMH, server: FakeServer, tmp_path: Path, processes: str
) -> None:
    """SIGHUP (the ssh session of the terminal went away) used to kill the process outright,
    losing the outcome of every request in flight (with --processes: the parent, before it
    merged the children's reports); now it stops like SIGTERM: exit 130, every space sent a
    DELETE reported, resumable."""
    ids = fake.add_spaces(LIBRARY, count=200, items_per_space=1, item_size=10)
    fake.latency = 0.05
    report = tmp_path / "r.jsonl"
    cmd = [sys.executable, "-m", "smh_async", "purge", *ids, "--report", str(report)]
    cmd += ["--log-format", "json", "--concurrency", "4", "--processes", processes]
    with (tmp_path / "stderr.log").open("wb") as err:
        async with await anyio.open_process(cmd, env=_env(server), stderr=err) as process:
            await purging(fake, int(processes))
            process.send_signal(signal.SIGHUP)
            assert await process.wait() == 130
    assert len(stopped_rows(report, ids, deletes(fake))) < 200


async def test_a_library_secret_flag_wins_over_a_token_in_the_environment(
    fake: FakeSMH, server: FakeServer
) -> None:
    """--library-secret on the command line is used even when SMH_ACCESS_TOKEN (a stale one
    in .env, say) is set: flags win. The token used to be preferred, failing every space."""
    ids = fake.add_spaces(LIBRARY, count=3, items_per_space=1, item_size=10)
    env = _env(server, SMH_ACCESS_TOKEN="stale")
    del env["SMH_LIBRARY_SECRET"]
    cmd = [sys.executable, "-m", "smh_async", "purge", *ids, "--library-secret", SECRET]
    proc = await anyio.run_process(cmd, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    assert Counter(deletes(fake)) == Counter(ids)
    assert [r.status for r in fake.requests if r.route == "token_create"] == [200]
    assert {r.status for r in fake.requests if r.route == "empty_bin"} == {204}


async def test_all_spaces_with_a_rejected_token_is_an_auth_error_not_a_broken_input(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """--all-spaces with a static token the server rejects: ABORTED: auth, exit 2, nothing
    purged. It used to say INPUT FAILED (exit 1) and send the operator to --resume."""
    fake.add_spaces(LIBRARY, count=5, items_per_space=1, item_size=10)
    report = tmp_path / "r.jsonl"
    env = _env(server, SMH_ACCESS_TOKEN="revoked-token")
    del env["SMH_LIBRARY_SECRET"]
    cmd = [sys.executable, "-m", "smh_async", "purge", "--log-format", "json", "--all-spaces"]
    proc = await anyio.run_process([*cmd, "--report", str(report)], env=env, check=False)
    assert proc.returncode == 2, proc.stderr
    assert b"ABORTED: auth" in proc.stdout and b"INPUT FAILED" not in proc.stdout
    assert [e["event"] for e in events(proc, "purge.input_auth_failed")] == [
        "purge.input_auth_failed"
    ]
    assert deletes(fake) == []


async def test_spaces_with_a_wrong_secret_exits_2_like_purge(server: FakeServer) -> None:
    """`smh-async spaces` with a wrong library secret is a credential error: exit 2 (as for
    purge), one line, no traceback; it used to exit 1 like a failed space."""
    env = _env(server, SMH_LIBRARY_SECRET="not-the-secret")
    cmd = [sys.executable, "-m", "smh_async", "spaces"]
    proc = await anyio.run_process(cmd, env=env, check=False)
    assert proc.returncode == 2, proc.stderr
    assert b"WrongLibraryIdOrSecret" in proc.stderr and b"Traceback" not in proc.stderr
    assert proc.stdout == b""


async def test_run_options_also_read_from_the_environment_and_dotenv(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """SMH_DRY_RUN / SMH_REPORT (environment or .env) act as --dry-run / --report: a dry
    run, nothing deleted (SMH_DRY_RUN used to be ignored: a real purge); the environment
    wins over .env, and --no-dry-run over both."""
    ids = fake.add_spaces(LIBRARY, count=4, items_per_space=2, item_size=10)
    report = tmp_path / "r.jsonl"
    proc = await purge(server, *ids, SMH_DRY_RUN="1", SMH_REPORT=str(report))
    assert proc.returncode == 0, proc.stderr
    assert b"dry run: 4 spaces, 8 items" in proc.stdout and deletes(fake) == []
    assert {r["outcome"] for r in read_report(report)} == {"dry_run"}
    (tmp_path / ".env").write_text("SMH_DRY_RUN=true\n")
    cmd = [sys.executable, "-m", "smh_async", "purge", *ids]
    from_file = await anyio.run_process(cmd, env=_env(server), cwd=tmp_path, check=False)
    assert from_file.returncode == 0 and b"dry_run: 4" in from_file.stdout
    assert deletes(fake) == []
    env_wins = await anyio.run_process(
        cmd, env=_env(server, SMH_DRY_RUN="0"), cwd=tmp_path, check=False
    )
    assert env_wins.returncode == 0 and b"accepted: 4" in env_wins.stdout
    assert Counter(deletes(fake)) == Counter(ids)
    # The flag wins over both: --no-dry-run turns off a dry run the environment asked for.
    flag_wins = await anyio.run_process(
        [*cmd, "--no-dry-run"], env=_env(server, SMH_DRY_RUN="1"), cwd=tmp_path, check=False
    )
    assert flag_wins.returncode == 0 and b"accepted: 4" in flag_wins.stdout
    assert Counter(deletes(fake)) == Counter(ids * 2)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("SMH_DRY_RUN", "maybe", b"SMH_DRY_RUN must be true or false"),
        ("SMH_GRACE", "soon", b"SMH_GRACE must be a valid float"),
        ("SMH_EVENT_LOOP", "tokio", b"SMH_EVENT_LOOP must be one of: asyncio, uvloop"),
        ("SMH_MAX_DURATION", "nan", b"--max-duration (from SMH_MAX_DURATION) must be a positive"),
    ],
)
async def test_a_run_option_from_the_environment_that_does_not_fit_exits_2(
    fake: FakeSMH, server: FakeServer, name: str, value: str, message: bytes
) -> None:
    """An SMH_<OPTION> whose value does not fit is a usage error naming it; nothing is sent."""
    ids = fake.add_spaces(LIBRARY, count=2, items_per_space=1, item_size=10)
    proc = await purge(server, *ids, **{name: value})
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and b"Traceback" not in proc.stderr
    assert deletes(fake) == []


async def test_what_to_purge_never_comes_from_the_environment(
    fake: FakeSMH, server: FakeServer
) -> None:
    """SMH_ALL_SPACES / SMH_SPACES_FILE are not read: a run without targets on the command
    line is refused, so a leftover variable cannot widen it to every tenant."""
    fake.add_spaces(LIBRARY, count=3, items_per_space=1, item_size=10)
    proc = await purge(server, SMH_ALL_SPACES="1", SMH_SPACES_FILE="/etc/hostname")
    assert proc.returncode == 2 and b"give exactly one target" in proc.stderr
    assert deletes(fake) == []


async def test_smh_processes_splits_once_not_recursively(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """SMH_PROCESSES=2 runs two shard processes, each told --processes 1 (they inherit the
    variable and would otherwise split again); every space is emptied once."""
    ids = fake.add_spaces(LIBRARY, count=40, items_per_space=1, item_size=10)
    report = tmp_path / "r.jsonl"
    proc = await purge(server, *ids, "--report", str(report), SMH_PROCESSES="2")
    assert proc.returncode == 0, proc.stderr
    assert b"processes: 2" in proc.stdout
    assert Counter(deletes(fake)) == Counter(ids)
    plans = events(proc, "purge.plan")
    assert sorted(str(p["shard"]) for p in plans) == ["0/2", "1/2"]


async def test_a_stopped_all_spaces_run_does_not_list_the_rest(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """--all-spaces stopped by --max-duration: the spaces listed so far get one row each
    (accepted or NotStarted), the listing is not read on (no more requests to an API that may
    be failing; purge.input_not_read), exit 3; a resume lists again and finishes the rest."""
    ids = fake.add_spaces(LIBRARY, count=2500, items_per_space=1, item_size=10)
    fake.latency = 0.05
    report = tmp_path / "r.jsonl"
    args = ["--all-spaces", "--report", str(report), "--resume", str(report), "--no-progress"]
    first = await purge(server, *args, "--concurrency", "4", "--max-duration", "0.4")
    assert first.returncode == 3, first.stderr
    assert events(first, "purge.input_not_read")
    rows = list(read_report(report))
    listed = Counter(r["space_id"] for r in rows)
    assert max(listed.values()) == 1 and 0 < len(listed) < 2500  # the first pages only
    assert {r["space_id"] for r in rows if r["outcome"] == "accepted"} == set(deletes(fake))
    assert {r["error_code"] for r in rows if r["outcome"] != "accepted"} == {"NotStarted"}
    second = await purge(server, *args, "--concurrency", "64")
    assert second.returncode == 0, second.stderr
    assert Counter(deletes(fake)) == Counter(ids)


def _slow_upstream(ids: Sequence[str], pause: float, burst: int = 4) -> str:
    """A shell command writing ``ids`` ``burst`` at a time with ``pause`` s between."""
    code = (
        "import time\n"
        f"ids = {list(ids)!r}\n"
        f"for k in range(0, len(ids), {burst}):\n"
        f"    k and time.sleep({pause})\n"
        f"    print('\\n'.join(ids[k:k + {burst}]), flush=True)\n"
    )
    return shlex.join([sys.executable, "-c", code])


async def test_a_quiet_pipe_does_not_stall_requests_in_flight(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """`upstream | smh-async purge --spaces-file -` with an upstream that pauses 1.5 s between
    bursts: requests in flight go on meanwhile (the pipe is read off the event loop). Read in
    the loop, a quiet pipe stalled them into false timeouts (--timeout 1, server at 50 ms)."""
    ids = fake.add_spaces(LIBRARY, count=12, items_per_space=1, item_size=10)
    fake.latency = 0.05
    report = tmp_path / "r.jsonl"
    purge_cmd = [sys.executable, "-m", "smh_async", "purge", "--spaces-file", "-"]
    purge_cmd += ["--report", str(report), "--timeout", "1", "--max-attempts", "1"]
    purge_cmd += ["--concurrency", "2"]
    line = f"{_slow_upstream(ids, 1.5)} | {shlex.join(purge_cmd)}"
    proc = await anyio.run_process(["bash", "-c", line], env=_env(server), check=False)
    assert proc.returncode == 0, proc.stderr
    rows = list(read_report(report))
    assert sorted(r["space_id"] for r in rows) == sorted(ids)
    assert {r["outcome"] for r in rows} == {"accepted"}
    assert max(r["elapsed_ms"] for r in rows) < 1000


async def test_sigterm_is_answered_while_the_pipe_is_quiet(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """SIGTERM while stdin's writer is quiet (and stays so for 30 s): exit 130 at once with
    the ids read so far reported, not after the writer's next line (the blocked read held
    off the signal handler); the pipe is not read on after the stop."""
    ids = fake.add_spaces(LIBRARY, count=8, items_per_space=1, item_size=10)
    report = tmp_path / "r.jsonl"
    purge_cmd = [sys.executable, "-m", "smh_async", "purge", "--spaces-file", "-"]
    purge_cmd += ["--report", str(report), "--log-format", "json"]
    read_end, write_end = os.pipe()
    upstream = subprocess.Popen(["bash", "-c", _slow_upstream(ids, 30)], stdout=write_end)
    os.close(write_end)
    try:
        with (tmp_path / "stderr.log").open("wb") as err:
            async with await anyio.open_process(
                purge_cmd, env=_env(server), stdin=read_end, stderr=err
            ) as process:
                while len(deletes(fake)) < 4:
                    await anyio.sleep(0.02)
                await anyio.sleep(0.2)
                process.send_signal(signal.SIGTERM)
                with anyio.fail_after(5):
                    assert await process.wait() == 130
    finally:
        os.close(read_end)
        upstream.kill()
        upstream.wait()
    rows = list(read_report(report))
    assert sorted(r["space_id"] for r in rows) == sorted(ids[:4])
    assert b"Fatal Python error" not in (tmp_path / "stderr.log").read_bytes()


async def test_a_bad_run_option_in_the_environment_fails_only_the_commands_that_read_it(
    server: FakeServer, tmp_path: Path
) -> None:
    """SMH_PROCESSES=abc: `purge` exits 2 naming the variable, while `report`, `--version`
    and `purge --help` still work; a range error names the variable the value came from
    (the operator did not type that flag), and a typed flag is named as typed."""
    report = tmp_path / "r.jsonl"
    report.write_text('{"space_id": "s1", "outcome": "accepted", "attempts": 1}\n')
    base = [sys.executable, "-m", "smh_async"]
    bad = _env(server, SMH_PROCESSES="abc")
    for args, code in (
        (["report", str(report)], 0),
        (["--version"], 0),
        (["purge", "--help"], 0),
        (["purge", "s1"], 2),
    ):
        proc = await anyio.run_process([*base, *args], env=bad, check=False)
        assert proc.returncode == code, (args, proc.stderr)
    assert b"SMH_PROCESSES must be a valid int" in proc.stderr
    ranged = await anyio.run_process(
        [*base, "purge", "s1"], env=_env(server, SMH_GRACE="-1"), check=False
    )
    assert ranged.returncode == 2
    assert b"--grace (from SMH_GRACE) must be a number, not negative" in ranged.stderr
    typed = await anyio.run_process(
        [*base, "purge", "s1", "--grace", "-1"], env=_env(server, SMH_GRACE="-1"), check=False
    )
    assert b"error: --grace must be a number" in typed.stderr


async def test_a_fifo_without_a_writer_does_not_hold_off_sigterm(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """--spaces-file FIFO that no writer has opened yet: SIGTERM is answered at once (exit
    130). Opening the FIFO blocked the event loop, so the run ignored signals until a
    writer came."""
    fifo = tmp_path / "ids.fifo"
    os.mkfifo(fifo)
    cmd = [sys.executable, "-m", "smh_async", "purge", "--spaces-file", str(fifo)]
    cmd += ["--log-format", "json"]
    with (tmp_path / "stderr.log").open("wb") as err:
        async with await anyio.open_process(cmd, env=_env(server), stderr=err) as process:
            log = tmp_path / "stderr.log"
            with anyio.fail_after(20):
                while b'"purge.started"' not in log.read_bytes():
                    await anyio.sleep(0.05)
            process.send_signal(signal.SIGTERM)
            try:
                with anyio.fail_after(5):
                    assert await process.wait() == 130
            finally:
                if process.returncode is None:  # still blocked: do not hang the suite
                    process.kill()
    assert deletes(fake) == []


async def test_max_spaces_on_a_pipe_does_not_wait_for_the_writer(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """--max-spaces with ids from a pipe whose writer stays open: the run ends once the limit
    is reached (exit 3) instead of reading the pipe on until the writer closes it."""
    ids = fake.add_spaces(LIBRARY, count=12, items_per_space=1, item_size=10)
    report = tmp_path / "r.jsonl"
    read_end, write_end = os.pipe()
    upstream = subprocess.Popen(["bash", "-c", _slow_upstream(ids, 30, burst=8)], stdout=write_end)
    os.close(write_end)
    cmd = [sys.executable, "-m", "smh_async", "purge", "--spaces-file", "-"]
    cmd += ["--report", str(report), "--max-spaces", "5"]
    try:
        with anyio.fail_after(15):
            proc = await anyio.run_process(cmd, env=_env(server), stdin=read_end, check=False)
    finally:
        os.close(read_end)
        upstream.kill()
        upstream.wait()
    assert proc.returncode == 3, proc.stderr
    assert len(deletes(fake)) == 5
    rows = list(read_report(report))
    assert len(rows) == len({r["space_id"] for r in rows}) <= 8  # only ids read: no later burst


async def test_spaces_file_dash_with_stdin_closed_is_a_usage_error(server: FakeServer) -> None:
    """`--spaces-file -` started with stdin closed (`<&-`): exit 2 with one line, no
    traceback (it was an AttributeError traceback, exit 1)."""
    line = shlex.join([sys.executable, "-m", "smh_async", "purge", "--spaces-file", "-"])
    proc = await anyio.run_process(["sh", "-c", f"exec {line} <&-"], env=_env(server), check=False)
    assert proc.returncode == 2, proc.stderr
    assert b"--spaces-file -: standard input is closed" in proc.stderr
    assert b"Traceback" not in proc.stderr


async def test_utf16_through_a_pipe_is_refused_like_a_utf16_file(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """UTF-16 ids (with its byte-order mark) piped to `--spaces-file -`: exit 2 with the
    re-save hint, as for a UTF-16 file, nothing sent; it said INPUT FAILED (exit 1) and
    advised a --resume that could not help."""
    ids = fake.add_spaces(LIBRARY, count=3, items_per_space=1, item_size=10)
    cmd = [sys.executable, "-m", "smh_async", "purge", "--spaces-file", "-"]
    cmd += ["--report", str(tmp_path / "r.jsonl")]
    data = ("\n".join(ids) + "\n").encode("utf-16")
    proc = await anyio.run_process(cmd, input=data, env=_env(server), check=False)
    assert proc.returncode == 2, proc.stderr
    assert b"UTF-16 or UTF-32" in proc.stderr and b"INPUT FAILED" not in proc.stdout
    assert deletes(fake) == []
