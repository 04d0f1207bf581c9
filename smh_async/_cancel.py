"""Telling a real cancellation from a stray ``CancelledError``.

A host's callback or id source may raise ``CancelledError`` without anyone cancelling the
purge: it awaited a task or future that something else cancelled. Taken as a cancellation
of the run, that error makes anyio tear down a task group nobody cancelled: the run hung
(the producer waiting for room that no worker would make) or returned a summary short of
spaces with no error. asyncio counts the cancellation requests of a task (since Python
3.11; anyio's cancel scopes go through them too), so a ``CancelledError`` while the count is
zero is a stray one: the engine treats it as that callback's or source's error instead.
"""

from __future__ import annotations

import asyncio

import anyio

__all__ = ["cancel_requested", "own_error", "stray"]


def cancel_requested() -> bool:
    """True if the current task has a pending cancellation request (always True where
    asyncio cannot tell, before Python 3.11: every ``CancelledError`` is then taken as real)."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return cancelling is None or cancelling() > 0


def stray(exc: BaseException, what: str) -> RuntimeError:
    """A ``CancelledError`` that no cancellation explains, as an error of ``what``."""
    error = RuntimeError(
        f"{what} raised CancelledError although the purge was not cancelled "
        "(something it awaited was cancelled)"
    )
    error.__cause__ = exc
    return error


def own_error(exc: BaseException, what: str) -> Exception:
    """What ``what`` (a host callback, the id source) raised, as its own error: an
    ``Exception`` as it is, a stray ``CancelledError`` as :func:`stray` makes it; a real
    cancellation (or ``KeyboardInterrupt``, ``SystemExit``) is raised on."""
    if isinstance(exc, Exception):
        return exc
    if isinstance(exc, anyio.get_cancelled_exc_class()) and not cancel_requested():
        return stray(exc, what)
    raise exc
