"""``purge --processes N``: one run spread over N child processes on this machine.

One Python process tops out at one core (on loopback about 5,000 to 8,000 requests/s, see
benchmarks/RESULTS.md). Child ``i`` runs the same command line with ``--shard i/N`` (the
stable hash of :mod:`smh_async._shard`, never Python's salted ``hash()``), so the children
read the same input and split it exactly, with no coordinator. Each writes its own report
part; the parent merges the parts into one report (last row per space wins) and prints one
summary. Children's logs go to the parent's stderr, one JSON object per line.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from smh_async._report import ReportSummary, summarize_reports

__all__ = ["child_argv", "exit_code_of", "run_processes"]

# Worst first: the parent reports the most serious of its children's exit codes.
_SEVERITY = (130, 2, 3, 1, 0)


def _drop_option(argv: Sequence[str], name: str) -> list[str]:
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


def child_argv(argv: Sequence[str], index: int, count: int, report: Path) -> list[str]:
    """The command line of child ``index``: same run, its shard, its own report part."""
    args = _drop_option(_drop_option(_drop_option(argv, "--processes"), "--report"), "--shard")
    return [*args, "--shard", f"{index}/{count}", "--report", str(report)]


def exit_code_of(codes: Sequence[int]) -> int:
    """The most serious child exit code (unknown codes count as a failure)."""
    known = [c if c in _SEVERITY else 1 for c in codes]
    return next((c for c in _SEVERITY if c in known), 0)


def _spawn(argv: Sequence[str]) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "smh_async", *argv]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL)  # noqa: S603 (our own CLI)


def _wait_all(children: Sequence[subprocess.Popen[bytes]]) -> list[int]:
    """Wait for every child; a Ctrl-C is passed on (children stop gracefully)."""
    try:
        return [child.wait() for child in children]
    except KeyboardInterrupt:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGINT)
        return [child.wait() for child in children]


def run_processes(argv: Sequence[str], count: int, report: str | None) -> int:
    """Run ``purge`` ``argv`` as ``count`` shard processes; merge reports; print a summary."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="smh-async-parts-") as scratch:
        target = Path(report) if report else None
        base = target.parent if target else Path(scratch)
        name = target.name if target else "report.jsonl"
        parts = [base / f"{name}.part{i}of{count}" for i in range(count)]
        children = [_spawn(child_argv(argv, i, count, part)) for i, part in enumerate(parts)]
        codes = _wait_all(children)
        present = [p for p in parts if p.exists()]
        summary = summarize_reports(present, output=target)
        for part in present:
            os.unlink(part)
    _print_summary(summary, time.monotonic() - started, count, report)
    return exit_code_of(codes)


def _print_summary(summary: ReportSummary, elapsed: float, count: int, report: str | None) -> None:
    outcomes = summary.by_outcome
    rate = summary.spaces / elapsed if elapsed > 0 else 0.0
    lines = [
        f"spaces: {summary.spaces}  accepted: {outcomes.get('accepted', 0)}  "
        f"failed: {outcomes.get('failed', 0)}  dry_run: {outcomes.get('dry_run', 0)}  "
        f"processes: {count}",
        f"elapsed: {elapsed:.2f} s  rate: {rate:.1f}/s (whole run, all processes)",
    ]
    if summary.by_error_code:
        codes = ", ".join(f"{c}={n}" for c, n in sorted(summary.by_error_code.items()))
        lines.append(f"failures by code: {codes}")
    if report:
        lines.append(f"report: {report}")
    print("\n".join(lines), flush=True)
