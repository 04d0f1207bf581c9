"""Sans-I/O SMH protocol: build requests, decode ``(status, headers, body)`` replies.

Nothing here performs I/O or imports aiohttp, so most behaviour is tested without sockets
(gidgethub's shape). A :class:`Request` never holds a credential: the client adds
``access_token`` / ``library_secret`` at send time, and the renew route keeps a placeholder
where the token goes. Logs and errors use :attr:`Request.template`, never a URL.
"""

from __future__ import annotations

import email.utils
import functools
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from multidict import CIMultiDict, CIMultiDictProxy

from smh_async._dedupe import FingerprintSet
from smh_async._errors import (
    InvalidSpaceIdError,
    KnownSecrets,
    SMHAuthError,
    SMHDecodeError,
    SMHError,
    SMHNotFoundError,
    SMHRateLimitedError,
    SMHResponseError,
    SMHServerError,
    SMHTransportError,
    scrub,
    without_surrogates,
)
from smh_async._models import RecycleBinPage, RecycledItem, Space, SpaceUsage

__all__ = [
    "TOKEN_PLACEHOLDER",
    "PagingGuard",
    "Request",
    "Response",
    "TokenGrant",
    "body_too_large",
    "check_path_segment",
    "decode_bin_page",
    "decode_size",
    "decode_space_page",
    "decode_token",
    "decode_usage",
    "empty_bin_refusal",
    "error_from_response",
    "parse_retry_after",
]

TOKEN_PLACEHOLDER = "{access_token}"  # noqa: S105 (a placeholder, not a secret)
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# Judgement calls from smh-api.md §6.3: transient states the server asks us to wait out.
RETRYABLE_CODES = frozenset({"LibraryInitializing", "PathConflict"})
REAUTH_CODE = "InvalidAccessToken"
# Failures that no retry can cure, found before SMH saw the request (codes of our own):
# the server's certificate does not verify, the proxy refuses its credentials or, by its
# policy, the tunnel to the SMH host.
TLS_VERIFY_FAILED = "TLSVerifyFailed"
PROXY_AUTH_REQUIRED = "ProxyAuthRequired"
PROXY_REFUSED = "ProxyRefused"
# A CONNECT answered with one of these may be answered otherwise a moment later.
_PROXY_TRANSIENT = frozenset({408, 429})
MAX_SEGMENT = 256
_MASK64 = (1 << 64) - 1
MAX_TOKEN_LIFETIME = 315_360_000  # seconds: SMH's longest token period (10 years)
REQUEST_ID_LIMIT = 200  # characters of a server's request id kept (as in SMHError)
_SEGMENT = re.compile(r"[A-Za-z0-9._~-]+")  # RFC 3986 "unreserved": never changes the path
# A lone surrogate (JSON "\udc80") cannot be written as UTF-8: not to a report, not to stdout.
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)

AuthKind = Literal["token", "secret", "path"]


def check_path_segment(value: str, *, what: str = "space id") -> str:
    """Return ``value`` if it is safe as one URL path segment, else raise.

    Only RFC 3986 unreserved characters are accepted, so the segment is sent verbatim and
    can never add a segment (``/``), climb (``..``), start a query (``?``) or fragment
    (``#``), smuggle an encoding (``%2F``) or a control character. SMH ids (``space04fz…``,
    ``-`` for single-tenant libraries) all fit.
    """
    safe = type(value) is str and len(value) <= MAX_SEGMENT and _SEGMENT.fullmatch(value)
    if safe and value != "." and value != "..":
        return value  # the common case, checked first (once per request)
    if not isinstance(value, str):
        raise InvalidSpaceIdError(f"{what} must be a string, not {type(value).__name__}")
    shown = repr(value[:64]) + ("…" if len(value) > 64 else "")
    if not value:
        raise InvalidSpaceIdError(f"{what} is empty", space_id=value)
    if value in (".", ".."):
        raise InvalidSpaceIdError(f"{what} {shown} is a dot segment", space_id=value)
    if len(value) > MAX_SEGMENT:
        raise InvalidSpaceIdError(
            f"{what} {shown} is longer than {MAX_SEGMENT} characters", space_id=value[:64]
        )
    if not _SEGMENT.fullmatch(value):
        bad = next(ch for ch in value if not _SEGMENT.fullmatch(ch))
        raise InvalidSpaceIdError(
            f"{what} {shown} contains {bad!r} (U+{ord(bad):04X}); only letters, digits and "
            "'-._~' are allowed in a path segment",
            space_id=value,
        )
    return value


@functools.lru_cache(maxsize=64)
def _library_segment(library_id: str) -> str:
    """The library id checked once (it is the same on every request of a client)."""
    return check_path_segment(library_id, what="library id")


