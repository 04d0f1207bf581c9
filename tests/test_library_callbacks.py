"""The library under a host's mistakes and misfortunes: a string for the ids, a client not
open or closed under the run, callbacks that raise, hang or raise a stray ``CancelledError``,
an async ``on_release``, a generator source left half read, a release watch whose usage calls
hang. Each run still gives every space one outcome and ends (or raises) promptly."""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import aiohttp
import anyio
import pytest

from smh_async import PurgeOutcome, ReleaseResult, SMHClient
from smh_async._bulk import PurgeRun
from smh_async.testing import FakeServer, FakeSMH, Fault
from tests.conftest import LIBRARY, make_settings

pytestmark = pytest.mark.anyio

# Python 3.10's asyncio cannot tell a stray CancelledError from a cancellation of the task.
needs_cancelling = pytest.mark.skipif(
    sys.version_info < (3, 11), reason="Task.cancelling() is new in Python 3.11"
)


def deletes(fake: FakeSMH) -> int:
    """DELETEs the emulator has received."""
    return sum(1 for r in fake.requests if r.route == "empty_bin")


async def stray_cancel() -> None:
    """Await a future someone else cancelled: a CancelledError nobody meant for us."""
    future = asyncio.get_running_loop().create_future()
    future.cancel()
    await future


# ---------------------------------------------------------------- misuse: one clear error


async def test_a_bare_string_is_refused_before_anything_is_sent(
    fake: FakeSMH, server: FakeServer
) -> None:
    """purge_all("user-42") used to purge spaces 'u', 's', … '-' (a single-tenant library's
    one space): a TypeError now, in both forms, and no request."""
    async with SMHClient(make_settings(server)) as smh:
        with pytest.raises(TypeError, match="not one str"):
            await smh.purge_all("user-42")
        with pytest.raises(TypeError, match="not one bytes"):
            async with smh.purge(b"user-42") as outcomes:  # type: ignore[arg-type]
                [o async for o in outcomes]
    assert deletes(fake) == 0


async def test_a_client_not_open_raises_instead_of_failing_every_space(
    fake: FakeSMH, server: FakeServer
) -> None:
    """A client never opened (or already closed) makes purge_all raise RuntimeError saying
    so, before any request; it used to fail each space as 'a bug in smh-async'."""
    ids = fake.add_spaces(LIBRARY, count=3, items_per_space=1, item_size=10)
    smh = SMHClient(make_settings(server))
    with pytest.raises(RuntimeError, match="not open"):
        await smh.purge_all(ids)
    async with smh:
        pass
    with pytest.raises(RuntimeError, match="not open"):
        await smh.purge_all(ids)
    assert deletes(fake) == 0


async def test_a_session_closed_under_the_run_stops_it_with_one_row_each(
    fake: FakeSMH, server: FakeServer
) -> None:
    """The host closes its (borrowed) session mid-run: the run stops ('client_closed'), the
    space that hit it is ClientClosed, the rest NotStarted: one outcome each, no 'bug' rows."""
    ids = fake.add_spaces(LIBRARY, count=40, items_per_space=1, item_size=10)
    got: list[PurgeOutcome] = []
    async with aiohttp.ClientSession() as session:

        async def on_outcome(outcome: PurgeOutcome) -> None:
            got.append(outcome)
            if len(got) == 5:
                await session.close()

        smh = SMHClient(make_settings(server), session=session)
        async with smh:
            summary = await smh.purge_all(ids, concurrency=1, on_outcome=on_outcome)
    assert summary.aborted == "client_closed"
    assert Counter(o.space_id for o in got) == Counter(ids)
    codes = Counter(o.error_code for o in got)
    assert codes[None] == 5 and codes["ClientClosed"] == 1 and codes["NotStarted"] == 34


# ---------------------------------------------------------------- callbacks


