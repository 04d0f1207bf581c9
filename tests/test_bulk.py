"""The bulk engine against the emulator: bounded concurrency, one outcome per space, isolation."""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import AsyncIterator

import anyio
import pytest
import structlog

from smh_async import Outcome, PurgeOutcome, PurgeRun, SMHClient
from smh_async._dedupe import FingerprintSet
from smh_async.testing import FakeServer, FakeSMH, Fault
from tests.conftest import LIBRARY, make_settings

pytestmark = pytest.mark.anyio


async def test_in_flight_never_exceeds_the_limit(fake: FakeSMH, server: FakeServer) -> None:
    """With 20 ms server latency and concurrency 16, the server sees at most 16 DELETEs at once."""
    ids = fake.add_spaces(LIBRARY, count=400, items_per_space=1, item_size=10)
    fake.latency = 0.02
    async with SMHClient(make_settings(server, concurrency=16)) as smh:
        summary = await smh.purge_all(ids)
    assert summary.accepted == 400
    assert fake.peak_in_flight_by_route["empty_bin"] == 16


async def test_every_space_gets_exactly_one_outcome(fake: FakeSMH, server: FakeServer) -> None:
    """Mixed successes, 404s, invalid ids and duplicates: one outcome per distinct id."""
    good = fake.add_spaces(LIBRARY, count=50, items_per_space=1, item_size=10)
    inputs = [*good, *good[:10], "missing1", "missing2", "bad/id", "", "a?b", good[0]]
    outcomes: list[PurgeOutcome] = []
    async with SMHClient(make_settings(server, concurrency=8)) as smh:
        summary = await smh.purge_all(inputs, on_outcome=outcomes.append)
    ids = [o.space_id for o in outcomes]
    assert sorted(ids) == sorted(set(inputs))
    by_id = {o.space_id: o for o in outcomes}
    assert all(by_id[s].outcome is Outcome.ACCEPTED for s in good)
    assert by_id["missing1"].error_code == "SpaceNotFound"
    assert by_id["bad/id"].error_code == "InvalidSpaceId" and by_id["bad/id"].attempts == 0
    assert (summary.accepted, summary.failed, summary.duplicates) == (50, 5, 11)
    sent = {r.space_id for r in fake.requests if r.route == "empty_bin"}
    assert "bad/id" not in sent and "" not in sent and "a?b" not in sent
    assert len([r for r in fake.requests if r.route == "empty_bin"]) == 52


async def test_one_failing_space_does_not_stop_others(fake: FakeSMH, server: FakeServer) -> None:
    """A space whose every attempt fails is reported failed; all the others are accepted."""
    ids = fake.add_spaces(LIBRARY, count=40, items_per_space=1, item_size=10)
    fake.add_fault(Fault("status", status=500, route="empty_bin", space_id=ids[3]))
    async with SMHClient(make_settings(server, concurrency=4, max_attempts=3)) as smh:
        outcomes: list[PurgeOutcome] = []
        summary = await smh.purge_all(ids, on_outcome=outcomes.append)
    failed = [o for o in outcomes if o.outcome is Outcome.FAILED]
    assert [o.space_id for o in failed] == [ids[3]] and failed[0].attempts == 3
    assert summary.accepted == 39 and summary.by_error_code == {"InternalServerError": 1}


async def test_async_iterable_input_and_streaming_output(fake: FakeSMH, server: FakeServer) -> None:
    """An async generator of ids feeds the streaming form; outcomes arrive as they finish."""
    ids = fake.add_spaces(LIBRARY, count=30, items_per_space=1, item_size=10)

    async def source() -> AsyncIterator[str]:
        for sid in ids:
            yield sid

    async with SMHClient(make_settings(server, concurrency=5)) as smh:
        async with smh.purge(source()) as outcomes:
            seen = [o.space_id async for o in outcomes]
        assert outcomes.summary is not None and outcomes.summary.accepted == 30
    assert sorted(seen) == sorted(ids)


async def test_cancellation_is_clean(fake: FakeSMH, server: FakeServer) -> None:
    """Cancelling a run mid-flight returns promptly; in-flight spaces are reported Interrupted."""
    ids = fake.add_spaces(LIBRARY, count=100, items_per_space=1, item_size=10)
    fake.latency = 0.2
    outcomes: list[PurgeOutcome] = []
    async with SMHClient(make_settings(server, concurrency=10)) as smh:
        with anyio.move_on_after(0.5):
            await smh.purge_all(ids, on_outcome=outcomes.append)
    interrupted = [o for o in outcomes if o.error_code == "Interrupted"]
    assert 0 < len(outcomes) < 100 and len(interrupted) <= 10
    assert len({o.space_id for o in outcomes}) == len(outcomes)


