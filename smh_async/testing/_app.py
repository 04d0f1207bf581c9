"""The single aiohttp entry point: request ids, in-flight counting, latency, faults, recording.

Every request goes through :class:`Dispatcher` so these concerns apply uniformly and the route
handlers stay plain functions. Nothing here logs; the token only ever lives in the query.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from aiohttp import web

from smh_async.testing._fake import FakeSMH
from smh_async.testing._faults import Outcome, deliver_fault, error_body, json_response
from smh_async.testing._handlers import handle
from smh_async.testing._model import SMHError
from smh_async.testing._records import RecordedRequest
from smh_async.testing._routes import TOKEN_ROUTES, RouteMatch, match_route
from smh_async.testing._tokens import Call


def render(call: Call, request_id: str) -> web.Response:
    """Run the route and turn its reply or SMH error into an HTTP response."""
    try:
        reply = handle(call)
    except SMHError as error:
        body = error_body(error.code, error.message, request_id)
        return web.Response(
            status=error.status,
            body=body,
            headers={"X-Request-Id": request_id},
            content_type="application/json",
        )
    return json_response(reply.status, reply.body, request_id)


def _queried_library(request: web.Request, match: RouteMatch) -> str | None:
    """Token mints name their library in the query (the secret beside it is never kept)."""
    if match.route != "token_create":
        return None
    return request.query.get("library_id") or None


class Dispatcher:
    """The one aiohttp handler behind every path of the emulator."""

    def __init__(self, fake: FakeSMH) -> None:
        self.fake = fake

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        """Serve one request and record it, whatever happens (including cancellation)."""
        fake = self.fake
        match = match_route(request.method, request.rel_url.raw_path)
        request_id = uuid.uuid4().hex
        outcome = Outcome()
        started, wall = time.monotonic(), time.time()
        fake.enter(match.route)
        try:
            return await self._serve(request, match, request_id, outcome)
        finally:
            record = RecordedRequest(
                method=request.method,
                route=match.route,
                path=match.recorded_path,
                library_id=match.library_id or _queried_library(request, match),
                space_id=match.space_id,
                status=outcome.status,
                fault=outcome.fault,
                started_at=started,
                finished_at=time.monotonic(),
                wall_time=wall,
                has_token=bool(request.query.get("access_token")) or match.path_token is not None,
                request_id=request_id,
            )
            fake.leave(match.route, record)

    async def _serve(
        self, request: web.Request, match: RouteMatch, request_id: str, outcome: Outcome
    ) -> web.StreamResponse:
        fake = self.fake
        if match.route not in TOKEN_ROUTES:
            delay = fake.latency_seconds()
            if delay > 0:
                await asyncio.sleep(delay)
        call = Call(fake, request.method, match, request.query)
        fault = fake.pick_fault(match, request.method)
        if fault is None:
            plain = render(call, request_id)
            outcome.status = plain.status
            return plain
        outcome.fault = fault.action
        faulted = await deliver_fault(
            request, fault, lambda: render(call, request_id), request_id, outcome
        )
        if not outcome.dropped:
            outcome.status = faulted.status
        return faulted


def build_app(fake: FakeSMH) -> web.Application:
    """An aiohttp application serving ``fake`` on every path and method."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", Dispatcher(fake).dispatch)
    return app
