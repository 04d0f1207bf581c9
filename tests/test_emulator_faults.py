"""Every emulator Fault action, as a client on a real socket observes it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from smh_async.testing import FakeServer, FakeSMH, Fault

pytestmark = pytest.mark.anyio

LIB = "lib1"
SECRET = "fault-secret-77"


class Env:
    """A running emulator with one space (two bin items) and an admin token."""

    def __init__(self, fake: FakeSMH, server: FakeServer) -> None:
        self.fake = fake
        self.server = server
        self.space = fake.add_space(LIB, bin_item_sizes=[100, 200], file_bytes=50)
        self.token = fake.issue_token(LIB)

    @property
    def size_url(self) -> str:
        """URL of the space-size route for the seeded space."""
        return f"{self.server.base_url}/api/v1/space/{LIB}/{self.space}/size"

    @property
    def bin_url(self) -> str:
        """URL of the recycle-bin route for the seeded space."""
        return f"{self.server.base_url}/api/v1/recycled/{LIB}/{self.space}"

    @property
    def auth(self) -> dict[str, str]:
        """Query parameters carrying the token."""
        return {"access_token": self.token}


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    """The emulator with a seeded space, served on loopback."""
    fake = FakeSMH(seed=3)
    fake.add_library(LIB, secret=SECRET)
    async with FakeServer(fake) as server:
        yield Env(fake, server)


def fresh_session() -> aiohttp.ClientSession:
    """A session that never reuses connections, so aiohttp's silent retry cannot hide faults."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))


@pytest.mark.parametrize(
    ("status", "code"),
    [(500, "InternalServerError"), (503, "ServerOverloaded"), (429, "RateLimitExceeded"),
     (408, "ReadRequestTimeout"), (502, "BadGateway"), (504, "GatewayTimeout"),
     (403, "InvalidAccessToken")],
)  # fmt: skip
async def test_status_fault_default_codes(env: Env, status: int, code: str) -> None:
    """A status fault answers an SMH JSON error with the default code and Retry-After."""
    env.fake.add_fault(Fault("status", status=status, retry_after="2", times=1))
    async with fresh_session() as http:
        async with http.get(env.size_url, params=env.auth) as response:
            body = await response.json()
            assert (response.status, body["code"]) == (status, code)
            assert response.headers["Retry-After"] == "2"
            assert body["requestId"] == response.headers["X-Request-Id"]
        async with http.get(env.size_url, params=env.auth) as response:
            assert response.status == 200
    assert [r.fault for r in env.fake.requests] == ["status", None]


async def test_fault_filters_and_gateway_precedence(env: Env) -> None:
    """Faults match by route/method/space and fire before token checks (no token needed)."""
    other = env.fake.add_space(LIB)
    env.fake.add_fault(Fault("status", status=503, route="empty_bin", space_id=other))
    env.fake.add_fault(Fault("status", status=500, code="Custom", method="get", route="bin_list"))
    async with fresh_session() as http:
        bin_url = env.bin_url.replace(env.space, other)
        assert (await http.delete(env.bin_url, params=env.auth)).status == 204
        async with http.delete(bin_url) as response:
            assert response.status == 503
        async with http.get(env.bin_url) as response:
            assert (response.status, (await response.json())["code"]) == (500, "Custom")
    assert env.fake.faults[0].applied == 1


async def test_fault_probability_is_reproducible() -> None:
    """The same seed makes the same requests fail."""
    outcomes = []
    for _ in range(2):
        fake = FakeSMH(seed=11)
        fake.add_library(LIB, secret=SECRET)
        sid = fake.add_space(LIB)
        fake.add_fault(Fault("status", status=500, probability=0.5))
        token = fake.issue_token(LIB)
        async with FakeServer(fake) as server, aiohttp.ClientSession(server.base_url) as http:
            for _ in range(30):
                async with http.get(
                    f"/api/v1/space/{LIB}/{sid}/size", params={"access_token": token}
                ) as r:
                    await r.read()
        outcomes.append([r.status for r in fake.requests])
    assert outcomes[0] == outcomes[1]
    assert 5 < outcomes[0].count(500) < 25


async def test_drop_closes_without_response(env: Env) -> None:
    """drop closes the connection: the client sees a disconnect; records have no status.

    aiohttp itself retries an idempotent request once after a disconnect, so a drop that fires
    only once is invisible to it; here every attempt is dropped.
    """
    env.fake.add_fault(Fault("drop"))
    async with fresh_session() as http:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await http.get(env.size_url, params=env.auth)
    assert [(r.status, r.fault) for r in env.fake.requests] == [(None, "drop")] * 2
    env.fake.clear_faults()
    env.fake.add_fault(Fault("drop", times=1))
    async with fresh_session() as http, http.get(env.size_url, params=env.auth) as response:
        assert response.status == 200
    assert [r.fault for r in env.fake.requests[2:]] == ["drop", None]


async def test_hang_times_out_client_and_is_recorded(env: Env) -> None:
    """hang never answers; after the client gives up the request is recorded with no status."""
    env.fake.add_fault(Fault("hang", times=1))
    async with fresh_session() as http:
        with pytest.raises(asyncio.TimeoutError):
            await http.get(env.size_url, params=env.auth, timeout=aiohttp.ClientTimeout(total=0.3))
    for _ in range(100):
        if env.fake.requests:
            break
        await asyncio.sleep(0.02)
    (record,) = env.fake.requests
    assert (record.status, record.fault) == (None, "hang")
    assert env.fake.in_flight == 0


