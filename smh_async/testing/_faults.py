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
    request: web.Request,
    source: web.Response,
    *,
    declared_length: int | None = None,
    pause: float = 0.0,
) -> web.StreamResponse:
    """Send ``source`` by hand: optionally lie about its length or trickle it out."""
    body = source.body if isinstance(source.body, bytes) else b""
    response = web.StreamResponse(status=source.status, headers=source.headers)
    response.content_length = len(body) if declared_length is None else declared_length
    await response.prepare(request)
    if declared_length is not None:
        await response.write(body[: len(body) // 2])
        _close(request)
        return response
    step = max(1, -(-len(body) // _SLOW_CHUNKS))
    chunks = [body[i : i + step] for i in range(0, len(body), step)] or [b""]
    for chunk in chunks:
        await asyncio.sleep(pause / len(chunks))
        if chunk:
            await response.write(chunk)
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
    if action == "truncated":
        source = raw_json(status, error, headers)
        return await _stream(request, source, declared_length=len(error) + 512)
    if action == "slow_body":
        source = render() if fault.status is None else raw_json(status, error, headers)
        return await _stream(request, source, pause=fault.effective_delay)
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
