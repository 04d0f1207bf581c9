"""The fan-out engine: a fixed pool of workers draining a bounded stream of space ids.

Memory grows with the concurrency, not with the number of spaces (only an 8-byte
fingerprint per distinct id is kept, for de-duplication). Each space is isolated: its
errors become its outcome and never cancel the others. Stopping is graceful: no new space
starts, in-flight ones get ``grace`` seconds, and any cut short are reported as
``failed``/``Interrupted``; the rest of the input is still read, and each space in it that
was never started is reported ``skipped``/``NotStarted``, so every space of the input has
exactly one outcome (cancelling the run's scope quits without reading the rest).
"""

from __future__ import annotations

import inspect
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

import anyio
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from smh_async import _outcomes as outcomes
from smh_async._auth import TOKEN_UNAVAILABLE
from smh_async._cancel import own_error, stray
from smh_async._dedupe import FingerprintSet
from smh_async._errors import SMHError
from smh_async._logging import library_logger
from smh_async._models import (
    NO_EXTRA,
    NOT_STARTED,
    OUTCOME_TEXT,
    Outcome,
    PurgeOutcome,
    PurgeSummary,
)
from smh_async._outcomes import ATTEMPTS_SENT, RunTotals
from smh_async._progress import LatencyHistogram, ProgressSnapshot
from smh_async._protocol import PROXY_AUTH_REQUIRED, PROXY_REFUSED, TLS_VERIFY_FAILED
from smh_async._release import ReleaseCallback, ReleaseWatcher, snapshot_sizes
from smh_async._targets import SpaceSource, aiter_ids, check_source, close_source

if sys.version_info < (3, 11):  # anyio depends on the backport there
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]

if TYPE_CHECKING:
    from smh_async._client import SMHClient

__all__ = ["LatencyHistogram", "PurgeRun"]

OutcomeCallback = Callable[[PurgeOutcome], Awaitable[None] | None]
ProgressCallback = Callable[[ProgressSnapshot], Awaitable[None] | None]
Job = tuple[str, int | None]  # space id, size before the DELETE (with wait_release)
USAGE_BATCH = 100
# The producer yields after this many ids read without waiting (see _produce).
IDS_PER_CHECKPOINT = 1024
# A token without the space's scope (the admin grant lifts it).
SPACE_SCOPE_CODE = "AccessTokenNotMatchSpace"
# Auth failures that a fresh token did not cure apply to every space: stop at once.
FATAL_AUTH_CODES = frozenset(
    {
        "InvalidAccessToken",
        "NoPermission",
        "AccessTokenNotMatchLibrary",
        "WrongLibraryIdOrSecret",
        TOKEN_UNAVAILABLE,  # no token could be minted (the endpoint is down): none will be
        # The server's identity (its certificate), ours to the proxy (407) or the proxy's
        # policy (a tunnel refused) fails the same way for every space, and retrying cannot
        # help: stop as for a rejected credential.
        TLS_VERIFY_FAILED,
        PROXY_AUTH_REQUIRED,
        PROXY_REFUSED,
    }
)


def is_fatal_auth(error_code: str | None, http_status: int | None) -> bool:
    """Whether an auth failure applies to every space: an SMH code saying the credential is
    bad (:data:`FATAL_AUTH_CODES`), or a 401 or 407, or a 403 without an SMH code (a gateway
    refusing the credential: ``SMHAuthError`` stands in for the missing code)."""
    if error_code in FATAL_AUTH_CODES or http_status in (401, 407):
        return True
    return http_status == 403 and error_code == "SMHAuthError"


def _auth_stop(error_code: str | None) -> str:
    """The stop reason of a fatal auth failure: ``token_unavailable`` when no token could be
    minted for a reason that is not the credential (the token endpoint down: resume later),
    ``auth`` otherwise (a credential to fix)."""
    return "token_unavailable" if error_code == TOKEN_UNAVAILABLE else "auth"


