"""HTTP(S)_PROXY / NO_PROXY are honoured like curl, httpx and Go tools do, through a real
forwarding proxy on loopback; loopback base URLs never go through one; proxy credentials
never reach an error, outcome or log line."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import pytest
import structlog

from smh_async import SMHClient
from smh_async.testing import FakeServer, FakeSMH
from tests.conftest import LIBRARY, make_settings

pytestmark = pytest.mark.anyio

# Never resolved by the client when a proxy is used: the proxy below sends everything to the
# emulator. ".test" is reserved (RFC 2606), so it cannot reach anything real either.
REMOTE_HOST = "smh.test"
PROXY_PASSWORD = "proxy-pw-Hq3Zr8Tn"  # distinctive, so output can be grepped for it
_REQUEST_LINE = re.compile(rb"([A-Z]+) (\S+) HTTP/1\.[01]\r\n")


class ForwardingProxy:
    """A plain-HTTP forward proxy: every connection is piped to ``upstream``; the request
    lines it carried (absolute-form targets, as a client sends them to a proxy) are kept."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.streams: list[bytearray] = []
        self.port = 0

    @property
    def targets(self) -> list[str]:
        """The request targets seen, e.g. ``http://smh.test:1234/api/v1/...``."""
        return [
            m.group(2).decode()
            for stream in self.streams
            for m in _REQUEST_LINE.finditer(bytes(stream))
        ]

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: bytearray | None
    ) -> None:
        with suppress(ConnectionError):
            while chunk := await reader.read(65536):
                if seen is not None:
                    seen += chunk
                writer.write(chunk)
                await writer.drain()
        with suppress(ConnectionError, OSError):
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen = bytearray()
        self.streams.append(seen)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        await asyncio.gather(
            self._pipe(reader, up_writer, seen), self._pipe(up_reader, writer, None)
        )

    @asynccontextmanager
    async def running(self) -> AsyncIterator[ForwardingProxy]:
        """Serve on a free loopback port while the block runs."""
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        async with server:
            yield self
            server.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def clear_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No proxy variables from the machine running the tests."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


async def test_http_proxy_from_the_environment_carries_every_request(
    fake: FakeSMH, server: FakeServer, clear_proxy_env: pytest.MonkeyPatch
) -> None:
    """With HTTP_PROXY set, the token mint and every DELETE go through the proxy."""
    ids = fake.add_spaces(LIBRARY, count=5, items_per_space=1, item_size=10)
    async with ForwardingProxy(server.port).running() as proxy:
        clear_proxy_env.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
        settings = make_settings(
            server,
            base_url=f"http://{REMOTE_HOST}:{server.port}",
            allow_insecure_http=True,
        )
        async with SMHClient(settings) as smh:
            summary = await smh.purge_all(ids)
    assert summary.accepted == 5
    deletes = [t for t in proxy.targets if "/api/v1/recycled/" in t]
    assert sorted(t.split("?")[0].rsplit("/", 1)[1] for t in deletes) == sorted(ids)
    assert all(t.startswith(f"http://{REMOTE_HOST}:{server.port}/") for t in proxy.targets)
    assert any("/api/v1/token" in t for t in proxy.targets)


@pytest.mark.parametrize("how", ["loopback", "no_proxy", "trust_env_off"])
async def test_requests_bypass_the_proxy_when_told_or_on_loopback(
    fake: FakeSMH, server: FakeServer, clear_proxy_env: pytest.MonkeyPatch, how: str
) -> None:
    """Loopback base URLs (as in Go's net/http), NO_PROXY hosts and trust_env=False connect
    directly: the proxy sees nothing."""
    ids = fake.add_spaces(LIBRARY, count=3, items_per_space=1, item_size=10)
    async with ForwardingProxy(server.port).running() as proxy:
        clear_proxy_env.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
        overrides: dict[str, object] = {"max_attempts": 1, "connect_timeout": 2.0}
        if how != "loopback":
            overrides.update(base_url=f"http://{REMOTE_HOST}:{server.port}", allow_insecure_http=True)
        if how == "no_proxy":
            clear_proxy_env.setenv("NO_PROXY", REMOTE_HOST)
        if how == "trust_env_off":
            overrides["trust_env"] = False
        async with SMHClient(make_settings(server, **overrides)) as smh:
            summary = await smh.purge_all(ids)
    assert proxy.streams == []
    if how == "loopback":
        assert summary.accepted == 3
    else:  # a direct connection to a name that does not resolve
        assert summary.accepted == 0


async def test_proxy_credentials_never_reach_errors_outcomes_or_logs(
    fake: FakeSMH, server: FakeServer, clear_proxy_env: pytest.MonkeyPatch
) -> None:
    """A proxy URL with a password that cannot be reached: the spaces fail with a transport
    error whose text, outcome and log events hold no trace of the password."""
    ids = fake.add_spaces(LIBRARY, count=2, items_per_space=1, item_size=10)
    dead = _free_port()
    clear_proxy_env.setenv("HTTP_PROXY", f"http://ops:{PROXY_PASSWORD}@127.0.0.1:{dead}")
    settings = make_settings(
        server,
        base_url=f"http://{REMOTE_HOST}:{server.port}",
        allow_insecure_http=True,
        max_attempts=2,
    )
    outcomes = []
    with structlog.testing.capture_logs() as logs:
        async with SMHClient(settings) as smh:
            summary = await smh.purge_all(ids, on_outcome=outcomes.append)
    assert summary.failed == 2 and len(outcomes) == 2
    assert {o.error_code for o in outcomes} == {"SMHTransportError"}
    text = repr(outcomes) + repr(logs) + repr(summary)
    assert "proxy" in text.lower() or "connect" in text.lower()
    assert PROXY_PASSWORD not in text
