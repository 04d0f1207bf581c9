"""CPU instructions per request, counted by valgrind's callgrind: a figure noise cannot move.

Requests/s on a shared two-core VM swing by ±10% between runs (see RESULTS.md). callgrind
counts the instructions a process executes instead of timing it, so the same code, input
and environment give the same count whatever else the host is doing. Each contender runs
twice, on ``N`` and ``2N`` ids; the difference divided by ``N`` is the cost of one request
with interpreter start-up and imports cancelled out. On loopback every contender is
CPU-bound, so the ratio of instructions per request predicts the ratio of throughput
(cache misses aside, which callgrind does not see).

Under callgrind a client runs ~50x slower, so nginx answers "instantly" and each event-loop
iteration finds more replies ready than in a timed run; that shifts every contender alike.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

_COLLECTED = re.compile(rb"Collected : (\d+)")

Command = Callable[[Path], Sequence[str]]  # ids file -> the contender's command line


def instructions(cmd: Sequence[str], env: dict[str, str], cpus: str | None = None) -> int:
    """Instructions executed by ``cmd`` (and only it: children are not traced)."""
    argv = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *cmd]
    if cpus is not None:
        argv = ["taskset", "-c", cpus, *argv]
    full_env = {**os.environ, "PYTHONHASHSEED": "0", **env}
    proc = subprocess.run(argv, env=full_env, capture_output=True, check=False)
    found = _COLLECTED.search(proc.stderr)
    if proc.returncode != 0 or found is None:
        tail = proc.stderr[-400:].decode("utf-8", "replace")
        raise RuntimeError(f"callgrind run failed ({proc.returncode}): {tail}")
    return int(found.group(1))


def per_request(
    contenders: Mapping[str, tuple[Command, dict[str, str]]],
    small: Path,
    big: Path,
    n: int,
    *,
    parallel: int = 1,
    cpus: str | None = None,
) -> dict[str, float]:
    """Instructions per request of each contender: ``(Ir(big) - Ir(small)) / n``.

    ``parallel`` callgrind processes run at a time. Counts do not depend on how busy the
    machine is, so this may share it with other work that is not timed either; ``cpus``
    pins them (taskset) to keep them off that work's core.
    """
    jobs = [(name, ids) for name in contenders for ids in (small, big)]

    def count(job: tuple[str, Path]) -> int:
        name, ids = job
        command, env = contenders[name]
        return instructions(command(ids), env, cpus)

    with ThreadPoolExecutor(max_workers=parallel) as pool:
        counts = list(pool.map(count, jobs))
    by_job = dict(zip(jobs, counts, strict=True))
    return {name: (by_job[name, big] - by_job[name, small]) / n for name in contenders}