class PurgeRun:
    """One bulk purge. Options (all keyword):

    - ``concurrency``: workers, i.e. requests in flight at most (default: settings).
    - ``on_outcome``: called (sync or async) with each :class:`PurgeOutcome` as it finishes.
      If it raises (a report that cannot be written), the run stops launching, in-flight
      spaces finish, and :meth:`run` raises that exception at the end
      (``summary().aborted == "on_outcome_failed"``); so does a failing ``on_progress`` or
      ``on_release`` (``on_progress_failed``, ``on_release_failed``). A ``CancelledError``
      from a callback or the source while nothing cancels the run is their error too.
    - ``skip``: predicate; ids for which it returns True are not touched and get no outcome
      (resume sets, shard filters).
    - After a stop (any reason below, or :meth:`stop`), the rest of the input is read and
      each space never started gets a ``skipped`` outcome (``error_code="NotStarted"``).
      ``report_not_started=False`` stops reading instead (an input that costs requests to
      read, like a listing): only the spaces already read are reported so.
    - ``dry_run``: list each bin's item count and bytes instead of emptying it.
    - ``verify``: after each 204, list the bin and record whether it is empty.
    - ``wait_release``: seconds to watch accepted spaces' usage drop after the purge (see
      :mod:`smh_async._release`); ``on_release`` gets each :class:`ReleaseResult`.
    - ``max_failure_rate`` / ``min_sample``: stop launching once that share of at least
      ``min_sample`` finished spaces failed (``summary.aborted = "failure_rate"``).
    - ``stop_on_auth``: stop at once when an auth error survives a token re-mint.
    - ``max_spaces``: purge at most this many; if the input holds more, the run ends with
      ``summary.aborted = "max_spaces"`` after those finished.
    - ``max_duration``: seconds after which no new space is started (in-flight ones get
      ``grace``), ending with ``summary.aborted = "max_duration"``: a window for nightly
      runs, like rclone's ``--max-duration``; a resume finishes the rest. Not applied once
      every space has started, nor to the ``wait_release`` watch that follows.
    - ``grace``: seconds in-flight spaces get after :meth:`stop` before being cancelled.
    - ``on_progress`` / ``progress_interval``: a :class:`ProgressSnapshot` every interval
      and once at the end; ``total`` (or :meth:`set_total`) tells it how many to expect.
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
        wait_release: float | None = None,
        on_release: ReleaseCallback | None = None,
        max_failure_rate: float | None = None,
        min_sample: int = 20,
        stop_on_auth: bool = True,
        max_spaces: int | None = None,
        max_duration: float | None = None,
        grace: float = 10.0,
        on_progress: ProgressCallback | None = None,
        progress_interval: float = 1.0,
        total: int | None = None,
        report_not_started: bool = True,
    ) -> None:
        self.client = client
        wanted = concurrency or client.settings.concurrency
        limit = client.connection_limit
        # Never run more workers than the pool has connections: queued requests would
        # spend their timeout waiting for a connection (aiohttp #10313).
        self.concurrency = max(1, min(wanted, limit) if limit else wanted)
        self._requested = wanted
        self._on_outcome, self._on_progress = on_outcome, on_progress
        self._skip = skip
        self.dry_run, self.verify = dry_run, verify
        self.max_failure_rate, self.min_sample = max_failure_rate, min_sample
        self.stop_on_auth, self.max_spaces, self.grace = stop_on_auth, max_spaces, grace
        # Refused for every space alike (a static or host-made token may be scoped to some
        # spaces: then only the others are refused, and the run goes on).
        self._scope_fatal = client._mints_unscoped
        self.max_duration = max_duration
        self.progress_interval = progress_interval
        self.release: ReleaseWatcher | None = None
        if wait_release is not None and not dry_run:
            self.release = ReleaseWatcher(
                client,
                wait_release,
                on_result=on_release,
                on_error=lambda exc: self._callback_failed(exc, "on_release"),
            )
        self.totals = RunTotals()
        self.duplicates = self.filtered = self.launched = self.in_flight = 0
        self.aborted: str | None = None
        self.interrupted = False
        # Why the ids stopped coming (a listing that gave out), or what on_outcome raised:
        # raised by run() once the spaces already started have finished.
        self.source_error: Exception | None = None
        self.callback_error: Exception | None = None
        self._record_broken = False  # on_outcome raised: later outcomes are only counted
        self.started_at = 0.0
        self._expected: tuple[int, bool] | None = (total, True) if total is not None else None
        self._source_done = False
        self._queue: MemoryObjectReceiveStream[Job] | None = None  # jobs not yet taken
        self._seen = FingerprintSet()
        self._stopping = False
        self._room: anyio.Event | None = None  # set when a worker takes a queued job
        self.report_not_started = report_not_started
        self._reading = anyio.CancelScope()  # cut by a stop when not reading on
        self.input_error: Exception | None = None  # the input gave out after a stop
        self._plain = not (dry_run or verify or self.release is not None)
        self._workers_scope = anyio.CancelScope()

    # ------------------------------------------------------------ control

    def stop(self, *, reason: str | None = None, interrupted: bool = False) -> None:
        """Stop launching; in-flight spaces get ``grace`` seconds, then are cancelled."""
        if reason and self.aborted is None:
            self.aborted = reason
        self.interrupted = self.interrupted or interrupted
        if self.release is not None and interrupted:
            self.release.stop()
        if self._stopping:
            return
        self._stopping = True
        if self._room is not None:
            self._room.set()  # a producer waiting for room: no job is sent any more
        if not self.report_not_started:
            self._reading.cancel()  # e.g. a listing: no more requests to read the rest
        self._workers_scope.deadline = min(
            self._workers_scope.deadline, anyio.current_time() + self.grace
        )

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called (by a signal, a threshold or a guard)."""
        return self._stopping

    def set_total(self, count: int, *, final: bool) -> None:
        """Tell progress how many spaces to expect (``final=False``: at least that many)."""
        self._expected = (count, final)

    def progress(self) -> ProgressSnapshot:
        """Where the run stands now (cheap; safe to call at any time)."""
        total, final = self._total()
        return ProgressSnapshot(
            done=self.totals.finished,
            total=total,
            total_final=final,
            accepted=self.totals.accepted,
            failed=self.totals.failed,
            dry_run=self.totals.dry_run,
            in_flight=self.in_flight,
            elapsed_s=time.monotonic() - self.started_at if self.started_at else 0.0,
            by_error_code=dict(self.totals.by_error_code),
            skipped=self.totals.skipped,
        )

    def _total(self) -> tuple[int | None, bool]:
        if self._source_done:
            return self.launched, True
        known = self.launched
        if self._expected is None:
            return (known or None), False
        count, final = self._expected
        if self.max_spaces is not None:
            count = min(count, self.max_spaces)
        return max(count, known), final and count >= known

    # ------------------------------------------------------------ running

    async def run(self, space_ids: SpaceSource) -> PurgeSummary:
        """Purge every id from ``space_ids``; return the summary once all are finished.

        Raises ``TypeError`` for a bare string (its characters would be taken as ids) and
        ``RuntimeError`` for a client that is not open or belongs to another event loop,
        before anything is sent. A generator source is closed when the run ends.
        """
        check_source(space_ids)
        self.client.check_usable()
        try:
            return await self._run(space_ids)
        finally:
            with anyio.CancelScope(shield=True):
                await close_source(space_ids)
            if self.release is not None:
                self.release.close()

    async def _run(self, space_ids: SpaceSource) -> PurgeSummary:
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
        try:
            async with anyio.create_task_group() as outer:
                if self._on_progress is not None:
                    outer.start_soon(self._progress_loop)
                async with anyio.create_task_group() as timer:
                    if self.max_duration is not None:
                        timer.start_soon(self._stop_after, self.max_duration)
                    await self._purge(space_ids)
                    timer.cancel_scope.cancel()
                await self._emit_progress()
                if self.release is not None and not self.interrupted:
                    self.totals.counters.update(await self.release.wait())
                outer.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            _raise_single(group)
        if self.source_error is not None:
            raise self.source_error
        if self.callback_error is not None:
            raise self.callback_error
        summary = self.summary()
        if summary.skipped:
            log.warning(
                "purge.not_started",
                count=summary.skipped,
                reason=summary.aborted or ("interrupted" if summary.interrupted else "stopped"),
            )
        log.info("purge.finished", **summary.to_dict())
        return summary

    async def _purge(self, space_ids: SpaceSource) -> None:
        send, receive = anyio.create_memory_object_stream[Job](self.concurrency)
        self._queue = receive
        # The producer is outside the workers' scope: when the grace runs out after a stop,
        # it still reads the rest of the input to report what was never started.
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._produce, space_ids, send)
            try:
                with self._workers_scope:
                    async with anyio.create_task_group() as workers:
                        for _ in range(self.concurrency):
                            workers.start_soon(self._work, receive.clone())
                # Jobs still queued when the grace cancelled the workers: never started.
                while True:
                    try:
                        space_id, _ = receive.receive_nowait()
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                    await self._not_started(space_id)
            finally:
                receive.close()

    async def _stop_after(self, seconds: float) -> None:
        await anyio.sleep(seconds)
        # Once every space has started, let them finish. Not merely every id read: up to
        # `concurrency` of them may still wait in the queue, and would start after the window.
        queued = self._queue is not None and self._queue.statistics().current_buffer_used > 0
        if not self._source_done or queued:
            library_logger().warning(
                "purge.max_duration", max_duration_s=seconds, in_flight=self.in_flight
            )
            self.stop(reason="max_duration")

    async def _progress_loop(self) -> None:
        while True:
            await anyio.sleep(self.progress_interval)
            await self._emit_progress()

    async def _emit_progress(self) -> None:
        callback = self._on_progress
        if callback is None:
            return
        try:
            result = callback(self.progress())
            if inspect.isawaitable(result):
                await result
        except BaseException as exc:  # (a real cancellation is raised on)
            self._callback_failed(own_error(exc, "on_progress"), "on_progress")

    async def _produce(self, source: SpaceSource, send: MemoryObjectSendStream[Job]) -> None:
        batch_size = USAGE_BATCH if self.release is not None else 1
        batch: list[str] = []
        admitted = 0
        unyielded = 0  # ids read since the producer last waited for room in the queue
        reading = True  # False while handing a batch over: errors there are not the input's
        handing: list[str] | None = None  # the batch _dispatch is handing over
        left = False  # stopped reading at the --max-spaces limit
        async with send:
            with self._reading:
                try:
                    async for space_id in aiter_ids(source):
                        unyielded += 1
                        if self._admit(space_id):
                            if self.max_spaces is not None and admitted >= self.max_spaces:
                                self.aborted = self.aborted or "max_spaces"
                                reading = False
                                await self._not_started(space_id, launched=False)
                                reading = True
                                if not self.report_not_started:  # a pipe, a listing
                                    left = True
                                    break
                                continue
                            admitted += 1
                            batch.append(space_id)
                            if len(batch) >= batch_size:
                                reading = False
                                handing = batch
                                if await self._dispatch(batch, send):
                                    unyielded = 0
                                reading, batch = True, []
                        # A full queue makes the producer wait, which lets the workers run;
                        # a long run of skipped ids (a resume, a shard) must yield by itself.
                        if unyielded >= IDS_PER_CHECKPOINT:
                            unyielded = 0
                            await anyio.lowlevel.checkpoint()
                except BaseException as exc:  # (a real cancellation is raised on)
                    if not reading:  # not the input's fault: a bug, or a size snapshot
                        raise
                    self._input_failed(own_error(exc, "the source of space ids"))
            cut = self._reading.cancelled_caught or left
            if cut:
                if batch is handing:  # the stop cut _dispatch, which reported the rest
                    batch = []
                library_logger().warning("purge.input_not_read", reason=self.aborted or "stopped")
            await self._dispatch(batch, send)
            self._source_done = self.source_error is None and not cut

    def _admit(self, space_id: str) -> bool:
        if not self._seen.add(str(space_id)):
            self.duplicates += 1
            return False
        if self._skip is not None and self._skip(space_id):
            self.filtered += 1
            return False
        return True

    async def _dispatch(self, batch: list[str], send: MemoryObjectSendStream[Job]) -> bool:
        """Send a batch to the workers, after one batched size snapshot if release is watched.
        After a stop, each id of it is reported as never started instead.

        True if it had to wait (for room in the queue or for the snapshot).
        """
        handed = 0  # ids of the batch sent or reported: each exactly once, even if cut
        try:
            waited = bool(self.release and batch and not self._stopping)
            sizes = await snapshot_sizes(self.client, batch) if waited else {}
            for space_id in batch:
                job = (space_id, sizes.get(space_id))
                while not self._stopping:
                    try:
                        send.send_nowait(job)  # no checkpoint per id while there is room
                    except anyio.WouldBlock:
                        # Wait for a worker to take a job (or for a stop), not in send(): a
                        # cancelled send() may or may not have delivered its job.
                        self._room = room = anyio.Event()
                        try:
                            await room.wait()
                        finally:
                            self._room = None
                        waited = True
                    else:
                        self.launched += 1
                        handed += 1
                        break
                else:
                    handed += 1  # _not_started records before its first await
                    await self._not_started(space_id, launched=False)
            return waited
        except anyio.get_cancelled_exc_class():
            if self._stopping:  # a stop cut the reading here: the rest was never started
                with anyio.CancelScope(shield=True):
                    for space_id in batch[handed:]:
                        await self._not_started(space_id, launched=False)
            raise

    def _input_failed(self, exc: Exception) -> None:
        """The listing or the file gave out. What was read is still purged; in-flight
        spaces finish; then run() raises it (an auth error stops the run as one would)."""
        if self._stopping or self.aborted == "max_spaces":
            # Reading on only to report the spaces not started: those not read get no row.
            self.input_error = exc
            library_logger().warning(
                "purge.input_failed_after_stop", error=f"{type(exc).__name__}: {exc}"
            )
        elif self.stop_on_auth and is_fatal_auth(
            getattr(exc, "code", None) or type(exc).__name__, getattr(exc, "status", None)
        ):
            # e.g. a rejected static token on the first page of --all-spaces: the same
            # credential problem as a purge that fails auth, not a broken input.
            library_logger().error("purge.input_auth_failed", error=f"{type(exc).__name__}: {exc}")
            self.stop(reason=_auth_stop(getattr(exc, "code", None)))
        else:
            self.source_error = exc

    async def _not_started(self, space_id: str, *, launched: bool = True) -> None:
        """Report a space the run stopped before starting (``launched``: it was queued)."""
        if not launched:
            self.launched += 1
        reason = self.aborted or ("interrupted" if self.interrupted else "stopped")
        outcome = outcomes.not_started(space_id, reason)
        if self._record_broken:  # the record (report) is broken: count only
            self.totals.add(outcome)
            return
        pending = self._record(outcome)
        if pending is not None:
            await pending

    async def _work(self, receive: MemoryObjectReceiveStream[Job]) -> None:
        async with receive:
            while (job := await _next_job(receive)) is not None:
                if self._room is not None:
                    self._room.set()  # the producer waits for room in the queue
                space_id, size_before = job
                if self._stopping:
                    await self._not_started(space_id)
                    continue
                self.in_flight += 1
                try:
                    outcome = await self._one(space_id, size_before)
                finally:
                    self.in_flight -= 1
                pending = self._record(outcome)
                if pending is not None:
                    await pending

    async def _one(self, space_id: str, size_before: int | None) -> PurgeOutcome:
        started = time.monotonic()
        ATTEMPTS_SENT.set(0)
        # bind/reset directly: the bound_contextvars() context manager costs 5x more.
        tokens = structlog.contextvars.bind_contextvars(space_id=space_id)
        try:
            try:  # an unsafe space id is rejected by the request builder, before any I/O
                if self._plain:  # no dry run, verify or release watch: one call, inline
                    result = await self.client.empty_recycle_bin(space_id)
                    return outcomes.accepted(result, started, NO_EXTRA)
                return await self._act(space_id, size_before, started)
            except anyio.get_cancelled_exc_class():
                outcome = outcomes.interrupted(space_id, started, ATTEMPTS_SENT.get())
                # Recorded although the run is being cancelled, for `grace` seconds at most:
                # a hung async on_outcome must not hold a host's cancellation up for ever.
                deadline = anyio.current_time() + self.grace
                with anyio.CancelScope(shield=True, deadline=deadline) as shield:
                    pending = self._record(outcome)
                    if pending is not None:
                        await pending
                if shield.cancelled_caught:
                    library_logger().warning(
                        "purge.on_outcome_cut", space_id=space_id, after_s=self.grace
                    )
                raise
            except Exception as exc:  # SMHError, or a bug: neither takes other spaces down
                if isinstance(exc, SMHError) or not self.client.closed:
                    return outcomes.failed(space_id, exc, started)
                # Closed under the run (a host shutting down): no later space can be sent.
                self.stop(reason="client_closed")
                return outcomes.client_closed(space_id, started, ATTEMPTS_SENT.get())
        finally:
            structlog.contextvars.reset_contextvars(**tokens)

    async def _act(self, space_id: str, size_before: int | None, started: float) -> PurgeOutcome:
        client = self.client
        if self.dry_run:
            items, size = await client.recycle_bin_totals(space_id)
            return outcomes.dry_run(space_id, started, items, size)
        extra: dict[str, Any] = {}
        if self.release is not None:
            items_before = await self._bin_count(space_id)
            extra = {"size_before": size_before, "bin_items_before": items_before}
        result = await client.empty_recycle_bin(space_id)
        if self.verify:
            remaining = await self._bin_count(space_id)
            extra["verified"] = None if remaining is None else remaining == 0
            extra["bin_items_after"] = remaining
        if self.release is not None:
            await self.release.add(space_id, size_before, extra["bin_items_before"])
        return outcomes.accepted(result, started, extra)

    async def _bin_count(self, space_id: str) -> int | None:
        """Items in the bin (one ``page_size=1`` listing); None if it could not be read."""
        try:
            page = await self.client.list_recycle_bin(space_id, page=1, page_size=1)
        except SMHError:
            return None
        return page.total if page.total is not None else len(page.items)

    def _record(self, outcome: PurgeOutcome) -> Awaitable[None] | None:
        """Count, log and hand on one outcome; returns what to await if the callback is async.

        Synchronous on purpose: it runs once per space, and a coroutine per call is
        measurable on a fast server (benchmarks/RESULTS.md).
        """
        self.totals.add(outcome)
        failed = outcome.outcome is Outcome.FAILED
        log = library_logger()
        # A space never started is one debug line each (a stop may leave millions); the
        # run logs their count once (purge.not_started).
        emit = (
            log.warning if failed else log.debug if outcome.error_code == NOT_STARTED else log.info
        )
        emit(
            "purge.space",
            space_id=outcome.space_id,
            outcome=OUTCOME_TEXT[outcome.outcome],
            http_status=outcome.http_status,
            error_code=outcome.error_code,
            smh_request_id=outcome.request_id,
            attempts=outcome.attempts,
            elapsed_ms=round(outcome.elapsed_ms, 1),
        )
        result = None
        if self._on_outcome is not None:
            try:
                result = self._on_outcome(outcome)
            except Exception as exc:
                self._callback_failed(exc)
            except anyio.get_cancelled_exc_class() as exc:  # no await here: never the run's
                self._callback_failed(stray(exc, "on_outcome"))
        if failed:
            self._check_thresholds(outcome)
        if result is not None and inspect.isawaitable(result):
            return self._await_callback(result)
        return None

    async def _await_callback(self, pending: Awaitable[None]) -> None:
        try:
            await pending
        except BaseException as exc:  # (a real cancellation is raised on)
            self._callback_failed(own_error(exc, "on_outcome"))

    def _callback_failed(self, exc: Exception, which: str = "on_outcome") -> None:
        """A host callback raised: without the record of outcomes (the report), or the
        progress or release records, stop launching; :meth:`run` raises it at the end."""
        self._record_broken = self._record_broken or which == "on_outcome"
        if self.callback_error is None:
            self.callback_error = exc
            library_logger().error(f"purge.{which}_failed", error=f"{type(exc).__name__}: {exc}")
        self.stop(reason=f"{which}_failed")

    def _check_thresholds(self, outcome: PurgeOutcome) -> None:
        if self._stopping:
            return
        if self.stop_on_auth and (
            is_fatal_auth(outcome.error_code, outcome.http_status)
            or (self._scope_fatal and outcome.error_code == SPACE_SCOPE_CODE)
        ):
            self.stop(reason=_auth_stop(outcome.error_code))
        elif self.max_failure_rate is not None:
            done = self.totals.finished
            if done >= self.min_sample and self.totals.failed / done >= self.max_failure_rate:
                self.stop(reason="failure_rate")

    def summary(self) -> PurgeSummary:
        """Totals so far (final once :meth:`run` returned)."""
        t = self.totals
        return PurgeSummary(
            total=t.finished,
            accepted=t.accepted,
            failed=t.failed,
            skipped=t.skipped,
            dry_run=t.dry_run,
            duplicates=self.duplicates,
            by_error_code=dict(t.by_error_code),
            elapsed_s=time.monotonic() - self.started_at if self.started_at else 0.0,
            latency_ms=t.latency.summary(),
            aborted=self.aborted,
            interrupted=self.interrupted,
            counters=dict(t.counters),
        )


async def _next_job(receive: MemoryObjectReceiveStream[Job]) -> Job | None:
    """The next queued job, or None once the producer is done.

    A buffered job is taken without a checkpoint: anyio's ``send``/``receive`` yield to the
    event loop on every item, which held a CPU-bound run to one request per loop iteration
    (about half the throughput of a plain aiohttp loop; see benchmarks/RESULTS.md). Each job
    awaits network I/O anyway, so workers still yield and stay cancellable.
    """
    try:
        return receive.receive_nowait()
    except anyio.WouldBlock:
        pass
    except anyio.EndOfStream:
        return None
    try:
        return await receive.receive()
    except anyio.EndOfStream:
        return None


def _raise_single(group: BaseExceptionGroup[BaseException]) -> None:
    """Re-raise the one real error of nested task groups instead of an opaque group
    (anyio #141): e.g. the ``SMHError`` of a listing that gave out, which callers catch.

    Task groups nest here (run → timer → workers), so the error arrives wrapped once per
    level; only looking one level down let it escape as an ``ExceptionGroup``.
    """
    cancelled = anyio.get_cancelled_exc_class()
    real = [e for e in _leaves(group) if not isinstance(e, cancelled)]
    if len(real) == 1:
        raise real[0]
    raise group


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc
