"""``purge --processes N``: one run spread over N child processes on this machine.

One Python process tops out at one core (on loopback about 5,000 to 8,000 requests/s, see
benchmarks/RESULTS.md). Child ``i`` runs the same command line with ``--shard i/N`` (the
stable hash of :mod:`smh_async._shard`, never Python's salted ``hash()``), so the children
read the same input and split it exactly, with no coordinator. Each writes its own report
part; the parent merges the parts into one report (last row per space wins) and prints one
summary. Children's logs go to the parent's stderr, one JSON object per line.

Each child also writes its totals (``--summary-json``). When every child finished and left
them, the parent copies the parts byte for byte and adds the totals up instead of parsing
every row again (30,000 rows: 0.12 s, on the critical path of the run); otherwise (a
child killed, a resume into the same report, ``--wait-release`` files) it reads the rows.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TextIO

from smh_async._console import (
    ACCEPTED_NOTE,
    ALREADY_DONE,
    PartsProgress,
    check_lines,
    say,
    stop_lines,
)
from smh_async._leftovers import parts_home, totals_path
from smh_async._report import (
    ReportSummary,
    append_files,
    concatenate_reports,
    copy_reports,
    forget_release_rows,
    release_destination,
    release_path,
    resume_set,
    summarize_reports,
    write_summary_json,
)

__all__ = [
    "FLAG_SECRET_ENV",
    "LIVE_LINE_ENV",
    "PARENT_PID_ENV",
    "child_argv",
    "count_to_purge",
    "drop_option",
    "drop_values",
    "exit_code_of",
    "run_processes",
    "totals_path",
]

# Set in each child's environment: the parent's pid. It marks the process as a child (which
# holds its report part, see smh_async._leftovers) and lets it notice the parent is gone.
PARENT_PID_ENV = "SMH_ASYNC_PARENT_PID"
# Set for the children when the parent draws a live line on the terminal they share.
LIVE_LINE_ENV = "SMH_ASYNC_PARENT_LIVE_LINE"

# A credential given as a flag reaches each child in these variables, never in its argv,
# which every local user can read (ps, /proc/PID/cmdline); a child takes it as the flag.
FLAG_SECRET_ENV = {
    "access_token": "SMH_ASYNC_ACCESS_TOKEN_FLAG",
    "library_secret": "SMH_ASYNC_LIBRARY_SECRET_FLAG",
}

# Worst first: the parent reports the most serious of its children's exit codes.
_SEVERITY = (130, 2, 3, 1, 0)


def drop_option(argv: Sequence[str], name: str) -> list[str]:
    """``argv`` without ``name VALUE`` / ``name=VALUE``."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == name:
            skip = True
        elif not arg.startswith(name + "="):
            out.append(arg)
    return out


def drop_values(argv: Sequence[str], values: Iterable[str]) -> list[str]:
    """``argv`` without the options whose value is one of ``values``: ``--opt VALUE`` and
    ``--opt=VALUE``, by any spelling argparse accepted (``--access-tok=VALUE``)."""
    secret = set(values)
    out: list[str] = []
    for arg in argv:
        if arg in secret and out and out[-1].startswith("--") and "=" not in out[-1]:
            out.pop()
        elif not (arg.startswith("--") and arg.partition("=")[2] in secret):
            out.append(arg)
    return out


def child_argv(argv: Sequence[str], index: int, count: int, report: Path) -> list[str]:
    """The command line of child ``index``: same run, its shard, its own report part and
    totals file (:func:`totals_path`)."""
    args = list(argv)
    for name in ("--processes", "--report", "--shard", "--summary-json"):
        args = drop_option(args, name)
    shard = ["--shard", f"{index}/{count}", "--report", str(report)]
    # --processes 1 said outright: an SMH_PROCESSES in the inherited environment must not
    # make each child split itself again.
    return [*args, *shard, "--summary-json", str(totals_path(report)), "--processes", "1"]


def count_to_purge(ids: Sequence[str], spaces_file: str | None, resume: str | None) -> int:
    """Distinct ids of the input not already accepted in ``resume``: what one process would
    admit, for checking ``--max-spaces`` once for all children before any of them starts."""
    from smh_async._dedupe import FingerprintSet
    from smh_async._targets import read_space_file

    done = resume_set([resume]) if resume else FingerprintSet()
    seen = FingerprintSet()
    count = 0
    with ExitStack() as stack:
        source: Iterable[str] = ids
        if spaces_file:
            source = read_space_file(stack.enter_context(Path(spaces_file).open("rb")))
        for space_id in source:
            if seen.add(space_id) and space_id not in done:
                count += 1
    return count


