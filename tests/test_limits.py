"""Open-files limit: concurrency 5,000 under RLIMIT_NOFILE 1,024 either works (the soft limit
is raised within the hard limit) or fails fast, before sending anything, saying what to do."""

from __future__ import annotations

import os
import resource
import sys
from pathlib import Path

import anyio
import pytest

from smh_async import SMHConfigError
from smh_async import _limits as limits
from smh_async.testing import FakeServer, FakeSMH
from tests.conftest import LIBRARY, SECRET

# Lower the open-files limit inside the child before the CLI starts (like `ulimit -n`).
CHILD = (
    "import resource, sys\n"
    "resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), int(sys.argv[2])))\n"
    "from smh_async.cli import main\n"
    "sys.exit(main(sys.argv[3:]))\n"
)
CONCURRENCY = 5000


async def purge_with_limit(
    server: FakeServer, soft: int, hard: int, ids: list[str]
) -> tuple[int, bytes]:
    """Run ``purge --concurrency 5000`` in a child whose RLIMIT_NOFILE is (soft, hard)."""
    Path("spaces.txt").write_text("\n".join(ids) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMH_")}
    env["SMH_LIBRARY_SECRET"] = SECRET
    args = ["purge", "--spaces-file", "spaces.txt", "--base-url", server.base_url]
    args += ["--library-id", LIBRARY, "--concurrency", str(CONCURRENCY)]
    args += ["--log-level", "warning", "--report", "r.jsonl"]
    proc = await anyio.run_process(
        [sys.executable, "-c", CHILD, str(soft), str(hard), *args],
        env=env,
        check=False,
    )
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.anyio
async def test_fails_fast_when_the_hard_limit_is_too_low(fake: FakeSMH, server: FakeServer) -> None:
    """Hard limit 1,024: exit 2 naming concurrency and `ulimit -n`, and no request sent."""
    ids = fake.add_spaces(LIBRARY, count=50, items_per_space=1, item_size=1)
    code, out = await purge_with_limit(server, 1024, 1024, ids)
    assert code == 2, out[-2000:]
    assert b"SMH_CONCURRENCY" in out and b"ulimit -n" in out and b"at most 952" in out
    assert fake.requests == [] and not Path("r.jsonl").exists()


@pytest.mark.anyio
@pytest.mark.slow
async def test_raises_the_soft_limit_when_the_hard_limit_allows(
    fake: FakeSMH, server: FakeServer
) -> None:
    """Soft 1,024 but a higher hard limit: the soft limit is raised and all 6,000 spaces are
    accepted with more than 1,024 requests in flight at once."""
    needed = limits.open_files_needed(CONCURRENCY + 8)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"hard RLIMIT_NOFILE {hard} < {needed}")
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < needed + 6000:
        pytest.skip("the emulator in this process needs more open files than allowed")
    ids = fake.add_spaces(LIBRARY, count=6000, items_per_space=1, item_size=1)
    fake.latency = 1.0  # keep requests in flight long enough to pile up
    code, out = await purge_with_limit(server, 1024, needed if hard == -1 else hard, ids)
    assert code == 0, out[-2000:]
    accepted = {r.space_id for r in fake.requests if r.route == "empty_bin" and r.status == 204}
    assert accepted == set(ids) and fake.peak_in_flight > 1024


def fake_rlimit(
    monkeypatch: pytest.MonkeyPatch, soft: int, hard: int, *, settable: bool = True
) -> list[tuple[int, int]]:
    """Replace getrlimit/setrlimit for RLIMIT_NOFILE; return the list of set calls."""
    calls: list[tuple[int, int]] = []

    def setrlimit(which: int, value: tuple[int, int]) -> None:
        if not settable:
            raise ValueError("not allowed")
        calls.append(value)

    monkeypatch.setattr(resource, "getrlimit", lambda which: (soft, hard))
    monkeypatch.setattr(resource, "setrlimit", setrlimit)
    return calls


def test_enough_open_files_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Within the soft limit nothing is touched."""
    calls = fake_rlimit(monkeypatch, 4096, 4096)
    limits.ensure_open_files(1000, concurrency=992)
    assert calls == []


def test_soft_limit_is_raised_to_what_is_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Soft too low, hard high enough: soft is raised to exactly what is needed."""
    calls = fake_rlimit(monkeypatch, 1024, 65536)
    limits.ensure_open_files(5008, concurrency=5000)
    assert calls == [(limits.open_files_needed(5008), 65536)]


def test_unlimited_hard_limit_allows_raising(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unlimited hard limit always allows the raise."""
    calls = fake_rlimit(monkeypatch, 1024, resource.RLIM_INFINITY)
    limits.ensure_open_files(5008, concurrency=5000)
    assert len(calls) == 1


@pytest.mark.parametrize(("hard", "settable"), [(1024, True), (65536, False)])
def test_insufficient_limit_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, hard: int, settable: bool
) -> None:
    """Hard limit too low (or raising refused): SMHConfigError naming concurrency and the fix."""
    fake_rlimit(monkeypatch, 1024, hard, settable=settable)
    with pytest.raises(SMHConfigError) as info:
        limits.ensure_open_files(5008, concurrency=5000)
    text = str(info.value)
    assert info.value.fields == ("concurrency",)
    assert "--concurrency" in text and "ulimit -n 5072" in text and "at most 952" in text
