"""SMHClient against the emulator over real loopback sockets: calls, retries, tokens."""

from __future__ import annotations

import aiohttp
import anyio
import pytest

from smh_async import (
    EmptyBinResult,
    LibrarySecretToken,
    SMHAuthError,
    SMHClient,
    SMHConfigError,
    SMHDecodeError,
    SMHNotFoundError,
    SMHRateLimitedError,
    SMHResponseError,
    SMHServerError,
    SMHSettings,
    SMHTimeoutError,
    SMHTransportError,
)
from smh_async._protocol import TokenGrant
from smh_async.testing import FakeServer, FakeSMH, Fault
from tests.conftest import LIBRARY, make_settings

pytestmark = pytest.mark.anyio


def deletes(fake: FakeSMH, space_id: str | None = None) -> list[int | None]:
    """Statuses of the empty-bin requests the emulator received (optionally for one space)."""
    return [
        r.status
        for r in fake.requests
        if r.route == "empty_bin" and (space_id is None or r.space_id == space_id)
    ]


async def test_empty_bin_is_accepted_and_hides_items(fake: FakeSMH, server: FakeServer) -> None:
    """A 204 returns an EmptyBinResult and the bin listing is empty at once."""
    sid = fake.add_space(LIBRARY, bin_item_sizes=[10, 20])
    async with SMHClient(make_settings(server)) as smh:
        result = await smh.empty_recycle_bin(sid)
        page = await smh.list_recycle_bin(sid)
    assert (result.http_status, result.attempts, result.space_id) == (204, 1, sid)
    assert result.request_id
    assert page.total == 0 and fake.bin_items(LIBRARY, sid) == []


async def test_unknown_space_is_not_retried(fake: FakeSMH, server: FakeServer) -> None:
    """404 SpaceNotFound raises at once, with code, request id and one request sent."""
    async with SMHClient(make_settings(server)) as smh:
        with pytest.raises(SMHNotFoundError) as info:
            await smh.empty_recycle_bin("nosuchspace")
    assert info.value.code == "SpaceNotFound" and info.value.request_id
    assert info.value.attempts == 1 and deletes(fake) == [404]


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408, 429])
async def test_retryable_statuses_are_retried(
    fake: FakeSMH, server: FakeServer, status: int
) -> None:
    """Two injected failures are retried and the third attempt is accepted."""
    sid = fake.add_space(LIBRARY, bin_item_sizes=[1])
    fake.add_fault(Fault("status", status=status, route="empty_bin", times=2))
    async with SMHClient(make_settings(server)) as smh:
        result = await smh.empty_recycle_bin(sid)
    assert result.attempts == 3 and deletes(fake) == [status, status, 204]


async def test_attempts_are_capped(fake: FakeSMH, server: FakeServer) -> None:
    """A persistent 503 is tried max_attempts times, then raised with that count."""
    sid = fake.add_space(LIBRARY)
    fake.add_fault(Fault("status", status=503, route="empty_bin"))
    async with SMHClient(make_settings(server, max_attempts=3)) as smh:
        with pytest.raises(SMHServerError) as info:
            await smh.empty_recycle_bin(sid)
    assert info.value.attempts == 3 and deletes(fake) == [503, 503, 503]


async def test_total_retry_time_is_capped(fake: FakeSMH, server: FakeServer) -> None:
    """No retry starts that would end past max_retry_time, whatever max_attempts says."""
    sid = fake.add_space(LIBRARY)
    fake.add_fault(Fault("status", status=429, route="empty_bin", retry_after="1"))
    settings = make_settings(server, max_attempts=50, max_retry_time=0.5)
    async with SMHClient(settings) as smh:
        with pytest.raises(SMHRateLimitedError) as info:
            await smh.empty_recycle_bin(sid)
    assert info.value.status == 429 and len(deletes(fake)) == 1


async def test_retry_after_is_honoured(fake: FakeSMH, server: FakeServer) -> None:
    """A 429 with Retry-After: 1 delays the retry by about a second, not the tiny backoff."""
    sid = fake.add_space(LIBRARY)
    fake.add_fault(Fault("status", status=429, route="empty_bin", times=1, retry_after="1"))
    async with SMHClient(make_settings(server)) as smh:
        await smh.empty_recycle_bin(sid)
    first, second = [r for r in fake.requests if r.route == "empty_bin"]
    assert second.started_at - first.finished_at >= 0.9