def exit_code_of(codes: Sequence[int]) -> int:
    """The most serious child exit code (unknown codes count as a failure)."""
    known = [c if c in _SEVERITY else 1 for c in codes]
    return next((c for c in _SEVERITY if c in known), 0)


def _spawn(
    argv: Sequence[str], secrets: Mapping[str, str], *, live_line: bool
) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "smh_async", *argv]
    env = {**os.environ, PARENT_PID_ENV: str(os.getpid())}
    if live_line:  # each log line of a child must clear the parent's line first
        env[LIVE_LINE_ENV] = "1"
    env.update({FLAG_SECRET_ENV[field]: value for field, value in secrets.items()})
    # A session of its own: a terminal's Ctrl-C reaches only the parent, which passes on
    # exactly one signal (two would mean "cancel in-flight requests now" to a child).
    return subprocess.Popen(  # noqa: S603 (our own CLI)
        cmd, stdout=subprocess.DEVNULL, start_new_session=True, env=env
    )


class _Relay:
    """The parent's SIGINT, SIGTERM and SIGHUP while :func:`run_processes` runs.

    Once the children run, each signal is passed on to those still running. Once they have
    all ended, signals are only recorded: the parent is merging their parts and writing the
    summary, and dying then (the default action, which it gave back as the children ended)
    lost both, leaving the parts unmerged. The handlers found are put back on exit
    (``main()`` may run in a host).
    """

    # SIGHUP too: the children run in sessions of their own, so a terminal that hangs up
    # reaches only the parent, which must not die before merging their reports.
    _SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.received: set[int] = set()
        self._children: list[subprocess.Popen[bytes]] = []
        self._previous: dict[signal.Signals, Any] = {}

    def __enter__(self) -> _Relay:
        self._previous = {sig: signal.getsignal(sig) for sig in self._SIGNALS}
        return self

    def __exit__(self, *exc_info: object) -> None:
        for sig, handler in self._previous.items():
            if handler is not None:  # None: not set from Python, nothing to put back
                signal.signal(sig, handler)

    def pass_on(self, children: Sequence[subprocess.Popen[bytes]]) -> None:
        """From now on, pass each signal on to those of ``children`` still running."""
        self._children = list(children)
        for sig in self._SIGNALS:
            signal.signal(sig, self._handle)

    def record_only(self) -> None:
        """The children have ended: from now on a signal is only recorded."""
        self._children = []

    def _handle(self, signum: int, frame: object) -> None:
        self.received.add(signum)
        for child in self._children:
            if child.poll() is None:
                child.send_signal(signum)


def _wait_all(
    children: Sequence[subprocess.Popen[bytes]],
    relay: _Relay,
    progress: PartsProgress | None = None,
) -> list[int]:
    """Wait for every child, ``relay`` passing each SIGINT/SIGTERM/SIGHUP on to those still
    running, and redrawing ``progress`` four times a second when there is one.

    The first signal makes the children stop gracefully (report flushed, exit 130); a
    second one cancels their in-flight requests, as it would for a single process.
    """
    relay.pass_on(children)
    try:
        if progress is not None:
            while any(child.poll() is None for child in children):
                progress.update()
                time.sleep(0.25)
            progress.update()
            progress.close()
        codes = [child.wait() for child in children]
    finally:
        relay.record_only()
    # A child that died of a signal passed on from the operator was interrupted as asked,
    # not broken: 130. Once running, a child is never killed by one (see _SignalGate in
    # smh_async._commands); a Ctrl-C while it starts, before its handlers, can end it so.
    return [130 if code < 0 and -code in relay.received else code for code in codes]


