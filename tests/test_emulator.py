"""The SMH emulator's HTTP contract (tokens, errors, listing, bins, release), over real sockets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from smh_async.testing import FakeServer, FakeSMH, serve_forever

pytestmark = pytest.mark.anyio

LIB = "lib1"
SECRET = "lib-secret-0f9e8d"


@pytest.fixture
def fake() -> FakeSMH:
    """A seeded emulator with one multi-tenant library whose bytes release after 0.2 s."""
    smh = FakeSMH(release_delay=0.2, seed=7)
    smh.add_library(LIB, secret=SECRET, multi_tenant=True, recycle_bin=True)
    return smh


@pytest.fixture
async def server(fake: FakeSMH) -> AsyncIterator[FakeServer]:
    """The emulator served on an ephemeral loopback port."""
    async with FakeServer(fake) as running:
        yield running


@pytest.fixture
async def http(server: FakeServer) -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp session pointed at the emulator."""
    async with aiohttp.ClientSession(server.base_url) as session:
        yield session


async def call(
    http: aiohttp.ClientSession, method: str, path: str, **params: Any
) -> tuple[int, Any, str]:
    """Send one request; return (status, decoded JSON body or None, X-Request-Id)."""
    query = {key: str(value) for key, value in params.items()}
    async with http.request(method, path, params=query) as response:
        raw = await response.read()
        body = json.loads(raw) if raw else None
        return response.status, body, response.headers.get("X-Request-Id", "")


async def mint(http: aiohttp.ClientSession, **params: Any) -> str:
    """Mint a token over HTTP (admin by default) and return it."""
    query = {"library_id": LIB, "library_secret": SECRET, "grant": "admin", **params}
    status, body, _ = await call(http, "POST", "/api/v1/token", **query)
    assert status == 200, body
    token: str = body["accessToken"]
    return token


async def test_token_mint_shape_and_period_clamping(
    http: aiohttp.ClientSession, fake: FakeSMH
) -> None:
    """Minting answers {accessToken, expiresIn} and clamps period as documented."""
    cases = {"": 86400, "10": 300, "999999999999": 315360000, "abc": 86400, "-5": 86400}
    for period, expected in cases.items():
        status, body, request_id = await call(
            http, "GET", "/api/v1/token", library_id=LIB, library_secret=SECRET, period=period
        )
        assert status == 200
        assert set(body) == {"accessToken", "expiresIn"}
        assert body["expiresIn"] == expected
        assert len(request_id) >= 16
    assert fake.tokens_minted == len(cases)


async def test_token_mint_errors_carry_code_and_request_id(http: aiohttp.ClientSession) -> None:
    """No credentials give 400 EmptyLibraryIdOrSecret; wrong ones 404 WrongLibraryIdOrSecret."""
    status, body, request_id = await call(http, "GET", "/api/v1/token", library_id=LIB)
    assert (status, body["code"]) == (400, "EmptyLibraryIdOrSecret")
    assert body["requestId"] == request_id
    assert body["message"]
    for lib, secret in ((LIB, "nope"), ("other-lib", SECRET)):
        status, body, _ = await call(
            http, "POST", "/api/v1/token", library_id=lib, library_secret=secret
        )
        assert (status, body["code"]) == (404, "WrongLibraryIdOrSecret")


