"""What the command line shows a human or a log collector: live progress and the summary.

CLI-only (library code never prints). On a terminal, :class:`StatusLine` keeps one progress
line at the bottom of stderr, redrawn about four times a second, and log lines written
through it appear above it instead of tearing it. Off a terminal, :class:`ProgressLog` emits a
``purge.progress`` event shortly after the start and then every few seconds, so a nightly
job's log always says "N of M". :class:`PartsProgress` is the ``--processes`` parent's line.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from smh_async._models import PurgeSummary
from smh_async._progress import ProgressSnapshot
from smh_async._report import ReportSummary

__all__ = [
    "ACCEPTED_NOTE",
    "ALREADY_DONE",
    "PartsProgress",
    "ProgressLog",
    "SafeStream",
    "StatusLine",
    "check_lines",
    "colours_wanted",
    "dumb_terminal",
    "print_report_summary",
    "print_summary",
]

_CLEAR = "\r\x1b[K"
_FALLBACK_COLUMNS = 100


class StatusLine:
    """A file-like wrapper of a terminal stream that keeps a status line below the logs."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._line = ""

    def isatty(self) -> bool:
        """Always the wrapped stream's answer (decides console vs JSON logs)."""
        return self._stream.isatty()

    def _columns(self) -> int:
        """The width of the terminal the line is drawn on (``COLUMNS`` wins, as in
        ``shutil.get_terminal_size``, which measures stdout's: with stdout redirected, the
        line was cut at 100 columns and wrapped on a narrower terminal, each redraw
        leaving a line behind)."""
        try:
            columns = int(os.environ.get("COLUMNS", ""))
        except ValueError:
            columns = 0
        if columns > 0:
            return columns
        try:
            return os.get_terminal_size(self._stream.fileno()).columns or _FALLBACK_COLUMNS
        except (AttributeError, OSError, ValueError):  # not a terminal (a test's buffer)
            return _FALLBACK_COLUMNS

    def write(self, text: str) -> int:
        """Log output: clear the status line, write, redraw it."""
        self._stream.write(_CLEAR + text)
        if text.endswith("\n") and self._line:
            self._stream.write(self._line)
        return len(text)

    def flush(self) -> None:
        """Flush the wrapped stream."""
        self._stream.flush()

    def show(self, snapshot: ProgressSnapshot) -> None:
        """Replace the status line with ``snapshot`` (cut to the terminal width)."""
        self.show_text(snapshot.line())

    def show_text(self, text: str) -> None:
        """Replace the status line with ``purge TEXT`` (cut to the terminal width)."""
        self._line = ("purge " + text)[: self._columns() - 1]
        self._stream.write(_CLEAR + self._line)
        self._stream.flush()

    def close(self) -> None:
        """Leave the last status on screen and end its line."""
        if self._line:
            self._stream.write("\n")
            self._stream.flush()
            self._line = ""


class PartsProgress:
    """``purge --processes`` on a terminal: the parent's one live line for the whole run,
    from the rows the children have written to their report parts so far (the children
    draw none: two status lines would take turns on one terminal line)."""

    def __init__(self, parts: Sequence[Path], stream: TextIO) -> None:
        self._parts = list(parts)
        self._offsets = [0] * len(self._parts)
        self._status = StatusLine(stream)
        self._started = time.monotonic()
        self.done = 0
        self.not_started = 0  # NotStarted rows: a stopped run reports its unstarted spaces
        self.by_error_code: Counter[str] = Counter()

    @property
    def failed(self) -> int:
        """Rows with outcome ``failed`` so far."""
        return sum(self.by_error_code.values())

    def update(self) -> None:
        """Count the complete rows written since the last call and redraw the line."""
        for i, part in enumerate(self._parts):
            try:
                with part.open("rb") as f:
                    f.seek(self._offsets[i])
                    chunk = f.read()
            except OSError:  # not created yet
                continue
            chunk = chunk[: chunk.rfind(b"\n") + 1]  # a row being written counts next time
            self._offsets[i] += len(chunk)
            not_started = chunk.count(_SKIPPED)
            self.done += chunk.count(b"\n") - not_started
            self.not_started += not_started
            if _FAILED in chunk:  # rare: only failed rows are parsed, for their codes
                self.by_error_code.update(_code(r) for r in chunk.splitlines() if _FAILED in r)
        elapsed = time.monotonic() - self._started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        shown = [f"{self.done} done", f"{rate:.1f}/s"]
        if self.not_started:  # after a stop: they are not done, whatever their row count
            shown.append(f"not started {self.not_started}")
        if self.failed:
            shown.append(f"failed {self.failed} ({_codes(self.by_error_code)})")
        self._status.show_text("  ".join([*shown, f"({len(self._parts)} processes)"]))

    def close(self) -> None:
        """Leave the last count on screen and end its line."""
        self._status.close()