def run_processes(
    argv: Sequence[str],
    count: int,
    report: str | None,
    *,
    append: bool = False,
    summary_json: str | None = None,
    terminal: TextIO | None = None,
    secrets: Mapping[str, str] | None = None,
) -> int:
    """Run ``purge`` ``argv`` as ``count`` shard processes; merge reports; print a summary.

    ``secrets``: the credentials given as flags (``access_token`` / ``library_secret`` →
    value); they are taken out of the children's command line and passed in their
    environment (:data:`FLAG_SECRET_ENV`).

    ``append``: the run resumes into its own report, so the earlier rows are kept and the
    children's rows are merged after them (last row per space wins). ``terminal``: show one
    live line there for the whole run (``argv`` then tells the children to draw none).
    The parts an earlier run left beside the report have been dealt with before
    (:func:`smh_async._leftovers.settle_leftovers`): none is there to be overwritten.
    """
    with _Relay() as relay:  # until the summary is out, a signal cannot kill the parent
        return _run_and_merge(
            drop_values(argv, (secrets or {}).values()),
            count,
            report,
            relay,
            append=append,
            summary_json=summary_json,
            terminal=terminal,
            secrets=secrets or {},
        )


def _run_and_merge(
    argv: Sequence[str],
    count: int,
    report: str | None,
    relay: _Relay,
    *,
    append: bool,
    summary_json: str | None,
    terminal: TextIO | None,
    secrets: Mapping[str, str],
) -> int:
    """:func:`run_processes` with its signals in ``relay``'s hands."""
    started = time.monotonic()
    with _Scratch() as scratch:
        target = Path(report) if report else None
        # Parts beside the report (same file system), unless it is /dev/stdout or the like.
        base = (parts_home(target) if target else None) or scratch.path
        name = target.name if target else "report.jsonl"
        parts = [base / f"{name}.part{i}of{count}" for i in range(count)]
        children = [
            _spawn(child_argv(argv, i, count, part), secrets, live_line=terminal is not None)
            for i, part in enumerate(parts)
        ]
        codes = _wait_all(children, relay, PartsProgress(parts, terminal) if terminal else None)
        present = [p for p in parts if p.exists()]
        if not present and set(codes) == {2}:
            # Every child refused the run before any request (each said why, as one process
            # would): no summary, and the --report path is left as it was.
            return 2
        if not present and set(codes) == {130}:
            # Interrupted while the children were starting (a child opens its report part
            # before its first request): nothing was sent. One process says just that too.
            print(
                "smh-async: interrupted before any space was started: nothing was sent, "
                "no report was written",
                file=sys.stderr,
            )
            return 130
        # A child that ended before opening its part (interrupted while starting, or
        # refused) reported none of its shard's spaces: the summary must say so.
        unreported = [
            f"{i}/{count} (exit {code})"
            for i, (part, code) in enumerate(zip(parts, codes, strict=True))
            if code >= 0 and not part.exists()
        ]
        earlier = [target] if append and target is not None and target.exists() else []
        loaded = _read_totals(parts)  # once: the merge, the stop reasons and the details
        totals = _children_totals(parts, loaded) if present == parts else None
        stopped_by = _stop_reasons(loaded)
        details = _run_details(loaded)
        merge_failed, release_report = None, None
        try:
            summary = _merge(earlier, present, target, totals)
            release_report = _merge_release_files(present, target, append=bool(earlier))
        except OSError as exc:  # a full disk: the parts hold every row, so they stay
            merge_failed = f"cannot write {target}: {exc.strerror or exc}"
            summary = summarize_reports(present)
            scratch.keep = base == scratch.path
        else:
            for part in present:
                part.unlink()
        for path in map(totals_path, parts):
            path.unlink(missing_ok=True)
    elapsed = time.monotonic() - started
    code = exit_code_of([*codes, 3] if merge_failed else codes)
    result = _summary_dict(summary, elapsed, count, report, code)
    result["aborted"] = ",".join(stopped_by) or None
    result["interrupted"] = code == 130
    result["broken_processes"] = _broken(codes)
    result["unreported_shards"] = unreported
    result.update(details)
    if release_report:
        result["release_report"] = release_report
    if merge_failed:
        result["report_failed"] = merge_failed
        result["report_parts"] = [str(p) for p in (*earlier, *present)]
    _print_summary(result)
    if summary_json:
        try:
            write_summary_json(summary_json, result)
        except OSError as exc:  # checked at the start; the disk may have filled since
            # As one process says it: the run's own exit code stands (it was a traceback).
            say(f"smh-async: error: cannot write the summary {summary_json}: {exc}")
    return code


