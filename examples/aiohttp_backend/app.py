"""An aiohttp.web service that empties tenants' recycle bins through smh-async.

Endpoints:

- ``POST /tenants/{space_id}/recycle-bin/empty``: empty one tenant's bin now (200 once SMH
  accepted it; the deletion itself continues server-side).
- ``POST /purges`` with ``{"space_ids": [...]}`` or ``{"all_spaces": true}``: start a
  background bulk purge; 202 with its id and status URL.
- ``GET /purges/{purge_id}``: its progress: ``state``, ``done``, ``total``, ``accepted``,
  ``failed``.

The app owns one ``aiohttp.ClientSession`` for its whole life (``cleanup_ctx``) and lends
it to ``SMHClient``, which never closes a borrowed session. Background purges are asyncio
tasks cancelled at shutdown. Settings come from ``SMH_*`` variables or ``.env``.

Run: ``python -m examples.aiohttp_backend.app`` (serves on 127.0.0.1:8080).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from smh_async import (
    InvalidSpaceIdError,
    Outcome,
    PurgeOutcome,
    SMHClient,
    SMHError,
    SMHNotFoundError,
    SMHSettings,
)


@dataclass
class PurgeJob:
    """Progress of one background purge, updated as each space finishes."""

    purge_id: str
    total: int | None  # None while all spaces are still being listed
    state: str = "running"  # running | finished | failed | cancelled
    done: int = 0
    accepted: int = 0
    failed: int = 0
    error: str | None = None

    def record(self, outcome: PurgeOutcome) -> None:
        """``on_outcome`` callback: count one finished space."""
        self.done += 1
        if outcome.outcome is Outcome.ACCEPTED:
            self.accepted += 1
        elif outcome.outcome is Outcome.FAILED:
            self.failed += 1

    def to_json(self) -> dict[str, Any]:
        """The poll endpoint's body."""
        return {
            "purge_id": self.purge_id,
            "state": self.state,
            "done": self.done,
            "total": self.total,
            "accepted": self.accepted,
            "failed": self.failed,
            "error": self.error,
        }


SETTINGS = web.AppKey("settings", SMHSettings)
SESSION = web.AppKey("session", aiohttp.ClientSession)
SMH = web.AppKey("smh", SMHClient)
JOBS = web.AppKey("jobs", dict[str, PurgeJob])
TASKS = web.AppKey("tasks", set[asyncio.Task[None]])  # running background purges

routes = web.RouteTableDef()


async def smh_context(app: web.Application) -> AsyncIterator[None]:
    """One shared session and SMH client for the app's lifetime; cancel purges at shutdown."""
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session,
        SMHClient(app[SETTINGS], session=session) as smh,
    ):
        app[SESSION], app[SMH] = session, smh
        yield
        tasks = app[TASKS]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def error_response(exc: SMHError) -> web.Response:
    """Map an SMH error to an HTTP answer (SMH errors never carry a credential)."""
    status = 400 if isinstance(exc, InvalidSpaceIdError) else 502
    if isinstance(exc, SMHNotFoundError):
        status = 404
    body = {"error": exc.code or type(exc).__name__, "request_id": exc.request_id}
    return web.json_response(body, status=status)


@routes.post("/tenants/{space_id}/recycle-bin/empty")
async def empty_one(request: web.Request) -> web.Response:
    """Empty one tenant's recycle bin."""
    try:
        result = await request.app[SMH].empty_recycle_bin(request.match_info["space_id"])
    except SMHError as exc:
        return error_response(exc)
    return web.json_response(
        {"space_id": result.space_id, "status": "accepted", "request_id": result.request_id}
    )


@routes.post("/purges")
async def start_purge(request: web.Request) -> web.Response:
    """Start a background bulk purge and answer at once with where to poll it."""
    body = await request.json()
    space_ids = body.get("space_ids")
    if not body.get("all_spaces") and not isinstance(space_ids, list):
        raise web.HTTPBadRequest(text='give {"space_ids": [...]} or {"all_spaces": true}')
    job = PurgeJob(uuid.uuid4().hex, total=None if space_ids is None else len(set(space_ids)))
    request.app[JOBS][job.purge_id] = job
    task = asyncio.create_task(run_purge(request.app[SMH], job, space_ids))
    tasks = request.app[TASKS]
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    location = f"/purges/{job.purge_id}"
    return web.json_response(job.to_json(), status=202, headers={"Location": location})


async def run_purge(smh: SMHClient, job: PurgeJob, space_ids: list[str] | None) -> None:
    """The background task: list spaces if asked to, then purge with progress callbacks."""
    try:
        if space_ids is None:
            space_ids = [space.space_id async for space in smh.iter_spaces()]
            job.total = len(space_ids)
        await smh.purge_all(space_ids, on_outcome=job.record)
        job.state = "finished"
    except SMHError as exc:  # listing failed; per-space errors are outcomes, not exceptions
        job.state, job.error = "failed", exc.code or type(exc).__name__
    except asyncio.CancelledError:
        job.state = "cancelled"
        raise


@routes.get("/purges/{purge_id}")
async def purge_status(request: web.Request) -> web.Response:
    """Progress of a background purge."""
    job = request.app[JOBS].get(request.match_info["purge_id"])
    if job is None:
        raise web.HTTPNotFound(text="no such purge")
    return web.json_response(job.to_json())


def create_app(settings: SMHSettings | None = None) -> web.Application:
    """The application; ``settings`` default to ``SMH_*`` environment variables / ``.env``."""
    app = web.Application()
    app[SETTINGS] = settings if settings is not None else SMHSettings()
    app[JOBS] = {}
    app[TASKS] = set()
    app.cleanup_ctx.append(smh_context)
    app.add_routes(routes)
    return app


if __name__ == "__main__":
    web.run_app(create_app(), host="127.0.0.1", port=8080)