async def test_access_token_and_lookup_errors(http: aiohttp.ClientSession, fake: FakeSMH) -> None:
    """Every auth/lookup failure maps to the documented status and code."""
    sid = fake.add_space(LIB, bin_item_sizes=[10])
    other = fake.add_space(LIB)
    fake.add_library("lib2", secret="s2")
    token = await mint(http)
    scoped = fake.issue_token(LIB, grant="admin", space_ids=[sid])
    foreign = fake.issue_token("lib2")
    size = f"/api/v1/space/{LIB}/{sid}/size"
    cases = [
        (size, {}, 400, "EmptyAccessToken"),
        (size, {"access_token": "acctk-bogus"}, 403, "InvalidAccessToken"),
        (size, {"access_token": foreign}, 403, "AccessTokenNotMatchLibrary"),
        (
            f"/api/v1/space/{LIB}/{other}/size",
            {"access_token": scoped},
            403,
            "AccessTokenNotMatchSpace",
        ),
        ("/api/v1/space/nolib/x/size", {"access_token": token}, 404, "LibraryNotFound"),
        (f"/api/v1/space/{LIB}/spacenope/size", {"access_token": token}, 404, "SpaceNotFound"),
        (f"/api/v1/usage/{LIB}/{sid},spacenope", {"access_token": token}, 404, "SpaceNotFound"),
        (f"/api/v1/nothing/{LIB}", {"access_token": token}, 404, "RouteNotFound"),
    ]
    for path, params, expected_status, expected_code in cases:
        status, body, _ = await call(http, "GET", path, **params)
        assert (status, body["code"]) == (expected_status, expected_code), path
    status, body, _ = await call(http, "GET", size, access_token=scoped)
    assert (status, body) == (200, {"size": "10"})


async def test_token_max_uses_and_expire_all(http: aiohttp.ClientSession, fake: FakeSMH) -> None:
    """A token dies after token_max_uses uses, and expire_all_tokens kills every token."""
    sid = fake.add_space(LIB)
    fake.token_max_uses = 2
    limited = await mint(http)
    path = f"/api/v1/space/{LIB}/{sid}/size"
    statuses = [(await call(http, "GET", path, access_token=limited))[0] for _ in range(3)]
    assert statuses == [200, 200, 403]
    fake.token_max_uses = None
    unlimited = await mint(http)
    assert (await call(http, "GET", path, access_token=unlimited))[0] == 200
    fake.expire_all_tokens()
    status, body, _ = await call(http, "GET", path, access_token=unlimited)
    assert (status, body["code"]) == (403, "InvalidAccessToken")


async def test_token_renew_delete_and_redacted_path(
    http: aiohttp.ClientSession, fake: FakeSMH
) -> None:
    """Renew answers the mint shape, delete answers 204, and records never hold the token."""
    token = await mint(http, period=600)
    status, body, _ = await call(http, "POST", f"/api/v1/token/{LIB}/{token}")
    assert (status, body["accessToken"], body["expiresIn"]) == (200, token, 600)
    assert (await call(http, "DELETE", f"/api/v1/token/{LIB}/{token}"))[:2] == (204, None)
    status, body, _ = await call(http, "POST", f"/api/v1/token/{LIB}/{token}")
    assert (status, body["code"]) == (403, "InvalidAccessToken")
    assert (fake.requests[0].route, fake.requests[0].library_id) == ("token_create", LIB)
    routes = [(r.route, r.path) for r in fake.requests]
    assert ("token_renew", f"/api/v1/token/{LIB}/{{token}}") in routes
    assert ("token_delete", f"/api/v1/token/{LIB}/{{token}}") in routes
    assert token not in repr(fake.requests)
    assert SECRET not in repr(fake.requests)
    assert all(r.has_token for r in fake.requests if r.route != "token_create")


async def list_all(
    http: aiohttp.ClientSession, token: str, field: str = "nextMarker", **extra: Any
) -> list[dict[str, Any]]:
    """Follow the space list's continuation field to the end; returns every page body."""
    pages: list[dict[str, Any]] = []
    marker = ""
    while True:
        params = {"access_token": token, **extra, **({"marker": marker} if marker else {})}
        status, body, _ = await call(http, "GET", f"/api/v1/space/{LIB}/list", **params)
        assert status == 200, body
        pages.append(body)
        if field not in body:
            return pages
        marker = body[field]


async def test_space_list_pagination_with_next_marker(
    http: aiohttp.ClientSession, fake: FakeSMH
) -> None:
    """Pages follow nextMarker in creation order; nextMarker is absent on the last page."""
    ids = fake.add_spaces(LIB, count=25)
    assert all(len(sid) == 18 and sid.startswith("space") and sid.isalnum() for sid in ids)
    token = await mint(http)
    pages = await list_all(http, token, limit=10)
    assert [len(page["list"]) for page in pages] == [10, 10, 5]
    assert [item["spaceId"] for page in pages for item in page["list"]] == ids
    assert pages[0]["marker"] == ""
    assert pages[1]["marker"] == pages[0]["nextMarker"]
    assert set(pages[0]["list"][0]) == {"spaceId", "userId", "creationTime"}
    exact = await list_all(http, token, limit=25)
    assert len(exact) == 1
    assert "nextMarker" not in exact[0]