_FAILED = b'"outcome": "failed"'
_SKIPPED = b'"outcome": "skipped"'


def _code(raw: bytes) -> str:
    try:
        return str(json.loads(raw).get("error_code") or "unknown")
    except (ValueError, AttributeError, RecursionError):
        return "unknown"


class ProgressLog:
    """Turns snapshots into ``purge.progress`` events: the first at ``first`` s, then every
    ``interval`` s, and one when everything is done."""

    def __init__(self, log: Any, *, interval: float = 5.0, first: float = 0.5) -> None:
        self._log = log
        self._interval = interval
        self._due = first
        self._finished = False

    def __call__(self, snapshot: ProgressSnapshot) -> None:
        complete = snapshot.total_final and snapshot.done == snapshot.total
        if snapshot.elapsed_s >= self._due or (complete and not self._finished):
            self._finished = self._finished or complete
            self._due = snapshot.elapsed_s + self._interval
            self._log.info("purge.progress", **snapshot.to_dict())


def print_summary(
    summary: PurgeSummary,
    report: str | None,
    *,
    skipped_reasons: dict[str, int] | None = None,
    release_report: str | None = None,
) -> None:
    """The end-of-run summary on stdout: counts, throughput, latency, checks, report path."""
    s = summary
    reasons = "".join(f"  {k}: {v}" for k, v in (skipped_reasons or {}).items() if v)
    lines = [
        f"spaces: {s.total}  accepted: {s.accepted}  failed: {s.failed}  "
        f"dry_run: {s.dry_run}  skipped: {s.skipped}  duplicates: {s.duplicates}{reasons}",
        f"elapsed: {s.elapsed_s:.2f} s  rate: {s.rate_per_s:.1f}/s  latency ms "
        f"p50 {s.latency_ms['p50']}  p95 {s.latency_ms['p95']}  max {s.latency_ms['max']}",
    ]
    if s.by_error_code:
        lines.append(f"failures by code: {_codes(s.by_error_code)}")
    lines.extend(check_lines(s.counters, dry_run=s.dry_run))
    lines.extend(stop_lines(s.aborted, s.interrupted, report))
    if s.accepted:
        lines.append(ACCEPTED_NOTE)
    if report:
        lines.append(f"report: {report}")
    if release_report:
        lines.append(f"release report: {release_report}")
    print("\n".join(lines), flush=True)


def print_report_summary(summary: ReportSummary) -> None:
    """``smh-async report`` output: final state per space across the given reports, notes on
    rows left out, then one line in capitals for each reason the reports do not show a
    finished purge (each one an exit 1)."""
    lines = [
        f"files: {summary.files}  rows: {summary.rows}  spaces: {summary.spaces}",
        "outcomes: " + (_codes(summary.by_outcome) or "none"),
    ]
    if summary.by_error_code:
        lines.append(f"failures by code: {_codes(summary.by_error_code)}")
    if summary.release:
        lines.append(f"release: {_codes(summary.release)}")
    print("\n".join([*lines, *_report_notes(summary), *_report_problems(summary)]), flush=True)