async def test_graceful_stop_lets_in_flight_finish(fake: FakeSMH, server: FakeServer) -> None:
    """stop() launches nothing new; in-flight spaces finish within the grace period; every
    other space of the input is reported skipped/NotStarted, so each has one outcome."""
    from smh_async import PurgeRun

    ids = fake.add_spaces(LIBRARY, count=200, items_per_space=1, item_size=10)
    fake.latency = 0.05
    async with SMHClient(make_settings(server, concurrency=8)) as smh:
        outcomes: list[PurgeOutcome] = []

        def stop_after_20(outcome: PurgeOutcome) -> None:
            outcomes.append(outcome)
            if len(outcomes) == 20:
                run.stop(interrupted=True)

        run = PurgeRun(smh, on_outcome=stop_after_20, grace=5)
        summary = await run.run(ids)
    sent = [r.space_id or "" for r in fake.requests if r.route == "empty_bin"]
    accepted = [o.space_id for o in outcomes if o.outcome is Outcome.ACCEPTED]
    assert summary.interrupted and summary.accepted == len(accepted)
    assert sorted(accepted) == sorted(sent)
    assert 20 <= len(accepted) <= 28
    assert sorted(o.space_id for o in outcomes) == sorted(ids)  # one outcome per space
    rest = [o for o in outcomes if o.outcome is not Outcome.ACCEPTED]
    assert {(o.outcome, o.error_code, o.attempts) for o in rest} == {
        (Outcome.SKIPPED, "NotStarted", 0)
    }
    assert summary.skipped == len(rest) == 200 - len(accepted)
    assert summary.total == 200


async def test_failure_rate_threshold_aborts(fake: FakeSMH, server: FakeServer) -> None:
    """With every DELETE failing, the run stops launching after the minimum sample."""
    ids = fake.add_spaces(LIBRARY, count=300, items_per_space=1, item_size=10)
    fake.add_fault(Fault("status", status=404, code="SpaceNotFound", route="empty_bin"))
    async with SMHClient(make_settings(server, concurrency=4)) as smh:
        summary = await smh.purge_all(ids, max_failure_rate=0.5, min_sample=20)
    assert summary.aborted == "failure_rate" and 20 <= summary.failed < 40


async def test_auth_failure_after_remint_stops_the_run(fake: FakeSMH, server: FakeServer) -> None:
    """403 NoPermission (a grant problem) stops launching at once instead of failing 1,000 times."""
    fake.require_space_scope = False  # the grant check, not the space scope, refuses it
    ids = fake.add_spaces(LIBRARY, count=1000, items_per_space=1, item_size=10)
    async with SMHClient(make_settings(server, concurrency=4, token_grant="")) as smh:
        summary = await smh.purge_all(ids)
    assert summary.aborted == "auth" and summary.accepted == 0 and summary.failed <= 8
    assert summary.by_error_code.keys() == {"NoPermission"}


async def test_a_minted_token_without_space_scope_stops_the_run(
    fake: FakeSMH, server: FakeServer
) -> None:
    """A token minted from the library secret with a grant that is not admin carries no space
    scope, so every space of a multi-tenant library answers 403 AccessTokenNotMatchSpace: the
    run stops at once instead of failing 1,000 times."""
    ids = fake.add_spaces(LIBRARY, count=1000, items_per_space=1, item_size=10)
    settings = make_settings(server, concurrency=4, token_grant="delete_recycled")
    async with SMHClient(settings) as smh:
        summary = await smh.purge_all(ids)
    assert summary.aborted == "auth" and summary.accepted == 0 and summary.failed <= 8
    assert summary.by_error_code.keys() == {"AccessTokenNotMatchSpace"}


async def test_an_admin_token_refused_for_one_space_does_not_stop_the_run(
    fake: FakeSMH, server: FakeServer
) -> None:
    """With the admin grant (the default) a minted token is good for every space, so one
    space answering AccessTokenNotMatchSpace fails alone and the others are purged."""
    ids = fake.add_spaces(LIBRARY, count=20, items_per_space=1, item_size=10)
    refusal = Fault("status", status=403, code="AccessTokenNotMatchSpace", space_id=ids[0])
    fake.add_fault(refusal)
    async with SMHClient(make_settings(server, concurrency=1)) as smh:
        summary = await smh.purge_all(ids)
    assert summary.aborted is None and summary.accepted == 19
    assert summary.by_error_code == {"AccessTokenNotMatchSpace": 1}


