"""Access-token providers.

Every non-token SMH call carries ``access_token``. :class:`StaticToken` sends one given
token. :class:`LibrarySecretToken` mints tokens from the library secret, caches them,
renews them before they lapse, and, when the server answers ``403 InvalidAccessToken``,
re-mints with single flight: one mint in flight however many requests are waiting, and a
request holding an already-replaced token simply picks up the new one.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import anyio
from pydantic import SecretStr

from smh_async._errors import SMHError
from smh_async._logging import library_logger
from smh_async._protocol import TokenGrant

__all__ = ["LibrarySecretToken", "StaticToken", "TokenProvider"]

Mint = Callable[[], Awaitable[TokenGrant]]
Renew = Callable[[str], Awaitable[TokenGrant]]


class TokenProvider(Protocol):
    """Supplies the access token for each request."""

    async def get(self) -> str:
        """The token to send now."""
        ...

    async def invalidate(self, rejected: str) -> bool:
        """The server rejected ``rejected``; return True if a fresh token is now available."""
        ...


class StaticToken:
    """A token supplied by the caller. It cannot be refreshed."""

    def __init__(self, token: SecretStr | str) -> None:
        self._token = token if isinstance(token, SecretStr) else SecretStr(token)

    def __repr__(self) -> str:
        return "StaticToken(**********)"

    async def get(self) -> str:
        """The configured token."""
        return self._token.get_secret_value()

    async def invalidate(self, rejected: str) -> bool:
        """A static token cannot be replaced."""
        return False


class LibrarySecretToken:
    """Mints, caches, renews and (single-flight) re-mints tokens from the library secret.

    ``mint`` and ``renew`` perform the HTTP calls (the client supplies them); this class only
    decides *when*. A token is renewed once less than ``renew_margin`` of its life is left.
    """

    def __init__(
        self,
        mint: Mint,
        renew: Renew | None = None,
        renew_margin: float = 0.1,
        *,
        on_token: Callable[[str], None] | None = None,
    ) -> None:
        self._mint = mint
        self._renew = renew
        self._margin = renew_margin
        # Told each new token value: the CLI's log redactor masks it from then on.
        self.on_token = on_token
        self._token: str | None = None
        self._expires_at = 0.0
        self._lifetime = 0.0
        self._lock = anyio.Lock()
        self.mints = 0

    def __repr__(self) -> str:
        state = "cached" if self._token else "empty"
        return f"LibrarySecretToken({state}, mints={self.mints})"

    def _fresh(self) -> bool:
        return (
            self._token is not None
            and time.monotonic() < self._expires_at - self._margin * self._lifetime
        )

    async def get(self) -> str:
        """A valid token, minting or renewing first if needed (one caller does it)."""
        if not self._fresh():
            async with self._lock:
                if not self._fresh():
                    await self._refresh()
        assert self._token is not None
        # SMH extends a token by its period on every use; mirror that locally.
        self._expires_at = time.monotonic() + self._lifetime
        return self._token

    async def invalidate(self, rejected: str) -> bool:
        """Re-mint once for a rejected token; later callers with the same token reuse it."""
        async with self._lock:
            if self._token is not None and self._token != rejected:
                return True  # someone already replaced it while we waited
            self._token = None
            await self._store(await self._mint(), minted=True)
            return True

    async def _refresh(self) -> None:
        if self._token is not None and self._renew is not None:
            try:
                await self._store(await self._renew(self._token), minted=False)
                return
            except SMHError:
                pass  # renewal is an optimisation; a fresh mint is the fallback
        await self._store(await self._mint(), minted=True)

    async def _store(self, grant: TokenGrant, *, minted: bool) -> None:
        if self.on_token is not None and grant.access_token != self._token:
            self.on_token(grant.access_token)
        self._token = grant.access_token
        self._lifetime = float(max(grant.expires_in, 1))
        self._expires_at = time.monotonic() + self._lifetime
        if minted:
            self.mints += 1
        library_logger().info(
            "smh.token.minted" if minted else "smh.token.renewed", expires_in=grant.expires_in
        )