def _report_notes(summary: ReportSummary) -> list[str]:
    """Rows ``report`` left out on purpose, and a complete input: no reason to fail."""
    s = summary
    notes = {
        "unreadable but superseded": (
            s.superseded,
            f"{_lines(s.superseded)} of spaces with a later row, which wins (what a resume "
            "leaves of a row that was cut off)",
        ),
        "dry_run rows ignored": (
            s.dry_run_ignored,
            f"{s.dry_run_ignored} (their spaces have real outcomes, which a dry run never "
            "replaces)",
        ),
        "release rows ignored": (
            s.release_ignored,
            f"{s.release_ignored} (their spaces have no row in these reports: a release file "
            "left by an earlier run)",
        ),
        "release rows unreadable": (
            s.release_unreadable,
            f"{_lines(s.release_unreadable)}; the release counts may be short",
        ),
        "input": (
            s.inputs is not None and not s.missing,
            f"{s.inputs} spaces, every one has a row",
        ),
    }
    return [f"{name}: {text}" for name, (shown, text) in notes.items() if shown]


def _report_problems(summary: ReportSummary) -> list[str]:
    """Why the reports do not show a finished purge, one line each."""
    s = summary
    lines = []
    if s.unreadable:
        kinds = {k: n for k, n in (("corrupt", s.corrupt), ("torn", len(s.torn))) if n}
        lines.append(
            f"UNREADABLE: {_lines(s.unreadable)} (first at {s.first_unreadable}): "
            f"{_codes(kinds)}; the spaces they held have no known final state"
        )
    lines.extend(
        f"TORN: the last line of {path} is cut off: the run writing it was killed mid-write "
        "(or its disk filled); a --resume of that run into this report finishes it"
        for path in s.torn
    )
    if s.not_started:
        lines.append(
            f"NOT STARTED: {s.not_started} spaces (the run stopped first; a --resume of "
            "the run with this report purges them)"
        )
    if s.unknown_outcome:
        lines.append(
            f"UNKNOWN OUTCOME: {sum(s.unknown_outcome.values())} spaces "
            f"({_codes(s.unknown_outcome)}): not rows smh-async writes, so their state is "
            "unknown"
        )
    if s.dry_run_only:
        lines.append(
            f"DRY RUN ONLY: {s.dry_run_only} spaces have only dry_run rows beside real "
            "outcomes: a dry run wrote into this purge's report and they were never purged "
            "(a --resume without --dry-run purges them)"
        )
    if s.missing:
        lines.append(_missing_line(s))
    return lines


def _missing_line(summary: ReportSummary) -> str:
    """``report --spaces-file``: how many input spaces have no row, naming the first few."""
    first = ", ".join(_shown(space_id) for space_id in summary.missing_examples)
    more = ", …" if summary.missing > len(summary.missing_examples) else ""
    return (
        f"MISSING: {summary.missing} spaces of the input ({summary.inputs}) have no row "
        f"(first: {first}{more}): a run killed before writing them (an OOM-killed "
        "--processes child) or a report not given; a --resume of the run with this report "
        "purges them"
    )


def _shown(space_id: str) -> str:
    """An id from a file as it can be shown on a terminal: escaped, at most 80 characters."""
    text = space_id if space_id.isprintable() else space_id.encode("unicode_escape").decode()
    return text if len(text) <= 80 else text[:79] + "…"


def _lines(count: int) -> str:
    return f"{count} line" if count == 1 else f"{count} lines"


def _codes(counts: Any) -> str:
    return ", ".join(f"{k}={n}" for k, n in sorted(counts.items()))


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return f"{size} B"  # pragma: no cover


ALREADY_DONE = "already done (resume)"  # a reason for skipping, in summaries
ACCEPTED_NOTE = "accepted = SMH answered 204; it deletes and releases space asynchronously"


def check_lines(counters: Mapping[str, int], *, dry_run: int) -> list[str]:
    """What a dry run found, what --verify and --wait-release saw, from a run's counters
    (one process's, or the sum of the ``--processes`` children's)."""
    c = Counter(counters)
    lines = []
    if dry_run:
        lines.append(
            f"dry run: {dry_run} spaces, {c['bin_items']} items, {c['bin_bytes']} bytes "
            f"({_human(c['bin_bytes'])}) in their bins; nothing was deleted"
        )
    if c["verified"] or c["verify_not_empty"] or c["verify_error"]:
        lines.append(
            f"verify: {c['verified']} empty after the purge, {c['verify_not_empty']} not empty, "
            f"{c['verify_error']} not checked (listing failed)"
        )
    release = {k: c[k] for k in ("released", "release_pending", "nothing_to_release", "unknown")}
    if any(release.values()):
        lines.append("release: " + "  ".join(f"{k}: {v}" for k, v in release.items()))
    return lines