async def test_a_static_token_scoped_to_some_spaces_purges_those(
    fake: FakeSMH, server: FakeServer
) -> None:
    """A static token scoped to some spaces (space_id=a,b at minting): the spaces outside it
    fail AccessTokenNotMatchSpace one by one and the run goes on to purge those inside."""
    ids = fake.add_spaces(LIBRARY, count=20, items_per_space=1, item_size=10)
    token = fake.issue_token(LIBRARY, grant="delete_recycled", space_ids=ids[10:])
    settings = make_settings(server, concurrency=1, library_secret=None, access_token=token)
    async with SMHClient(settings) as smh:
        summary = await smh.purge_all(ids)
    assert summary.aborted is None and summary.accepted == 10
    assert summary.by_error_code == {"AccessTokenNotMatchSpace": 10}


async def test_log_events_carry_space_id(fake: FakeSMH, server: FakeServer) -> None:
    """purge.started, one purge.space per space (with its fields) and purge.finished are logged."""
    ids = fake.add_spaces(LIBRARY, count=5, items_per_space=1, item_size=10)
    fake.add_fault(Fault("status", status=503, route="empty_bin", space_id=ids[0], times=1))
    with structlog.testing.capture_logs() as events:
        async with SMHClient(make_settings(server)) as smh:
            await smh.purge_all(ids)
    names = [e["event"] for e in events]
    assert names[0] == "purge.started" and names[-1] == "purge.finished"
    spaces = [e for e in events if e["event"] == "purge.space"]
    assert sorted(e["space_id"] for e in spaces) == sorted(ids)
    assert {
        "outcome",
        "http_status",
        "error_code",
        "smh_request_id",
        "attempts",
        "elapsed_ms",
    } <= spaces[0].keys()
    retry = next(e for e in events if e["event"] == "smh.request.retry")
    assert retry["space_id"] == ids[0] and retry["route"].startswith("DELETE /api/v1/recycled/{")


