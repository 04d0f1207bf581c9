"""The fault matrix (tests/reliability_report.py) with per-space assertions, plus focused
checks of what the matrix cannot show in a bulk figure (exact waits, pool-queue time)."""

from __future__ import annotations

import email.utils
import time
from collections import defaultdict
from collections.abc import MutableMapping
from typing import Any

import anyio
import pytest
import structlog

from smh_async import SMHAuthError, SMHClient
from smh_async.testing import FakeServer, FakeSMH, Fault
from tests.conftest import LIBRARY, make_settings
from tests.reliability_report import MAX_ATTEMPTS, SCENARIOS, SPACES, Scenario, run_scenario

pytestmark = pytest.mark.anyio


def _by_space(records: list[Any]) -> dict[str | None, list[Any]]:
    out: dict[str | None, list[Any]] = defaultdict(list)
    for r in records:
        out[r.space_id].append(r)
    return out


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
async def test_fault_matrix_loses_nothing(scenario: Scenario) -> None:
    """Under this fault every space gets exactly one outcome, with the expected attempts."""
    run, fig = await run_scenario(scenario)
    assert (fig.lost, fig.duplicates, len(run.outcomes)) == (0, 0, SPACES)
    sent = _by_space([r for r in run.fake.requests if r.route == "empty_bin"])
    if scenario.planned is not None:
        planned = scenario.planned
        for o in run.outcomes:
            expected_outcome, expected_attempts = run.expected[o.space_id]
            assert (o.outcome.value, o.attempts) == (expected_outcome, expected_attempts), o
            assert len(sent[o.space_id]) == o.attempts  # every attempt reached the server once
            emptied = not run.fake.bin_items(LIBRARY, o.space_id)
            if o.outcome.value == "accepted":
                assert o.http_status == 204 and sent[o.space_id][-1].status == 204 and emptied
            else:
                assert o.error_code and (emptied == planned.operation_runs)
                assert o.attempts == (MAX_ATTEMPTS if planned.retryable else 1)
        assert fig.requests == fig.attempts
        return
    assert fig.accepted == SPACES and fig.failed == 0
    for o in run.outcomes:
        assert sent[o.space_id][-1].status == 204 and not run.fake.bin_items(LIBRARY, o.space_id)
    if scenario.all_reach_server:
        assert fig.requests == fig.attempts
    else:
        assert SPACES <= fig.requests <= fig.attempts
    if "storm" in scenario.name:
        assert fig.tokens_minted == 4  # the first token + exactly one re-mint per storm
    if "expiry" in scenario.name:
        assert fig.tokens_minted >= SPACES // 40


def _retry_waits(events: list[MutableMapping[str, Any]]) -> list[float]:
    return [e["wait_s"] for e in events if e["event"] == "smh.request.retry"]


@pytest.mark.parametrize(
    ("retry_after", "cap", "low", "high"),
    [
        ("1", 60.0, 1.0, 2.0),  # seconds: the earliest retry, spread up to twice it
        ("7", 0.05, 0.05, 0.1),  # seconds above retry_after_max: capped, then spread
        ("date+2", 60.0, 0.5, 4.0),  # HTTP-date two seconds ahead (1 s resolution)
        ("date-60", 60.0, 0.0, 0.01),  # HTTP-date in the past: normal (tiny) backoff
        ("soon", 60.0, 0.0, 0.01),  # unparseable: ignored, normal backoff
    ],
)
async def test_retry_after_forms_set_the_wait(
    fake: FakeSMH, server: FakeServer, retry_after: str, cap: float, low: float, high: float
) -> None:
    """429's Retry-After (seconds or HTTP-date, capped) sets the earliest retry; the wait is
    drawn between it and twice it."""
    sid = fake.add_space(LIBRARY)
    if retry_after.startswith("date"):
        retry_after = email.utils.formatdate(time.time() + int(retry_after[4:]), usegmt=True)
    fake.add_fault(Fault("status", status=429, route="empty_bin", times=1, retry_after=retry_after))
    with structlog.testing.capture_logs() as events:
        async with SMHClient(make_settings(server, retry_after_max=cap)) as smh:
            result = await smh.empty_recycle_bin(sid)
    (wait,) = _retry_waits(events)
    assert result.attempts == 2 and low <= wait <= high


async def test_every_token_rejected_is_bounded_by_max_attempts(
    fake: FakeSMH, server: FakeServer
) -> None:
    """Each rejected token is re-minted once; a server rejecting every token costs at most
    max_attempts requests and max_attempts - 1 re-mints, then an auth error."""
    sid = fake.add_space(LIBRARY)
    fake.add_fault(Fault("status", status=403, code="InvalidAccessToken", route="empty_bin"))
    async with SMHClient(make_settings(server, max_attempts=3)) as smh:
        with pytest.raises(SMHAuthError) as info:
            await smh.empty_recycle_bin(sid)
    assert info.value.attempts == 3 and fake.tokens_minted == 1 + 2


async def test_pool_queue_time_does_not_count_against_the_timeout(
    fake: FakeSMH, server: FakeServer
) -> None:
    """Requests waiting for a pooled connection do not time out (aiohttp #10313)."""
    ids = fake.add_spaces(LIBRARY, count=40, items_per_space=1, item_size=1)
    fake.latency = 0.05  # 40 requests over 9 connections: the last waits ~0.25 s in the queue
    results: list[int] = []
    async with SMHClient(make_settings(server, concurrency=1, timeout=0.2)) as smh:
        await smh.token_provider.get()

        async def one(space_id: str) -> None:
            results.append((await smh.empty_recycle_bin(space_id)).attempts)

        async with anyio.create_task_group() as tg:
            for space_id in ids:
                tg.start_soon(one, space_id)
    assert smh.connection_limit == 9 and results == [1] * 40
    assert fake.peak_in_flight_by_route["empty_bin"] <= 9
