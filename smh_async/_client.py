"""``SMHClient``: one aiohttp session, requests executed with retries and token refresh."""

from __future__ import annotations

import asyncio
import re
import ssl
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aiohttp
import anyio
from yarl import URL

from smh_async import _protocol as proto
from smh_async._auth import LibrarySecretToken, StaticToken, TokenProvider, token_unavailable
from smh_async._errors import (
    KnownSecrets,
    SMHConfigError,
    SMHError,
    SMHTimeoutError,
    SMHTransportError,
)
from smh_async._limits import ensure_open_files
from smh_async._logging import library_logger
from smh_async._models import (
    EmptyBinResult,
    PurgeOutcome,
    PurgeSummary,
    RecycleBinPage,
    Space,
    SpaceUsage,
)
from smh_async._outcomes import ATTEMPTS_SENT
from smh_async._protocol import Request, Response, TokenGrant
from smh_async._proxy import DIRECT, proxy_for
from smh_async._retry import RateLimiter, RetryPolicy
from smh_async._settings import SMHSettings, ca_bundle_context, is_loopback_host

if TYPE_CHECKING:
    from smh_async._stream import PurgeStream

__all__ = ["SMHClient"]

MAX_BODY = 16 * 1024 * 1024
READ_PIECE = 256 * 1024  # bytes asked for at a time from a body of unknown size
USAGE_BATCH = 100
BIN_PAGE = 1000  # recycle-bin items per page when counting a bin (the API's maximum)
# Connections beyond the worker count, so listing/usage calls never queue behind purges.
SPARE_CONNECTIONS = 8
# Re-sends allowed per request, beyond max_attempts, when the server closed the pooled
# connection before answering (nothing was processed; DELETE is idempotent anyway).
STALE_RETRIES = 2

OutcomeCallback = Callable[[PurgeOutcome], Awaitable[None] | None]