@dataclass(frozen=True, slots=True)
class Request:
    """One API call, without credentials. ``route`` is the path template used in logs."""

    name: str
    method: str
    route: str
    path: str
    params: tuple[tuple[str, str], ...] = ()
    auth: AuthKind = "token"
    space_id: str | None = None

    @property
    def template(self) -> str:
        """``METHOD /route/{template}``: safe to log, carries no id and no credential."""
        return f"{self.method} {self.route}"


@dataclass(frozen=True, slots=True)
class Response:
    """What came back: status, headers (looked up case-insensitively) and the raw body.

    ``known_secrets`` are the credentials the request carried (the client sets them): every
    text taken from this reply (request id, error fields) has them blanked out before it is
    cut to length or stored.
    """

    status: int
    # Not in the repr: a reply may echo the request URL (token included) in a header or
    # its body, and a traceback renderer that shows locals prints reprs.
    headers: Mapping[str, str] = field(repr=False)
    body: bytes = field(repr=False)
    known_secrets: KnownSecrets | None = field(default=None, repr=False, compare=False)

    def header(self, name: str) -> str | None:
        """Header value by case-insensitive name, or None."""
        value = self.headers.get(name)
        if value is not None or isinstance(self.headers, CIMultiDictProxy | CIMultiDict):
            return value  # aiohttp's headers are case-insensitive already: no scan needed
        lower = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == lower), None)

    @property
    def request_id(self) -> str | None:
        """The server's request id from ``X-Request-Id`` (or SMH's alternative header),
        scrubbed: it goes into a 204's report row as it does into an error."""
        raw = self.header("X-Request-Id") or self.header("X-Smh-Request-Id")
        if not raw:
            return None
        return scrub(raw, limit=REQUEST_ID_LIMIT, known=self.known_secrets) or None


@dataclass(frozen=True, slots=True)
class TokenGrant:
    """A freshly minted or renewed token. The value is excluded from repr."""

    access_token: str = field(repr=False)
    expires_in: int


# ---------------------------------------------------------------- request builders


def create_token(
    library_id: str,
    *,
    grant: str,
    period: int,
    user_id: str | None = None,
    space_ids: Sequence[str] = (),
) -> Request:
    """``POST /api/v1/token``: mint a token (the client adds ``library_secret``)."""
    params = [("library_id", library_id), ("grant", grant), ("period", str(period))]
    if user_id:
        params.append(("user_id", user_id))
    if space_ids:
        params.append(("space_id", ",".join(check_path_segment(s) for s in space_ids)))
    return Request(
        "token_create", "POST", "/api/v1/token", "/api/v1/token", tuple(params), "secret"
    )


def renew_token(library_id: str) -> Request:
    """``POST /api/v1/token/{library_id}/{access_token}``: extend a token by its period."""
    lib = _library_segment(library_id)
    return Request(
        "token_renew",
        "POST",
        "/api/v1/token/{library_id}/{access_token}",
        f"/api/v1/token/{lib}/{TOKEN_PLACEHOLDER}",
        auth="path",
    )


def list_spaces(library_id: str, *, marker: str | None = None, limit: int = 1000) -> Request:
    """``GET /api/v1/space/{library_id}/list``: one page of tenant spaces."""
    lib = _library_segment(library_id)
    params = [("limit", str(limit))]
    if marker:
        params.append(("marker", marker))
    return Request(
        "space_list",
        "GET",
        "/api/v1/space/{library_id}/list",
        f"/api/v1/space/{lib}/list",
        tuple(params),
    )


def list_recycle_bin(
    library_id: str,
    space_id: str,
    *,
    page: int | None = None,
    page_size: int = 100,
    marker: str | None = None,
) -> Request:
    """``GET /api/v1/recycled/{library_id}/{space_id}`` in page mode (``page``) or marker
    mode (``marker``/first page when ``page`` is None)."""
    lib = _library_segment(library_id)
    sid = check_path_segment(space_id)
    if page is not None:
        params = [("page", str(page)), ("page_size", str(page_size))]
    else:
        params = [("by-marker", "1"), ("limit", str(page_size))]
        if marker:
            params.append(("marker", marker))
    return Request(
        "bin_list",
        "GET",
        "/api/v1/recycled/{library_id}/{space_id}",
        f"/api/v1/recycled/{lib}/{sid}",
        tuple(params),
        space_id=sid,
    )


