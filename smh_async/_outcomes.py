"""One space's outcome, built the same way wherever a run ends it, and the run's totals.

:mod:`smh_async._bulk` schedules; this module says what each finished space amounts to
(accepted, failed, interrupted, dry run) and keeps the counts a summary and a progress
snapshot are made of. Everything here runs once per space, so it is kept cheap.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from smh_async._clock import utc_now_ms as utc_now
from smh_async._errors import SMHError, scrub
from smh_async._models import NOT_STARTED, EmptyBinResult, Outcome, PurgeOutcome
from smh_async._progress import LatencyHistogram

__all__ = [
    "ATTEMPTS_SENT",
    "RunTotals",
    "accepted",
    "client_closed",
    "dry_run",
    "failed",
    "interrupted",
    "not_started",
]

_VERIFIED = {True: "verified", False: "verify_not_empty", None: "verify_error"}
# The attempt of the request in flight in this task: a space cancelled mid-request reports
# how many requests were sent for it (the client sets it per attempt, the engine per space).
ATTEMPTS_SENT: ContextVar[int] = ContextVar("smh_async_attempts_sent", default=0)


class RunTotals:
    """Counts by outcome and error code, extra counters, and the latency histogram."""

    def __init__(self) -> None:
        self.accepted = self.failed = self.skipped = self.dry_run = 0
        self.by_error_code: Counter[str] = Counter()
        self.counters: Counter[str] = Counter()
        self.latency = LatencyHistogram()

    @property
    def finished(self) -> int:
        """Spaces with an outcome so far."""
        return self.accepted + self.failed + self.skipped + self.dry_run

    def add(self, outcome: PurgeOutcome) -> None:
        """Count one finished space."""
        kind, extra = outcome.outcome, outcome.extra
        if kind is Outcome.SKIPPED:  # never started: no latency to speak of
            self.skipped += 1
            return
        self.latency.add(outcome.elapsed_ms)
        if kind is Outcome.ACCEPTED:
            self.accepted += 1
            if "verified" in extra:
                self.counters[_VERIFIED[extra["verified"]]] += 1
        elif kind is Outcome.FAILED:
            self.failed += 1
            self.by_error_code[outcome.error_code or "unknown"] += 1
        elif kind is Outcome.DRY_RUN:
            self.dry_run += 1
            self.counters["bin_items"] += int(extra.get("bin_items") or 0)
            self.counters["bin_bytes"] += int(extra.get("bin_bytes") or 0)


def accepted(result: EmptyBinResult, started: float, extra: Mapping[str, Any]) -> PurgeOutcome:
    """SMH answered 204 for ``result.space_id``; ``started`` is its ``time.monotonic()``."""
    return PurgeOutcome(
        result.space_id,
        Outcome.ACCEPTED,
        http_status=result.http_status,
        request_id=result.request_id,
        attempts=result.attempts,
        elapsed_ms=elapsed_ms(started),
        finished_at=utc_now(),
        extra=extra,
    )


def dry_run(space_id: str, started: float, items: int, size: int) -> PurgeOutcome:
    """What a dry run found in the bin (nothing was deleted)."""
    return PurgeOutcome(
        space_id,
        Outcome.DRY_RUN,
        elapsed_ms=elapsed_ms(started),
        finished_at=utc_now(),
        extra={"bin_items": items, "bin_bytes": size},
    )


def failed(space_id: str, exc: Exception, started: float) -> PurgeOutcome:
    """The space's error (an :class:`SMHError`, or a bug in smh-async) as its outcome."""
    if isinstance(exc, SMHError):
        return PurgeOutcome(
            space_id,
            Outcome.FAILED,
            http_status=exc.status,
            error_code=exc.code or type(exc).__name__,
            error_message=exc.message,
            request_id=exc.request_id,
            attempts=exc.attempts,
            elapsed_ms=elapsed_ms(started),
            finished_at=utc_now(),
        )
    detail = scrub(str(exc))
    return PurgeOutcome(
        space_id,
        Outcome.FAILED,
        error_code="ClientError",
        error_message=f"unexpected {type(exc).__name__} in smh-async (a bug; please report)"
        + (f": {detail}" if detail else ""),
        elapsed_ms=elapsed_ms(started),
        finished_at=utc_now(),
    )


def client_closed(space_id: str, started: float, attempts: int = 0) -> PurgeOutcome:
    """The :class:`SMHClient` (or its borrowed session) was closed under the run, which
    then stops: ``attempts`` requests had been sent for this space."""
    return PurgeOutcome(
        space_id,
        Outcome.FAILED,
        error_code="ClientClosed",
        error_message="the SMHClient or its session was closed while the run was going",
        attempts=attempts,
        elapsed_ms=elapsed_ms(started),
        finished_at=utc_now(),
    )


def interrupted(space_id: str, started: float, attempts: int = 0) -> PurgeOutcome:
    """Cancelled in flight (a stop's grace ran out): the request may have reached SMH;
    ``attempts``: requests sent for it (the last one cut off)."""
    return PurgeOutcome(
        space_id,
        Outcome.FAILED,
        error_code="Interrupted",
        error_message="cancelled while in flight; the server may have "
        "received the request (safe to resume: emptying is idempotent)",
        attempts=attempts,
        elapsed_ms=elapsed_ms(started),
        finished_at=utc_now(),
    )


def not_started(space_id: str, reason: str) -> PurgeOutcome:
    """The run stopped (``reason``: ``max_duration``, ``interrupted``…) before this space
    was started: nothing was sent for it."""
    return PurgeOutcome(
        space_id,
        Outcome.SKIPPED,
        error_code=NOT_STARTED,
        error_message=f"not started: the run stopped ({reason}) first; a resume purges it",
        finished_at=utc_now(),
    )


def elapsed_ms(started: float) -> float:
    """Milliseconds since ``started`` (a ``time.monotonic()`` reading)."""
    return (time.monotonic() - started) * 1000.0
