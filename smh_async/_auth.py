"""Access-token providers.

Every non-token SMH call carries ``access_token``. :class:`StaticToken` sends one given
token. :class:`LibrarySecretToken` mints tokens from the library secret, caches them,
renews them before they lapse, and, when the server answers ``403 InvalidAccessToken``,
re-mints with single flight: one mint in flight however many requests are waiting, and a
request holding an already-replaced token simply picks up the new one. A mint that failed
is not tried again for a cool-down: a token endpoint that is down gets ``max_attempts``
requests per cool-down, not that many per waiting request.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import anyio
from pydantic import SecretStr

from smh_async._errors import SMHAuthError, SMHError
from smh_async._logging import library_logger
from smh_async._protocol import PROXY_REFUSED, TLS_VERIFY_FAILED, Request, TokenGrant

__all__ = [
    "TOKEN_UNAVAILABLE",
    "LibrarySecretToken",
    "StaticToken",
    "TokenProvider",
    "token_unavailable",
]

# error_code of a request that was not sent (or not sent again) for want of a token.
TOKEN_UNAVAILABLE = "TokenUnavailable"  # noqa: S105 (an error code, not a secret)
# Seconds a failed mint is not retried: callers meanwhile get its failure at once.
MINT_COOLDOWN = 10.0

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
        mint_cooldown: float = MINT_COOLDOWN,
    ) -> None:
        self._mint = mint
        self._renew = renew
        self._margin = renew_margin
        self._cooldown = mint_cooldown
        self._failure: SMHError | None = None  # the last mint's, until one succeeds
        self._failed_at = 0.0
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

    def _unexpired(self) -> bool:
        return self._token is not None and time.monotonic() < self._expires_at

    async def get(self) -> str:
        """A valid token, minting or renewing first if needed (one caller does it).

        Renewal is due with ``renew_margin`` of the token's life left; if it fails (the token
        endpoint down) the token is used while that life lasts (each use extends it, as a
        renewal would), and renewal is tried again after the cool-down.
        """
        if not self._fresh():
            async with self._lock:
                if not self._fresh():
                    try:
                        self._raise_if_cooling_down()
                        await self._refresh()
                    except SMHError:
                        if not self._unexpired():
                            raise
        assert self._token is not None
        # SMH extends a token by its period on every use; mirror that locally.
        self._expires_at = time.monotonic() + self._lifetime
        return self._token

    async def invalidate(self, rejected: str) -> bool:
        """Re-mint once for a rejected token; later callers with the same token reuse it.

        False if no new token could be minted (or a mint failed within the cool-down): the
        request then ends with the server's rejection, and :meth:`get` raises the failure.
        """
        async with self._lock:
            if self._token is not None and self._token != rejected:
                return True  # someone already replaced it while we waited
            self._token = None
            try:
                self._raise_if_cooling_down()
                await self._store(await self._minted(), minted=True)
            except SMHError:
                return False
            return True

    async def _refresh(self) -> None:
        if self._token is not None and self._renew is not None:
            try:
                await self._store(await self._renew(self._token), minted=False)
                return
            except SMHError:
                pass  # renewal is an optimisation; a fresh mint is the fallback
        await self._store(await self._minted(), minted=True)

    async def _minted(self) -> TokenGrant:
        """A new token; a failure (after the mint request's own retries) is remembered."""
        try:
            grant = await self._mint()
        except SMHError as exc:
            self._failure, self._failed_at = exc, time.monotonic()
            library_logger().warning(
                "smh.token.unavailable",
                http_status=exc.status,
                error_code=exc.code or type(exc).__name__,
                retry_in_s=self._cooldown,
            )
            raise
        self._failure = None
        return grant

    def _raise_if_cooling_down(self) -> None:
        """Within the cool-down after a failed mint, fail at once, as that mint did."""
        failure = self._failure
        if failure is not None and time.monotonic() - self._failed_at < self._cooldown:
            raise copy.copy(failure)  # a copy: each raise has its own traceback

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


_NOT_RETRIED = frozenset({PROXY_REFUSED, TLS_VERIFY_FAILED})


def token_unavailable(request: Request, cause: SMHError, sent: int) -> SMHAuthError:
    """The error for ``request`` when no token could be had for it (``cause``: why), after
    ``sent`` requests: its own, not the mint call's status, attempts and route. A mint
    refused for a credential reason keeps that code (``WrongLibraryIdOrSecret``, which stops
    a bulk run), and so does one that no retry can cure on the way to the token endpoint (a
    certificate that fails verification, a proxy refusing the tunnel); any other failure is
    :data:`TOKEN_UNAVAILABLE`."""
    auth = (isinstance(cause, SMHAuthError) or cause.code in _NOT_RETRIED) and cause.code
    return SMHAuthError(
        # The cause's own text, not str(cause): its route in parentheses would sit beside
        # this error's own (route=...), twice in one line.
        f"no access token could be obtained: {_without_extras(cause)}",
        code=cause.code if auth else TOKEN_UNAVAILABLE,
        space_id=request.space_id,
        route=request.template,
        attempts=sent,
    )


def _without_extras(error: SMHError) -> str:
    """``status code: message`` of ``error``, without the ``(space_id=…, route=…)`` tail."""
    head = " ".join(str(p) for p in (error.status, error.code) if p is not None)
    return f"{head}: {error.message}" if head else error.message
