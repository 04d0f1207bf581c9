"""Two runs writing the same report at once: the second is refused before anything is sent
(smh_async._lock), real CLI processes against the emulator."""

from __future__ import annotations

import errno
import os
import signal
import sys
from collections import Counter
from pathlib import Path

import anyio
import anyio.abc
import pytest

from smh_async import read_report
from smh_async._lock import lock_path, lock_report
from smh_async.testing import FakeServer, FakeSMH
from tests.conftest import LIBRARY
from tests.test_operator_cli import _env, deletes, purge

pytestmark = pytest.mark.anyio

BUSY = "another smh-async run is writing this report"


async def _start(server: FakeServer, *args: str) -> anyio.abc.Process:
    """Start ``smh-async purge ARGS`` and return once it has written its first row (so it
    holds its report)."""
    proc = await anyio.open_process(
        [sys.executable, "-m", "smh_async", "purge", "--log-format", "json", *args],
        env=_env(server),
    )
    report = Path(args[args.index("--report") + 1])
    with anyio.fail_after(20):
        while not (report.exists() and report.stat().st_size):
            await anyio.sleep(0.02)
    return proc


def _slow_spaces(fake: FakeSMH, count: int = 40) -> list[str]:
    """Spaces that take about a second to purge at ``--concurrency 2``."""
    fake.latency = 0.05
    return fake.add_spaces(LIBRARY, count=count, items_per_space=1, item_size=10)


def _only_line(stderr: bytes) -> str:
    lines = stderr.decode().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("resume", [True, False])
async def test_a_second_run_into_a_report_being_written_is_refused(
    fake: FakeSMH, server: FakeServer, tmp_path: Path, resume: bool
) -> None:
    """A second run into the report (by another path: a symbolic link), with or without
    --resume, exits 2 with one line naming the report and sends nothing: every space is
    purged once and the first run's rows all stay (they were truncated, or purged twice)."""
    ids = _slow_spaces(fake)
    report = tmp_path / "r.jsonl"
    link = tmp_path / "link.jsonl"
    link.symlink_to(report)
    first = await _start(server, *ids, "--concurrency", "2", "--report", str(report))
    resuming = ["--resume", str(link)] if resume else []
    second = await purge(server, *ids, "--report", str(link), *resuming)
    assert second.returncode == 2
    line = _only_line(second.stderr)
    assert str(link) in line and BUSY in line and "nothing was sent" in line
    assert await first.wait() == 0
    assert Counter(deletes(fake)) == Counter(ids)
    assert Counter(r["space_id"] for r in read_report(report)) == Counter(ids)
    assert not lock_path(report).exists()


async def test_processes_runs_and_single_runs_refuse_each_other(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """A --processes run into a report a single run is writing is refused, and a single run
    into a report a --processes parent holds too; the parent's own children are not."""
    ids = _slow_spaces(fake)
    spaces = tmp_path / "ids.txt"
    spaces.write_text("\n".join(ids) + "\n")
    report = tmp_path / "r.jsonl"
    resume = ["--spaces-file", str(spaces), "--report", str(report), "--resume", str(report)]
    single = await _start(server, *resume, "--concurrency", "2")
    multi = await purge(server, *resume, "--processes", "2")
    assert multi.returncode == 2 and BUSY in _only_line(multi.stderr)
    assert await single.wait() == 0
    assert Counter(deletes(fake)) == Counter(ids)

    more = fake.add_spaces(LIBRARY, count=40, items_per_space=1, item_size=10)
    spaces.write_text("\n".join(ids + more) + "\n")
    parent = await anyio.open_process(
        [sys.executable, "-m", "smh_async", "purge", *resume, "--processes", "2",
         "--concurrency", "1", "--log-format", "json"],
        env=_env(server),
    )  # fmt: skip
    with anyio.fail_after(20):
        while len(deletes(fake)) == len(ids):  # its children are purging
            await anyio.sleep(0.02)
    late = await purge(server, *resume)
    assert late.returncode == 2 and BUSY in _only_line(late.stderr)
    assert await parent.wait() == 0
    assert Counter(deletes(fake)) == Counter(ids + more)
    assert Counter(r["space_id"] for r in read_report(report)) == Counter(ids + more)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ids.txt", "r.jsonl"]


async def test_a_killed_runs_lock_goes_with_it(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """SIGKILL leaves the lock file but not the lock: the next run resumes into the report
    at once (nothing purged twice) and removes the file."""
    ids = _slow_spaces(fake)
    report = tmp_path / "r.jsonl"
    first = await _start(server, *ids, "--concurrency", "2", "--report", str(report))
    first.send_signal(signal.SIGKILL)
    await first.wait()
    assert lock_path(report).exists()
    done = {r["space_id"] for r in read_report(report) if r["outcome"] == "accepted"}
    sent = len(deletes(fake))
    proc = await purge(server, *ids, "--report", str(report), "--resume", str(report))
    assert proc.returncode == 0, proc.stderr
    assert done and not set(deletes(fake)[sent:]) & done
    assert not lock_path(report).exists()


async def test_report_reads_a_report_being_written_and_says_so(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """``report`` on a report a run is writing counts its rows so far with a note (exit
    unchanged); ``report --output`` onto it is refused (it would replace the file under the
    run, losing the rows written after) and leaves it alone."""
    ids = _slow_spaces(fake)
    report = tmp_path / "r.jsonl"
    run = await _start(server, *ids, "--concurrency", "2", "--report", str(report))
    cli = [sys.executable, "-m", "smh_async", "report", str(report)]
    looked = await anyio.run_process(cli, check=False)
    assert looked.returncode == 0, looked.stderr
    assert f"note: {report} is still being written".encode() in looked.stdout
    merged = await anyio.run_process([*cli, "--output", str(report)], check=False)
    assert merged.returncode == 2
    assert BUSY in _only_line(merged.stderr) and "nothing was written" in merged.stderr.decode()
    assert await run.wait() == 0
    assert Counter(r["space_id"] for r in read_report(report)) == Counter(ids)
    after = await anyio.run_process(cli, check=False)
    assert after.returncode == 0 and b"still being written" not in after.stdout


def test_a_file_system_without_flock_runs_unlocked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where flock() fails (ENOLCK: NFS without a lock daemon), the run goes on without a
    lock, quietly, and leaves no lock file."""
    import fcntl

    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    assert lock_report(tmp_path / "r.jsonl") is None
    assert list(tmp_path.iterdir()) == []


def test_windows_runs_unlocked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without fcntl (Windows) there is no lock and no lock file; a device is never locked."""
    assert lock_report("/dev/null") is None
    monkeypatch.setattr(sys, "platform", "win32")
    assert lock_report(tmp_path / "r.jsonl") is None
    assert list(tmp_path.iterdir()) == []


def test_the_lock_is_exclusive_and_released(tmp_path: Path) -> None:
    """A second lock on the same report fails while the first is held, succeeds once it is
    released, and the file goes away with the last holder."""
    from smh_async._lock import ReportBusy

    report = tmp_path / "r.jsonl"
    held = lock_report(report)
    assert held is not None
    with pytest.raises(ReportBusy, match=BUSY):
        lock_report(report)
    held.release()
    again = lock_report(report)
    assert again is not None
    again.release()
    assert list(tmp_path.iterdir()) == []