async def test_hang_with_delay_then_drops(env: Env) -> None:
    """A hang with a short delay drops the connection after that delay."""
    env.fake.add_fault(Fault("hang", delay=0.2))
    async with fresh_session() as http:
        started = time.monotonic()
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await http.get(env.size_url, params=env.auth)
        assert time.monotonic() - started >= 0.39  # two attempts: aiohttp retries once
    assert [r.status for r in env.fake.requests] == [None, None]


async def test_body_shape_faults(env: Env) -> None:
    """html, malformed_json and empty_body_error send the broken bodies a gateway would."""
    env.fake.add_fault(Fault("html", times=1))
    env.fake.add_fault(Fault("malformed_json", status=503, times=1))
    env.fake.add_fault(Fault("empty_body_error", status=502, times=1))
    async with fresh_session() as http:
        async with http.get(env.size_url, params=env.auth) as response:
            assert (response.status, response.content_type) == (502, "text/html")
            assert "<html>" in await response.text()
        async with http.get(env.size_url, params=env.auth) as response:
            assert (response.status, response.content_type) == (503, "application/json")
            with pytest.raises(json.JSONDecodeError):
                json.loads(await response.read())
        async with http.get(env.size_url, params=env.auth) as response:
            assert (response.status, await response.read()) == (502, b"")
    assert [r.status for r in env.fake.requests] == [502, 503, 502]


async def test_truncated_body(env: Env) -> None:
    """truncated promises more bytes than it sends, so reading the body fails."""
    env.fake.add_fault(Fault("truncated", status=500, times=1))
    async with fresh_session() as http, http.get(env.size_url, params=env.auth) as response:
        assert response.status == 500
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()


async def test_truncated_without_status_runs_operation(env: Env) -> None:
    """truncated without a status empties the bin, then breaks the answer (a 500, cut short)."""
    env.fake.add_fault(Fault("truncated", route="empty_bin", times=1))
    async with fresh_session() as http, http.delete(env.bin_url, params=env.auth) as response:
        assert response.status == 500
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()
    assert env.fake.bin_items(LIB, env.space) == []


async def test_slow_body_holds_back_bodyless_204(env: Env) -> None:
    """slow_body on empty_bin delays the whole 204 by the fault's delay."""
    env.fake.add_fault(Fault("slow_body", route="empty_bin", delay=0.25))
    async with fresh_session() as http:
        started = time.monotonic()
        async with http.delete(env.bin_url, params=env.auth) as response:
            assert response.status == 204
        assert time.monotonic() - started >= 0.24


async def test_slow_body_spreads_real_response(env: Env) -> None:
    """slow_body without a status performs the operation and trickles its body over delay."""
    env.fake.add_fault(Fault("slow_body", delay=0.3, times=1))
    async with fresh_session() as http:
        started = time.monotonic()
        async with http.get(env.size_url, params=env.auth) as response:
            assert await response.json() == {"size": "350"}
        assert time.monotonic() - started >= 0.29


async def test_unexpected_body_on_empty_bin(env: Env) -> None:
    """unexpected_body answers 200 with JSON instead of 204 (the bin is still emptied)."""
    env.fake.add_fault(Fault("unexpected_body", route="empty_bin"))
    async with fresh_session() as http, http.delete(env.bin_url, params=env.auth) as response:
        assert (response.status, await response.json()) == (200, {"unexpected": True})
    assert env.fake.bin_items(LIB, env.space) == []


async def raw_get(env: Env, path: str) -> tuple[bytes, bool]:
    """One keep-alive HTTP/1.1 GET on a raw socket: (response head, did the server close?)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", env.server.port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        try:
            closed = await asyncio.wait_for(reader.read(1), 0.3) == b""
        except asyncio.TimeoutError:
            closed = False
        return head, closed
    finally:
        writer.close()
        await writer.wait_closed()


async def test_close_after_closes_keepalive_without_header(env: Env) -> None:
    """close_after answers normally (no Connection: close) and then closes the socket anyway."""
    path = f"/api/v1/space/{LIB}/{env.space}/size?access_token={env.token}"
    head, closed = await raw_get(env, path)
    assert (head.startswith(b"HTTP/1.1 200"), closed) == (True, False)
    env.fake.add_fault(Fault("close_after", times=1))
    head, closed = await raw_get(env, path)
    assert head.startswith(b"HTTP/1.1 200")
    assert b"connection: close" not in head.lower()
    assert closed
    assert [(r.status, r.fault) for r in env.fake.requests] == [(200, None), (200, "close_after")]


async def test_close_after_on_empty_bin_performs_delete(env: Env) -> None:
    """close_after on empty_bin really empties the bin and the client still sees 204."""
    env.fake.add_fault(Fault("close_after", route="empty_bin"))
    async with fresh_session() as http, http.delete(env.bin_url, params=env.auth) as response:
        assert response.status == 204
    assert env.fake.bin_items(LIB, env.space) == []


def test_fault_validation() -> None:
    """Unknown actions and impossible probabilities are rejected when the Fault is built."""
    with pytest.raises(ValueError, match="unknown fault action"):
        Fault("explode")
    with pytest.raises(ValueError, match="probability"):
        Fault("drop", probability=1.5)
