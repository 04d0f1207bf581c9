"""JSON Lines purge reports: one object per space, written and flushed as it finishes.

A resumed run appends to the same file, and shards write one file each, so a space can have
several rows across files: the **last row wins** (files in the order given, rows in file
order). :func:`summarize_reports` applies that rule in two passes with memory for one small
index entry per space, never the rows themselves. ``--wait-release`` results live in a
sibling file (:func:`release_path`) so the main report keeps exactly one row per space.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, fields
from itertools import chain, islice
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from smh_async._dedupe import FingerprintSet, fingerprint
from smh_async._errors import SMHConfigError
from smh_async._models import OUTCOME_TEXT, Outcome, PurgeOutcome

__all__ = [
    "ReportSummary",
    "ReportWriter",
    "concatenate_reports",
    "copy_reports",
    "forget_release_rows",
    "read_report",
    "release_path",
    "resume_set",
    "summarize_reports",
    "write_summary_json",
]

StrPath = str | os.PathLike[str]
# One encoder for every row: json.dumps() with any option builds a new encoder per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False)
_STRING = json.encoder.encode_basestring  # the escaper _ENCODER itself uses (C, not ASCII-only)
_FIELDS = frozenset(f.name for f in fields(PurgeOutcome)) - {"extra"}  # a row's own keys


def _value(value: Any) -> str:
    """One JSON value, as ``_ENCODER`` writes it; plain str/int/None without the encoder."""
    kind = type(value)
    if value is None:
        return "null"
    if kind is str:
        return str(_STRING(value))
    if kind is int:
        return int.__repr__(value)
    return _ENCODER.encode(value)


def _number(value: Any) -> str:
    """A finite float as ``float.__repr__`` (what the encoder writes), anything else encoded."""
    if type(value) is float and value - value == 0.0:  # false for inf and nan
        return float.__repr__(value)
    return _ENCODER.encode(value)


def encode_outcome(outcome: PurgeOutcome) -> str:
    """``outcome``'s report row: the text of ``_ENCODER.encode(outcome.to_record())``.

    Built field by field instead (no intermediate dict, no generic encoder walk): the row is
    written for every space, and on a fast server that is a measurable share of a request's
    CPU (benchmarks/RESULTS.md). ``tests/test_report.py`` checks the two agree.
    """
    extra = outcome.extra
    if extra and not _FIELDS.isdisjoint(extra):
        return _ENCODER.encode(outcome.to_record())  # an extra overrides a field: keep order
    text = (
        f'{{"space_id": {_value(outcome.space_id)}, "outcome": "{OUTCOME_TEXT[outcome.outcome]}", '
        f'"http_status": {_value(outcome.http_status)}, '
        f'"error_code": {_value(outcome.error_code)}, '
        f'"error_message": {_value(outcome.error_message)}, '
        f'"request_id": {_value(outcome.request_id)}, "attempts": {_value(outcome.attempts)}, '
        f'"elapsed_ms": {_number(round(outcome.elapsed_ms, 1))}, '
        f'"finished_at": {_value(outcome.finished_at)}'
    )
    if extra:
        return f"{text}, {_ENCODER.encode(dict(extra))[1:]}"
    return text + "}"


class ReportWriter:
    """Appends one JSON object per outcome and flushes it, so a crash loses no finished row.

    ``append=True`` keeps earlier rows (used when resuming into the same file).
    """

    def __init__(self, path: StrPath, *, append: bool = False) -> None:
        self.path = Path(path)
        self._file: IO[str] | None = None
        self.append = append
        self.rows = 0
        self.sealed_torn_line = False
        # The first write that failed (a full disk, a lost mount): raised to the caller then,
        # and the reason close() does not raise the same thing again.
        self.error: OSError | None = None

    def __repr__(self) -> str:
        return f"ReportWriter({str(self.path)!r}, rows={self.rows})"

    def open(self) -> ReportWriter:
        """Open (or create) the report file.

        Appending to a file whose last row was torn (a run killed mid-write, a full disk)
        first ends that line: the next row would otherwise be glued onto the fragment and
        both lost to every reader. The fragment stays, a line of its own that readers count
        as unreadable (``sealed_torn_line`` says this happened).
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.sealed_torn_line = self.append and ends_mid_line(self.path)
        # A lone surrogate (an undecodable byte of a space id given on the command line)
        # is written as its JSON escape, \udcff: the row stays valid JSON and reads back
        # as the same id, where a strict encoder would lose the row in a traceback.
        self._file = self.path.open(
            "a" if self.append else "w", encoding="utf-8", errors="backslashreplace"
        )
        if self.sealed_torn_line:
            try:
                self._file.write("\n")
                self._file.flush()
            except OSError as exc:
                self.error = exc
                self.close()
                raise
        return self

    def __enter__(self) -> ReportWriter:
        return self.open()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def write(self, outcome: PurgeOutcome) -> None:
        """Write one outcome's row and flush it to the OS."""
        self._write_line(encode_outcome(outcome))

    def write_record(self, record: dict[str, Any]) -> None:
        """Write one JSON-ready row (e.g. a release result) and flush it to the OS."""
        self._write_line(_ENCODER.encode(record))

    def _write_line(self, text: str) -> None:
        if self._file is None:
            raise RuntimeError("ReportWriter is not open")
        try:
            self._file.write(text + "\n")
            self._file.flush()
        except OSError as exc:
            self.error = self.error or exc
            raise
        self.rows += 1

    def close(self) -> None:
        """Flush to disk and close (after a failed write: as far as it goes, without raising)."""
        if self._file is None:
            return
        file, self._file = self._file, None
        try:
            file.flush()
            if stat.S_ISREG(os.fstat(file.fileno()).st_mode):  # a pipe or tty: EINVAL
                os.fsync(file.fileno())
        except OSError:
            if self.error is None:
                raise
        finally:
            with contextlib.suppress(OSError):  # the flush inside close() fails the same way
                file.close()