def empty_recycle_bin(library_id: str, space_id: str) -> Request:
    """``DELETE /api/v1/recycled/{library_id}/{space_id}``: empty one space's bin."""
    lib = _library_segment(library_id)
    sid = check_path_segment(space_id)
    return Request(
        "empty_bin",
        "DELETE",
        "/api/v1/recycled/{library_id}/{space_id}",
        f"/api/v1/recycled/{lib}/{sid}",
        space_id=sid,
    )


def space_size(library_id: str, space_id: str) -> Request:
    """``GET /api/v1/space/{library_id}/{space_id}/size``."""
    lib = _library_segment(library_id)
    sid = check_path_segment(space_id)
    return Request(
        "space_size",
        "GET",
        "/api/v1/space/{library_id}/{space_id}/size",
        f"/api/v1/space/{lib}/{sid}/size",
        space_id=sid,
    )


def usage(library_id: str, space_ids: Sequence[str]) -> Request:
    """``GET /api/v1/usage/{library_id}/{id,id,...}``: sizes of many spaces in one call."""
    lib = _library_segment(library_id)
    if not space_ids:
        raise ValueError("usage() needs at least one space id")
    joined = ",".join(check_path_segment(s) for s in space_ids)
    return Request(
        "usage_spaces",
        "GET",
        "/api/v1/usage/{library_id}/{space_ids}",
        f"/api/v1/usage/{lib}/{joined}",
    )


# ---------------------------------------------------------------- decoding


def error_from_response(request: Request, response: Response) -> SMHResponseError:
    """Map a non-2xx reply to the matching :class:`SMHResponseError` subclass.

    Accepts SMH's ``{code, message, requestId}`` JSON, but also a gateway's HTML page, an
    empty body or malformed JSON: those keep the status and say what the body was.
    """
    return _status_error(request, response, *_error_fields(response))


def body_too_large(request: Request, response: Response, limit: int) -> SMHError:
    """The error for a reply whose body passed ``limit`` bytes (``response`` holds none of
    it): an error status keeps its meaning (a 404 is not retried, a 503 is), with a message
    saying why its body was not read; a 2xx is a decode error (not what the API sends)."""
    what = f"a body over {limit} bytes (not read)"
    if 200 <= response.status < 300:
        return _shape_error(request, response, f"a reply of at most {limit} bytes, got {what}")
    return _status_error(request, response, None, f"HTTP {response.status} with {what}", None)


def _status_error(
    request: Request,
    response: Response,
    code: str | None,
    message: str,
    body_request_id: str | None,
) -> SMHResponseError:
    status = response.status
    retry_after = parse_retry_after(response.header("Retry-After"))
    kwargs: dict[str, Any] = {
        "status": status,
        "code": code,
        "request_id": body_request_id or response.request_id,
        "space_id": request.space_id,
        "route": request.template,
        "retry_after": retry_after,
        "known_secrets": response.known_secrets,
    }
    cls: type[SMHResponseError]
    if status == 407:  # a plain-http base URL's proxy; SMH itself never sends it
        kwargs["code"] = code or PROXY_AUTH_REQUIRED
        return SMHAuthError(_PROXY_AUTH_MESSAGE + f" ({message})", **kwargs)
    if status in (401, 403) or (status == 404 and code == "WrongLibraryIdOrSecret"):
        cls = SMHAuthError
    elif status == 404:
        cls = SMHNotFoundError
    elif status == 429:
        cls = SMHRateLimitedError
    elif status >= 500:
        cls = SMHServerError
    else:
        cls = SMHResponseError
    error = cls(message, **kwargs)
    error.retryable = status in RETRYABLE_STATUSES or code in RETRYABLE_CODES
    return error


_PROXY_AUTH_MESSAGE = (
    "the proxy refused its credentials (407 Proxy Authentication Required): check the user "
    "and password in HTTPS_PROXY / HTTP_PROXY"
)


def proxy_auth_required(request: Request) -> SMHAuthError:
    """The error for a proxy that answered a tunnel's CONNECT with 407: every request would
    get the same answer, so it is not retried (and stops a bulk run)."""
    return SMHAuthError(
        _PROXY_AUTH_MESSAGE,
        status=407,
        code=PROXY_AUTH_REQUIRED,
        space_id=request.space_id,
        route=request.template,
    )


def proxy_refused(request: Request, status: int) -> SMHTransportError | None:
    """The error for a proxy that answered a tunnel's CONNECT with a 4xx other than 407,
    408 and 429 (a 403 from an ACL that does not allow the SMH host, a 405 from a proxy that
    does not tunnel): every request would get the same answer, so it is not retried (and
    stops a bulk run). None for any other status (a 5xx: the proxy could not reach the host,
    perhaps only for now)."""
    if not 400 <= status < 500 or status in _PROXY_TRANSIENT:
        return None
    error = SMHTransportError(
        f"the proxy refused to open a tunnel to the SMH host (CONNECT answered {status}), "
        "not retried: check the proxy's access rules, "
        "or NO_PROXY / SMH_PROXY_FROM_ENV=false if SMH should not go through it",
        status=status,
        code=PROXY_REFUSED,
        space_id=request.space_id,
        route=request.template,
    )
    error.retryable = False
    return error


