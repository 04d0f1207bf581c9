"""Long unattended runs: the rate cap, the retry budget, Retry-After and token lifetime over
a run that meets a mint, a throttling server or a revoked token. Timings are never asserted
tightly: the tests compare spans and counts from the emulator's request record with
generous margins (a busy machine only makes runs slower, never faster)."""

from __future__ import annotations

import anyio
import pytest

from smh_async import LibrarySecretToken, PurgeOutcome, SMHClient
from smh_async.testing import FakeServer, FakeSMH, Fault
from tests.conftest import LIBRARY, make_settings

pytestmark = pytest.mark.anyio


def _starts(fake: FakeSMH, route: str) -> list[float]:
    return sorted(r.started_at for r in fake.requests if r.route == route)


async def test_rate_cap_holds_while_the_first_token_is_minted(
    fake: FakeSMH, server: FakeServer
) -> None:
    """A library purge whose workers all wait for the first mint still paces its DELETEs at
    --rate: the slots reserved while they waited are not spent in one burst afterwards."""
    ids = fake.add_spaces(LIBRARY, count=20, items_per_space=1)
    async with SMHClient(make_settings(server, concurrency=20, rate=10.0)) as smh:
        summary = await smh.purge_all(ids)
    assert summary.accepted == 20
    starts = _starts(fake, "empty_bin")
    # 20 requests at 10/s (burst 1) span at least 1.9 s; allow half of that.
    assert starts[-1] - starts[0] >= 0.95, [round(t - starts[0], 3) for t in starts]


async def test_rate_cap_holds_after_a_slow_re_mint_mid_run(
    fake: FakeSMH, server: FakeServer
) -> None:
    """Tokens revoked mid-run while the token endpoint is slow: the requests that waited for
    the re-mint go out at --rate afterwards, not all at once."""
    ids = fake.add_spaces(LIBRARY, count=40, items_per_space=1)
    async with SMHClient(make_settings(server, concurrency=30, rate=20.0)) as smh:
        await smh.token_provider.get()

        async def revoke_when_started() -> None:
            while not any(r.route == "empty_bin" for r in fake.requests):
                await anyio.sleep(0.01)
            # Every later mint takes 1 s to answer (the operation runs; its body trickles).
            fake.add_fault(Fault("slow_body", route="token_create", delay=1.0))
            fake.expire_all_tokens()

        async with anyio.create_task_group() as tg:
            tg.start_soon(revoke_when_started)
            summary = await smh.purge_all(ids)
    assert summary.accepted == 40
    minted = [r.finished_at for r in fake.requests if r.route == "token_create"]
    after = [t for t in _starts(fake, "empty_bin") if t >= minted[-1]]
    # At 20/s, the requests sent once the re-mint answered span (n - 1) / 20 s at least.
    assert len(after) >= 20 and after[-1] - after[0] >= (len(after) - 1) / 20 / 2


async def test_waiting_for_the_rate_cap_does_not_use_up_the_retry_budget(
    fake: FakeSMH, server: FakeServer
) -> None:
    """max_retry_time counts retrying, not time queued behind --rate: 20 workers at 10/s with
    a 1.5 s budget each get their retry after one 503 (the last in the queue got none)."""
    ids = fake.add_spaces(LIBRARY, count=20, items_per_space=1)
    for sid in ids:
        fake.add_fault(Fault("status", status=503, route="empty_bin", space_id=sid, times=1))
    outcomes: list[PurgeOutcome] = []
    settings = make_settings(server, concurrency=20, rate=10.0, max_retry_time=1.5)
    async with SMHClient(settings) as smh:
        await smh.token_provider.get()
        await smh.purge_all(ids, on_outcome=outcomes.append)
    assert sorted((o.outcome.value, o.attempts) for o in outcomes) == [("accepted", 2)] * 20


