"""Sans-I/O protocol: request building, space-id safety, reply and error decoding."""

from __future__ import annotations

import email.utils
import json
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smh_async import (
    InvalidSpaceIdError,
    SMHAuthError,
    SMHDecodeError,
    SMHError,
    SMHNotFoundError,
    SMHRateLimitedError,
    SMHResponseError,
    SMHServerError,
)
from smh_async import _protocol as proto
from smh_async._protocol import Request, Response

EMPTY = proto.empty_recycle_bin("lib1", "space1")


def reply(status: int, body: object = b"", **headers: str) -> Response:
    """A Response with a JSON (or raw bytes) body."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Response(status, {k.replace("_", "-"): v for k, v in headers.items()}, raw)


def test_empty_bin_request_uses_route_template_and_no_credentials() -> None:
    """The DELETE targets /api/v1/recycled/{lib}/{space} and carries no token of its own."""
    assert EMPTY.method == "DELETE"
    assert EMPTY.path == "/api/v1/recycled/lib1/space1"
    assert EMPTY.template == "DELETE /api/v1/recycled/{library_id}/{space_id}"
    assert EMPTY.params == () and EMPTY.auth == "token"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        ".",
        "..",
        "a/b",
        "a%2Fb",
        "a?x=1",
        "a#f",
        "a b",
        "a\nb",
        "a\x00b",
        "a\x7fb",
        "ü",
        "a\\b",
        "x" * 257,
        "/",
        "%2e%2e",
    ],
)
def test_unsafe_space_ids_are_rejected_before_building_a_request(bad: str) -> None:
    """Ids that could add, climb or escape a path segment raise InvalidSpaceIdError."""
    with pytest.raises(InvalidSpaceIdError) as info:
        proto.empty_recycle_bin("lib1", bad)
    assert info.value.code == "InvalidSpaceId"
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("good", ["-", "space04fzo07fdq61b", "A.b_c~d-9", "x" * 256])
def test_safe_space_ids_are_sent_verbatim(good: str) -> None:
    """Unreserved-character ids become exactly one unchanged path segment."""
    assert proto.empty_recycle_bin("lib1", good).path == f"/api/v1/recycled/lib1/{good}"


def test_library_id_is_validated_like_a_space_id() -> None:
    """A library id with a slash is rejected too (it is also a path segment)."""
    with pytest.raises(InvalidSpaceIdError, match="library id"):
        proto.empty_recycle_bin("lib/../x", "s1")


def test_smh_error_body_and_request_id_are_decoded() -> None:
    """{code, message, requestId} becomes the error's fields; the class follows the status."""
    err = proto.error_from_response(
        EMPTY, reply(404, {"code": "SpaceNotFound", "message": "no such space", "requestId": "r1"})
    )
    assert isinstance(err, SMHNotFoundError)
    assert (err.status, err.code, err.request_id, err.space_id) == (
        404,
        "SpaceNotFound",
        "r1",
        "space1",
    )
    assert not err.retryable
    assert "SpaceNotFound" in str(err) and "space1" in str(err)


def test_request_id_falls_back_to_the_header() -> None:
    """Without requestId in the body, X-Request-Id (any case) is used."""
    err = proto.error_from_response(
        EMPTY, reply(500, {"code": "InternalServerError"}, x_request_id="hdr")
    )
    assert isinstance(err, SMHServerError) and err.request_id == "hdr" and err.retryable


def test_gateway_html_page_keeps_status_and_title() -> None:
    """An nginx HTML 502 page maps to a retryable server error naming the page title."""
    html = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
    err = proto.error_from_response(EMPTY, reply(502, html, content_type="text/html"))
    assert isinstance(err, SMHServerError) and err.retryable and err.code is None
    assert "502 Bad Gateway" in err.message and "text/html" in err.message


@pytest.mark.parametrize("body", [b"", b"   ", b'{"code": "Intern', b"[1, 2]"])
def test_empty_or_malformed_error_bodies_still_map_by_status(body: bytes) -> None:
    """Empty, truncated or non-object bodies do not crash decoding; the status decides."""
    err = proto.error_from_response(EMPTY, reply(503, body))
    assert isinstance(err, SMHServerError) and err.status == 503 and err.retryable