def needs_reauth(error: BaseException) -> bool:
    """True for ``403 InvalidAccessToken``: the token expired or was revoked; re-mint once."""
    return isinstance(error, SMHAuthError) and error.status == 403 and error.code == REAUTH_CODE


def _error_fields(response: Response) -> tuple[str | None, str, str | None]:
    body = response.body
    ctype = (response.header("Content-Type") or "").split(";")[0].strip().lower()
    if not body.strip():
        return None, f"HTTP {response.status} with an empty body", None
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: absurdly nested JSON
        title = _TITLE.search(body[:65536])
        what = f"non-JSON error body ({ctype or 'no content-type'}, {len(body)} bytes)"
        if title:
            what += ": " + title.group(1).decode("utf-8", "replace").strip()
        return None, what, None
    if not isinstance(data, dict):
        return None, f"error body is JSON {type(data).__name__}, not an object", None
    request_id = data.get("requestId") or data.get("reqId") or data.get("requestID")
    if type(request_id) is int:  # a numeric id is still an id (bool is not)
        request_id = str(request_id)
    # Only text is taken: an object or a list here is not SMH's, and its Python repr would
    # reach the report as if it were the server's words.
    code, message = data.get("code"), data.get("message")
    return (
        code if isinstance(code, str) and code else None,
        message if isinstance(message, str) and message else f"HTTP {response.status}",
        request_id if isinstance(request_id, str) and request_id else None,
    )


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date).

    Returns None when absent or unparseable; never negative.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        return max(0.0, float(value)) if re.fullmatch(r"\d+(\.\d+)?", value) else _date(value, now)
    except (TypeError, ValueError, OverflowError):
        return None


def _date(value: str, now: float | None) -> float | None:
    when = email.utils.parsedate_to_datetime(value)
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def decode_json(request: Request, response: Response) -> Any:
    """Parse a 2xx JSON body or raise :class:`SMHDecodeError` saying what came instead."""
    try:
        return json.loads(response.body)
    except (ValueError, RecursionError):  # RecursionError: absurdly nested JSON
        ctype = response.header("Content-Type") or "no content-type"
        raise SMHDecodeError(
            f"expected JSON from {request.template}, got {len(response.body)} bytes of {ctype}",
            status=response.status,
            request_id=response.request_id,
            space_id=request.space_id,
            route=request.template,
            known_secrets=response.known_secrets,
        ) from None


def _object(request: Request, response: Response, *keys: str) -> dict[str, Any]:
    data = decode_json(request, response)
    if not isinstance(data, dict) or any(k not in data for k in keys):
        raise _shape_error(request, response, f"an object with {', '.join(keys)}")
    return data


def _shape_error(request: Request, response: Response, expected: str) -> SMHDecodeError:
    return SMHDecodeError(
        f"unexpected reply to {request.template}: expected {expected}",
        status=response.status,
        request_id=response.request_id,
        space_id=request.space_id,
        route=request.template,
    )