@needs_cancelling
async def test_a_stray_cancelled_error_from_on_outcome_is_its_error_not_a_hang(
    fake: FakeSMH, server: FakeServer
) -> None:
    """An async on_outcome that awaits something cancelled elsewhere: the run used to hang
    (the producer waited for room for ever); now it stops as for any on_outcome error and
    raises it, every space with one outcome."""
    ids = fake.add_spaces(LIBRARY, count=60, items_per_space=1, item_size=10)
    calls = 0

    async def on_outcome(outcome: PurgeOutcome) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            await stray_cancel()

    async with SMHClient(make_settings(server)) as smh:
        run = PurgeRun(smh, concurrency=2, on_outcome=on_outcome)
        with anyio.fail_after(20), pytest.raises(RuntimeError, match="on_outcome raised"):
            await run.run(ids)
    summary = run.summary()
    assert summary.aborted == "on_outcome_failed"
    assert summary.total == 60 and summary.skipped > 0


@needs_cancelling
async def test_a_stray_cancelled_error_from_the_source_is_a_source_error(
    fake: FakeSMH, server: FakeServer
) -> None:
    """A source that raises a stray CancelledError after 30 ids: the 30 are purged, then the
    run raises it as the source's error (it used to return a short summary, no error)."""
    ids = fake.add_spaces(LIBRARY, count=30, items_per_space=1, item_size=10)
    got: list[PurgeOutcome] = []

    async def source() -> AsyncIterator[str]:
        for space_id in ids:
            yield space_id
        await stray_cancel()

    async with SMHClient(make_settings(server)) as smh:
        with anyio.fail_after(20), pytest.raises(RuntimeError, match="source of space ids"):
            await smh.purge_all(source(), on_outcome=got.append)
    assert sorted(o.space_id for o in got) == sorted(ids)


@needs_cancelling
@pytest.mark.parametrize("fails", ["raises", "stray-cancel"])
async def test_on_progress_failing_stops_the_run_gracefully_and_raises(
    fake: FakeSMH, server: FakeServer, fails: str
) -> None:
    """on_progress that raises (or raises a stray CancelledError) stops the run like a
    failing on_outcome: in-flight spaces finish, the rest are NotStarted, the error is raised
    at the end; it used to cancel the run hard and leave most spaces with no outcome."""
    ids = fake.add_spaces(LIBRARY, count=200, items_per_space=1, item_size=10)
    fake.latency = 0.01
    got: list[PurgeOutcome] = []

    async def on_progress(snapshot: object) -> None:
        if fails == "raises":
            raise ValueError("progress sink broken")
        await stray_cancel()

    async with SMHClient(make_settings(server)) as smh:
        run = PurgeRun(
            smh,
            concurrency=4,
            on_outcome=got.append,
            on_progress=on_progress,
            progress_interval=0.05,
        )
        with anyio.fail_after(20), pytest.raises((ValueError, RuntimeError)):
            await run.run(ids)
    assert run.summary().aborted == "on_progress_failed"
    assert Counter(o.space_id for o in got) == Counter(ids)
    assert not any(o.error_code == "Interrupted" for o in got)


async def test_a_hung_on_outcome_holds_a_cancellation_up_for_grace_seconds_at_most(
    fake: FakeSMH, server: FakeServer
) -> None:
    """Cancelled from outside (a host's timeout), in-flight spaces record Interrupted through
    an on_outcome that hangs: cut after `grace`, so the cancel returns (it took as long as
    the callback hung)."""
    ids = fake.add_spaces(LIBRARY, count=10, items_per_space=1, item_size=10)
    fake.latency = 5.0

    async def on_outcome(outcome: PurgeOutcome) -> None:
        await anyio.sleep(60)

    async with SMHClient(make_settings(server)) as smh:
        started = time.monotonic()
        with anyio.move_on_after(0.3):
            await smh.purge_all(ids, concurrency=2, on_outcome=on_outcome, grace=0.5)
        assert time.monotonic() - started < 4


# ---------------------------------------------------------------- release watch