@pytest.mark.parametrize("status", [400, 403, 404, 409])
async def test_other_client_errors_are_not_retried(
    fake: FakeSMH, server: FakeServer, status: int
) -> None:
    """Non-retryable 4xx fail after exactly one request."""
    sid = fake.add_space(LIBRARY)
    fake.add_fault(
        Fault(
            "status",
            status=status,
            code="BadRequest" if status != 403 else "NoPermission",
            route="empty_bin",
        )
    )
    async with SMHClient(make_settings(server)) as smh:
        with pytest.raises(SMHResponseError) as info:
            await smh.empty_recycle_bin(sid)
    assert info.value.status == status and len(deletes(fake)) == 1


async def test_dropped_connection_is_retried(fake: FakeSMH, server: FakeServer) -> None:
    """A connection closed before any response counts as a transport error and is retried."""
    sid = fake.add_space(LIBRARY)
    fake.add_fault(Fault("drop", route="empty_bin", times=1))
    async with SMHClient(make_settings(server)) as smh:
        result = await smh.empty_recycle_bin(sid)
    assert result.attempts >= 2 and deletes(fake)[-1] == 204


async def test_keepalive_close_after_204_is_survived(fake: FakeSMH, server: FakeServer) -> None:
    """The server closing kept-alive connections after 204 (aiohttp #3507) loses nothing."""
    ids = [fake.add_space(LIBRARY) for _ in range(30)]
    fake.add_fault(Fault("close_after", route="empty_bin"))
    async with SMHClient(make_settings(server, concurrency=4)) as smh:
        summary = await smh.purge_all(ids)
    assert summary.accepted == 30 and summary.failed == 0


async def test_hang_times_out_and_retries(fake: FakeSMH, server: FakeServer) -> None:
    """A request that never gets an answer times out per attempt and is retried."""
    sid = fake.add_space(LIBRARY)
    fake.add_fault(Fault("hang", route="empty_bin", times=1, delay=30))
    async with SMHClient(make_settings(server, timeout=0.5)) as smh:
        result = await smh.empty_recycle_bin(sid)
    assert result.attempts == 2


async def test_hang_on_every_attempt_raises_timeout(fake: FakeSMH, server: FakeServer) -> None:
    """When every attempt hangs the error is SMHTimeoutError, also a TimeoutError."""
    sid = fake.add_space(LIBRARY)
    fake.add_fault(Fault("hang", route="empty_bin", delay=30))
    async with SMHClient(make_settings(server, timeout=0.3, max_attempts=2)) as smh:
        with pytest.raises(TimeoutError) as info:
            await smh.empty_recycle_bin(sid)
    assert isinstance(info.value, SMHTimeoutError) and info.value.attempts == 2


async def test_html_error_page_is_a_server_error(fake: FakeSMH, server: FakeServer) -> None:
    """A gateway's HTML 502 page is retried, then reported with its status."""
    sid = fake.add_space(LIBRARY)
    fake.add_fault(Fault("html", status=502, route="empty_bin"))
    async with SMHClient(make_settings(server, max_attempts=2)) as smh:
        with pytest.raises(SMHServerError) as info:
            await smh.empty_recycle_bin(sid)
    assert info.value.status == 502 and info.value.code is None and info.value.attempts == 2


async def test_unexpected_2xx_body_is_not_counted_as_accepted(
    fake: FakeSMH, server: FakeServer
) -> None:
    """A 200 with a JSON body instead of 204 raises SMHDecodeError, without retrying."""
    sid = fake.add_space(LIBRARY)
    fake.add_fault(Fault("unexpected_body", route="empty_bin"))
    async with SMHClient(make_settings(server)) as smh:
        with pytest.raises(SMHDecodeError):
            await smh.empty_recycle_bin(sid)
    assert len(deletes(fake)) == 1


async def test_truncated_body_is_a_transport_error(fake: FakeSMH, server: FakeServer) -> None:
    """A reply cut short of its Content-Length is retried as a transport failure."""
    sid = fake.add_space(LIBRARY)
    fake.add_fault(Fault("truncated", status=503, route="empty_bin"))
    async with SMHClient(make_settings(server, max_attempts=2)) as smh:
        with pytest.raises(SMHTransportError) as info:
            await smh.empty_recycle_bin(sid)
    assert info.value.attempts == 2


async def test_token_storm_leads_to_one_remint(fake: FakeSMH, server: FakeServer) -> None:
    """100 concurrent requests all rejected with 403 InvalidAccessToken cause one re-mint."""
    ids = fake.add_spaces(LIBRARY, count=100, items_per_space=1, item_size=10)
    fake.latency = 0.01
    async with SMHClient(make_settings(server, concurrency=100)) as smh:
        await smh.token_provider.get()
        assert fake.tokens_minted == 1
        fake.expire_all_tokens()
        summary = await smh.purge_all(ids)
    assert summary.accepted == 100
    assert fake.tokens_minted == 2