def dumb_terminal() -> bool:
    """``TERM=dumb`` (an editor's shell buffer): no colours, no line redrawn in place."""
    return os.environ.get("TERM") == "dumb"


def colours_wanted(stream: Any) -> bool:
    """ANSI colours on ``stream``: a terminal, unless ``NO_COLOR`` is set to anything but
    the empty string (https://no-color.org) or the terminal is dumb."""
    return bool(stream.isatty()) and not os.environ.get("NO_COLOR") and not dumb_terminal()


def say(line: str) -> None:
    """One line to stderr in one write: ``print`` writes the text and its newline apart, so
    the same error from several ``--processes`` children came out run together. A stderr
    that cannot be written (a terminal that hung up) loses the line, not the exit code."""
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


def stop_lines(aborted: str | None, interrupted: bool, report: str | None) -> list[str]:
    """Why a run stopped early, for the summary (one process or the ``--processes`` parent).
    Without a ``report`` there is nothing to resume from: a re-run sends every space again."""
    way_on = (
        "re-run with --resume REPORT to finish the rest"
        if report
        else "no --report was kept, so a re-run sends every space again (emptying is idempotent)"
    )
    lines = []
    if aborted:
        # A window ran out: nothing is wrong, the rest is simply still to do. (The
        # --processes parent joins its children's reasons: "failure_rate,max_duration".)
        # (token_unavailable: the token endpoint was down, nothing to fix but to resume;
        # log_unwritable: the log's disk is full, free it and resume.)
        resumable = {"max_duration", "token_unavailable", "log_unwritable"}
        window = bool(resumable & set(aborted.split(",")))
        lines.append(f"ABORTED: {aborted}: {way_on}" if window else f"ABORTED: {aborted}")
    if interrupted:
        lines.append(f"INTERRUPTED: {way_on}")
    return lines


class SafeStream:
    """A text stream that outlives its reader: ``| head`` that has seen enough, a terminal
    that hung up, a closed descriptor. The first failed write drops this and every later
    line (the descriptor is pointed at /dev/null, so nothing else trips on it either) and
    calls ``on_lost`` once, so a run can stop the way it does on SIGTERM instead of dying
    mid-way with spaces purged but not reported. A callback assigned after the loss (the
    purge command can only assign it once its client is open) is called at once.
    """

    def __init__(self, stream: TextIO | None) -> None:
        self._stream = stream
        self.lost: BaseException | None = None
        self._on_lost: Callable[[], None] | None = None

    @property
    def on_lost(self) -> Callable[[], None] | None:
        """Called once when the reader is gone, or on assignment if it is gone already."""
        return self._on_lost

    @on_lost.setter
    def on_lost(self, callback: Callable[[], None] | None) -> None:
        self._on_lost = callback
        if callback is not None and self.lost is not None:
            callback()  # the loss came first: nobody else would ever tell this callback

    def write(self, text: str) -> int:
        """Write ``text``, or drop it once the reader is gone."""
        if self._stream is not None:
            try:
                self._stream.write(text)
            except (OSError, ValueError) as exc:  # ValueError: the file object was closed
                self._lose(exc)
        return len(text)

    def flush(self) -> None:
        """Flush, or nothing once the reader is gone."""
        if self._stream is not None:
            try:
                self._stream.flush()
            except (OSError, ValueError) as exc:
                self._lose(exc)

    def fileno(self) -> int:
        """The wrapped stream's descriptor (OSError once lost: it points at /dev/null)."""
        if self._stream is None:
            raise OSError("the stream's reader is gone")
        return self._stream.fileno()

    def isatty(self) -> bool:
        """Whether the stream is a terminal (False once lost)."""
        try:
            return self._stream is not None and self._stream.isatty()
        except (OSError, ValueError):
            return False

    def _lose(self, exc: BaseException) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            with contextlib.suppress(OSError, ValueError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, stream.fileno())
                os.close(devnull)
        if self.lost is None:
            self.lost = exc
            if self._on_lost is not None:
                self._on_lost()