async def test_a_token_expiring_before_the_last_attempt_does_not_stop_the_run(
    fake: FakeSMH, server: FakeServer
) -> None:
    """A token that lapses while a space retries a 503 is found dead on that space's last
    attempt: it is re-minted and the space sent once more, not reported as a credential
    failure that stops the whole run (ABORTED: auth, every other space skipped)."""
    ids = fake.add_spaces(LIBRARY, count=5, items_per_space=1)
    fake.token_max_uses = 1  # every token dies after one use, as if its period ran out
    outcomes: list[PurgeOutcome] = []
    async with SMHClient(make_settings(server, max_attempts=2)) as smh:
        await smh.list_recycle_bin(ids[0])  # the first token's only use
        fake.add_fault(Fault("status", status=503, route="empty_bin", space_id=ids[0], times=1))
        summary = await smh.purge_all(ids, concurrency=1, on_outcome=outcomes.append)
    assert summary.aborted is None and summary.accepted == 5
    by_space = {o.space_id: o.attempts for o in outcomes}
    sent = [r.space_id for r in fake.requests if r.route == "empty_bin"]
    assert by_space[ids[0]] == 3 == sent.count(ids[0])  # 503, 403 (token dead), 204


async def test_retry_after_spreads_a_throttled_burst_instead_of_returning_it_at_once(
    fake: FakeSMH, server: FakeServer
) -> None:
    """64 requests turned away together with 429 Retry-After: 1 come back no sooner than 1 s,
    and not all in the same instant (they used to return within ~30 ms of each other, a
    thundering herd that a throttling server turns away again)."""
    ids = fake.add_spaces(LIBRARY, count=64, items_per_space=1)
    fake.add_fault(Fault("status", status=429, route="empty_bin", times=64, retry_after="1"))
    async with SMHClient(make_settings(server, concurrency=64)) as smh:
        await smh.token_provider.get()
        summary = await smh.purge_all(ids)
    assert summary.accepted == 64
    first: dict[str | None, float] = {}
    retries: list[float] = []
    for r in sorted(fake.requests, key=lambda r: r.started_at):
        if r.route != "empty_bin":
            continue
        if r.status == 429:
            first[r.space_id] = r.started_at
        else:
            assert r.started_at - first[r.space_id] >= 1.0  # Retry-After is the earliest
            retries.append(r.started_at)
    assert len(retries) == 64 and max(retries) - min(retries) >= 0.3


async def test_a_failed_renewal_keeps_using_the_token_while_it_is_still_valid(
    fake: FakeSMH, server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Renewal is due (most of the token's life idle) but the token endpoint is down: the
    request goes out with the token it has, which is still valid, instead of failing
    TokenUnavailable (which stops a bulk run: ABORTED: token_unavailable)."""
    monkeypatch.setattr("smh_async.testing._fake.clamp_period", lambda period: 3)
    sid = fake.add_space(LIBRARY, bin_item_sizes=[1])
    client: list[SMHClient] = []  # the provider calls the client that holds it
    # Renewed once less than 90% of the 3 s life is left: after 0.3 s idle.
    tokens = LibrarySecretToken(
        lambda: client[0].create_token(),
        lambda token: client[0].renew_token(token),
        renew_margin=0.9,
    )
    client.append(SMHClient(make_settings(server), token_provider=tokens))
    async with client[0] as smh:
        await tokens.get()
        await anyio.sleep(0.5)  # idle: renewal due, the token valid for 2.5 s more
        fake.add_fault(Fault("status", status=503, route="token_renew"))
        fake.add_fault(Fault("status", status=503, route="token_create"))
        result = await smh.empty_recycle_bin(sid)
    assert result.http_status == 204 and result.attempts == 1
    assert not fake.bin_items(LIBRARY, sid)


async def test_max_duration_starts_no_queued_space_once_the_input_is_read(
    fake: FakeSMH, server: FakeServer
) -> None:
    """--max-duration starts no space after its deadline, also when the whole input is
    already read but some spaces still wait in the queue (they were started after it)."""
    ids = fake.add_spaces(LIBRARY, count=4, items_per_space=1)
    fake.latency = 1.0
    outcomes: list[PurgeOutcome] = []
    async with SMHClient(make_settings(server)) as smh:
        await smh.token_provider.get()
        summary = await smh.purge_all(
            ids, concurrency=2, max_duration=0.3, on_outcome=outcomes.append
        )
    assert summary.aborted == "max_duration"
    assert (summary.accepted, summary.skipped) == (2, 2)
    assert len([r for r in fake.requests if r.route == "empty_bin"]) == 2
    assert sorted(o.error_code or "" for o in outcomes) == ["", "", "NotStarted", "NotStarted"]