def _int(request: Request, response: Response, value: Any) -> int:
    """A whole number, as JSON or as a string of digits (SMH sends sizes as strings).

    ``int()`` alone would truncate 1.5, take ``true`` for 1 and raise OverflowError on
    ``1e999``/``Infinity`` (which Python's json accepts): all refused as a bad reply instead.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():  # False for inf and nan
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:  # also over Python's 4,300-digit limit
            pass
    raise _shape_error(request, response, "a whole number")


def _opt_int(request: Request, response: Response, value: Any) -> int | None:
    return None if value is None else _int(request, response, value)


def decode_token(request: Request, response: Response) -> TokenGrant:
    """``{"accessToken", "expiresIn"}`` → :class:`TokenGrant`.

    ``expiresIn`` is capped at :data:`MAX_TOKEN_LIFETIME`: SMH grants no longer, and a
    401-digit lifetime crashed the renewal schedule (OverflowError); a negative one is
    refused.
    """
    data = _object(request, response, "accessToken")
    token = data["accessToken"]
    if not isinstance(token, str) or not token:
        raise _shape_error(request, response, "a non-empty accessToken")
    expires_in = _int(request, response, data.get("expiresIn", 86400))
    if expires_in < 0:
        raise _shape_error(request, response, "a non-negative expiresIn")
    return TokenGrant(token, min(expires_in, MAX_TOKEN_LIFETIME))


def decode_space_page(
    request: Request, response: Response, sent_marker: str | None
) -> tuple[list[Space], str | None]:
    """One page of spaces and the marker of the next page (None on the last page).

    Accepts the documented ``nextMarker`` and, as some SDK models do, a continuation under
    ``marker``; a marker equal to the one sent ends the listing instead of looping forever.
    """
    data = _object(request, response, "list")
    rows = data["list"]
    if not isinstance(rows, list):
        raise _shape_error(request, response, "a list of spaces")
    spaces = []
    for row in rows:
        if not isinstance(row, dict) or not isinstance(row.get("spaceId"), str):
            raise _shape_error(request, response, "spaces with a spaceId")
        space_id = row["spaceId"]
        if not space_id.isascii():  # never a valid id; made writable to be reported as such
            space_id = without_surrogates(space_id)
        spaces.append(
            Space(space_id, str(row.get("userId") or ""), str(row.get("creationTime") or ""))
        )
    following = data["nextMarker"] if "nextMarker" in data else data.get("marker")
    following = str(following) if following not in (None, "") else None
    if not spaces or following == sent_marker:
        following = None
    return spaces, following


class PagingGuard:
    """Notices a space listing going round in circles, so that it can end.

    A marker handed out before (a → b → a), or a page holding exactly the spaces of an
    earlier page (a new marker each time, the same page: a listing that never ends), means
    the server's paging is inconsistent. Memory: one 8-byte fingerprint per page (a
    thousand spaces), not per space: a listing may hold millions.
    """

    __slots__ = ("_markers", "_pages")

    def __init__(self) -> None:
        self._markers = FingerprintSet(64)
        self._pages = FingerprintSet(64)

    def page_seen(self, spaces: Sequence[Space]) -> bool:
        """True if an earlier page held exactly these spaces (in any order)."""
        if not spaces:
            return False
        ids = frozenset(space.space_id for space in spaces)
        return not self._pages.add_fingerprint((hash(ids) & _MASK64) or 1)

    def marker_seen(self, marker: str) -> bool:
        """True if this marker was handed out before in this listing."""
        return not self._markers.add(marker)


def decode_bin_page(request: Request, response: Response) -> RecycleBinPage:
    """A recycle-bin page (page mode: ``totalNum``; marker mode: ``nextMarker``)."""
    data = _object(request, response)
    contents = data.get("contents", [])
    if not isinstance(contents, list):
        raise _shape_error(request, response, "contents as a list")
    items = tuple(
        RecycledItem(
            item_id=_int(request, response, row.get("recycledItemId")),
            name=str(row.get("name", "")),
            size=_int(request, response, row.get("size", 0)),
            type=str(row.get("type", "")),
            removal_time=str(row.get("removalTime", "")),
        )
        for row in contents
        if isinstance(row, dict)
    )
    total = _opt_int(request, response, data.get("totalNum"))
    following = data.get("nextMarker")
    return RecycleBinPage(
        items, total, str(following) if following not in (None, "", 0) and items else None
    )


def decode_size(request: Request, response: Response) -> int:
    """``{"size": "<bytes>"}`` → bytes."""
    return _int(request, response, _object(request, response, "size")["size"])


def decode_usage(request: Request, response: Response) -> list[SpaceUsage]:
    """The batched usage array → one :class:`SpaceUsage` per space."""
    data = decode_json(request, response)
    if not isinstance(data, list):
        raise _shape_error(request, response, "a JSON array of space usage")
    out = []
    for row in data:
        if not isinstance(row, dict) or not isinstance(row.get("spaceId"), str):
            raise _shape_error(request, response, "usage rows with a spaceId")
        out.append(
            SpaceUsage(
                row["spaceId"],
                _int(request, response, row.get("size", 0)),
                _opt_int(request, response, row.get("capacity")),
                _opt_int(request, response, row.get("availableSpace")),
            )
        )
    return out


def empty_bin_refusal(request: Request, response: Response) -> SMHDecodeError | None:
    """None for 204 (or a 2xx with an empty body / ``{}``); anything else is not a clear yes.

    A 2xx carrying some other body (a captive portal, a misrouted proxy) gets an
    :class:`SMHDecodeError` rather than being silently counted as accepted. Returned, not
    raised, so that the caller can let go of the raw reply first (it may echo the URL, token
    included, and a traceback renderer showing locals would find it in this frame).
    """
    body = response.body.strip()
    if response.status == 204 or not body or body == b"{}":
        return None
    return _shape_error(request, response, "204 No Content")