async def test_space_list_param_errors(http: aiohttp.ClientSession, fake: FakeSMH) -> None:
    """limit outside [1,1000] is 400 ParamInvalid; a foreign marker is 404 MarkerNotFound."""
    token = await mint(http)
    path = f"/api/v1/space/{LIB}/list"
    for limit in (0, 1001, "x"):
        status, body, _ = await call(http, "GET", path, access_token=token, limit=limit)
        assert (status, body["code"]) == (400, "ParamInvalid")
    for marker in ("bm90LW91cnM", "%%%", "cDk5OTk"):
        status, body, _ = await call(http, "GET", path, access_token=token, marker=marker)
        assert (status, body["code"]) == (404, "MarkerNotFound")


async def test_space_list_marker_field_variant() -> None:
    """With list_marker_field='marker' the continuation is under marker, absent at the end."""
    smh = FakeSMH(list_marker_field="marker")
    smh.add_library(LIB, secret=SECRET)
    ids = smh.add_spaces(LIB, count=7)
    async with FakeServer(smh) as srv, aiohttp.ClientSession(srv.base_url) as session:
        pages = await list_all(session, smh.issue_token(LIB), field="marker", limit=3)
    assert [len(page["list"]) for page in pages] == [3, 3, 1]
    assert all("nextMarker" not in page for page in pages)
    assert "marker" not in pages[-1]
    assert [item["spaceId"] for page in pages for item in page["list"]] == ids


async def test_space_list_without_admin_shows_own_spaces(
    http: aiohttp.ClientSession, fake: FakeSMH
) -> None:
    """A token without admin/space_admin lists only spaces created by its user."""
    mine = [fake.add_space(LIB, user_id="alice") for _ in range(3)]
    fake.add_spaces(LIB, count=5, user_id="bob")
    mine.append(fake.add_space(LIB, user_id="alice"))
    token = fake.issue_token(LIB, grant="", user_id="alice")
    pages = await list_all(http, token, limit=2)
    assert [item["spaceId"] for page in pages for item in page["list"]] == mine
    assert "nextMarker" not in pages[-1]
    assert len(pages) == 2


async def test_single_tenant_library_uses_dash(http: aiohttp.ClientSession, fake: FakeSMH) -> None:
    """A single-tenant library has only space '-' and refuses tenant listing."""
    fake.add_library("solo", secret="s", multi_tenant=False)
    assert fake.add_space("solo", bin_item_sizes=[5, 6]) == "-"
    token = fake.issue_token("solo")
    status, body, _ = await call(http, "GET", "/api/v1/space/solo/list", access_token=token)
    assert (status, body["code"]) == (400, "NotMultiSpaceLibrary")
    status, body, _ = await call(http, "GET", "/api/v1/recycled/solo/-", access_token=token)
    assert (status, body["totalNum"], body["contents"][0]["spaceId"]) == (200, 2, "-")
    assert (await call(http, "DELETE", "/api/v1/recycled/solo/-", access_token=token))[0] == 204
    assert fake.bin_items("solo", "-") == []


async def test_latency_counts_peak_in_flight(http: aiohttp.ClientSession, fake: FakeSMH) -> None:
    """Requests held by latency overlap in the handler and raise the peak counters."""
    ids = fake.add_spaces(LIB, count=12)
    token = fake.issue_token(LIB)
    fake.latency = 0.2
    await asyncio.gather(
        *(call(http, "GET", f"/api/v1/space/{LIB}/{sid}/size", access_token=token) for sid in ids),
        call(http, "GET", f"/api/v1/usage/{LIB}", access_token=token),
    )
    assert fake.peak_in_flight == 13
    assert fake.peak_in_flight_by_route == {"space_size": 12, "usage_library": 1}
    assert fake.in_flight == 0
    assert all(r.finished_at - r.started_at >= 0.19 for r in fake.requests)
    started = [r.started_at for r in fake.requests]
    assert started == sorted(started)
    fake.reset_stats()
    assert (fake.requests, fake.peak_in_flight, fake.peak_in_flight_by_route) == ([], 0, {})
    fake.latency = lambda: 0.0
    assert (await call(http, "GET", f"/api/v1/usage/{LIB}", access_token=token))[0] == 200
    assert fake.peak_in_flight == 1