@pytest.mark.parametrize(
    ("status", "code", "cls", "retryable"),
    [
        (403, "InvalidAccessToken", SMHAuthError, False),
        (403, "NoPermission", SMHAuthError, False),
        (404, "WrongLibraryIdOrSecret", SMHAuthError, False),
        (400, "RecycleBinNotEnabled", SMHResponseError, False),
        (408, "ReadRequestTimeout", SMHResponseError, True),
        (429, "RateLimitExceeded", SMHRateLimitedError, True),
        (403, "LibraryInitializing", SMHAuthError, True),
        (501, "NotImplemented", SMHServerError, False),
        (504, None, SMHServerError, True),
    ],
)
def test_status_and_code_classification(
    status: int, code: str | None, cls: type[Exception], retryable: bool
) -> None:
    """Retry only 408, 429, 500/502/503/504 and the documented transient codes."""
    body = {"code": code} if code else b""
    err = proto.error_from_response(EMPTY, reply(status, body))
    assert type(err) is cls and err.retryable is retryable


def test_needs_reauth_only_for_403_invalid_access_token() -> None:
    """InvalidAccessToken triggers a re-mint; NoPermission does not."""
    bad = proto.error_from_response(EMPTY, reply(403, {"code": "InvalidAccessToken"}))
    denied = proto.error_from_response(EMPTY, reply(403, {"code": "NoPermission"}))
    assert proto.needs_reauth(bad) and not proto.needs_reauth(denied)


def test_retry_after_seconds_and_http_date() -> None:
    """Retry-After is read as delta-seconds or an HTTP-date; junk and absence give None."""
    now = 1_700_000_000.0
    assert proto.parse_retry_after("7", now=now) == 7.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert proto.parse_retry_after(date, now=now) == pytest.approx(30.0)
    past = email.utils.formatdate(now - 30, usegmt=True)
    assert proto.parse_retry_after(past, now=now) == 0.0
    assert proto.parse_retry_after("soon", now=now) is None
    assert proto.parse_retry_after(None) is None
    err = proto.error_from_response(
        EMPTY, reply(429, {"code": "RateLimitExceeded"}, retry_after="3")
    )
    assert isinstance(err, SMHRateLimitedError) and err.retry_after == 3.0


def check_empty_bin(request: Request, response: Response) -> None:
    """``proto.empty_bin_refusal``, raised (as a decoder that raises, for the tables here)."""
    refusal = proto.empty_bin_refusal(request, response)
    if refusal is not None:
        raise refusal


def test_empty_bin_accepts_204_and_rejects_unexpected_2xx_bodies() -> None:
    """204 (or an empty 2xx) is accepted; a 2xx with some other body is a decode error."""
    check_empty_bin(EMPTY, reply(204))
    check_empty_bin(EMPTY, reply(200, b""))
    with pytest.raises(SMHDecodeError) as info:
        check_empty_bin(EMPTY, reply(200, b"<html>portal</html>"))
    assert info.value.space_id == "space1" and not info.value.retryable


def test_space_page_follows_next_marker_and_stops_when_absent() -> None:
    """nextMarker continues the listing; its absence ends it."""
    request = proto.list_spaces("lib1")
    rows = [{"spaceId": "s1", "userId": "", "creationTime": "t"}]
    spaces, following = proto.decode_space_page(
        request, reply(200, {"list": rows, "nextMarker": "m2"}), None
    )
    assert [s.space_id for s in spaces] == ["s1"] and following == "m2"
    _, following = proto.decode_space_page(
        request, reply(200, {"list": rows, "marker": "m2"}), "m2"
    )
    assert following is None


def test_space_page_accepts_continuation_under_marker() -> None:
    """SDK variants that put the next marker under ``marker`` are followed too."""
    request = proto.list_spaces("lib1")
    rows = [{"spaceId": "s1"}]
    _, following = proto.decode_space_page(
        request, reply(200, {"list": rows, "marker": "m9"}), None
    )
    assert following == "m9"


def test_space_page_rejects_malformed_replies() -> None:
    """A listing without ``list`` or with rows lacking spaceId is a decode error."""
    request = proto.list_spaces("lib1")
    with pytest.raises(SMHDecodeError):
        proto.decode_space_page(request, reply(200, {"items": []}), None)
    with pytest.raises(SMHDecodeError):
        proto.decode_space_page(request, reply(200, {"list": [{"id": 1}]}), None)
    with pytest.raises(SMHDecodeError):
        proto.decode_space_page(request, reply(200, b"<html>"), None)