async def test_unconfigured_library_logs_to_stdlib_and_prints_nothing(
    fake: FakeSMH,
    server: FakeServer,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Without structlog configured, events reach the 'smh_async' logger and nothing is printed."""
    structlog.reset_defaults()
    ids = fake.add_spaces(LIBRARY, count=3, items_per_space=1, item_size=10)
    with caplog.at_level(logging.INFO, logger="smh_async"):
        async with SMHClient(make_settings(server)) as smh:
            await smh.purge_all(ids)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    assert [r.getMessage() for r in caplog.records].count("purge.space") == 3
    assert {
        getattr(r, "space_id", None) for r in caplog.records if r.getMessage() == "purge.space"
    } == set(ids)


def test_fingerprint_set_dedupes_and_grows() -> None:
    """The compact id set reports first inserts True, repeats False, across resizes."""
    seen = FingerprintSet(capacity=4)
    assert all(seen.add(f"space{i}") for i in range(10_000))
    assert not any(seen.add(f"space{i}") for i in range(0, 10_000, 7))
    assert len(seen) == 10_000 and "space42" in seen and "space-x" not in seen


@pytest.mark.parametrize("double_below", [1 << 20, 1])
def test_fingerprint_set_agrees_with_a_python_set(
    monkeypatch: pytest.MonkeyPatch, double_below: int
) -> None:
    """On a random stream with repeats, add() and `in` match a set, through every resize
    (both growth modes: doubling while small, 1.25x when large)."""
    from smh_async import _dedupe

    monkeypatch.setattr(_dedupe, "_DOUBLE_BELOW", double_below)
    rng = random.Random(11)
    pool = [f"space{rng.getrandbits(48):x}" for _ in range(60_000)]
    seen, reference = FingerprintSet(capacity=1), set()
    for space_id in (rng.choice(pool) for _ in range(120_000)):
        assert seen.add(space_id) is (space_id not in reference)
        reference.add(space_id)
    assert len(seen) == len(reference)
    assert all(space_id in seen for space_id in reference)
    assert not any(f"other{i}" in seen for i in range(5_000))


async def test_a_long_run_of_skipped_ids_still_lets_the_event_loop_run(
    fake: FakeSMH, server: FakeServer
) -> None:
    """200,000 ids from a plain list, all but the last skipped: the producer yields on its own
    (every 1,024 ids read without waiting), so other tasks keep running meanwhile."""
    (last,) = fake.add_spaces(LIBRARY, count=1, items_per_space=1)
    ids = [f"skip-{n}" for n in range(200_000)] + [last]
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.sleep(0)

    async with SMHClient(make_settings(server)) as smh, anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        run = PurgeRun(smh, skip=lambda space: space != last)
        summary = await run.run(ids)
        tg.cancel_scope.cancel()
    assert (summary.total, summary.accepted) == (1, 1)
    assert run.filtered == 200_000
    assert ticks >= 200_000 // 1024 // 2, ticks


async def test_when_the_grace_runs_out_every_space_still_has_one_outcome(
    fake: FakeSMH, server: FakeServer
) -> None:
    """stop() with requests hanging past the grace: those in flight are cancelled and
    reported failed/Interrupted with the request counted in attempts, the queued ones and the
    rest of the input skipped/NotStarted; each input space gets exactly one outcome and run()
    returns soon after the grace."""
    from smh_async import PurgeRun

    ids = fake.add_spaces(LIBRARY, count=100, items_per_space=1, item_size=10)
    fake.latency = 30.0  # every DELETE hangs far beyond the grace
    outcomes: list[PurgeOutcome] = []
    async with SMHClient(make_settings(server, concurrency=4)) as smh:
        run = PurgeRun(smh, on_outcome=outcomes.append, grace=0.2)

        async def stop_soon() -> None:
            while run.progress().in_flight < 4:
                await anyio.sleep(0.01)
            run.stop(interrupted=True)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(stop_soon)
                summary = await run.run(ids)
    assert sorted(o.space_id for o in outcomes) == sorted(ids)
    kinds = Counter((o.outcome, o.error_code) for o in outcomes)
    assert kinds == {
        (Outcome.FAILED, "Interrupted"): 4,
        (Outcome.SKIPPED, "NotStarted"): 96,
    }
    assert (summary.failed, summary.skipped, summary.total) == (4, 96, 100)
    # attempts counts the requests sent: the cut-off one too (it was 0)
    assert [o.attempts for o in outcomes if o.error_code == "Interrupted"] == [1, 1, 1, 1]


@pytest.mark.parametrize("wait_release", [None, 5.0])
async def test_a_stop_that_does_not_read_on_reports_every_id_read_once(
    fake: FakeSMH, server: FakeServer, wait_release: float | None
) -> None:
    """report_not_started=False: a stop cuts the reading of a source that would never end;
    every id read so far (queued, or in the batch being handed over with wait_release) has
    exactly one outcome, and run() returns."""
    from smh_async import PurgeRun

    ids = fake.add_spaces(LIBRARY, count=300, items_per_space=1, item_size=10)
    fake.latency = 0.05
    read: list[str] = []

    async def endless() -> AsyncIterator[str]:
        for space_id in ids:
            read.append(space_id)
            yield space_id
        await anyio.sleep_forever()  # a listing that hangs: reading on would never end

    outcomes: list[PurgeOutcome] = []
    async with SMHClient(make_settings(server, concurrency=4)) as smh:
        run = PurgeRun(
            smh,
            on_outcome=outcomes.append,
            report_not_started=False,
            wait_release=wait_release,
        )

        async def stop_soon() -> None:
            while run.progress().done < 8:
                await anyio.sleep(0.01)
            run.stop(reason="test")

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(stop_soon)
                summary = await run.run(endless())
    assert Counter(o.space_id for o in outcomes) == Counter(read)
    assert summary.aborted == "test" and summary.total == len(read)
    started = {o.space_id for o in outcomes if o.outcome is Outcome.ACCEPTED}
    assert started == {r.space_id for r in fake.requests if r.route == "empty_bin"}
    assert {o.error_code for o in outcomes if o.space_id not in started} <= {"NotStarted"}


@pytest.mark.parametrize(
    ("limit", "per_host"),
    [(4, 0), (100, 3)],
)
async def test_a_borrowed_session_with_few_connections_clamps_the_workers(
    fake: FakeSMH, server: FakeServer, limit: int, per_host: int
) -> None:
    """A borrowed session whose connector allows fewer connections than the concurrency, in
    total or per host, gets that many workers (purge.concurrency_clamped), so no request
    spends its timeout queued for a connection: every space is accepted. The per-host limit
    used to be ignored (most spaces failed with timeouts)."""
    import aiohttp

    from smh_async import PurgeRun

    ids = fake.add_spaces(LIBRARY, count=30, items_per_space=1, item_size=10)
    fake.latency = 0.3
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=per_host)
    async with aiohttp.ClientSession(connector=connector) as session:
        settings = make_settings(server, concurrency=32, timeout=1.0, max_attempts=1)
        async with SMHClient(settings, session=session) as smh:
            run = PurgeRun(smh)
            assert run.concurrency == (per_host or limit)
            summary = await run.run(ids)
    assert (summary.accepted, summary.failed) == (30, 0)