def release_path(report: StrPath) -> Path:
    """Where ``--wait-release`` results go: ``purge.jsonl`` → ``purge.release.jsonl``."""
    path = Path(report)
    if not path.suffix:
        return path.with_name(path.name + ".release")
    return path.with_name(f"{path.stem}.release{path.suffix}")


def release_destination(report: StrPath) -> Path:
    """Where a run writes its ``--wait-release`` rows: the sibling :func:`release_path`, or
    the report itself when that is a device or pipe (``/dev/stdout``: no file in ``/dev``);
    ``report`` tells the two kinds of row apart either way."""
    return release_path(report) if is_regular_or_missing(report) else Path(report)


def forget_release_rows(report: StrPath) -> None:
    """Remove the release file beside ``report`` when a run starts ``report`` afresh: its
    rows are an earlier run's, and ``smh-async report`` would count them as this run's (a
    run without ``--wait-release`` writes none to replace them). Nothing is removed beside
    a device or pipe (``/dev/stdout``: its release rows go into the report itself)."""
    sibling = release_path(report)
    if is_regular_or_missing(report) and (sibling.is_file() or sibling.is_symlink()):
        sibling.unlink()


def read_report(path: StrPath) -> Iterator[dict[str, Any]]:
    """Rows of a report; lines that cannot be read (a torn last line after a crash
    mid-write, corruption) are skipped, not fatal. A UTF-8 byte-order mark is dropped; a
    UTF-16 or UTF-32 file raises :class:`SMHConfigError` (its rows would all be skipped)."""
    return (row for _, row in _lines(path))


def _lines(path: StrPath) -> Iterator[tuple[bytes, dict[str, Any]]]:
    """``(raw line, row)`` for every readable row (see :func:`_entries`)."""
    return ((raw, row) for _, raw, row in _entries(path) if row is not None)


def _entries(path: StrPath) -> Iterator[tuple[int, bytes, dict[str, Any] | None]]:
    """``(line number, raw line, row)`` for every line that is not blank; ``row`` is None
    when the line is not a JSON object with a string ``space_id`` (torn, corrupt, foreign).
    """
    with Path(path).open("rb") as f:
        first = f.readline()
        lines = chain((_first_line(path, first),), f) if first else f
        for number, raw in enumerate(lines, 1):  # (inlined: runs for every row)
            try:
                row = json.loads(raw.decode("utf-8", "replace"))
            except (ValueError, RecursionError):  # RecursionError: absurdly nested JSON
                if raw.strip():
                    yield number, raw, None
                continue
            if isinstance(row, dict) and isinstance(row.get("space_id"), str):
                yield number, raw, row
            else:
                yield number, raw, None


