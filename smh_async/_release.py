"""Did emptying the bin actually free the space? Poll usage after the purge (``--wait-release``).

SMH answers 204 at once and releases the bytes later, with no task to poll, and its usage
figures lag. So, per :doc:`smh-api` §4: the size of each space is taken *before* its DELETE
(batched usage call, ``USAGE_BATCH`` ids per request, done by the engine per batch of spaces),
and after the purge the spaces that had something in the bin are polled in rounds, again
batched, with exponential backoff between rounds, until each size dropped below its
``size_before`` and read the same in two consecutive polls (``released``). Whatever has not
settled by the deadline is ``release_pending`` -- not a failure, SMH may simply be slow.

Memory stays flat for any run size: the spaces still being watched live in a temporary
spill file (one short line each), rewritten every round, never in a Python collection.
"""

from __future__ import annotations

import inspect
import itertools
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

import anyio

from smh_async._cancel import own_error
from smh_async._clock import utc_now_ms
from smh_async._errors import SMHError
from smh_async._logging import library_logger
from smh_async._protocol import check_path_segment

if TYPE_CHECKING:
    from smh_async._client import SMHClient

__all__ = ["ReleaseResult", "ReleaseWatcher", "snapshot_sizes"]

RELEASED, PENDING, NOTHING, UNKNOWN = (
    "released",
    "release_pending",
    "nothing_to_release",
    "unknown",
)
ReleaseCallback = Callable[["ReleaseResult"], Awaitable[None] | None]
# A poll under way when the deadline passes gets this long to finish before it is cut.
ROUND_GRACE = 5.0


@dataclass(frozen=True, slots=True)
class ReleaseResult:
    """How one accepted space's storage was seen to be released (one release-report row).

    ``state``: ``released`` (size dropped and held), ``release_pending`` (not settled by the
    deadline), ``nothing_to_release`` (the bin was empty before the DELETE) or ``unknown``
    (its size could not be read before the DELETE).
    """

    space_id: str
    state: str
    size_before: int | None
    size_after: int | None
    polls: int
    waited_s: float

    def to_record(self) -> dict[str, Any]:
        """The JSON Lines row for the release report."""
        return {
            "space_id": self.space_id,
            "release": self.state,
            "size_before": self.size_before,
            "size_after": self.size_after,
            "polls": self.polls,
            "waited_s": round(self.waited_s, 1),
            "checked_at": utc_now_ms(),  # as the report's finished_at: ...T12:00:00.000Z
        }


async def snapshot_sizes(client: SMHClient, space_ids: Sequence[str]) -> dict[str, int]:
    """Sizes of ``space_ids`` via the batched usage endpoint; ids it cannot read are absent.

    One unknown or invalid id makes SMH reject a whole batch, so a failing batch is split in
    halves until the bad ids are isolated (a few extra calls, only when something is wrong).
    """
    ids = [s for s in space_ids if _valid(s)]
    if not ids:
        return {}
    try:
        return {u.space_id: u.size for u in await client.usage(ids)}
    except SMHError as exc:
        if len(ids) == 1 or not _names_a_bad_id(exc):
            return {}  # e.g. a 5xx or a timeout, already retried: splitting only multiplies it
        half = len(ids) // 2
        first = await snapshot_sizes(client, ids[:half])
        return {**first, **await snapshot_sizes(client, ids[half:])}


def _names_a_bad_id(error: SMHError) -> bool:
    """Whether the batch may have been refused for one of its ids: a 4xx that is neither a
    retryable one (429) nor a credential problem, which would refuse any half as well."""
    status = error.status
    return (
        status is not None and 400 <= status < 500 and status not in (401, 403)
    ) and not error.retryable


def _valid(space_id: str) -> bool:
    try:
        check_path_segment(space_id)
    except ValueError:
        return False
    return True