async def test_an_async_on_release_is_awaited(fake: FakeSMH, server: FakeServer) -> None:
    """An async on_release gets every result (it was called, never awaited: no results and
    a 'coroutine was never awaited' warning)."""
    ids = fake.add_spaces(LIBRARY, count=6, items_per_space=1, item_size=100)
    results: list[ReleaseResult] = []

    async def on_release(result: ReleaseResult) -> None:
        await anyio.sleep(0)
        results.append(result)

    async with SMHClient(make_settings(server)) as smh:
        summary = await smh.purge_all(ids, wait_release=10, on_release=on_release)
    assert sorted(r.space_id for r in results) == sorted(ids)
    assert summary.counters["released"] == 6


async def test_a_raising_on_release_leaves_accepted_spaces_accepted(
    fake: FakeSMH, server: FakeServer
) -> None:
    """on_release raising for an empty bin's space: the run stops and raises it, but each
    space whose DELETE got its 204 stays accepted (they were reported failed as 'a bug')."""
    ids = fake.add_spaces(LIBRARY, count=3, items_per_space=0, item_size=10)
    got: list[PurgeOutcome] = []

    def on_release(result: ReleaseResult) -> None:
        raise ValueError("release sink broken")

    async with SMHClient(make_settings(server)) as smh:
        run = PurgeRun(smh, on_outcome=got.append, wait_release=5, on_release=on_release)
        with pytest.raises(ValueError, match="release sink broken"):
            await run.run(ids)
    assert run.summary().aborted == "on_release_failed"
    assert Counter(o.outcome.value for o in got)["accepted"] >= 1
    assert all(o.error_code in (None, "NotStarted") for o in got)
    assert Counter(o.space_id for o in got) == Counter(ids)


async def test_the_release_watch_ends_near_its_deadline_when_usage_hangs(
    fake: FakeSMH, server: FakeServer
) -> None:
    """Usage calls that hang after the size snapshot: the watch is cut at its deadline (plus
    a round's grace), the spaces pending; it used to run on for as long as the calls took."""
    ids = fake.add_spaces(LIBRARY, count=3, items_per_space=1, item_size=100)
    fake.release_delay = 3600
    results: list[ReleaseResult] = []
    async with SMHClient(make_settings(server, timeout=60)) as smh:
        run = PurgeRun(smh, wait_release=1.0, on_release=results.append)
        snapshot = run._dispatch  # the size snapshot before the DELETEs must still answer

        async def hang_after_snapshot(*args: object) -> bool:
            waited = await snapshot(*args)  # type: ignore[arg-type]
            fake.add_fault(Fault("hang", route="usage_spaces"))
            return waited

        run._dispatch = hang_after_snapshot  # type: ignore[method-assign,assignment]
        started = time.monotonic()
        summary = await run.run(ids)
    assert time.monotonic() - started < 1.0 + 5.0 + 2.0
    assert summary.counters["release_pending"] == 3 and len(results) == 3


async def test_a_failing_usage_endpoint_is_not_split_batch_by_batch(
    fake: FakeSMH, server: FakeServer
) -> None:
    """Usage answering 500: one call per batch (with its retries), not a halving cascade
    (the snapshot split every failing batch down to single ids: 8 spaces, 75 calls)."""
    ids = fake.add_spaces(LIBRARY, count=8, items_per_space=1, item_size=100)
    fake.add_fault(Fault("status", status=500, route="usage_spaces"))
    async with SMHClient(make_settings(server, max_attempts=2)) as smh:
        summary = await smh.purge_all(ids, wait_release=0.5)
    usage = sum(1 for r in fake.requests if r.route == "usage_spaces")
    assert summary.accepted == 8
    assert usage <= 2 * 2  # the snapshot batch, and at most one poll round: 2 attempts each