def test_bin_page_and_usage_decoding() -> None:
    """Bin pages give items with integer sizes; usage rows parse string byte counts."""
    req = proto.list_recycle_bin("lib1", "s1", page=1, page_size=10)
    page = proto.decode_bin_page(
        req,
        reply(200, {"totalNum": 1, "contents": [{"recycledItemId": 3, "name": "a", "size": "42"}]}),
    )
    assert page.total == 1 and page.items[0].size == 42
    usage = proto.decode_usage(
        proto.usage("lib1", ["s1"]),
        reply(200, [{"spaceId": "s1", "capacity": None, "availableSpace": None, "size": "9"}]),
    )
    assert usage[0].size == 9 and usage[0].capacity is None


def test_token_grant_repr_hides_the_token() -> None:
    """TokenGrant never shows the token value in its repr."""
    grant = proto.decode_token(
        proto.create_token("lib1", grant="admin", period=300),
        reply(200, {"accessToken": "tok-SECRET-1", "expiresIn": 300}),
    )
    assert grant.access_token == "tok-SECRET-1" and "tok-SECRET-1" not in repr(grant)


def test_renew_request_keeps_a_placeholder_not_the_token() -> None:
    """The renew route's path holds a placeholder, filled in only when sending."""
    req = proto.renew_token("lib1")
    assert req.path.endswith(proto.TOKEN_PLACEHOLDER) and req.auth == "path"


# ---------------------------------------------------------------- any reply, any body

# The keys the decoders look for, so that generated objects reach past the first check.
_KEYS = st.sampled_from(
    ["accessToken", "expiresIn", "list", "spaceId", "userId", "nextMarker", "marker",
     "contents", "recycledItemId", "size", "totalNum", "capacity", "availableSpace",
     "code", "message", "requestId", "name", "type"]
) | st.text(max_size=8)  # fmt: skip
_JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
_JSON = st.recursive(
    _JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=5),
    max_leaves=20,
)
_BODIES = (
    _JSON.map(lambda v: json.dumps(v).encode())  # Infinity/NaN included, as Python emits them
    | st.binary(max_size=64)
    | st.sampled_from([b"", b"  ", b"<html><title>502 Bad Gateway</title></html>", b"{}"])
)
_DECODERS = {
    "token": (proto.create_token("lib1", grant="admin", period=300), proto.decode_token),
    "spaces": (proto.list_spaces("lib1"), lambda rq, rs: proto.decode_space_page(rq, rs, None)),
    "bin": (proto.list_recycle_bin("lib1", "space1"), proto.decode_bin_page),
    "size": (proto.space_size("lib1", "space1"), proto.decode_size),
    "usage": (proto.usage("lib1", ["space1"]), proto.decode_usage),
    "empty": (EMPTY, check_empty_bin),
    "error": (EMPTY, proto.error_from_response),
}


def _decode(which: str, response: Response) -> object:
    """Run one decoder; an SMHError is an acceptable answer and is returned, not raised."""
    request, decode = _DECODERS[which]
    try:
        return decode(request, response)
    except SMHError as exc:
        return exc


@settings(max_examples=300, deadline=None)
@given(
    which=st.sampled_from(sorted(_DECODERS)),
    status=st.sampled_from([200, 201, 204, 400, 403, 404, 429, 500, 502, 503]),
    body=_BODIES,
    retry_after=st.none() | st.text(max_size=40),
)
def test_any_reply_decodes_or_raises_an_smh_error(
    which: str, status: int, body: bytes, retry_after: str | None
) -> None:
    """Whatever a server (or something in front of it) answers, a decoder returns a value or
    raises an SMHError: never a TypeError, OverflowError or the like, which the engine
    could only report as 'a bug in smh-async'."""
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    _decode(which, Response(status, headers, body))


@pytest.mark.parametrize("which", sorted(set(_DECODERS) - {"empty"}))
def test_absurdly_nested_json_is_a_decode_error_not_a_crash(which: str) -> None:
    """100,000 nested arrays (a 200 kB body) exhaust json's recursion: still an SMH error
    (for an error reply: one saying what the body was)."""
    body = b"[" * 100_000 + b"]" * 100_000
    result = _decode(which, Response(500 if which == "error" else 200, {}, body))
    assert isinstance(result, SMHError)
    if which == "error":
        assert "JSON" in result.message


@pytest.mark.parametrize("value", ["1e999", "-1e999", "Infinity", "NaN", "true", "1.5"])
def test_a_size_that_is_not_a_whole_number_is_a_decode_error(value: str) -> None:
    """Infinite, NaN, boolean or fractional byte counts are refused, not truncated or crashed."""
    body = f'{{"size": {value}}}'.encode()
    with pytest.raises(SMHDecodeError):
        proto.decode_size(proto.space_size("lib1", "s"), reply(200, body))