_UTF8_BOM = b"\xef\xbb\xbf"
# UTF-16 LE/BE and UTF-32 BE (UTF-32 LE starts like UTF-16 LE), as smh_async._targets
# refuses them in a spaces file (not imported from there: it would load anyio for `report`).
_WIDE_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\0\0\xfe\xff")


def _first_line(path: StrPath, line: bytes) -> bytes:
    """A report's first line without a UTF-8 byte-order mark (Windows tools add one; the
    row behind it was unreadable, so a resume purged that space again and ``report`` did
    not count it). A UTF-16/32 report (PowerShell's ``>``) is refused: read as UTF-8 it has
    no readable row at all, and reads as an empty report."""
    if line.startswith(_WIDE_BOMS) or _wide_without_mark(line):
        raise SMHConfigError(
            f"{path}: the report is UTF-16 or UTF-32, not UTF-8: convert it first "
            f"(iconv -f UTF-16 -t UTF-8, or in PowerShell: Out-File -Encoding utf8)"
        )
    return line.removeprefix(_UTF8_BOM)


def _wide_without_mark(line: bytes) -> bool:
    """NUL in every other byte: UTF-16/32 text without a byte-order mark. (A line of NUL
    bytes only, which a crash can leave in a file, is damage, not an encoding.)"""
    sample = line[:64]
    return len(sample) >= 4 and any(sample) and not (any(sample[::2]) and any(sample[1::2]))


def resume_set(paths: Iterable[StrPath]) -> FingerprintSet:
    """Ids already ``accepted`` in earlier reports (compact: 8 bytes-ish per id)."""
    done = FingerprintSet()
    for path in paths:
        if not Path(path).exists():
            continue
        for row in read_report(path):
            if row.get("outcome") == Outcome.ACCEPTED.value:
                done.add(row["space_id"])
    return done


MISSING_EXAMPLES = 5  # missing input ids a summary names


@dataclass
class ReportSummary:
    """The final state of every space across one or more reports (last row wins), and what
    could not be read."""

    files: int = 0
    rows: int = 0
    spaces: int = 0
    by_outcome: Counter[str] = field(default_factory=Counter)
    by_error_code: Counter[str] = field(default_factory=Counter)
    release: Counter[str] = field(default_factory=Counter)
    # Report lines that could not be read and may have held a space's final row.
    unreadable: int = 0
    first_unreadable: str | None = None  # "r.jsonl line 17"
    torn: list[str] = field(default_factory=list)  # files whose last line is cut off
    # Unreadable lines of a space that has a later readable row (which wins anyway): the
    # fragment a resume left of a row that was cut off and then finished.
    superseded: int = 0
    # Unreadable lines of the release files (the release state never sets the exit code).
    release_unreadable: int = 0
    # Final dry_run rows of spaces that have a real outcome, which a dry run never replaces.
    dry_run_ignored: int = 0
    # Release rows of spaces without a report row (a release file of an earlier run).
    release_ignored: int = 0
    # Final rows without an outcome smh-async writes, by that outcome ("(none)": missing).
    unknown_outcome: Counter[str] = field(default_factory=Counter)
    # With the run's input ids (``spaces``): how many distinct ones, and those with no row.
    inputs: int | None = None
    missing: int = 0
    missing_examples: list[str] = field(default_factory=list)  # the first few, in order

    @property
    def failed(self) -> int:
        """Spaces whose final row is ``failed``."""
        return self.by_outcome.get(Outcome.FAILED.value, 0)

    @property
    def not_started(self) -> int:
        """Spaces whose final row is ``skipped``: a run stopped before starting them."""
        return self.by_outcome.get(Outcome.SKIPPED.value, 0)

    @property
    def dry_run_only(self) -> int:
        """Spaces whose only rows are ``dry_run`` in reports that hold real outcomes too: a
        dry run was written into a purge's report, and these spaces were never purged."""
        real = (Outcome.ACCEPTED.value, Outcome.FAILED.value, Outcome.SKIPPED.value)
        if not any(self.by_outcome.get(outcome) for outcome in real):
            return 0
        return self.by_outcome.get(Outcome.DRY_RUN.value, 0)

    @property
    def corrupt(self) -> int:
        """Unreadable lines other than a file's torn last line."""
        return self.unreadable - len(self.torn)

    @property
    def complete(self) -> bool:
        """True when every space's final row says it was purged (or dry-run) and nothing
        was unreadable: what ``smh-async report`` exits 0 for."""
        return not (
            self.failed
            or self.not_started
            or self.unreadable
            or self.dry_run_only
            or self.unknown_outcome
            or self.missing
        )


