"""``FakeServer``: serve a :class:`FakeSMH` on a real loopback socket with aiohttp.web."""

from __future__ import annotations

import ipaddress
from types import TracebackType

from aiohttp import web

from smh_async.testing._app import build_app
from smh_async.testing._fake import FakeSMH

# Hung handlers are cancelled this long after stop() begins instead of aiohttp's 60 s.
_SHUTDOWN_TIMEOUT = 0.1


def check_loopback(host: str, *, allow_remote: bool) -> None:
    """Refuse to expose the emulator (which mints tokens for anyone) beyond loopback."""
    if allow_remote or host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"refusing to serve the SMH emulator on non-loopback host {host!r}")


class FakeServer:
    """A real HTTP server (aiohttp ``AppRunner`` + ``TCPSite``) in front of a FakeSMH.

    ``port=0`` picks a free port on first start; ``stop()`` then ``start()`` reuses that same
    port, so tests can kill the emulator mid-run and bring it back. The access log is off
    because it would print query strings, which carry access tokens.
    """

    def __init__(
        self,
        fake: FakeSMH,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        allow_remote: bool = False,
    ) -> None:
        check_loopback(host, allow_remote=allow_remote)
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be within 0-65535 (0: any free port), not {port}")
        self.fake = fake
        self.host = host
        self._port = port
        self._runner: web.AppRunner | None = None

    @property
    def port(self) -> int:
        """The bound port (the requested one until the first start)."""
        return self._port

    @property
    def base_url(self) -> str:
        """``http://host:port`` for an ``SMHClient`` or a plain ``aiohttp.ClientSession``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._port}"

    @property
    def running(self) -> bool:
        """Whether the server is currently accepting connections."""
        return self._runner is not None

    async def start(self) -> None:
        """Bind and serve; raises ``RuntimeError`` if already running."""
        if self._runner is not None:
            raise RuntimeError("FakeServer is already running")
        runner = web.AppRunner(
            build_app(self.fake),
            access_log=None,
            handler_cancellation=True,
            shutdown_timeout=_SHUTDOWN_TIMEOUT,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self._port, reuse_address=True)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        if self._port == 0:
            self._port = int(runner.addresses[0][1])
        self._runner = runner

    async def stop(self) -> None:
        """Close the listener and every connection (hung requests are cancelled); idempotent."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> FakeServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()