async def test_restart_on_same_port(fake: FakeSMH) -> None:
    """stop() then start() serves the same state on the same port again."""
    sid = fake.add_space(LIB, file_bytes=42)
    token = fake.issue_token(LIB)
    async with FakeServer(fake) as srv, aiohttp.ClientSession() as session:
        port = srv.port
        url = f"{srv.base_url}/api/v1/space/{LIB}/{sid}/size"
        await srv.stop()
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(url, params={"access_token": token})
        await srv.start()
        assert srv.port == port
        async with session.get(url, params={"access_token": token}) as response:
            assert await response.json() == {"size": "42"}


async def test_serve_forever_announces_and_refuses_remote_hosts() -> None:
    """serve_forever seeds, calls ready with a working secret, and rejects non-loopback hosts."""
    announced: asyncio.Future[tuple[str, str]] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve_forever(
            spaces=3, ready=lambda srv, smh, secret: announced.set_result((srv.base_url, secret))
        )
    )
    base_url, secret = await asyncio.wait_for(announced, 5)
    async with aiohttp.ClientSession(base_url) as session:
        query = {"library_id": "demo-lib", "library_secret": secret, "grant": "admin"}
        status, body, _ = await call(session, "GET", "/api/v1/token", **query)
        assert status == 200
        status, body, _ = await call(
            session, "GET", "/api/v1/space/demo-lib/list", access_token=body["accessToken"]
        )
        assert len(body["list"]) == 3
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(ValueError, match="non-loopback"):
        await serve_forever(host="0.0.0.0")
    with pytest.raises(ValueError, match="non-loopback"):
        FakeServer(FakeSMH(), host="10.1.2.3")


async def test_serve_forever_without_a_record_keeps_no_requests() -> None:
    """record_requests=False serves as usual and counts peaks, but keeps no request record
    (so a long-running fake-server's memory does not grow with every request)."""
    loop = asyncio.get_running_loop()
    announced: asyncio.Future[tuple[str, FakeSMH, str]] = loop.create_future()
    task = asyncio.create_task(
        serve_forever(
            spaces=2,
            record_requests=False,
            ready=lambda srv, smh, secret: announced.set_result((srv.base_url, smh, secret)),
        )
    )
    base_url, fake, secret = await asyncio.wait_for(announced, 5)
    async with aiohttp.ClientSession(base_url) as session:
        query = {"library_id": "demo-lib", "library_secret": secret, "grant": "admin"}
        status, body, _ = await call(session, "GET", "/api/v1/token", **query)
        token = body["accessToken"]
        for _ in range(3):
            status, body, _ = await call(
                session, "GET", "/api/v1/space/demo-lib/list", access_token=token
            )
            assert status == 200 and len(body["list"]) == 2
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert fake.requests == []
    assert fake.peak_in_flight >= 1


async def test_fake_server_command_keeps_no_request_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``smh-async fake-server`` turns the record off: nobody outside the process can read it."""
    import argparse

    from smh_async import _commands
    from smh_async.testing import _main

    seen: dict[str, object] = {}

    async def fake_serve_forever(**kwargs: object) -> None:
        seen.update(kwargs)

    monkeypatch.setattr(_main, "serve_forever", fake_serve_forever)
    args = argparse.Namespace(
        host="127.0.0.1", port=0, spaces=1, items_per_space=1, release_delay=0.0, latency=0.0
    )
    assert await _commands.fake_server_command(args) == 0
    assert seen["record_requests"] is False
