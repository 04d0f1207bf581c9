"""The streaming form of a purge: outcomes as an async iterator, owned by a context manager.

anyio forbids yielding from inside a task group, so :func:`stream_purge` is an async context
manager that owns the group and hands out a :class:`PurgeStream` to iterate.

Leaving the context early (a ``break``, a cancel scope, a cancelled task, an exception in the
body, or not iterating at all) cancels the run: in-flight spaces are cut short
(``Interrupted``), the outcomes nobody will read are dropped without an error, and a
generator handed in as the source is closed at once (its ``finally`` runs on exit, not at
garbage collection). Errors come out as themselves, as they do from ``purge_all``: the
source's or the run's one error, or the caller's own exception from the body, never an
``ExceptionGroup`` wrapping a single error.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import ObjectReceiveStream

from smh_async._bulk import PurgeRun, _leaves
from smh_async._models import PurgeOutcome, PurgeSummary
from smh_async._targets import SpaceSource, close_source

if sys.version_info < (3, 11):  # anyio depends on the backport there
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]

if TYPE_CHECKING:
    from smh_async._client import OutcomeCallback, SMHClient

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
    client: SMHClient,
    space_ids: SpaceSource,
    *,
    on_outcome: OutcomeCallback | None = None,
    **options: Any,
) -> AsyncIterator[PurgeStream]:
    """Run a purge in a task group owned by this context; yield outcomes as they finish.

    ``on_outcome`` (sync or async) also gets every outcome, as with ``purge_all``, even the
    spaces cut short after the caller left (it is the caller's record, a report say); if it
    raises, the run stops launching and that exception comes out of the context at the end.
    """
    left = False  # the caller left the context: nobody reads outcomes any more

    async def offer(outcome: PurgeOutcome) -> None:
        # Once the caller has left, the spaces cut short still report (Interrupted, under a
        # shield): drop those quietly rather than fail the run's on_outcome (an error event).
        if left:
            return
        try:
            await send.send(outcome)
        except anyio.BrokenResourceError:
            if not left:
                raise

    async def deliver(outcome: PurgeOutcome) -> None:
        # The caller's callback first: sending may wait for the reader and be cancelled
        # there, which must not cost the callback its outcome. Its error is raised after the
        # outcome was offered to the stream too, for the run to handle as purge_all does.
        try:
            result = on_outcome(outcome) if on_outcome is not None else None
            if result is not None and inspect.isawaitable(result):
                await result
        except Exception:
            await offer(outcome)
            raise
        await offer(outcome)

    # Built before the streams: an unknown option fails here, leaving no stream unclosed.
    run = PurgeRun(client, on_outcome=deliver, **options)
    send, receive = anyio.create_memory_object_stream[PurgeOutcome](
        options.get("concurrency") or client.settings.concurrency
    )
    stream = PurgeStream(receive, run)

    async def _drive() -> None:
        async with send:
            stream.summary = await run.run(space_ids)

    error: BaseException | None = None
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_drive)
            try:
                yield stream
            finally:
                left = True
                # Wakes a worker waiting for room in the stream (BrokenResourceError, which
                # deliver drops), then cancels what is still running.
                receive.close()
                tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        error = _single_error(group)
        if error is None:
            raise
    finally:
        if stream.summary is None:  # left early, or the run failed: nothing reads on
            await close_source(space_ids)  # run() closes it too, if it got to start
    if error is not None:
        # Raised here, outside the except clause, so that the error (possibly the caller's
        # own, from the body) does not get the task group's wrapper as its __context__.
        raise error


def _single_error(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The one real error in the task group's (nested) group, if there is exactly one.

    Cancellations are left out, as :func:`smh_async._bulk._raise_single` does; a group of
    only cancellations or of several errors is re-raised as it is.
    """
    cancelled = anyio.get_cancelled_exc_class()
    real = [e for e in _leaves(group) if not isinstance(e, cancelled)]
    return real[0] if len(real) == 1 else None