@dataclass(frozen=True)
class _Source:
    """One file being summarized: a report, or a release file (rows of ``--wait-release``)."""

    path: Path
    release: bool

    def where(self, line: int) -> str:
        return f"{self.path} line {line}"


def _sources(paths: Sequence[StrPath]) -> list[_Source]:
    """The given files, then the release files beside them that exist."""
    files = [Path(p) for p in paths]
    siblings = {release_path(p) for p in files}
    releases = [r for p in files if (r := release_path(p)).is_file() and r not in files]
    return [_Source(p, p in siblings) for p in files] + [_Source(r, True) for r in releases]


def summarize_reports(
    paths: Sequence[StrPath],
    output: StrPath | None = None,
    *,
    release_output: bool = False,
    spaces: Iterable[str] | None = None,
) -> ReportSummary:
    """Merge reports (last row per space wins); optionally write the final rows to ``output``
    and, with ``release_output``, the final release rows beside it (:func:`release_path`;
    a release file left there is removed when there are none).

    ``spaces``: the run's input ids; those without a row in the reports are counted as
    ``missing`` (a run killed before it wrote them, a shard's report not given).

    Sibling release files (:func:`release_path`) are folded in when present, counting only
    the release rows of spaces the reports have a row for: a release file left beside the
    report by an earlier run (older versions did not remove it) is not this run's. Missing
    files raise ``FileNotFoundError``, a UTF-16/32 one :class:`SMHConfigError`. Lines that
    cannot be read are counted (:class:`ReportSummary`): one of a space whose later row can
    be read only as ``superseded``. Memory stays small for millions of rows: an 8-byte key
    per line, one byte per line and the compact key set, never the rows themselves; final
    rows are written in their original order.
    """
    sources = _sources(paths)
    summary = ReportSummary(files=len(sources))
    keys, counts = _index(sources)
    final, seen = _last_occurrences(keys)
    if spaces is not None:
        _count_missing(summary, spaces, seen)
    with ExitStack() as stack:
        out = stack.enter_context(_replacing(output, "w")) if output else None
        release_out = out
        if output and release_output and is_regular_or_missing(output):
            release_out = stack.enter_context(_replacing(release_path(output), "w"))
        merge = _Merge(summary, seen, out, release_out if release_output else None)
        entries = (
            (source, entry)
            for source, count in zip(sources, counts, strict=True)
            for entry in islice(_entries(source.path), count)
        )
        for is_final, (source, (number, raw, row)) in zip(final, entries, strict=False):
            if row is None:
                _count_unreadable(summary, source, number, raw, superseded=not is_final)
            elif is_final:
                merge.final_row(row)
            else:
                summary.rows += 1
    if output and release_output and not summary.release:
        forget_release_rows(output)  # the empty one just written, or an earlier run's
    return summary


def _count_missing(summary: ReportSummary, spaces: Iterable[str], keys: FingerprintSet) -> None:
    """Count the distinct ``spaces`` that have no report row (a dry-run row counts) among
    ``keys``. Memory: the ids are de-duplicated as ``purge`` does, in a compact set (about
    11 bytes an id), besides the reports' key set."""
    given = FingerprintSet()
    summary.inputs = 0
    for space_id in spaces:
        if not given.add(space_id):
            continue
        summary.inputs += 1
        if f"report:{space_id}" in keys or f"dry_run:{space_id}" in keys:
            continue
        summary.missing += 1
        if len(summary.missing_examples) < MISSING_EXAMPLES:
            summary.missing_examples.append(space_id)


def _index(sources: Sequence[_Source]) -> tuple[array[int], list[int]]:
    """The first pass: every line's key (:func:`_line_key`), and how many lines each file
    had (it may grow before the second pass, which reads no further)."""
    counts = [0] * len(sources)
    keys = array("Q")
    for i, source in enumerate(sources):
        before = len(keys)
        keys.extend(
            fingerprint(_final_key(row) if row is not None else _line_key(source, number, raw))
            for number, raw, row in _entries(source.path)
        )
        counts[i] = len(keys) - before
    return keys, counts