async def test_a_cancelled_release_run_closes_its_spill_file(
    fake: FakeSMH, server: FakeServer
) -> None:
    """A run with a release watch cancelled from outside closes its temporary spill file
    (it stayed open until garbage collection: a ResourceWarning)."""
    ids = fake.add_spaces(LIBRARY, count=5, items_per_space=1, item_size=100)
    fake.latency = 5.0
    async with SMHClient(make_settings(server)) as smh:
        run = PurgeRun(smh, wait_release=10)
        with anyio.move_on_after(0.3):
            await run.run(ids)
    assert run.release is not None and run.release._spill.closed


# ---------------------------------------------------------------- the source


async def test_purge_all_closes_a_generator_source_it_stopped_reading(
    fake: FakeSMH, server: FakeServer
) -> None:
    """A generator cut short (max_spaces on a source it cannot read on, a cancelled run) has
    its finally run when purge_all returns, as the streaming form does, not at collection."""
    ids = fake.add_spaces(LIBRARY, count=20, items_per_space=1, item_size=10)
    closed: list[str] = []

    async def agen(tag: str) -> AsyncIterator[str]:
        try:
            for space_id in ids:
                yield space_id
        finally:
            closed.append(tag)

    def gen(tag: str) -> Iterator[str]:
        try:
            yield from ids
        finally:
            closed.append(tag)

    # Held by the test, as a host may hold them: garbage collection cannot close them.
    sources = (agen("max"), gen("sync"), agen("cancelled"))
    async with SMHClient(make_settings(server)) as smh:
        await smh.purge_all(sources[0], max_spaces=3, report_not_started=False)
        assert closed == ["max"]
        await smh.purge_all(sources[1], max_spaces=3, report_not_started=False)
        assert closed == ["max", "sync"]
        fake.latency = 5.0
        with anyio.move_on_after(0.3):
            await smh.purge_all(sources[2])
        assert closed == ["max", "sync", "cancelled"]


# ---------------------------------------------------------------- auth without an SMH code


@pytest.mark.parametrize("status", [401, 403])
async def test_a_gateway_refusing_the_credential_stops_the_run(
    fake: FakeSMH, server: FakeServer, status: int
) -> None:
    """A 401 or a code-less 403 (a gateway's HTML page) applies to every space: the run stops
    ('auth') as for SMH's NoPermission; it failed the spaces one by one."""
    ids = fake.add_spaces(LIBRARY, count=300, items_per_space=1, item_size=10)
    fake.add_fault(Fault("html", status=status, route="empty_bin"))
    async with SMHClient(make_settings(server, concurrency=4, max_attempts=1)) as smh:
        summary = await smh.purge_all(ids)
    assert summary.aborted == "auth" and summary.failed <= 8
    assert summary.skipped == 300 - summary.failed


async def test_a_release_round_cut_in_an_async_callback_reports_each_space_once() -> None:
    """An async on_release cut short by a stop mid-batch: the spaces already reported
    released are not reported again as pending (the round kept the whole batch)."""
    from smh_async._models import SpaceUsage
    from smh_async._release import ReleaseWatcher

    class Usage:
        """A usage endpoint whose sizes have dropped (to 10 bytes) for every space."""

        async def usage(self, ids: list[str]) -> list[SpaceUsage]:
            return [SpaceUsage(space_id=i, size=10) for i in ids]

    results: list[tuple[str, str]] = []
    watcher: ReleaseWatcher

    async def on_result(result: ReleaseResult) -> None:
        results.append((result.space_id, result.state))
        if result.space_id == "b" and result.state == "released":
            watcher.stop()  # e.g. the run interrupted while this callback awaits
            await anyio.sleep(1)

    watcher = ReleaseWatcher(Usage(), 30, on_result=on_result, first_wait=0.01)  # type: ignore[arg-type]
    for space_id in ("a", "b", "c"):
        await watcher.add(space_id, 100, 5)
    counts = await watcher.wait()
    assert sorted(results) == [("a", "released"), ("b", "released"), ("c", "release_pending")]
    assert dict(counts) == {"released": 2, "release_pending": 1}
