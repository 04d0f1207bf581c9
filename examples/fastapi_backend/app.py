"""A FastAPI service that empties tenants' recycle bins through smh-async.

Endpoints:

- ``POST /tenants/{space_id}/recycle-bin/empty``: empty one tenant's bin now (200 once SMH
  accepted it; the deletion itself continues server-side).
- ``POST /purges`` with ``{"space_ids": [...]}`` or ``{"all_spaces": true}``: start a
  background bulk purge; 202 with its id and status URL.
- ``GET /purges/{purge_id}``: its progress: ``state``, ``done``, ``total``, ``accepted``,
  ``failed``.

The lifespan owns one ``aiohttp.ClientSession`` and lends it to ``SMHClient`` (a borrowed
session is never closed by the client), and an anyio task group that runs the background
purges, so shutdown cancels them cleanly. Settings come from ``SMH_*`` variables or ``.env``.

Needs the ``fastapi`` extra (``pip install 'smh-async[fastapi]'``) and an ASGI server, e.g.
``uvicorn examples.fastapi_backend.app:app``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, cast

import aiohttp
import anyio
from anyio.abc import TaskGroup
from fastapi import Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel, model_validator

from smh_async import (
    InvalidSpaceIdError,
    Outcome,
    PurgeOutcome,
    SMHClient,
    SMHError,
    SMHNotFoundError,
    SMHSettings,
)


class PurgeJob(BaseModel):
    """Progress of one background purge (also the poll endpoint's body)."""

    purge_id: str
    state: str = "running"  # running | finished | failed | cancelled
    done: int = 0
    total: int | None = None  # None while all spaces are still being listed
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


class PurgeRequest(BaseModel):
    """Body of ``POST /purges``: explicit space ids, or every tenant space."""

    space_ids: list[str] | None = None
    all_spaces: bool = False

    @model_validator(mode="after")
    def _one_target(self) -> PurgeRequest:
        if (self.space_ids is None) == (not self.all_spaces):
            raise ValueError('give exactly one of "space_ids" and "all_spaces": true')
        return self


class EmptyBinReply(BaseModel):
    """Body of a successful ``POST /tenants/{space_id}/recycle-bin/empty``."""

    space_id: str
    status: str = "accepted"
    request_id: str | None


@dataclass
class Backend:
    """What the lifespan provides to the handlers."""

    smh: SMHClient
    session: aiohttp.ClientSession
    tasks: TaskGroup
    jobs: dict[str, PurgeJob] = field(default_factory=dict)


def create_app(settings: SMHSettings | None = None) -> FastAPI:
    """The application; ``settings`` default to ``SMH_*`` environment variables / ``.env``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session,
            SMHClient(settings or SMHSettings(), session=session) as smh,
            anyio.create_task_group() as tasks,
        ):
            app.state.backend = Backend(smh, session, tasks)
            yield
            tasks.cancel_scope.cancel()  # stop background purges at shutdown

    app = FastAPI(title="smh-async FastAPI example", lifespan=lifespan)
    app.post("/tenants/{space_id}/recycle-bin/empty")(empty_one)
    app.post("/purges", status_code=202)(start_purge)
    app.get("/purges/{purge_id}")(purge_status)
    return app


def get_backend(request: Request) -> Backend:
    """Dependency: the lifespan's shared client, session and task group."""
    return cast(Backend, request.app.state.backend)


BackendDep = Annotated[Backend, Depends(get_backend)]


def http_error(exc: SMHError) -> HTTPException:
    """Map an SMH error to an HTTP answer (SMH errors never carry a credential)."""
    status = 400 if isinstance(exc, InvalidSpaceIdError) else 502
    if isinstance(exc, SMHNotFoundError):
        status = 404
    detail = {"error": exc.code or type(exc).__name__, "request_id": exc.request_id}
    return HTTPException(status_code=status, detail=detail)


async def empty_one(space_id: str, backend: BackendDep) -> EmptyBinReply:
    """Empty one tenant's recycle bin."""
    try:
        result = await backend.smh.empty_recycle_bin(space_id)
    except SMHError as exc:
        raise http_error(exc) from None
    return EmptyBinReply(space_id=result.space_id, request_id=result.request_id)


async def start_purge(body: PurgeRequest, backend: BackendDep) -> PurgeJob:
    """Start a background bulk purge and answer at once; poll ``GET /purges/{purge_id}``."""
    total = None if body.space_ids is None else len(set(body.space_ids))
    job = PurgeJob(purge_id=uuid.uuid4().hex, total=total)
    backend.jobs[job.purge_id] = job
    backend.tasks.start_soon(run_purge, backend.smh, job, body.space_ids)
    return job


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
    except anyio.get_cancelled_exc_class():
        job.state = "cancelled"
        raise


async def purge_status(purge_id: str, backend: BackendDep) -> PurgeJob:
    """Progress of a background purge."""
    job = backend.jobs.get(purge_id)
    if job is None:
        raise HTTPException(status_code=404, detail="no such purge")
    return job


app = create_app()