def _plain(text: str | None) -> bool:
    """Writable as UTF-8, without control characters or lone surrogates."""
    assert text is not None
    text.encode("utf-8")
    return not [ch for ch in text if unicodedata.category(ch) in ("Cc", "Cs")]


def test_server_text_reaches_errors_without_surrogates_or_control_characters() -> None:
    """A JSON message with an escaped lone surrogate and a terminal escape, a code with a
    line break, a request id of non-UTF-8 header bytes: the error's fields are plain text
    (lone surrogates become U+FFFD, control characters spaces), so a report can hold them."""
    body = b'{"code": "Gone\\nAway", "message": "gone \\udc80 away\\u001b[2J", '
    body += b'"requestId": "r\\ud800"}'
    err = proto.error_from_response(EMPTY, reply(404, body))
    assert (err.code, err.message, err.request_id) == (
        "Gone Away",
        "gone \ufffd away [2J",
        "r\ufffd",
    )
    assert all(_plain(t) for t in (err.code, err.message, err.request_id, str(err), repr(err)))
    binary = "abc\udcff\udcfe\udc80def"  # how aiohttp decodes the header bytes ff fe 80
    err = proto.error_from_response(EMPTY, reply(503, b"", x_request_id=binary))
    assert err.request_id == "abc\ufffd\ufffd\ufffddef" and _plain(str(err))


def test_the_request_id_of_a_2xx_is_scrubbed_too() -> None:
    """A 204's request id (it goes into the accepted space's report row) is cleaned like an
    error's: no lone surrogate, no control character, capped; blank means none."""
    ok = reply(204, x_request_id="abc\udcff\x1b\x85def" + "x" * 500)
    assert ok.request_id is not None and _plain(ok.request_id) and len(ok.request_id) == 200
    assert ok.request_id.startswith("abc\ufffd  def")
    assert reply(204, x_request_id=" \x00 ").request_id is None


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"code": 123, "message": ["a", {"b": 1}], "requestId": {"x": [1, 2]}},
            (None, "HTTP 400", "hdr"),
        ),
        ({"code": ["X"], "message": 5, "requestId": True}, (None, "HTTP 400", "hdr")),
        ({"code": "Bad", "message": "m", "requestId": 12345}, ("Bad", "m", "12345")),
    ],
)
def test_error_fields_that_are_not_text_are_dropped_not_shown_as_python_reprs(
    fields: dict[str, object], expected: tuple[str | None, str, str | None]
) -> None:
    """A code or message that is not a string, or a request id that is neither a string nor
    an integer, is left out (the header's id is used) instead of reaching the report as
    ``"{'x': [1, 2]}"``."""
    err = proto.error_from_response(EMPTY, reply(400, fields, x_request_id="hdr"))
    assert (err.code, err.message, err.request_id) == expected


def test_a_listed_space_id_with_a_lone_surrogate_stays_writable() -> None:
    """A listing whose spaceId holds an escaped lone surrogate: the id keeps U+FFFD in its
    place, so it can be printed (``smh-async spaces``) and reported as invalid."""
    body = b'{"list": [{"spaceId": "s\\udc80x"}, {"spaceId": "ok"}]}'
    spaces, _ = proto.decode_space_page(proto.list_spaces("lib1"), reply(200, body), None)
    assert [s.space_id for s in spaces] == ["s\ufffdx", "ok"]
    with pytest.raises(InvalidSpaceIdError):
        proto.empty_recycle_bin("lib1", spaces[0].space_id)


@pytest.mark.parametrize(
    ("expires_in", "expected"),
    [("1" + "0" * 400, 315_360_000), ("86400", 86400), ("0", 0), ("-5", None)],
)
def test_token_lifetime_is_capped_at_ten_years_and_never_negative(
    expires_in: str, expected: int | None
) -> None:
    """A 401-digit ``expiresIn`` is taken as SMH's longest period (10 years) instead of
    crashing the renewal schedule with an OverflowError; a negative one is a decode error."""
    body = f'{{"accessToken": "tok-x", "expiresIn": {expires_in}}}'.encode()
    request = proto.create_token("lib1", grant="admin", period=300)
    if expected is None:
        with pytest.raises(SMHDecodeError, match="non-negative expiresIn"):
            proto.decode_token(request, reply(200, body))
    else:
        assert proto.decode_token(request, reply(200, body)).expires_in == expected