async def test_static_token_rejected_is_not_reminted(fake: FakeSMH, server: FakeServer) -> None:
    """With a static token, 403 InvalidAccessToken is final: one request, an auth error."""
    sid = fake.add_space(LIBRARY)
    settings = make_settings(server, library_secret=None, access_token="not-a-valid-token")
    async with SMHClient(settings) as smh:
        with pytest.raises(SMHAuthError) as info:
            await smh.empty_recycle_bin(sid)
    assert info.value.code == "InvalidAccessToken" and len(deletes(fake)) == 1


async def test_token_expiry_after_n_uses_is_healed(fake: FakeSMH, server: FakeServer) -> None:
    """Tokens that expire after 10 uses are re-minted as needed; every space is accepted."""
    ids = fake.add_spaces(LIBRARY, count=50, items_per_space=1, item_size=10)
    fake.token_max_uses = 10
    async with SMHClient(make_settings(server, concurrency=4)) as smh:
        summary = await smh.purge_all(ids)
    assert summary.accepted == 50 and 5 <= fake.tokens_minted <= 12


async def test_wrong_secret_is_an_auth_error(fake: FakeSMH, server: FakeServer) -> None:
    """Minting with a wrong library secret raises SMHAuthError (404 WrongLibraryIdOrSecret)."""
    async with SMHClient(make_settings(server, library_secret="wrong-secret")) as smh:
        with pytest.raises(SMHAuthError) as info:
            await smh.token_provider.get()
    assert info.value.code == "WrongLibraryIdOrSecret"


async def test_iter_spaces_follows_every_page(fake: FakeSMH, server: FakeServer) -> None:
    """Listing 2,500 spaces with pages of 1000 yields each exactly once."""
    ids = fake.add_spaces(LIBRARY, count=2500)
    async with SMHClient(make_settings(server)) as smh:
        listed = [s.space_id async for s in smh.iter_spaces()]
    assert sorted(listed) == sorted(ids)
    assert len([r for r in fake.requests if r.route == "space_list"]) == 3


async def test_iter_spaces_with_marker_only_variant(anyio_backend: str) -> None:
    """A server that names the continuation ``marker`` (SDK variant) is followed to the end."""
    fake = FakeSMH(list_marker_field="marker")
    fake.add_library(LIBRARY, secret="s3cret-value", multi_tenant=True, recycle_bin=True)
    ids = fake.add_spaces(LIBRARY, count=1500)
    async with FakeServer(fake) as server:
        settings = make_settings(server, library_secret="s3cret-value")
        async with SMHClient(settings) as smh:
            listed = [s.space_id async for s in smh.iter_spaces(page_size=400)]
    assert sorted(listed) == sorted(ids)


async def test_usage_is_batched(fake: FakeSMH, server: FakeServer) -> None:
    """Usage for 250 spaces takes 3 requests and returns 250 rows."""
    ids = fake.add_spaces(LIBRARY, count=250, items_per_space=2, item_size=5)
    async with SMHClient(make_settings(server)) as smh:
        rows = await smh.usage(ids)
        size = await smh.space_size(ids[0])
    assert len(rows) == 250 and {r.size for r in rows} == {10} and size == 10
    assert len([r for r in fake.requests if r.route == "usage_spaces"]) == 3


async def test_borrowed_session_is_not_closed(fake: FakeSMH, server: FakeServer) -> None:
    """A caller's ClientSession is used and left open after the client exits."""
    sid = fake.add_space(LIBRARY)
    async with aiohttp.ClientSession() as session:
        async with SMHClient(make_settings(server), session=session) as smh:
            await smh.empty_recycle_bin(sid)
        assert not session.closed


async def test_redirects_are_not_followed(fake: FakeSMH, server: FakeServer) -> None:
    """A 3xx is an error, never followed (it could carry the token to another host)."""
    sid = fake.add_space(LIBRARY)
    fake.add_fault(Fault("status", status=307, route="empty_bin"))
    async with SMHClient(make_settings(server)) as smh:
        with pytest.raises(SMHResponseError) as info:
            await smh.empty_recycle_bin(sid)
    assert info.value.status == 307 and len(deletes(fake)) == 1


async def test_client_requires_library_and_credentials() -> None:
    """Missing library id or credentials is a config error naming the field."""
    with pytest.raises(SMHConfigError, match="library_id"):
        SMHClient(base_url="http://127.0.0.1:1", access_token="t")
    with pytest.raises(SMHConfigError, match="access_token"):
        SMHClient(base_url="http://127.0.0.1:1", library_id="lib1")