class _Scratch:
    """The directory for the parts of a run whose report is not a regular file
    (``/dev/stdout``): removed at the end, unless the merge failed and the parts in it are
    the only copy of the run's rows (the summary names them)."""

    def __init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="smh-async-parts-"))
        self.keep = False

    def __enter__(self) -> _Scratch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self.keep:
            shutil.rmtree(self.path, ignore_errors=True)


def _read_totals(parts: Sequence[Path]) -> list[dict[str, Any] | None]:
    """Each child's ``--summary-json`` (:func:`totals_path`), None where it left none or it
    cannot be read."""

    def load(part: Path) -> dict[str, Any] | None:
        try:
            child = json.loads(totals_path(part).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return child if isinstance(child, dict) else None

    return [load(part) for part in parts]


def _children_totals(
    parts: Sequence[Path], loaded: Sequence[dict[str, Any] | None] | None = None
) -> list[dict[str, Any]] | None:
    """Every child's totals (``loaded``, or read now), or None if one is missing or
    unreadable, or if any wrote release files (those rows are counted by reading them)."""
    if any(release_path(p).is_file() for p in parts):
        return None
    children = [c for c in (_read_totals(parts) if loaded is None else loaded) if c is not None]
    return children if len(children) == len(parts) else None


def _run_details(loaded: Sequence[dict[str, Any] | None]) -> dict[str, Any]:
    """What one process's summary says beyond the report's counts, from the children's
    totals: ``counters`` (dry-run bin sizes, --verify, --wait-release) summed,
    ``duplicates`` (each child de-duplicates the whole input before taking its shard, so
    each counts them all) and the spaces a resume found already done (each counts its
    shard's). Empty when a child left no totals: a partial sum would read as the whole run.
    """
    counters: Counter[str] = Counter()
    duplicates, done = 0, 0
    for child in loaded:
        if child is None:
            return {}
        try:
            counters.update({k: int(v) for k, v in child["counters"].items()})
            duplicates = max(duplicates, int(child["duplicates"]))
            done += int(child["skipped_reasons"].get(ALREADY_DONE, 0))
        except (ValueError, KeyError, TypeError, AttributeError):
            return {}
    return {
        "duplicates": duplicates,
        "skipped_reasons": {ALREADY_DONE: done},
        "counters": dict(counters),
    }


def _broken(codes: Sequence[int]) -> list[str]:
    """Children that ended in no documented way (killed, crashed), as ``"1/2 killed by
    SIGKILL"``: whatever they had not finished is in no report row."""
    broken = []
    for index, code in enumerate(codes):
        if code in _SEVERITY:
            continue
        if code < 0:
            try:
                how = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"killed by signal {-code}"
        else:
            how = f"exited with {code}"
        broken.append(f"{index}/{len(codes)} {how}")
    return broken


def _stop_reasons(loaded: Sequence[dict[str, Any] | None]) -> list[str]:
    """Why children stopped early (``max_duration``, ``failure_rate``, …), from the totals
    of those that left them: the parent's summary says why it exits 3, as one process does."""
    reasons = {child.get("aborted") for child in loaded if child is not None}
    return sorted(r for r in reasons if isinstance(r, str) and r)


def _merge(
    earlier: Sequence[Path],
    parts: Sequence[Path],
    target: Path | None,
    totals: Sequence[dict[str, Any]] | None,
) -> ReportSummary:
    """The children's parts are disjoint shards with one row per space, so on their own they
    are concatenated: byte for byte when the children's ``totals`` count them, otherwise in
    one reading pass; after an earlier report (a resume) a space may have rows in both, and
    the last-row-wins merge decides what the file holds. ``target`` may be one of the
    inputs: each of these writes beside it and replaces it when done. The summary returned
    counts this run's spaces (the parts), as one process's does.
    """
    if not parts:  # no child got as far as its report: leave the target as it is
        return ReportSummary()
    if earlier:  # the report file: earlier rows, then this run's, last row wins
        summarize_reports([*earlier, *parts], output=target)
        # The summary: this run's spaces, as one process resuming would count them.
        if totals is not None:
            return _summary_from_totals(totals, len(parts))
        return concatenate_reports(parts)
    if totals is not None:
        if target is not None:
            copy_reports(parts, target)
        return _summary_from_totals(totals, len(parts))
    return concatenate_reports(parts, output=target)


def _summary_from_totals(totals: Sequence[dict[str, Any]], files: int) -> ReportSummary:
    """What reading the parts would count, from the children's own totals (one row each)."""
    summary = ReportSummary(files=files)
    for child in totals:
        summary.rows += int(child["total"])
        for outcome in ("accepted", "failed", "skipped", "dry_run"):
            if child[outcome]:
                summary.by_outcome[outcome] += int(child[outcome])
        summary.by_error_code.update(Counter(child["by_error_code"]))
    summary.spaces = summary.rows
    return summary


def _merge_release_files(parts: Sequence[Path], target: Path | None, *, append: bool) -> str | None:
    """Concatenate the children's ``--wait-release`` files beside the merged report; return
    where they went (None if there were none)."""
    found = [r for p in parts if (r := release_path(p)).is_file()]
    destination = None
    if target is not None and parts and not append:  # a fresh report: fresh release rows
        forget_release_rows(target)
    if target is not None and found:
        destination = release_destination(target)
        append_files(destination, found, append=append)
    for path in found:
        path.unlink()
    return str(destination) if destination else None


def _summary_dict(
    summary: ReportSummary, elapsed: float, count: int, report: str | None, code: int
) -> dict[str, Any]:
    """The parent's ``--summary-json``: the merged counts (per-space latency stays in the
    children's log events and the report)."""
    outcomes = summary.by_outcome
    return {
        "total": summary.spaces,
        **{k: outcomes.get(k, 0) for k in ("accepted", "failed", "skipped", "dry_run")},
        "by_error_code": dict(summary.by_error_code),
        "release": dict(summary.release),
        "elapsed_s": round(elapsed, 3),
        # Spaces never started (a stop) are in the count but took no time.
        "rate_per_s": round((summary.spaces - summary.not_started) / elapsed, 1)
        if elapsed > 0
        else 0.0,
        "processes": count,
        "report": report,
        "exit_code": code,
    }


def _print_summary(result: dict[str, Any]) -> None:
    """The parent's summary on stdout, from :func:`_summary_dict`."""
    details = ""
    if "duplicates" in result:
        details = f"  skipped: {result['skipped']}  duplicates: {result['duplicates']}"
        details += "".join(f"  {k}: {v}" for k, v in result["skipped_reasons"].items() if v)
    lines = [
        f"spaces: {result['total']}  accepted: {result['accepted']}  "
        f"failed: {result['failed']}  dry_run: {result['dry_run']}{details}  "
        f"processes: {result['processes']}",
        f"elapsed: {result['elapsed_s']:.2f} s  rate: {result['rate_per_s']:.1f}/s"
        " (whole run, all processes)",
    ]
    if result["by_error_code"]:
        codes = ", ".join(f"{c}={n}" for c, n in sorted(result["by_error_code"].items()))
        lines.append(f"failures by code: {codes}")
    if "counters" in result:
        lines.extend(check_lines(result["counters"], dry_run=result["dry_run"]))
    lines.extend(
        stop_lines(result.get("aborted"), bool(result.get("interrupted")), result["report"])
    )
    if result["accepted"]:
        lines.append(ACCEPTED_NOTE)
    if result.get("report_failed"):
        parts = " ".join(result["report_parts"])
        line = (
            f"REPORT FAILED: {result['report_failed']}. Every row is kept in {parts}: "
            f"'smh-async report {parts} --output {result['report']}' merges them once there is room"
        )
        if parts_home(Path(result["report"])) is not None:  # the parts are beside it
            line += " (then remove the .part files), or the next run resuming into it does"
        lines.append(line)
    for shard in result.get("broken_processes") or ():
        lines.append(
            f"PROCESS FAILED: shard {shard}; the spaces it had not finished are in no report "
            "row: re-run with --resume REPORT to finish them"
        )
    for shard in result.get("unreported_shards") or ():
        lines.append(
            f"NOT STARTED: shard {shard} ended before its first space: its spaces are in no "
            "report row: re-run with --resume REPORT to purge them"
        )
    if result["report"]:
        lines.append(f"report: {result['report']}")
    if result.get("release_report"):
        lines.append(f"release report: {result['release_report']}")
    print("\n".join(lines), flush=True)
