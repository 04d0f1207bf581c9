"""Which spaces a run targets: ids from arguments, a file, stdin or the library listing,
minus those outside this shard or already accepted in an earlier report.

:func:`count_targets` walks a second, independent pass over the same source (re-reading the
file or re-listing the library: one request per 1,000 spaces) so that progress can show
``N of M`` long before the purge reaches the end of its input. stdin cannot be read twice;
its total stays a lower bound until EOF.
"""

from __future__ import annotations

import asyncio
import os
import stat
import sys
import threading
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Sequence,
)
from pathlib import Path
from typing import IO, TYPE_CHECKING

import anyio

from smh_async._dedupe import FingerprintSet
from smh_async._errors import SMHConfigError
from smh_async._shard import Shard

if TYPE_CHECKING:
    from smh_async._client import SMHClient

SpaceSource = Iterable[str] | AsyncIterator[str]

__all__ = [
    "SpaceSource",
    "TargetFilter",
    "Targets",
    "aiter_ids",
    "count_targets",
    "read_space_file",
]

MAX_LINE = 4096
UTF8_BOM = b"\xef\xbb\xbf"
# UTF-16 LE/BE and UTF-32 BE (UTF-32 LE starts like UTF-16 LE).
WIDE_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\0\0\xfe\xff")


WIDE_ENCODING = (
    "the spaces file is UTF-16 or UTF-32 (it starts with that byte-order mark): save it "
    "as UTF-8 or ASCII, one id per line (in PowerShell: Out-File -Encoding utf8)"
)


NUL_BYTES = (
    "the spaces file's first line holds NUL bytes: it is UTF-16 or UTF-32 without a "
    "byte-order mark, or not text at all: save it as UTF-8 or ASCII, one id per line"
)


def _first_line(line: bytes) -> bytes:
    """A file's first line without a UTF-8 byte-order mark; a UTF-16/32 one is refused, and
    so is a first line with NUL bytes (UTF-16/32 without a mark: no id holds one)."""
    if line.startswith(WIDE_BOMS):
        raise SMHConfigError(WIDE_ENCODING)
    if b"\0" in line:
        raise SMHConfigError(NUL_BYTES)
    return line.removeprefix(UTF8_BOM)


def file_encoding_problem(path: str) -> str | None:
    """Why the spaces file at ``path`` cannot be read as ids, judged by its first line."""
    with Path(path).open("rb") as f:
        try:
            _first_line(f.readline(MAX_LINE + 1))
        except SMHConfigError as exc:
            return exc.message
    return None


def read_space_file(stream: IO[bytes]) -> Iterator[str]:
    """Space ids from a file: one per line, blank lines and ``#`` comments skipped.

    Undecodable bytes and over-long lines are passed on (escaped / cut) so that they are
    rejected per space with a clear reason instead of aborting the run. A UTF-8 byte-order
    mark (Windows editors) is dropped; a UTF-16 or UTF-32 one (PowerShell's ``>``) raises
    :class:`SMHConfigError`: every id would otherwise be rejected as garbage.
    """
    line = _first_line(stream.readline(MAX_LINE + 1))
    while line:
        if len(line) > MAX_LINE and not line.endswith(b"\n"):
            while (rest := stream.readline(1 << 16)) and not rest.endswith(b"\n"):
                pass
        text = line.strip().decode("utf-8", "backslashreplace")
        if text and not text.startswith("#"):
            yield text
        line = stream.readline(MAX_LINE + 1)


class _Lines:
    """Complete lines out of chunks of bytes, cut as :func:`read_space_file` cuts them."""

    def __init__(self) -> None:
        self._tail, self._skipping = b"", False

    def feed(self, chunk: bytes) -> list[bytes]:
        if self._skipping:  # the rest of an over-long line
            end = chunk.find(b"\n")
            if end < 0:
                return []
            chunk, self._skipping = chunk[end + 1 :], False
        *lines, self._tail = (self._tail + chunk).split(b"\n")
        if len(self._tail) > MAX_LINE:
            lines.append(self._tail)
            self._tail, self._skipping = b"", True
        return [line[: MAX_LINE + 1] for line in lines]

    def end(self) -> list[bytes]:
        return [self._tail] if self._tail else []


async def read_stream_ids(source: int | str) -> AsyncIterator[str]:
    """Space ids from a pipe, FIFO or terminal (a descriptor, or a path the thread opens), as
    :func:`read_space_file` reads a file.

    Opening and reading happen in a daemon thread, each read taking what the pipe holds: a
    quiet upstream (``smh-async spaces | grep … | smh-async purge --spaces-file -``), or a
    FIFO no writer has opened yet, must not block the event loop, which would stall requests
    in flight into false timeouts and leave signals unanswered; exit never waits for it.
    """
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[bytes | BaseException] = asyncio.Queue(maxsize=4)

    def hand_over(item: bytes | BaseException) -> bool:
        """Queue ``item`` for the reading task; False once nobody reads any more."""
        if loop.is_closed():
            return False
        put = chunks.put(item)
        try:
            asyncio.run_coroutine_threadsafe(put, loop).result()
        except BaseException:  # the loop stopped or the reading task is gone
            put.close()
            return False
        return True

    def pump() -> None:
        fd = source if isinstance(source, int) else -1
        try:
            if isinstance(source, str):
                fd = os.open(source, os.O_RDONLY)  # a FIFO: waits here for a writer
            # os.read, not a buffered reader: a daemon thread blocked inside its lock
            # aborts the interpreter at exit ("could not acquire lock for <stdin>").
            while hand_over(chunk := os.read(fd, 1 << 16)) and chunk:
                pass  # b"" (the end) is handed over too, then the loop stops
        except BaseException as exc:  # handed over, raised in the reading task
            hand_over(exc)
        finally:
            if fd >= 0 and not isinstance(source, int):
                os.close(fd)

    threading.Thread(target=pump, name="smh-async input", daemon=True).start()
    lines, first = _Lines(), True
    while True:
        item = await chunks.get()
        if isinstance(item, BaseException):
            raise item
        for line in lines.feed(item) if item else lines.end():
            if first:
                line, first = _first_line(line), False
            text = line.strip().decode("utf-8", "backslashreplace")
            if text and not text.startswith("#"):
                yield text
        if not item:
            return


