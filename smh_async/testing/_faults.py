"""Deliver an injected :class:`Fault` over the wire, the way a broken gateway or server would."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from smh_async.testing._records import Fault

_HTML_PAGE = (
    "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)
_SLOW_CHUNKS = 10
_MISSING_BYTES = 512


@dataclass(slots=True)
class Outcome:
    """What was actually sent for the request being served (for the request record)."""

    status: int | None = None
    fault: str | None = None
    dropped: bool = False


def error_body(code: str, message: str, request_id: str) -> bytes:
    """SMH's JSON error body."""
    return json.dumps({"code": code, "message": message, "requestId": request_id}).encode()


def raw_json(status: int, payload: bytes, headers: dict[str, str]) -> web.Response:
    """A response whose body is ``payload`` labelled ``application/json`` (valid or not)."""
    return web.Response(
        status=status, body=payload, headers=headers, content_type="application/json"
    )


def json_response(status: int, body: object | None, request_id: str) -> web.Response:
    """A JSON (or, with ``body=None``, empty) response carrying ``X-Request-Id``."""
    headers = {"X-Request-Id": request_id}
    if body is None:
        return web.Response(status=status, headers=headers)
    return raw_json(status, json.dumps(body, separators=(",", ":")).encode(), headers)


def _close(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.close()


def _drop(request: web.Request, outcome: Outcome) -> web.Response:
    """Close the connection without a response; aiohttp then skips writing the dummy reply."""
    outcome.dropped = True
    _close(request)
    return web.Response()


async def _stream(
    request: web.Request, source: web.Response, *, truncate: bool = False, pause: float = 0.0
) -> web.StreamResponse:
    """Send ``source`` by hand: cut it short (promising more bytes), or trickle it out."""
    body = source.body if isinstance(source.body, bytes) else b""
    response = web.StreamResponse(status=source.status, headers=source.headers)
    response.content_length = len(body) + (_MISSING_BYTES if truncate else 0)
    if not body:
        await asyncio.sleep(pause)  # nothing to trickle: hold the whole answer back instead
    await response.prepare(request)
    if truncate:
        await response.write(body[: len(body) // 2])
        _close(request)
        return response
    step = -(-len(body) // _SLOW_CHUNKS) or 1
    offsets = range(0, len(body), step)
    for offset in offsets:
        await asyncio.sleep(pause / len(offsets))
        await response.write(body[offset : offset + step])
    await response.write_eof()
    return response


async def deliver_fault(
    request: web.Request,
    fault: Fault,
    render: Callable[[], web.Response],
    request_id: str,
    outcome: Outcome,
) -> web.StreamResponse:
    """Answer the request according to ``fault``; ``render`` runs the real operation.

    Sets ``outcome.dropped`` when no response was sent.
    """
    action = fault.action
    status = fault.effective_status or 500
    headers = {"X-Request-Id": request_id}
    if fault.retry_after is not None:
        headers["Retry-After"] = fault.retry_after
    error = error_body(fault.effective_code, fault.message, request_id)

    if action == "drop":
        return _drop(request, outcome)
    if action == "hang":
        await asyncio.sleep(fault.effective_delay)
        return _drop(request, outcome)
    if action == "status":
        return raw_json(status, error, headers)
    if action == "html":
        reason = web.Response(status=status).reason
        page = _HTML_PAGE.format(status=status, reason=reason)
        return web.Response(status=status, text=page, headers=headers, content_type="text/html")
    if action == "malformed_json":
        return raw_json(status, b'{"code": "Intern', headers)
    if action == "empty_body_error":
        return web.Response(status=status, headers=headers)
    if action in ("truncated", "slow_body"):
        # Without an explicit status the real operation runs and its own answer is mangled.
        source = render() if fault.status is None else raw_json(status, error, headers)
        if action == "slow_body":
            return await _stream(request, source, pause=fault.effective_delay)
        if not source.body:  # a 204 cannot be cut short: the operation ran, the answer breaks
            source = raw_json(status, error, headers)
        return await _stream(request, source, truncate=True)
    return await _mangle_success(request, fault, render, headers)


async def _mangle_success(
    request: web.Request,
    fault: Fault,
    render: Callable[[], web.Response],
    headers: dict[str, str],
) -> web.StreamResponse:
    """``unexpected_body`` and ``close_after``: the real operation runs, its answer is odd."""
    real = render()
    if fault.action == "unexpected_body":
        if real.status >= 300:
            return real
        status = fault.effective_status or 200
        return raw_json(status, json.dumps({"unexpected": True}).encode(), headers)
    # close_after: a complete keep-alive response (no "Connection: close"), then the server
    # closes the socket anyway -- the race of aiohttp issue #3507.
    await real.prepare(request)
    await real.write_eof()
    _close(request)
    return real
