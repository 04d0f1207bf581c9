"""HTTP(S)_PROXY / NO_PROXY are honoured like curl, httpx and Go tools do, through a real
forwarding proxy on loopback; loopback base URLs never go through one; proxy credentials
never reach an error, outcome or log line."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import anyio
import pytest
import structlog

from smh_async import PurgeOutcome, SMHClient
from smh_async.testing import FakeServer, FakeSMH
from tests.conftest import LIBRARY, SECRET, make_settings
from tests.nginx_gateway import (
    GatewayConfig,
    NginxGateway,
    make_tls_files,
    nginx_binary,
    openssl_binary,
)

pytestmark = pytest.mark.anyio

# Never resolved by the client when a proxy is used: the proxy below sends everything to the
# emulator. ".test" is reserved (RFC 2606), so it cannot reach anything real either.
REMOTE_HOST = "smh.test"
PROXY_PASSWORD = "proxy-pw-Hq3Zr8Tn"  # distinctive, so output can be grepped for it
_REQUEST_LINE = re.compile(rb"([A-Z]+) (\S+) HTTP/1\.[01]\r\n")


class ForwardingProxy:
    """A forward proxy: every connection is piped to ``upstream_port``, whatever host it
    names. Plain HTTP: the bytes are kept (absolute-form request targets, as a client sends
    them to a proxy). CONNECT: the head is kept and the tunnel opened."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.streams: list[bytearray] = []  # plain-HTTP connections: every byte sent
        self.connects: list[bytes] = []  # CONNECT heads (the tunnelled bytes are TLS)
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
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        first = await reader.readline()
        if first.startswith(b"CONNECT "):  # a tunnel (https): keep its head, pipe the TLS
            head = first + await reader.readuntil(b"\r\n\r\n")
            self.connects.append(head)
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            self.streams.append(seen)
            seen += first
            up_writer.write(first)
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


@pytest.mark.parametrize("credentials", ["", f"ops:{PROXY_PASSWORD}@"])
async def test_http_proxy_from_the_environment_carries_every_request(
    fake: FakeSMH, server: FakeServer, clear_proxy_env: pytest.MonkeyPatch, credentials: str
) -> None:
    """With HTTP_PROXY set, the token mint and every DELETE go through the proxy, each with
    Proxy-Authorization when the proxy URL has credentials (and without otherwise)."""
    ids = fake.add_spaces(LIBRARY, count=5, items_per_space=1, item_size=10)
    async with ForwardingProxy(server.port).running() as proxy:
        clear_proxy_env.setenv("HTTP_PROXY", f"http://{credentials}127.0.0.1:{proxy.port}")
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
    sent = b"".join(proxy.streams)
    basic = base64.b64encode(credentials.rstrip("@").encode()).decode()
    expected = len(proxy.targets) if credentials else 0
    assert sent.count(f"Proxy-Authorization: Basic {basic}\r\n".encode()) == expected
    assert sent.count(b"Proxy-Authorization") == expected


@pytest.mark.parametrize("how", ["loopback", "no_proxy", "proxy_from_env_off"])
async def test_requests_bypass_the_proxy_when_told_or_on_loopback(
    fake: FakeSMH, server: FakeServer, clear_proxy_env: pytest.MonkeyPatch, how: str
) -> None:
    """Loopback base URLs (as in Go's net/http), NO_PROXY hosts and proxy_from_env=False connect
    directly: the proxy sees nothing."""
    ids = fake.add_spaces(LIBRARY, count=3, items_per_space=1, item_size=10)
    async with ForwardingProxy(server.port).running() as proxy:
        clear_proxy_env.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
        overrides: dict[str, object] = {"max_attempts": 1, "connect_timeout": 2.0}
        if how != "loopback":
            overrides["base_url"] = f"http://{REMOTE_HOST}:{server.port}"
            overrides["allow_insecure_http"] = True
        if how == "no_proxy":
            clear_proxy_env.setenv("NO_PROXY", REMOTE_HOST)
        if how == "proxy_from_env_off":
            overrides["proxy_from_env"] = False
        async with SMHClient(make_settings(server, **overrides)) as smh:
            summary = await smh.purge_all(ids)
    assert proxy.streams == [] and proxy.connects == []
    if how == "loopback":
        assert summary.accepted == 3
    else:  # a direct connection to a name that does not resolve
        assert summary.accepted == 0


