"""The whole exception tree of smh-async.

::

    SMHError                                  base: status, code, message, request_id, space_id
    ├── SMHConfigError(ValueError)            invalid settings; names the field, never its value
    ├── InvalidSpaceIdError(ValueError)       a space/library id that could change the URL path
    ├── SMHTransportError(OSError)            no usable HTTP response: refused, reset, dropped
    │   └── SMHTimeoutError(TimeoutError)     an attempt exceeded its timeout
    ├── SMHDecodeError                        a 2xx reply whose body is not what the API documents
    └── SMHResponseError                      the server answered with an error status
        ├── SMHAuthError                      401/403, and 404 WrongLibraryIdOrSecret
        ├── SMHNotFoundError                  other 404 (SpaceNotFound, LibraryNotFound, ...)
        ├── SMHRateLimitedError               429 (``retry_after`` holds the server's wait)
        └── SMHServerError                    5xx, including a gateway's HTML error page

Every error carries what an operator needs to act (HTTP status, SMH ``code``, ``requestId``,
the space id and the route *template*) and never a secret: URLs are never stored, only
templates, and any text taken from the outside world goes through :func:`scrub` first.
Errors subclass the matching built-in so callers can catch either (anyio's habit).
"""

from __future__ import annotations

import functools
import re

__all__ = [
    "InvalidSpaceIdError",
    "SMHAuthError",
    "SMHConfigError",
    "SMHDecodeError",
    "SMHError",
    "SMHNotFoundError",
    "SMHRateLimitedError",
    "SMHResponseError",
    "SMHServerError",
    "SMHTimeoutError",
    "SMHTransportError",
    "scrub",
    "without_surrogates",
]

REDACTED = "[REDACTED]"

_MAX_TEXT = 300
# Query parameters and path forms that carry credentials in the SMH API.
_SECRET_QUERY = re.compile(r"(?i)((?:access_token|library_secret|token|secret)=)[^&\s\"'<>]*")
_TOKEN_PATH = re.compile(r"(/api/v1/token/[^/\s?]+/)[^/\s?\"'<>]+")
# C0 and C1 control characters, line breaks included (one error is one line of a log);
# the second form keeps tabs and line breaks, for multi-line log values (tracebacks).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_CONTROL_BUT_LINES = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# Lone surrogates: undecodable bytes that aiohttp (surrogateescape) or JSON ("\\udc80") let
# through. No UTF-8 writer accepts them: one in a report row stopped the whole run.
_SURROGATE = re.compile("[\ud800-\udfff]")


# Characters percent-encoding leaves as they are (RFC 3986 "unreserved").
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_SHORTEST_SECRET = 4  # shorter values would blank out ordinary words


class KnownSecrets:
    """The credential values a request carried (token, library secret), to blank out of
    whatever the server sends back: verbatim, or percent-encoded as they were on the wire
    (``Tok%2Ben%2F…``, either hex case, a space also as ``+``). Its repr shows none of them.
    """

    __slots__ = ("_pattern",)

    def __init__(self, *values: str | None) -> None:
        kept = {v for v in values if v and len(v) >= _SHORTEST_SECRET}
        # Longest first, so a value that contains another is blanked out whole.
        self._pattern = _echoes(tuple(sorted(kept, key=len, reverse=True))) if kept else None

    def __repr__(self) -> str:
        return "KnownSecrets(**********)"

    def redact(self, text: str) -> str:
        """``text`` with every copy of a known value replaced by ``[REDACTED]``."""
        # One compiled pass (it runs on the request id of every reply): a pre-check for
        # parts of the values cost more than the miss it was meant to spare.
        pattern = self._pattern
        return text if pattern is None else pattern.sub(REDACTED, text)


@functools.lru_cache(maxsize=16)  # one per token in use: built once, not per request
def _echoes(values: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(_echo_of(v) for v in values))


def _echo_of(value: str) -> str:
    """A regex for ``value`` where each character that percent-encoding changes may also
    appear as its %XX bytes."""
    parts = []
    for ch in value:
        if ch in _UNRESERVED:
            parts.append(ch)
            continue
        utf8 = ch.encode("utf-8", "surrogatepass")
        encoded = "".join(f"%{_hex_digit(b >> 4)}{_hex_digit(b & 15)}" for b in utf8)
        plus = "|\\+" if ch == " " else ""
        parts.append(f"(?:{re.escape(ch)}|{encoded}{plus})")
    return "".join(parts)


