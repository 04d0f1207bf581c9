"""The fan-out engine: a fixed pool of workers draining a bounded stream of space ids.

Memory grows with the concurrency, not with the number of spaces (only an 8-byte
fingerprint per distinct id is kept, for de-duplication). Each space is isolated: its
errors become its outcome and never cancel the others. Stopping is graceful: no new space
starts, in-flight ones get ``grace`` seconds, and any cut short are reported as
``failed``/``Interrupted`` so every space that was started has exactly one outcome.
"""

from __future__ import annotations

import inspect
import math
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import anyio
import structlog
from anyio.abc import ObjectReceiveStream, ObjectSendStream

from smh_async._dedupe import FingerprintSet
from smh_async._errors import InvalidSpaceIdError, SMHError
from smh_async._logging import library_logger
from smh_async._models import Outcome, PurgeOutcome, PurgeSummary
from smh_async._protocol import check_path_segment

if sys.version_info < (3, 11):  # anyio depends on the backport there
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]

if TYPE_CHECKING:
    from smh_async._client import SMHClient

__all__ = ["LatencyHistogram", "PurgeRun", "PurgeStream", "stream_purge"]

OutcomeCallback = Callable[[PurgeOutcome], Awaitable[None] | None]
SpaceSource = Iterable[str] | AsyncIterator[str]
# Auth failures that a fresh token did not cure apply to every space: stop at once.
FATAL_AUTH_CODES = frozenset(
    {"InvalidAccessToken", "NoPermission", "AccessTokenNotMatchLibrary", "WrongLibraryIdOrSecret"}
)


class LatencyHistogram:
    """Log-bucketed latencies (±2.5%): percentiles in constant memory for any run size."""

    _RATIO = 1.05
    _MIN_MS = 0.05

    def __init__(self) -> None:
        self._buckets: Counter[int] = Counter()
        self.count = 0
        self.max_ms = 0.0

    def add(self, ms: float) -> None:
        """Record one latency in milliseconds."""
        self.count += 1
        self.max_ms = max(self.max_ms, ms)
        self._buckets[int(math.log(max(ms, self._MIN_MS) / self._MIN_MS, self._RATIO))] += 1

    def percentile(self, q: float) -> float:
        """Approximate ``q``-quantile (0..1) in milliseconds; 0 when empty."""
        if not self.count:
            return 0.0
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for bucket in sorted(self._buckets):
            seen += self._buckets[bucket]
            if seen >= rank:
                return min(self.max_ms, float(self._MIN_MS * self._RATIO ** (bucket + 0.5)))
        return self.max_ms

    def summary(self) -> dict[str, float]:
        """p50/p95/max in ms, rounded."""
        return {
            "p50": round(self.percentile(0.5), 1),
            "p95": round(self.percentile(0.95), 1),
            "max": round(self.max_ms, 1),
        }


@dataclass
class _Tally:
    accepted: int = 0
    failed: int = 0
    skipped: int = 0
    dry_run: int = 0

    @property
    def finished(self) -> int:
        return self.accepted + self.failed + self.skipped + self.dry_run


