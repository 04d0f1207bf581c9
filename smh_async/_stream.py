"""The streaming form of a purge: outcomes as an async iterator, owned by a context manager.

anyio forbids yielding from inside a task group, so :func:`stream_purge` is an async context
manager that owns the group and hands out a :class:`PurgeStream` to iterate.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import ObjectReceiveStream

from smh_async._bulk import PurgeRun
from smh_async._models import PurgeOutcome, PurgeSummary
from smh_async._targets import SpaceSource

if TYPE_CHECKING:
    from smh_async._client import SMHClient

__all__ = ["PurgeStream", "stream_purge"]


class PurgeStream:
    """Async iterator of outcomes from :func:`stream_purge`; ``summary`` is set at the end."""

    def __init__(self, receive: ObjectReceiveStream[PurgeOutcome], run: PurgeRun) -> None:
        self._receive = receive
        self.run = run
        self.summary: PurgeSummary | None = None

    def __aiter__(self) -> PurgeStream:
        return self

    async def __anext__(self) -> PurgeOutcome:
        try:
            return await self._receive.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None


@asynccontextmanager
async def stream_purge(
    client: SMHClient, space_ids: SpaceSource, **options: Any
) -> AsyncIterator[PurgeStream]:
    """Run a purge in a task group owned by this context; yield outcomes as they finish."""
    send, receive = anyio.create_memory_object_stream[PurgeOutcome](
        options.get("concurrency") or client.settings.concurrency
    )
    run = PurgeRun(client, on_outcome=send.send, **options)
    stream = PurgeStream(receive, run)

    async def _drive() -> None:
        async with send:
            stream.summary = await run.run(space_ids)

    async with anyio.create_task_group() as tg, receive:
        tg.start_soon(_drive)
        try:
            yield stream
        finally:
            tg.cancel_scope.cancel()