def _hex_digit(n: int) -> str:
    """One hex digit as a regex, either case (``[Bb]``)."""
    return f"[{n:X}{n:x}]" if n > 9 else str(n)


def without_surrogates(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD, so any UTF-8 writer takes it."""
    return _SURROGATE.sub("\ufffd", text)


def scrub(
    text: str,
    *,
    limit: int = _MAX_TEXT,
    lines: bool = False,
    known: KnownSecrets | None = None,
) -> str:
    """Remove credentials, control characters and lone surrogates from outside text and cap
    its length.

    Used on everything that comes from the network or from third-party exceptions before it
    is stored in an error (aiohttp puts full URLs, query string included, in exception text).
    What is left can be written anywhere: a UTF-8 report, a JSON log line, a terminal.
    ``lines`` keeps tabs and line breaks (a log's traceback), which are otherwise spaces.
    ``known`` values are blanked out first, in the whole text: cut first, a token at the cut
    would survive in part.
    """
    if known is not None:
        text = known.redact(text)
    if len(text) > 2 * limit + 64:
        # The patterns below need a key (``access_token=``) or route before a value, so a
        # cut cannot hide one from them; cut first, they do not scan megabytes.
        text = text[: 2 * limit + 64]
    if "=" in text or "/api/v1/token/" in text or not text.isprintable():
        text = _SECRET_QUERY.sub(r"\1[REDACTED]", text)
        text = _TOKEN_PATH.sub(r"\1[REDACTED]", text)
        text = (_CONTROL_BUT_LINES if lines else _CONTROL).sub(" ", text)
        text = _SURROGATE.sub("\ufffd", text)
    text = text.strip()  # (the fast path above skips four regexes for ordinary text)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


class SMHError(Exception):
    """Base of every error raised by smh-async."""

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        space_id: str | None = None,
        route: str | None = None,
        attempts: int = 0,
        known_secrets: KnownSecrets | None = None,
    ) -> None:
        known = known_secrets  # the credentials the request carried, if the caller knows them
        self.message = scrub(message, known=known)
        self.status = status
        # code and request id come from the server too: a gateway may echo the URL in them.
        self.code = scrub(code, limit=100, known=known) if code else code
        self.request_id = scrub(request_id, limit=200, known=known) if request_id else request_id
        self.space_id = space_id
        self.route = route
        self.attempts = attempts
        super().__init__(self.message)

    def __str__(self) -> str:
        head = " ".join(str(p) for p in (self.status, self.code) if p is not None)
        text = f"{head}: {self.message}" if head else self.message
        extras = [
            f"{name}={scrub(str(value), limit=100)}"  # ids may hold control characters
            for name, value in (
                ("space_id", self.space_id),
                ("route", self.route),
                ("request_id", self.request_id),
            )
            if value
        ]
        return f"{text} ({', '.join(extras)})" if extras else text

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, "
            f"message={self.message!r}, request_id={self.request_id!r}, "
            f"space_id={self.space_id!r})"
        )


class SMHConfigError(SMHError, ValueError):
    """Settings are invalid. The message names each bad field and never echoes its value."""

    def __init__(self, message: str, *, fields: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        # Our own text (field names and rules, no values): keep it whole, however long.
        self.message = message
        self.args = (message,)
        self.fields = fields


class InvalidSpaceIdError(SMHError, ValueError):
    """A space or library id was rejected before any request was sent."""

    def __init__(self, message: str, *, space_id: str | None = None) -> None:
        super().__init__(message, code="InvalidSpaceId", space_id=space_id)


class SMHTransportError(SMHError, OSError):
    """No usable HTTP response: connection refused, reset, dropped or truncated.

    ``stale_connection`` is True when the server closed a reused keep-alive connection
    before sending anything back.
    """

    retryable = True
    stale_connection = False


class SMHTimeoutError(SMHTransportError, TimeoutError):
    """One attempt took longer than the configured timeout."""


class SMHDecodeError(SMHError):
    """A success status came with a body the API does not document (wrong type, bad JSON)."""


class SMHResponseError(SMHError):
    """The server answered with an error status; ``code`` is SMH's error code if it sent one."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after


class SMHAuthError(SMHResponseError):
    """Authentication or permission failure (invalid token, no permission, wrong secret)."""


class SMHNotFoundError(SMHResponseError):
    """The library, space or route does not exist."""


class SMHRateLimitedError(SMHResponseError):
    """429: the server asks us to slow down; ``retry_after`` is its requested wait, if any."""

    retryable = True


class SMHServerError(SMHResponseError):
    """5xx from SMH or from a gateway in front of it."""

    retryable = True