async def test_proxy_credentials_never_reach_errors_outcomes_or_logs(
    fake: FakeSMH, server: FakeServer, clear_proxy_env: pytest.MonkeyPatch
) -> None:
    """A proxy URL with a password that cannot be reached: the spaces fail (no token could
    be minted through it: TokenUnavailable, quoting the transport error) and their text,
    outcomes and log events hold no trace of the password."""
    ids = fake.add_spaces(LIBRARY, count=2, items_per_space=1, item_size=10)
    dead = _free_port()
    clear_proxy_env.setenv("HTTP_PROXY", f"http://ops:{PROXY_PASSWORD}@127.0.0.1:{dead}")
    settings = make_settings(
        server,
        base_url=f"http://{REMOTE_HOST}:{server.port}",
        allow_insecure_http=True,
        max_attempts=2,
    )
    outcomes: list[PurgeOutcome] = []
    with structlog.testing.capture_logs() as logs:
        async with SMHClient(settings) as smh:
            summary = await smh.purge_all(ids, on_outcome=outcomes.append)
    assert summary.failed == 2 and len(outcomes) == 2
    assert {(o.error_code, o.attempts) for o in outcomes} == {("TokenUnavailable", 0)}
    assert all("ClientProxyConnectionError" in str(o.error_message) for o in outcomes)
    text = repr(outcomes) + repr(logs) + repr(summary)
    assert "proxy" in text.lower() or "connect" in text.lower()
    assert PROXY_PASSWORD not in text


@pytest.mark.nginx
@pytest.mark.skipif(
    nginx_binary() is None or openssl_binary() is None,
    reason="nginx or openssl not installed (CI installs nginx-light)",
)
async def test_https_goes_through_a_connect_tunnel_with_proxy_credentials(
    fake: FakeSMH, server: FakeServer, clear_proxy_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """https base URL + HTTPS_PROXY: one CONNECT per connection, carrying Proxy-Authorization;
    TLS to the (nginx) gateway is verified end to end through it; the purge completes."""
    ids = fake.add_spaces(LIBRARY, count=20, items_per_space=1, item_size=10)
    tls = make_tls_files(tmp_path / "tls")
    with NginxGateway(tmp_path, GatewayConfig(server.port, tls=tls)) as gateway:
        async with ForwardingProxy(gateway.port).running() as proxy:
            url = f"http://ops:{PROXY_PASSWORD}@127.0.0.1:{proxy.port}"
            clear_proxy_env.setenv("HTTPS_PROXY", url)
            settings = make_settings(
                server, base_url=f"https://{REMOTE_HOST}:{gateway.port}", ca_bundle=tls.ca
            )
            async with SMHClient(settings, concurrency=4) as smh:
                summary = await smh.purge_all(ids)
                session_headers = dict(smh._session.headers) if smh._session else {}
        logged = [p for m, p, s in gateway.access_lines() if m == "DELETE" and s == 204]
    assert summary.accepted == 20 and len(logged) == 20
    basic = base64.b64encode(f"ops:{PROXY_PASSWORD}".encode()).decode()
    assert 1 <= len(proxy.connects) <= 4 + 8  # pooled: a tunnel per connection, not per request
    for head in proxy.connects:
        assert head.startswith(f"CONNECT {REMOTE_HOST}:{gateway.port} HTTP/1.1\r\n".encode())
        assert f"Proxy-Authorization: Basic {basic}\r\n".encode() in head
    assert "Proxy-Authorization" not in session_headers  # never sent inside the tunnel


async def test_an_unsupported_proxy_url_stops_the_cli_with_exit_2(
    fake: FakeSMH, server: FakeServer, clear_proxy_env: pytest.MonkeyPatch
) -> None:
    """HTTPS_PROXY=socks5://…: exit 2 naming the variable, not its password; nothing sent."""
    sid = fake.add_space(LIBRARY)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMH_")}
    env.update(
        HTTPS_PROXY=f"socks5://ops:{PROXY_PASSWORD}@127.0.0.1:1080",
        SMH_BASE_URL=f"https://{REMOTE_HOST}",
        SMH_LIBRARY_ID=LIBRARY,
        SMH_LIBRARY_SECRET=SECRET,
    )
    proc = await anyio.run_process(
        [sys.executable, "-m", "smh_async", "purge", sid], env=env, check=False
    )
    assert proc.returncode == 2
    assert b"HTTPS_PROXY: only an http://host:port proxy is supported" in proc.stderr
    assert PROXY_PASSWORD.encode() not in proc.stderr + proc.stdout
    assert b"Traceback" not in proc.stderr
    assert fake.requests == []