class SMHClient:
    """Async client for the SMH business API. Use as ``async with SMHClient(settings):``.

    It owns one ``aiohttp.ClientSession`` (connector limit above the concurrency; a request
    waits for a free connection *before* its per-attempt deadline starts, so time in that
    queue never counts against a timeout) unless ``session`` is given: a borrowed
    session is used as is and never closed. Every request is retried per
    :class:`RetryPolicy`; ``403 InvalidAccessToken`` triggers one re-mint when the token
    came from a library secret.
    """

    def __init__(
        self,
        settings: SMHSettings | None = None,
        *,
        session: aiohttp.ClientSession | None = None,
        token_provider: TokenProvider | None = None,
        **overrides: Any,
    ) -> None:
        if settings is None:
            settings = SMHSettings(**overrides)
        elif overrides:
            settings = settings.model_copy(update=overrides)
        if not settings.library_id:
            raise SMHConfigError(
                "invalid settings: library_id (SMH_LIBRARY_ID) is required", fields=("library_id",)
            )
        self.settings = settings
        self.library_id: str = settings.library_id
        self._borrowed = session
        self._slots: asyncio.Semaphore | None = None  # owned session only
        self._token_query: tuple[str | None, str] = (None, "")  # (token, encoded query)
        self._known: tuple[str | None, KnownSecrets] | None = None  # (token, its KnownSecrets)
        self._attempt_timeout = aiohttp.ClientTimeout(
            total=settings.timeout, sock_connect=settings.connect_timeout
        )
        self._session: aiohttp.ClientSession | None = session
        self._base = settings.base_url.rstrip("/")
        # Decided once, for an owned session only (a borrowed one keeps its own proxy set-up).
        choice = proxy_for(self._base) if settings.proxy_from_env and session is None else DIRECT
        self._proxy, self._proxy_auth = choice.url, choice.authorization
        # Blanked out of every reply as the token is: a proxy's error page may echo them.
        self._proxy_secrets = choice.secrets
        # Credentials for the proxy: on the CONNECT of an https tunnel (never inside it).
        self._proxy_headers = (
            {"Proxy-Authorization": self._proxy_auth}
            if self._proxy_auth and self._base.startswith("https:")
            else None
        )
        self._tokens = token_provider or self._default_tokens()
        # Tokens this client mints name no space; without the admin grant a multi-tenant
        # library then refuses every space alike (AccessTokenNotMatchSpace).
        self._mints_unscoped = (
            token_provider is None
            and isinstance(self._tokens, LibrarySecretToken)
            and "admin" not in settings.token_grant.split(",")
        )
        self.retry_policy = RetryPolicy(
            max_attempts=settings.max_attempts,
            max_total=settings.max_retry_time,
            initial=settings.backoff_initial,
            maximum=settings.backoff_max,
            retry_after_max=settings.retry_after_max,
        )
        self.rate_limiter = (
            RateLimiter(settings.rate, settings.rate_burst) if settings.rate else None
        )

    def __repr__(self) -> str:
        proxy = f", proxy={str(self._proxy)!r}" if self._proxy is not None else ""
        return (
            f"SMHClient(base_url={self._base!r}, library_id={self.library_id!r}, "
            f"tokens={self._tokens!r}, borrowed_session={self._borrowed is not None}{proxy})"
        )

    def _default_tokens(self) -> TokenProvider:
        s = self.settings
        if s.access_token is not None:
            return StaticToken(s.access_token)
        if s.library_secret is not None:
            return LibrarySecretToken(self.create_token, self.renew_token)
        raise SMHConfigError(
            "invalid settings: set access_token (SMH_ACCESS_TOKEN) or library_secret "
            "(SMH_LIBRARY_SECRET)",
            fields=("access_token", "library_secret"),
        )

    @property
    def token_provider(self) -> TokenProvider:
        """Where access tokens come from."""
        return self._tokens

    # ------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> SMHClient:
        _require_asyncio()
        if self._session is None:
            self._session = self._new_session()
            # One slot per pooled connection, taken before the deadline starts (aiohttp
            # #10313). A semaphore instead of aiohttp's connection-queued trace hooks: any
            # TraceConfig makes aiohttp build and fire ~8 signals per request (~15% of a
            # CPU-bound run, benchmarks/RESULTS.md). asyncio's, as aiohttp needs asyncio
            # anyway and its uncontended acquire does not yield.
            self._slots = asyncio.Semaphore(self.connection_limit or 1)
            self._warn_if_insecure()
        return self

    def _warn_if_insecure(self) -> None:
        """Say once, at the start, what protection is off: an unattended run must not send
        credentials unverified (or in clear text) without a trace in its log."""
        off = insecure_settings(self.settings)
        if off:
            library_logger().warning("smh.connection.insecure", **off)

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the session if this client created it (a borrowed one is left open)."""
        if self._session is not None and self._borrowed is None:
            await self._session.close()
            self._session = None
            self._slots = None

    @property
    def closed(self) -> bool:
        """True when no open session is in use: before ``async with``, after it, or once a
        borrowed session was closed."""
        return self._session is None or self._session.closed

    def check_usable(self) -> None:
        """Raise ``RuntimeError`` unless requests can be sent now: the client is open and
        its session belongs to the running event loop (a bulk purge checks this first, so
        a misuse is one clear error, not one failed space per id)."""
        if self.closed:
            raise RuntimeError("SMHClient is not open: use 'async with SMHClient(...)'")
        loop = getattr(self._session, "_loop", None)
        if loop is not None and loop is not asyncio.get_running_loop():
            raise RuntimeError(
                "SMHClient was opened in another event loop: open and use it in the same one"
            )

    @property
    def connection_limit(self) -> int:
        """Max simultaneous connections to SMH of the session in use (0 = unlimited): the
        connector's total limit or its per-host limit, whichever is lower (all our requests
        go to one host)."""
        if self._session is None:
            return self.settings.concurrency + SPARE_CONNECTIONS
        connector = self._session.connector
        if connector is None:
            return 0
        limits = [n for n in (connector.limit, connector.limit_per_host) if n]
        return min(limits) if limits else 0

    def _new_session(self) -> aiohttp.ClientSession:
        s = self.settings
        # Fail before anything is sent if the pool cannot fit under the open-files limit.
        ensure_open_files(s.concurrency + SPARE_CONNECTIONS, concurrency=s.concurrency)
        connector = aiohttp.TCPConnector(
            limit=s.concurrency + SPARE_CONNECTIONS,
            ttl_dns_cache=s.dns_ttl or None,
            use_dns_cache=s.dns_ttl > 0,
            force_close=s.force_close,
            ssl=self._ssl(),
        )
        headers = {"User-Agent": f"smh-async/{_version()}"}
        if self._proxy_auth and self._proxy_headers is None:
            # Plain http through a forward proxy: each request goes to the proxy itself.
            headers["Proxy-Authorization"] = self._proxy_auth
        session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=s.connect_timeout),
            headers=headers,
        )
        # aiohttp silently re-sends an idempotent request once when a kept-alive connection
        # turns out closed (aiohttp #10790) and offers no public switch. Our retry policy
        # handles that case and counts it, so reported attempts equal requests sent.
        if hasattr(session, "_retry_connection"):
            session._retry_connection = False
        return session

    def _ssl(self) -> ssl.SSLContext | bool:
        if not self.settings.verify_tls:
            return False
        if self.settings.ca_bundle is not None:
            # Checked when the settings were built; a file replaced since then is still a
            # config error naming ca_bundle, not an ssl.SSLError traceback.
            return ca_bundle_context(self.settings.ca_bundle)
        return True

    # ------------------------------------------------------------ transport

    async def call(
        self, request: Request, *, path_token: str | None = None
    ) -> tuple[Response, int]:
        """Send ``request`` with retries; return the 2xx reply and the attempts it took.

        Raises the mapped :class:`SMHError` (with ``attempts`` set) when it gives up.

        No credential stays in this frame's locals once an attempt failed, for a traceback
        renderer that shows locals (Sentry does by default): not the token, and not the raw
        reply, which may echo the request URL (token included) in a header or page. Only the
        failure path pays for that: a 2xx returns as before.
        """
        started = time.monotonic()
        attempt = 0
        # One re-mint per rejected token (not per request): a token revoked again by a later
        # storm while this request waited is replaced too; max_attempts still bounds it.
        rejected: _RejectedTokens | None = None  # made at the first rejection
        stale = 0  # immediate re-sends after a silently closed kept-alive connection
        while True:
            attempt += 1
            token = path_token if request.auth == "path" else None
            if request.auth == "token":
                try:
                    token = await self._tokens.get()
                except SMHError as exc:  # reported as this request's, not the mint call's
                    rejected = None  # no token in this frame's locals for a traceback
                    raise token_unavailable(request, exc, attempt - 1) from None
            if self.rate_limiter is not None:
                # After the token: a slot taken first and then held while a mint or renewal
                # ran was spent late, together with every other one reserved meanwhile (a
                # burst of up to `concurrency` requests). Time queued here is pacing, not
                # retrying: it does not count against max_retry_time.
                started += await self.rate_limiter.acquire()
            try:
                ATTEMPTS_SENT.set(attempt)  # for a space cut off in flight (see _bulk)
                response = await self._attempt(request, token)
                if 200 <= response.status < 300:
                    return response, attempt
                error: SMHError = proto.error_from_response(request, response)
                del response  # the unscrubbed reply: the error holds the scrubbed facts
            except SMHError as exc:  # no usable reply (or one too large to read)
                error = exc
            _forget_credentials(error, self._known_secrets(token))
            error.attempts = attempt
            if (
                request.auth == "token"
                and proto.needs_reauth(error)
                and token is not None
                and (rejected is None or token not in rejected)
                # The first rejection is re-minted even on the last attempt: a token that
                # lapsed while this request retried a 503 says nothing about the credential,
                # and reported as it the rejection would stop the whole run (ABORTED: auth).
                and (rejected is None or attempt < self.retry_policy.max_attempts)
                and await self._tokens.invalidate(token)
            ):
                if rejected is None:
                    rejected = _RejectedTokens()
                rejected.add(token)
                token = None
                self._log_retry(request, error, attempt, 0.0, reason="token_rejected")
                continue
            token = None  # a cancellation while waiting below would show it
            if getattr(error, "stale_connection", False) and stale < STALE_RETRIES:
                # The server closed a pooled keep-alive connection as we reused it
                # (aiohttp #3507): nothing reached it, so re-send at once, off the budget.
                stale += 1
                self._log_retry(request, error, attempt, 0.0, reason="connection_closed")
                continue
            wait = self.retry_policy.next_wait(error, attempt - stale, started)
            if wait is None:
                path_token = rejected = None
                raise error
            self._log_retry(request, error, attempt, wait, reason="retryable")
            await anyio.sleep(wait)

    def _log_retry(
        self, request: Request, error: SMHError, attempt: int, wait: float, *, reason: str
    ) -> None:
        # SMH's request id goes out as ``smh_request_id``: ``request_id`` is what a host
        # binds for its own correlation id, and an event's key would override it.
        library_logger().info(
            "smh.request.retry",
            route=request.template,
            space_id=request.space_id,
            attempt=attempt,
            http_status=error.status,
            error_code=error.code or type(error).__name__,
            smh_request_id=error.request_id,
            wait_s=round(wait, 3),
            reason=reason,
        )

    async def _attempt(self, request: Request, token: str | None) -> Response:
        """One HTTP exchange under the per-attempt deadline (pool-queue time excluded).

        The deadline is aiohttp's own per-request ``ClientTimeout`` (cheaper than a cancel
        scope per attempt); it cannot include time queued for a pooled connection because a
        connection slot is taken first (aiohttp #10313).
        """
        session = self._session
        if session is None:
            raise RuntimeError("SMHClient is not open: use 'async with SMHClient(...)'")
        url = self._url(request, token)
        slots = self._slots
        if slots is not None:
            await slots.acquire()
        failure: SMHError
        # Cleared before raising: aiohttp's response (its repr is the URL, token included)
        # and the raw reply (which may echo it) must not stay in this frame's locals.
        resp: aiohttp.ClientResponse | None = None
        reply: Response | None = None
        body: bytes | None = None
        try:
            async with session.request(
                request.method,
                url,
                allow_redirects=False,
                timeout=self._attempt_timeout,
                proxy=self._proxy,
                proxy_headers=self._proxy_headers,
            ) as resp:
                if _length_known_and_small(resp):  # the hot path: a 204, no coroutine more
                    body = await resp.read()
                else:
                    body = await _read_capped(resp)
                reply = Response(resp.status, resp.headers, body or b"", self._known_secrets(token))
                if body is not None:
                    return reply
                # Leaving the block unread closes the connection: the rest is never read.
                failure = proto.body_too_large(request, reply, MAX_BODY)
        except asyncio.TimeoutError as exc:  # not an OSError before Python 3.11
            failure = SMHTimeoutError(
                f"{type(exc).__name__}: no complete reply within {self.settings.timeout:g} s"
                f" (connect limit {self.settings.connect_timeout:g} s)",
                route=request.template,
                space_id=request.space_id,
            )
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            failure = self._transport_error(request, exc)
        finally:
            if slots is not None:
                slots.release()
        # Raised here, outside the handlers: the aiohttp error (whose text and attributes
        # hold the URL, token included) is not kept as __context__, and no local of this
        # frame holds the token for a traceback renderer that shows locals.
        del url, token
        resp = reply = body = None
        raise failure

    def _known_secrets(self, token: str | None) -> KnownSecrets:
        """The credentials a request with ``token`` carries (the proxy's too), to blank out
        of its reply (built once per token: the same one serves every request until it
        changes)."""
        known = self._known
        if known is None or known[0] != token:
            secret = self.settings.library_secret
            known = self._known = (
                token,
                KnownSecrets(
                    token, secret.get_secret_value() if secret else None, *self._proxy_secrets
                ),
            )
        return known[1]

    @staticmethod
    def _transport_error(request: Request, exc: BaseException) -> SMHError:
        """The error for an exchange that got no usable reply. Retryable, except what no
        retry can cure: a certificate that fails verification (wrong or missing CA, wrong
        host, expired), a proxy's 407 and its other refusals of the tunnel; a reset in the
        middle of a handshake stays retryable (an ``ssl.SSLError`` that is not a verification
        failure)."""
        if isinstance(exc, SMHTransportError):
            return exc
        if isinstance(exc, aiohttp.ClientHttpProxyError):
            if exc.status == 407:
                return proto.proxy_auth_required(request)
            refused = proto.proxy_refused(request, exc.status)
            if refused is not None:
                return refused
        cls = SMHTimeoutError if isinstance(exc, TimeoutError) else SMHTransportError
        detail = _without_urls(exc)
        text = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
        if isinstance(exc, ssl.SSLCertVerificationError):  # aiohttp's wrapper is one too
            return _tls_verify_failed(request, text)
        error = cls(text, route=request.template, space_id=request.space_id)
        error.stale_connection = isinstance(exc, aiohttp.ServerDisconnectedError)
        return error

    def _url(self, request: Request, token: str | None) -> URL:
        if request.auth == "token" and not request.params and token is not None:
            # The common case (every DELETE): reuse the encoded credential query.
            cached = self._token_query
            if cached[0] != token:
                cached = self._token_query = (token, _encode(self._auth_params(token)))
            return URL(f"{self._base}{request.path}?{cached[1]}", encoded=True)
        params = list(request.params)
        path = request.path
        if request.auth == "token":
            params.extend(self._auth_params(token or ""))
        elif request.auth == "secret":
            secret = self.settings.library_secret
            params.append(("library_secret", secret.get_secret_value() if secret else ""))
        elif request.auth == "path":
            path = path.replace(proto.TOKEN_PLACEHOLDER, quote(token or "", safe=""))
        # Quoted by hand and passed as encoded: yarl's with_query() re-parses and re-quotes
        # the whole URL on every request (~5% of a CPU-bound run).
        query = _encode(params)
        return URL(f"{self._base}{path}?{query}" if query else self._base + path, encoded=True)

    def _auth_params(self, token: str) -> list[tuple[str, str]]:
        params = [("access_token", token)]
        if self.settings.user_id:
            params.append(("user_id", self.settings.user_id))
        return params

    # ------------------------------------------------------------ API

    async def create_token(self) -> TokenGrant:
        """Mint an access token from the library secret (``POST /api/v1/token``)."""
        s = self.settings
        request = proto.create_token(
            self.library_id, grant=s.token_grant, period=s.token_period, user_id=s.user_id
        )
        response, _ = await self.call(request)
        return proto.decode_token(request, response)

    async def renew_token(self, token: str) -> TokenGrant:
        """Extend ``token`` by its period (``POST /api/v1/token/{library}/{token}``)."""
        request = proto.renew_token(self.library_id)
        response, _ = await self.call(request, path_token=token)
        return proto.decode_token(request, response)

    async def empty_recycle_bin(self, space_id: str) -> EmptyBinResult:
        """Empty one space's recycle bin. Returns once SMH accepted it (HTTP 204).

        Accepted means the items are hidden from the bin now; SMH deletes them and releases
        the space asynchronously. Raises an :class:`SMHError` subclass otherwise.
        """
        request = proto.empty_recycle_bin(self.library_id, space_id)
        response, attempts = await self.call(request)
        if response.status != 204:  # another 2xx: a clear yes only without a body
            refusal = proto.empty_bin_refusal(request, response)
            if refusal is not None:
                # Raised here, without the raw reply in this frame (it may echo the URL,
                # token included; see call()).
                del response
                refusal.attempts = attempts  # the report must count the request that was sent
                raise refusal
        return EmptyBinResult(
            request.space_id or space_id, response.status, response.request_id, attempts
        )

    async def iter_spaces(self, *, page_size: int = 1000) -> AsyncIterator[Space]:
        """Every tenant space of the library, following list markers page by page.

        A listing going round in circles (a marker handed out before, a page of spaces
        listed before) ends there, with a warning: every space it held was listed.
        """
        marker: str | None = None
        guard = proto.PagingGuard()
        pages = 0
        while True:
            request = proto.list_spaces(self.library_id, marker=marker, limit=page_size)
            response, _ = await self.call(request)
            spaces, marker = proto.decode_space_page(request, response, marker)
            pages += 1
            if guard.page_seen(spaces):
                if marker is not None:  # (None: a last page that names its own marker)
                    _paging_inconsistent("spaces", "page_repeated", pages=pages)
                return
            for space in spaces:
                yield space
            if marker is None:
                return
            if guard.marker_seen(marker):
                _paging_inconsistent("spaces", "marker_repeated", pages=pages)
                return

    async def list_recycle_bin(
        self, space_id: str, *, page: int = 1, page_size: int = 100
    ) -> RecycleBinPage:
        """One page of a space's recycle bin (page mode, ``total`` set)."""
        request = proto.list_recycle_bin(self.library_id, space_id, page=page, page_size=page_size)
        response, _ = await self.call(request)
        return proto.decode_bin_page(request, response)

    async def recycle_bin_totals(self, space_id: str) -> tuple[int, int]:
        """``(items, bytes)`` currently in a space's recycle bin (reads every page).

        Ends once ``totalNum`` items were counted, or with a warning on a page that cannot
        be followed by more: a short or empty one, or a repeat of the one before (a
        ``totalNum`` the pages never reach cost tens of thousands of requests per space).
        """
        count, size, page = 0, 0, 1
        previous: tuple[int, ...] = ()
        while True:
            result = await self.list_recycle_bin(space_id, page=page, page_size=BIN_PAGE)
            ids = tuple(item.item_id for item in result.items)
            if ids and ids == previous:
                _paging_inconsistent("recycle_bin", "page_repeated", space_id, pages=page)
                return count, size
            count += len(ids)
            size += sum(item.size for item in result.items)
            total = result.total if result.total is not None else count
            if count >= total:
                return count, size
            if len(ids) < BIN_PAGE:
                reason = "short_page" if ids else "empty_page"
                _paging_inconsistent("recycle_bin", reason, space_id, pages=page, total=total)
                return count, size
            previous = ids
            page += 1

    async def space_size(self, space_id: str) -> int:
        """Bytes counted against one space (``GET …/{space_id}/size``)."""
        request = proto.space_size(self.library_id, space_id)
        response, _ = await self.call(request)
        return proto.decode_size(request, response)

    async def usage(self, space_ids: Sequence[str]) -> list[SpaceUsage]:
        """Usage of many spaces, ``USAGE_BATCH`` ids per request."""
        ids = list(space_ids)
        out: list[SpaceUsage] = []
        for start in range(0, len(ids), USAGE_BATCH):
            request = proto.usage(self.library_id, ids[start : start + USAGE_BATCH])
            response, _ = await self.call(request)
            out.extend(proto.decode_usage(request, response))
        return out

    # ------------------------------------------------------------ bulk

    async def purge_all(
        self,
        space_ids: Iterable[str] | AsyncIterator[str],
        *,
        concurrency: int | None = None,
        on_outcome: OutcomeCallback | None = None,
        **options: Any,
    ) -> PurgeSummary:
        """Empty the bins of all ``space_ids`` with at most ``concurrency`` in flight.

        One outcome per distinct space is passed to ``on_outcome`` as it finishes; one
        space's failure never stops the others. See :class:`smh_async.PurgeRun` for options.
        """
        from smh_async._bulk import PurgeRun

        run = PurgeRun(self, concurrency=concurrency, on_outcome=on_outcome, **options)
        return await run.run(space_ids)

    def purge(
        self,
        space_ids: Iterable[str] | AsyncIterator[str],
        *,
        concurrency: int | None = None,
        **options: Any,
    ) -> AbstractAsyncContextManager[PurgeStream]:
        """Streaming form: ``async with smh.purge(ids) as outcomes: async for o in outcomes``.

        The context manager owns the worker task group (anyio forbids yielding from inside
        one); ``outcomes.summary`` is set once the stream is exhausted.
        """
        from smh_async._stream import stream_purge

        return stream_purge(self, space_ids, concurrency=concurrency, **options)


def insecure_settings(settings: SMHSettings) -> dict[str, object]:
    """What the settings turn off, as log fields (empty when nothing is): certificate
    verification (and so a ``ca_bundle`` that is ignored), and https to a remote host."""
    off: dict[str, object] = {}
    url = URL(settings.base_url)
    if not settings.verify_tls and url.scheme == "https":  # (plain http has no TLS to verify)
        off["tls_verification"] = "off: any certificate is accepted (verify_tls=false)"
        if settings.ca_bundle is not None:
            off["ca_bundle"] = "ignored: certificate verification is off"
    if url.scheme == "http" and not is_loopback_host(url.host):
        off["plain_http"] = (
            "on: credentials and data cross the network unencrypted (allow_insecure_http)"
        )
    return off


def _require_asyncio() -> None:
    """Fail clearly unless an asyncio event loop runs this task: aiohttp works on asyncio
    only, and under another loop (trio, e.g. ``anyio.run(main, backend="trio")``) it fails
    deep inside with a bare ``RuntimeError: no running event loop``."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        return
    # sniffio names the running library; it is there whenever trio is (trio depends on it).
    sniffio = sys.modules.get("sniffio")
    try:
        running = sniffio.current_async_library() if sniffio is not None else None
    except Exception:  # sniffio.AsyncLibraryNotFoundError: no async library at all
        running = None
    where = f"this task runs under {running}" if running else "no asyncio event loop is running"
    raise RuntimeError(
        f"SMHClient needs the asyncio backend (aiohttp runs on asyncio only), but {where}:"
        " use asyncio.run(main()) or anyio.run(main) (backend='asyncio', the default)"
    )


class _RejectedTokens:
    """Tokens a re-mint was already spent on. Not a ``set``: shown as a count in reprs, and
    not iterable, so a traceback renderer that shows locals (Sentry serialises containers
    item by item) never prints the tokens."""

    __slots__ = ("_tokens",)

    def __init__(self) -> None:
        self._tokens: set[str] = set()

    def __contains__(self, token: object) -> bool:
        return token in self._tokens

    def add(self, token: str) -> None:
        self._tokens.add(token)

    def __repr__(self) -> str:
        return f"<{len(self._tokens)} rejected token(s)>"


def _paging_inconsistent(
    listing: str, reason: str, space_id: str | None = None, **counts: int
) -> None:
    """Warn that a listing was ended early because the server's paging did not add up
    (what it did list was all used)."""
    library_logger().warning(
        "smh.paging.inconsistent", listing=listing, reason=reason, space_id=space_id, **counts
    )


def _length_known_and_small(resp: aiohttp.ClientResponse) -> bool:
    """True if the body can be read whole: none (a 204), or a declared length within
    :data:`MAX_BODY` that nothing inflates."""
    if resp.status == 204:
        return True
    length = resp.content_length
    return length is not None and length <= MAX_BODY and "Content-Encoding" not in resp.headers


async def _read_capped(resp: aiohttp.ClientResponse) -> bytes | None:
    """The reply's whole body, or None once it passes :data:`MAX_BODY` bytes: a declared
    length is checked before reading, a chunked or compressed body (whose size only shows
    as it is inflated) is read in pieces and given up on past the limit."""
    length = resp.content_length
    if length is not None and length > MAX_BODY:
        return None
    content, chunks, size = resp.content, [], 0
    # Small reads: aiohttp inflates (and buffers) as much as the read asks for at once.
    while chunk := await content.read(min(READ_PIECE, MAX_BODY + 1 - size)):
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _encode(params: Iterable[tuple[str, str]]) -> str:
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params)


def _tls_verify_failed(request: Request, text: str) -> SMHTransportError:
    error = SMHTransportError(
        f"the server's certificate failed verification, not retried (a private CA: set "
        f"SMH_CA_BUNDLE / --ca-bundle): {text}",
        code=proto.TLS_VERIFY_FAILED,
        route=request.template,
        space_id=request.space_id,
    )
    error.retryable = False
    return error


def _forget_credentials(error: SMHError, known: KnownSecrets) -> None:
    """Blank out credential values in an error's text once more: errors built from a reply
    had them removed before their text was cut (``Response.known_secrets``); this also
    covers those built from elsewhere (a transport error's text)."""
    for name in ("message", "code", "request_id"):
        text = getattr(error, name)
        if text:
            setattr(error, name, known.redact(text))
    error.args = (error.message,)


# aiohttp's exception texts name the URL (``url='http://…?access_token=…'``); ours never do.
_URL_FIELD = re.compile(r",?\s*(?:real_)?url=(?:URL\()?'[^']*'\)?")
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]*")


def _without_urls(exc: BaseException) -> str:
    """aiohttp's text for ``exc`` with no URL left in it: logs and errors carry the route
    template instead. A ClientResponseError (also aiohttp's verdict on a malformed reply,
    such as a 204 with a body) is told by its status and message, without its URL."""
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"{exc.status}, message: {exc.message}"
    return _URL.sub("<url>", _URL_FIELD.sub("", str(exc)))


def _version() -> str:
    from smh_async._version import __version__

    return __version__
