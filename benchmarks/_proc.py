"""Run one contender as a child process and measure it: wall, CPU, peak RSS, its own result."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

_CLI_TOTAL = re.compile(r"spaces: (\d+)\s+accepted: (\d+)")
_CLI_ELAPSED = re.compile(r"elapsed: ([\d.]+) s")


@dataclass(frozen=True)
class Measured:
    """What one child run cost and did.

    ``rate`` is requests per second of the fan-out alone (as timed inside the child), the
    figure ratios use; ``wall_s``/``cpu_s`` cover the whole process including start-up.
    ``peak_rss_mb`` is the child's high-water RSS (``ru_maxrss`` from ``wait4``, the value
    ``/proc/PID/status`` shows as ``VmHWM``).
    """

    requests: int
    ok: int
    inner_s: float
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    returncode: int

    @property
    def rate(self) -> float:
        """Requests per second inside the child."""
        return self.requests / self.inner_s if self.inner_s > 0 else 0.0

    @property
    def cpu_per_1k(self) -> float:
        """Whole-process CPU seconds per 1,000 requests."""
        return self.cpu_s / self.requests * 1000 if self.requests else 0.0


def _parse(stdout: str) -> tuple[int, int, float]:
    """``(requests, ok, inner seconds)`` from a contender's JSON line or the CLI summary."""
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            data = json.loads(line)
            return int(data["requests"]), int(data["ok"]), float(data["elapsed_s"])
    total, elapsed = _CLI_TOTAL.search(stdout), _CLI_ELAPSED.search(stdout)
    if total is None or elapsed is None:
        raise RuntimeError(f"unparseable contender output: {stdout[-500:]!r}")
    return int(total.group(1)), int(total.group(2)), float(elapsed.group(1))


def measure(
    cmd: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cpus: str | None = "0",
    stderr_to: Path | None = None,
) -> Measured:
    """Run ``cmd`` (pinned to ``cpus`` with taskset unless None) and wait for it."""
    argv = (["taskset", "-c", cpus] if cpus else []) + list(cmd)
    full_env = {**os.environ, **(env or {})}
    err = stderr_to.open("wb") if stderr_to else subprocess.DEVNULL
    started = time.perf_counter()
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, env=full_env)
        assert proc.stdout is not None
        out = proc.stdout.read().decode("utf-8", "replace")
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        if stderr_to:
            err.close()  # type: ignore[union-attr]
    wall = time.perf_counter() - started
    requests, ok, inner = _parse(out)
    return Measured(
        requests=requests,
        ok=ok,
        inner_s=inner,
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        peak_rss_mb=usage.ru_maxrss / 1024,
        returncode=proc.returncode,
    )
