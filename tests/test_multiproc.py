"""``purge --processes N`` against the emulator: shards, one merged report, resume, signals."""

from __future__ import annotations

import signal
import sys
from collections import Counter
from pathlib import Path

import anyio
import pytest

from smh_async import read_report
from smh_async._multiproc import child_argv, exit_code_of
from smh_async.testing import FakeServer, FakeSMH
from tests.conftest import LIBRARY
from tests.test_operator_cli import _env, deletes, purge

pytestmark = pytest.mark.anyio


def test_child_argv_replaces_processes_report_and_shard() -> None:
    """Each child gets the same run with its own shard and report part, never --processes."""
    argv = ["purge", "--processes", "3", "--report=r.jsonl", "--concurrency", "8", "a", "b"]
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