@dataclass
class _Merge:
    """The second pass's final rows: counted into ``summary`` and written out."""

    summary: ReportSummary
    keys: FingerprintSet  # every key of the first pass
    out: IO[str] | None
    release_out: IO[str] | None

    def final_row(self, row: dict[str, Any]) -> None:
        """Count (and write) the last row of its key, unless another row outranks it."""
        summary = self.summary
        summary.rows += 1
        if _masked_dry_run(row, self.keys):
            summary.dry_run_ignored += 1
        elif "release" not in row:
            _count_final(summary, row, self.out)
        elif f"report:{row['space_id']}" not in self.keys:
            summary.release_ignored += 1  # a release file left by an earlier run
        else:
            _count_final(summary, row, self.release_out)


def concatenate_reports(paths: Sequence[StrPath], output: StrPath | None = None) -> ReportSummary:
    """:func:`summarize_reports` for reports known to hold *disjoint* spaces, one row each
    (the shard parts of one run): the same summary in one pass, without the last-row index.

    Rows are copied byte for byte to ``output`` one file after another; a line that cannot
    be read (a process killed mid-write) is counted and dropped, never glued to the next
    file's first row. Sibling release files are counted, as :func:`summarize_reports` does,
    but not copied.
    """
    sources = _sources(paths)
    summary = ReportSummary(files=len(sources))
    with ExitStack() as stack:
        out = stack.enter_context(_replacing(output, "wb")) if output else None
        for source in sources:
            copy = out if not source.release else None
            for number, raw, row in _entries(source.path):
                if row is None:
                    _count_unreadable(summary, source, number, raw, superseded=False)
                    continue
                summary.rows += 1
                _count_final(summary, row, None)
                if copy is not None:
                    copy.write(raw if raw.endswith(b"\n") else raw + b"\n")
    return summary


def _open_output(path: Path, mode: str) -> IO[Any]:
    """Open an output: in text mode UTF-8 with a lone surrogate escaped (see
    :meth:`ReportWriter.open`)."""
    if "b" in mode:
        return open(path, mode)
    return open(path, mode, encoding="utf-8", errors="backslashreplace")


@contextmanager
def _replacing(output: StrPath, mode: str) -> Iterator[IO[Any]]:
    """Write ``output`` beside itself and move it into place once complete, so the output
    may be one of the inputs being read (``report r.jsonl --output r.jsonl``) and a failed
    merge leaves the old file as it was.

    Only a regular file is replaced. ``/dev/stdout``, ``/dev/null``, a FIFO or a terminal is
    written to as it is: moving a file onto it would replace the device node itself (as
    root, e.g. in a container, ``--summary-json /dev/stdout`` replaced ``/dev/stdout``). A
    symbolic link keeps pointing where it did; the file it names is replaced.
    """
    target = Path(output)
    if not is_regular_or_missing(target):
        with _open_output(target, mode) as f:
            yield f
        return
    target = target.resolve() if target.is_symlink() else target
    partial = target.with_name(target.name + ".partial")
    try:
        with _open_output(partial, mode) as f:
            yield f
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, target)


def is_regular_or_missing(path: StrPath) -> bool:
    """True unless ``path`` (followed through links) is a device, FIFO, socket or directory."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except FileNotFoundError:
        return True


def copy_reports(paths: Sequence[StrPath], output: StrPath) -> None:
    """Concatenate complete reports byte for byte into ``output`` (replaced when done)."""
    with _replacing(output, "wb") as out:
        for path in paths:
            copy_lines(path, out)


def copy_lines(path: StrPath, out: IO[bytes]) -> None:
    """Append the bytes of ``path`` to ``out``, ending them with a newline when its last line
    was torn (a process killed mid-write), so the next file's first row is not glued onto
    the fragment."""
    with Path(path).open("rb") as source:
        shutil.copyfileobj(source, out)
        if _last_byte(source) not in (b"", b"\n"):
            out.write(b"\n")


def append_files(destination: Path, sources: Iterable[StrPath], *, append: bool = True) -> None:
    """Write ``sources`` one after the other into ``destination`` (after what it holds, if
    ``append``), each torn last line (a process killed mid-write) ending where it is, so the
    next row is never glued onto it."""
    torn = append and ends_mid_line(destination)
    with destination.open("ab" if append else "wb") as out:
        if torn:
            out.write(b"\n")
        for path in sources:
            copy_lines(path, out)


def ends_mid_line(path: StrPath) -> bool:
    """True when ``path`` is a non-empty regular file whose last byte is not a newline: its
    last line was torn, and whatever is appended must start on a line of its own. A
    missing file, a device or a pipe (never read: a FIFO would block) is False."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        with Path(path).open("rb") as f:
            return _last_byte(f) not in (b"", b"\n")
    except FileNotFoundError:
        return False