class ReleaseWatcher:
    """Collects accepted spaces during a run, then polls until they are released or time is up.

    ``add()`` is called per accepted space; ``wait()`` runs the polling phase and returns the
    count per state; ``stop()`` (a signal) ends the phase early, the rest being pending.
    """

    def __init__(
        self,
        client: SMHClient,
        deadline_s: float,
        *,
        on_result: ReleaseCallback | None = None,
        on_error: Callable[[Exception], None] | None = None,
        first_wait: float = 1.0,
        max_wait: float = 30.0,
        batch: int = 100,
    ) -> None:
        self.client = client
        self.deadline_s = deadline_s
        self.counts: Counter[str] = Counter()
        self._on_result, self._on_error = on_result, on_error
        self._first_wait, self._max_wait, self._batch = first_wait, max_wait, batch
        self._spill: IO[str] = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115
        self._pending = 0
        self._stopped = False
        self._scope = anyio.CancelScope()
        self._started = 0.0

    async def add(
        self, space_id: str, size_before: int | None, bin_items_before: int | None
    ) -> None:
        """Remember one accepted space (its size and bin count were read before the DELETE)."""
        if bin_items_before == 0:
            await self._emit(ReleaseResult(space_id, NOTHING, size_before, size_before, 0, 0.0))
        elif size_before is None:
            await self._emit(ReleaseResult(space_id, UNKNOWN, None, None, 0, 0.0))
        else:
            self._spill.write(f"{space_id}\t{size_before}\t-1\t0\n")
            self._pending += 1

    def stop(self) -> None:
        """Stop polling now; spaces not yet settled are reported ``release_pending``."""
        self._stopped = True
        self._scope.cancel()

    def close(self) -> None:
        """Drop the spill file (done by :meth:`wait`; for a run that ends before it)."""
        self._spill.close()

    async def wait(self) -> Counter[str]:
        """Poll in rounds with backoff until all are released or the deadline passes (a
        round under way then gets :data:`ROUND_GRACE` more seconds, then is cut: usage
        calls that hang or retry must not stretch the watch past what was asked)."""
        self._started = time.monotonic()
        deadline = self._started + self.deadline_s
        delay = self._first_wait
        self._scope.deadline = anyio.current_time() + self.deadline_s + ROUND_GRACE
        with self._scope:
            while self._pending and not self._stopped:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                await anyio.sleep(min(delay, left))
                await self._round()
                delay = min(delay * 2, self._max_wait)
        for space_id, before, last, polls in self._rows():
            after = last if last >= 0 else None
            await self._emit(ReleaseResult(space_id, PENDING, before, after, polls, self._waited()))
        self.close()
        return self.counts

    async def _round(self) -> None:
        kept = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115
        self._pending = 0
        batches = _batches(self._rows(), self._batch)
        rows: list[tuple[str, int, int, int]] = []
        try:
            for rows in batches:
                sizes = (
                    {} if self._stopped else await snapshot_sizes(self.client, [r[0] for r in rows])
                )
                await self._settle(rows, sizes, kept)
                rows = []
        finally:  # a round cut short (the deadline, a stop): what it did not poll stays
            for space_id, before, last, polls in itertools.chain(rows, *batches):
                kept.write(f"{space_id}\t{before}\t{last}\t{polls}\n")
                self._pending += 1
            self._spill.close()
            self._spill = kept
        library_logger().info("purge.release_poll", pending=self._pending, **dict(self.counts))

    async def _settle(
        self, rows: list[tuple[str, int, int, int]], sizes: dict[str, int], kept: IO[str]
    ) -> None:
        """Report the spaces of ``rows`` whose size dropped and held; keep the others.

        Each row leaves ``rows`` as it is handled: if an async ``on_release`` is cut short
        here (a stop, the deadline), the round keeps only the rows nobody handled, instead
        of reporting the released ones again as pending.
        """
        rows.reverse()
        while rows:
            space_id, before, last, polls = rows.pop()
            size = sizes.get(space_id)
            if size is not None and size < before and size == last:
                await self._emit(
                    ReleaseResult(space_id, RELEASED, before, size, polls + 1, self._waited())
                )
                continue
            seen = size if size is not None else last
            kept.write(f"{space_id}\t{before}\t{seen}\t{polls + (size is not None)}\n")
            self._pending += 1

    def _rows(self) -> Iterator[tuple[str, int, int, int]]:
        self._spill.flush()
        self._spill.seek(0)
        for line in self._spill:
            space_id, before, last, polls = line.rstrip("\n").split("\t")
            yield space_id, int(before), int(last), int(polls)

    def _waited(self) -> float:
        return time.monotonic() - self._started if self._started else 0.0

    async def _emit(self, result: ReleaseResult) -> None:
        self.counts[result.state] += 1
        library_logger().info("purge.release", **result.to_record())
        callback = self._on_result
        if callback is None:
            return
        try:
            pending = callback(result)
            if inspect.isawaitable(pending):
                await pending
        except BaseException as exc:  # (a real cancellation is raised on)
            self._failed(own_error(exc, "on_release"))

    def _failed(self, exc: Exception) -> None:
        """on_release raised: the callback is not called again and polling stops (the
        results would have nowhere to go); ``on_error`` decides the rest (the run stops)."""
        self._on_result = None
        self._stopped = True
        if self._on_error is None:
            raise exc
        self._on_error(exc)


def _batches(
    rows: Iterator[tuple[str, int, int, int]], size: int
) -> Iterator[list[tuple[str, int, int, int]]]:
    batch: list[tuple[str, int, int, int]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