def _is_regular(stream: IO[bytes]) -> bool:
    try:
        return stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    except (OSError, ValueError):  # no descriptor (a test's BytesIO): read as a file
        return True


class Targets:
    """Where ids come from: one of ``ids``, ``file`` (``"-"`` = stdin) or ``all_spaces``."""

    def __init__(
        self, *, ids: Sequence[str] = (), file: str | None = None, all_spaces: bool = False
    ) -> None:
        self.ids, self.file, self.all_spaces = list(ids), file, all_spaces

    @property
    def rereadable(self) -> bool:
        """Whether a second pass (for counting) sees the same ids: not stdin, not a pipe
        such as bash's ``<(...)``, which the counting pass would drain."""
        return self.file is None or (self.file != "-" and Path(self.file).is_file())

    async def iterate(self, client: SMHClient) -> AsyncIterator[str]:
        """The ids, lazily (a file is read line by line, the listing page by page)."""
        if self.all_spaces:
            async for space in client.iter_spaces():
                yield space.space_id
            return
        if self.file is None:
            for space_id in self.ids:
                yield space_id
            return
        # One async layer over the line reader, not one per helper: each costs every id.
        # A regular file never keeps a read waiting; a pipe, FIFO or terminal may (and a
        # FIFO's open waits for a writer): those are opened and read off the event loop.
        if self.file == "-":
            stdin = sys.stdin.buffer  # not None: the CLI refuses a closed stdin up front
            if not _is_regular(stdin):
                async for space_id in read_stream_ids(stdin.fileno()):
                    yield space_id
                return
            for space_id in read_space_file(stdin):
                yield space_id
            return
        if not Path(self.file).is_file():  # noqa: ASYNC240 (a stat; no FIFO open)
            async for space_id in read_stream_ids(self.file):
                yield space_id
            return
        with Path(self.file).open("rb") as f:  # noqa: ASYNC230 (a local file, read lazily)
            for space_id in read_space_file(f):
                yield space_id


def check_source(source: object) -> None:
    """Refuse a bare string as the ids: it is an iterable of its characters, so
    ``purge_all("user-42")`` would purge spaces ``u``, ``s``, … (and ``-``, a single-tenant
    library's one space)."""
    if isinstance(source, str | bytes | bytearray | memoryview):
        raise TypeError(
            f"space_ids must be an iterable of space ids, not one {type(source).__name__}: "
            "pass [space_id] for a single space"
        )


async def close_source(source: object) -> None:
    """Close a generator the run read ids from, so its ``finally`` runs now, not at garbage
    collection (a no-op for one read to its end, and for lists and other iterables)."""
    if isinstance(source, AsyncGenerator):
        await source.aclose()
    elif isinstance(source, Generator):
        source.close()


def aiter_ids(source: SpaceSource) -> AsyncIterator[str]:
    """Any iterable or async iterable of ids as an async iterator (an async one as it is).

    It never yields to the event loop by itself: a consumer that may take many ids without
    awaiting anything checkpoints on its own (the purge engine after a run of skipped ids,
    :func:`count_targets` every 256). A checkpoint every 256 ids here made the engine's
    producer yield in the middle of refilling the workers' queue whenever ids were skipped
    (a shard, a resume), and the workers then waited for ids on almost every job.
    """
    if isinstance(source, AsyncIterable):
        return aiter(source)
    return _from_iterable(source)


async def _from_iterable(source: Iterable[str]) -> AsyncIterator[str]:
    for item in source:
        yield item


class TargetFilter:
    """Skip predicate for :class:`~smh_async.PurgeRun`: not in ``shard``, or in ``done``.

    Calling it counts why each id was skipped (``not_in_shard``, ``already_done``);
    :meth:`skips` asks the same question without counting.
    """

    def __init__(self, shard: Shard | None = None, done: FingerprintSet | None = None) -> None:
        self.shard, self.done = shard, done
        self.not_in_shard = 0
        self.already_done = 0

    def skips(self, space_id: str) -> bool:
        """True if this run must leave ``space_id`` alone."""
        if self.shard is not None and space_id not in self.shard:
            return True
        return self.done is not None and space_id in self.done

    def __call__(self, space_id: str) -> bool:
        if self.shard is not None and space_id not in self.shard:
            self.not_in_shard += 1
            return True
        if self.done is not None and space_id in self.done:
            self.already_done += 1
            return True
        return False


async def count_targets(
    ids: AsyncIterator[str],
    skips: Callable[[str], bool],
    on_count: Callable[[int, bool], None],
    *,
    every: int = 1000,
) -> int:
    """Count distinct ids not skipped; ``on_count(count, final)`` every ``every`` ids and at
    the end."""
    seen = FingerprintSet()
    count = 0
    async for n, space_id in _enumerate(ids):
        if seen.add(space_id) and not skips(space_id):
            count += 1
        if n % every == every - 1:
            on_count(count, False)
        if n % 256 == 255:  # a local file is read without awaiting: let the purge run
            await anyio.lowlevel.checkpoint()
    on_count(count, True)
    return count


async def _enumerate(ids: AsyncIterator[str]) -> AsyncIterator[tuple[int, str]]:
    n = 0
    async for space_id in ids:
        yield n, space_id
        n += 1