async def test_using_a_closed_client_is_a_clear_error() -> None:
    """Calling a method outside ``async with`` raises a RuntimeError that says so."""
    smh = SMHClient(base_url="http://127.0.0.1:1", library_id="l", access_token="t")
    with pytest.raises(RuntimeError, match="async with"):
        await smh.empty_recycle_bin("s1")


async def test_connection_refused_is_a_transport_error() -> None:
    """Nothing listening: SMHTransportError (an OSError) after max_attempts tries."""
    with anyio.fail_after(10):
        settings = SMHSettings(
            base_url="http://127.0.0.1:9",
            library_id="l",
            access_token="t",
            max_attempts=2,
            backoff_initial=0.001,
        )
        async with SMHClient(settings) as smh:
            with pytest.raises(OSError) as info:
                await smh.empty_recycle_bin("s1")
    assert isinstance(info.value, SMHTransportError) and info.value.attempts == 2


async def test_time_queued_for_a_pooled_connection_is_not_timed(
    fake: FakeSMH, server: FakeServer
) -> None:
    """Requests waiting for a free pooled connection do not time out (aiohttp #10313)."""
    ids = fake.add_spaces(LIBRARY, count=27, items_per_space=1, item_size=10)
    settings = make_settings(server, concurrency=1, timeout=0.5, max_attempts=1)
    async with SMHClient(settings) as smh:
        await smh.token_provider.get()
        assert smh.connection_limit == 9
        fake.latency = 0.3  # 27 calls over 9 connections: the last wait ~0.6 s in the queue
        results: list[EmptyBinResult] = []

        async def empty(space_id: str) -> None:
            results.append(await smh.empty_recycle_bin(space_id))

        async with anyio.create_task_group() as tg:
            for sid in ids:
                tg.start_soon(empty, sid)
    assert len(results) == 27 and {r.attempts for r in results} == {1}
    assert fake.peak_in_flight_by_route["empty_bin"] == 9


@pytest.mark.parametrize("fault", ["drop", "hang"])
async def test_a_transport_error_keeps_no_trace_of_the_token(
    fake: FakeSMH, server: FakeServer, fault: str
) -> None:
    """A dropped or timed-out request raises an SMHTransportError that holds no reference to
    the token: no chained aiohttp error (its text carries the URL with the token) and no
    frame local in its traceback, which renderers that show locals would print."""
    space = fake.add_space(LIBRARY)
    fake.add_fault(Fault(fault, route="empty_bin"))
    async with SMHClient(make_settings(server, max_attempts=1, timeout=0.5)) as smh:
        token = await smh.token_provider.get()
        with pytest.raises(SMHTransportError) as caught:
            await smh.empty_recycle_bin(space)
    error = caught.value
    assert error.__context__ is None and error.__cause__ is None
    tb, checked = error.__traceback__, 0
    while tb is not None:
        if "smh_async" in tb.tb_frame.f_code.co_filename:  # not this test's own frame
            checked += 1
            for name, value in tb.tb_frame.f_locals.items():
                assert token not in repr(value), (tb.tb_frame.f_code.co_name, name)
        tb = tb.tb_next
    assert checked >= 2  # call() and _attempt() at least
    assert token not in str(error) and token not in repr(error)


async def test_a_failed_mint_is_shared_and_not_repeated_within_the_cooldown() -> None:
    """50 requests waiting for a token while the mint fails: one mint, and each request
    gets that failure (they used to mint one after another, max_attempts requests each);
    within the cool-down nothing is minted; after it, the next request mints again."""
    calls = 0

    async def mint() -> TokenGrant:
        nonlocal calls
        calls += 1
        await anyio.sleep(0.05)
        if calls == 1:
            raise SMHServerError("mint down", status=500, code="InternalServerError")
        return TokenGrant("tok-2", 3600)

    provider = LibrarySecretToken(mint, mint_cooldown=0.3)
    failures: list[SMHServerError] = []

    async def request() -> None:
        try:
            await provider.get()
        except SMHServerError as exc:
            failures.append(exc)

    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(request)
    assert calls == 1 and len(failures) == 50
    assert {(e.status, e.code) for e in failures} == {(500, "InternalServerError")}
    assert not await provider.invalidate("tok-1")  # a rejected token is not replaced either
    assert calls == 1
    await anyio.sleep(0.3)
    assert await provider.get() == "tok-2" and calls == 2