class PurgeRun:
    """One bulk purge. Options (all keyword):

    - ``concurrency``: workers, i.e. requests in flight at most (default: settings).
    - ``on_outcome``: called (sync or async) with each :class:`PurgeOutcome` as it finishes.
    - ``skip``: predicate; ids for which it returns True are not touched and get no outcome
      (resume sets, shard filters).
    - ``dry_run``: list each bin's item count and bytes instead of emptying it.
    - ``verify``: after each 204, list the bin and record whether it is empty.
    - ``max_failure_rate`` / ``min_sample``: stop launching once that share of at least
      ``min_sample`` finished spaces failed (``summary.aborted = "failure_rate"``).
    - ``stop_on_auth``: stop at once when an auth error survives a token re-mint.
    - ``max_spaces``: stop before starting space number ``max_spaces + 1``.
    - ``grace``: seconds in-flight spaces get after :meth:`stop` before being cancelled.
    """

    def __init__(
        self,
        client: SMHClient,
        *,
        concurrency: int | None = None,
        on_outcome: OutcomeCallback | None = None,
        skip: Callable[[str], bool] | None = None,
        dry_run: bool = False,
        verify: bool = False,
        max_failure_rate: float | None = None,
        min_sample: int = 20,
        stop_on_auth: bool = True,
        max_spaces: int | None = None,
        grace: float = 10.0,
    ) -> None:
        self.client = client
        wanted = concurrency or client.settings.concurrency
        limit = client.connection_limit
        # Never run more workers than the pool has connections: queued requests would
        # spend their timeout waiting for a connection (aiohttp #10313).
        self.concurrency = max(1, min(wanted, limit) if limit else wanted)
        self._on_outcome = on_outcome
        self._skip = skip
        self.dry_run = dry_run
        self.verify = verify
        self.max_failure_rate = max_failure_rate
        self.min_sample = min_sample
        self.stop_on_auth = stop_on_auth
        self.max_spaces = max_spaces
        self.grace = grace
        self.tally = _Tally()
        self.by_error_code: Counter[str] = Counter()
        self.latency = LatencyHistogram()
        self.duplicates = 0
        self.filtered = 0
        self.launched = 0
        self.in_flight = 0
        self.aborted: str | None = None
        self.interrupted = False
        self.started_at = 0.0
        self._seen = FingerprintSet()
        self._stopping = False
        self._producer_scope = anyio.CancelScope()
        self._workers_scope = anyio.CancelScope()
        self._requested = wanted

    # ------------------------------------------------------------ control

    def stop(self, *, reason: str | None = None, interrupted: bool = False) -> None:
        """Stop launching; in-flight spaces get ``grace`` seconds, then are cancelled."""
        if reason and self.aborted is None:
            self.aborted = reason
        self.interrupted = self.interrupted or interrupted
        if self._stopping:
            return
        self._stopping = True
        self._producer_scope.cancel()
        self._workers_scope.deadline = min(
            self._workers_scope.deadline, anyio.current_time() + self.grace
        )

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called (by a signal, a threshold or a guard)."""
        return self._stopping

    # ------------------------------------------------------------ running

    async def run(self, space_ids: SpaceSource) -> PurgeSummary:
        """Purge every id from ``space_ids``; return the summary once all are finished."""
        log = library_logger()
        self.started_at = time.monotonic()
        if self.concurrency < self._requested:
            log.warning(
                "purge.concurrency_clamped",
                requested=self._requested,
                concurrency=self.concurrency,
                reason="session connection limit",
            )
        log.info(
            "purge.started",
            concurrency=self.concurrency,
            dry_run=self.dry_run,
            library_id=self.client.library_id,
        )
        send, receive = anyio.create_memory_object_stream[str](self.concurrency)
        try:
            with self._workers_scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._produce, space_ids, send)
                    for _ in range(self.concurrency):
                        tg.start_soon(self._work, receive.clone())
                    receive.close()
        except BaseExceptionGroup as group:
            _raise_single(group)
        summary = self.summary()
        log.info("purge.finished", **summary.to_dict())
        return summary

    async def _produce(self, source: SpaceSource, send: ObjectSendStream[str]) -> None:
        async with send:
            with self._producer_scope:
                async for space_id in _aiter(source):
                    if not self._seen.add(str(space_id)):
                        self.duplicates += 1
                        continue
                    if self._skip is not None and self._skip(space_id):
                        self.filtered += 1
                        continue
                    if self.max_spaces is not None and self.launched >= self.max_spaces:
                        self.stop(reason="max_spaces")
                        return
                    self.launched += 1
                    await send.send(space_id)

    async def _work(self, receive: ObjectReceiveStream[str]) -> None:
        async with receive:
            async for space_id in receive:
                if self._stopping:
                    self.launched -= 1  # taken from the queue but never started
                    continue
                self.in_flight += 1
                try:
                    outcome = await self._one(space_id)
                finally:
                    self.in_flight -= 1
                await self._record(outcome)

    async def _one(self, space_id: str) -> PurgeOutcome:
        started = time.monotonic()
        with structlog.contextvars.bound_contextvars(space_id=space_id):
            try:
                try:
                    check_path_segment(space_id)
                    return await self._act(space_id, started)
                except SMHError as exc:
                    return _failed(space_id, exc, started)
                except anyio.get_cancelled_exc_class():
                    outcome = PurgeOutcome(
                        space_id,
                        Outcome.FAILED,
                        error_code="Interrupted",
                        error_message="cancelled while in flight; the server may have "
                        "received the request (safe to resume: emptying is idempotent)",
                        elapsed_ms=_ms(started),
                        finished_at=_now(),
                    )
                    with anyio.CancelScope(shield=True):
                        await self._record(outcome)
                    raise
                except Exception as exc:  # a bug must not take the other spaces down
                    return _failed(space_id, exc, started)
            except InvalidSpaceIdError as exc:  # pragma: no cover - handled above
                return _failed(space_id, exc, started)

    async def _act(self, space_id: str, started: float) -> PurgeOutcome:
        client = self.client
        if self.dry_run:
            items, size = await client.recycle_bin_totals(space_id)
            return PurgeOutcome(
                space_id,
                Outcome.DRY_RUN,
                attempts=0,
                elapsed_ms=_ms(started),
                finished_at=_now(),
                extra={"bin_items": items, "bin_bytes": size},
            )
        result = await client.empty_recycle_bin(space_id)
        extra: dict[str, Any] = {}
        if self.verify:
            extra = await self._verify(space_id)
        return PurgeOutcome(
            space_id,
            Outcome.ACCEPTED,
            http_status=result.http_status,
            request_id=result.request_id,
            attempts=result.attempts,
            elapsed_ms=_ms(started),
            finished_at=_now(),
            extra=extra,
        )

    async def _verify(self, space_id: str) -> dict[str, Any]:
        try:
            page = await self.client.list_recycle_bin(space_id, page=1, page_size=1)
        except SMHError as exc:
            return {"verified": None, "verify_error": exc.code or type(exc).__name__}
        remaining = page.total if page.total is not None else len(page.items)
        return {"verified": remaining == 0, "bin_items_after": remaining}

    async def _record(self, outcome: PurgeOutcome) -> None:
        kind = outcome.outcome
        if kind is Outcome.ACCEPTED:
            self.tally.accepted += 1
        elif kind is Outcome.FAILED:
            self.tally.failed += 1
            self.by_error_code[outcome.error_code or "unknown"] += 1
        elif kind is Outcome.DRY_RUN:
            self.tally.dry_run += 1
        else:
            self.tally.skipped += 1
        self.latency.add(outcome.elapsed_ms)
        library_logger().info(
            "purge.space",
            space_id=outcome.space_id,
            outcome=kind.value,
            http_status=outcome.http_status,
            error_code=outcome.error_code,
            request_id=outcome.request_id,
            attempts=outcome.attempts,
            elapsed_ms=round(outcome.elapsed_ms, 1),
        )
        if self._on_outcome is not None:
            result = self._on_outcome(outcome)
            if inspect.isawaitable(result):
                await result
        self._check_thresholds(outcome)

    def _check_thresholds(self, outcome: PurgeOutcome) -> None:
        if outcome.outcome is not Outcome.FAILED or self._stopping:
            return
        if self.stop_on_auth and outcome.error_code in FATAL_AUTH_CODES:
            self.stop(reason="auth")
        elif self.max_failure_rate is not None:
            done = self.tally.finished
            if done >= self.min_sample and self.tally.failed / done >= self.max_failure_rate:
                self.stop(reason="failure_rate")

    def summary(self) -> PurgeSummary:
        """Totals so far (final once :meth:`run` returned)."""
        t = self.tally
        return PurgeSummary(
            total=t.finished,
            accepted=t.accepted,
            failed=t.failed,
            skipped=t.skipped,
            dry_run=t.dry_run,
            duplicates=self.duplicates,
            by_error_code=dict(self.by_error_code),
            elapsed_s=time.monotonic() - self.started_at if self.started_at else 0.0,
            latency_ms=self.latency.summary(),
            aborted=self.aborted,
            interrupted=self.interrupted,
        )


def _failed(space_id: str, exc: Exception, started: float) -> PurgeOutcome:
    if isinstance(exc, SMHError):
        code = exc.code or type(exc).__name__
        return PurgeOutcome(
            space_id,
            Outcome.FAILED,
            http_status=exc.status,
            error_code=code,
            error_message=exc.message,
            request_id=exc.request_id,
            attempts=exc.attempts,
            elapsed_ms=_ms(started),
            finished_at=_now(),
        )
    return PurgeOutcome(
        space_id,
        Outcome.FAILED,
        error_code="ClientError",
        error_message=f"unexpected {type(exc).__name__} in smh-async (a bug; please report)",
        elapsed_ms=_ms(started),
        finished_at=_now(),
    )


def _ms(started: float) -> float:
    return (time.monotonic() - started) * 1000.0


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def _aiter(source: SpaceSource) -> AsyncIterator[str]:
    if hasattr(source, "__aiter__"):
        async for item in source:
            yield item
    else:
        for n, item in enumerate(source):
            yield item
            if n % 256 == 255:
                await anyio.lowlevel.checkpoint()  # a long sync source must not starve I/O


def _raise_single(group: BaseExceptionGroup[BaseException]) -> None:
    """Re-raise the one real error of a task group instead of an opaque group (anyio #141)."""
    real = [e for e in group.exceptions if not isinstance(e, anyio.get_cancelled_exc_class())]
    if len(real) == 1:
        raise real[0]
    raise group


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