def _last_byte(f: IO[bytes]) -> bytes:
    """The last byte of the seekable file ``f`` (b"" when it is empty)."""
    size = f.seek(0, os.SEEK_END)
    if not size:
        return b""
    f.seek(size - 1)
    return f.read(1)


def write_summary_json(path: StrPath, summary: dict[str, Any]) -> None:
    """``purge --summary-json``: the summary as one JSON object, replaced atomically."""
    with _replacing(path, "w") as out:
        out.write(json.dumps(summary, indent=2, sort_keys=True) + "\n")


def _final_key(row: dict[str, Any]) -> str:
    """Report rows, dry-run rows and release rows of a space are merged separately: a dry
    run resumed into a purge's report must not replace its outcomes (a ``failed`` or
    ``NotStarted`` row replaced by ``dry_run`` read as a finished purge)."""
    if "release" in row:
        return f"release:{row['space_id']}"
    if row.get("outcome") == _DRY_RUN_TEXT:
        return f"dry_run:{row['space_id']}"
    return f"report:{row['space_id']}"


def _masked_dry_run(row: dict[str, Any], keys: FingerprintSet) -> bool:
    """A ``dry_run`` row of a space that has a real row too (before or after it)."""
    return row.get("outcome") == _DRY_RUN_TEXT and f"report:{row['space_id']}" in keys


# A cut-off row still names its space: every row smh-async writes starts with it.
_FRAGMENT = re.compile(rb'\s*\{\s*"space_id"\s*:\s*("(?:[^"\\]|\\.)*")')
_DRY_RUN = re.compile(rb'"outcome"\s*:\s*"dry_run"')


def _line_key(source: _Source, number: int, raw: bytes) -> str:
    """What the last-row-wins index files an unreadable line under: a cut-off row under the
    space it names (so a later row of that space supersedes it), any other under a key of
    its own (nothing supersedes it)."""
    named = _FRAGMENT.match(raw)
    try:
        space_id = json.loads(named.group(1).decode("utf-8", "replace")) if named else None
    except ValueError:
        space_id = None
    if not isinstance(space_id, str) or source.release:
        return f"unreadable:{source.path}:{number}"
    dry_run = _DRY_RUN.search(raw) is not None
    return _final_key({"space_id": space_id, "outcome": "dry_run" if dry_run else None})


def _last_occurrences(keys: array[int]) -> tuple[bytearray, FingerprintSet]:
    """1 where a line is the last one with its key, scanning from the end; and every key."""
    seen = FingerprintSet(capacity=max(1024, len(keys) // 2))
    final = bytearray(len(keys))
    for i in range(len(keys) - 1, -1, -1):
        final[i] = seen.add_fingerprint(keys[i])
    return final, seen


def _count_unreadable(
    summary: ReportSummary, source: _Source, number: int, raw: bytes, *, superseded: bool
) -> None:
    if source.release:
        summary.release_unreadable += 1
    elif superseded:
        summary.superseded += 1
    else:
        summary.unreadable += 1
        summary.first_unreadable = summary.first_unreadable or source.where(number)
        if not raw.endswith(b"\n"):  # only the last line of a file can lack its newline
            summary.torn.append(str(source.path))


_OUTCOMES = frozenset(OUTCOME_TEXT.values())
_DRY_RUN_TEXT, _FAILED_TEXT = Outcome.DRY_RUN.value, Outcome.FAILED.value  # (per row: no enum)


def _count_final(summary: ReportSummary, row: dict[str, Any], out: IO[str] | None) -> None:
    if out is not None:
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
    if "release" in row:
        summary.release[str(row["release"])] += 1
        return
    summary.spaces += 1
    outcome = "(none)" if row.get("outcome") is None else str(row["outcome"])
    summary.by_outcome[outcome] += 1
    if outcome not in _OUTCOMES:  # not a row smh-async writes: the space's state is unknown
        summary.unknown_outcome[outcome] += 1
    if outcome == _FAILED_TEXT:
        summary.by_error_code[str(row.get("error_code") or "unknown")] += 1
