"""Collect measurements, take medians, and write RESULTS.md and the PNG plot."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

from benchmarks._proc import Measured

BASELINE = "bare aiohttp workers"
LIBRARY = "smh-async library"
Key = tuple[str, str, int]  # section, contender, concurrency or size


@dataclass
class Latency:
    """One latency-bound run against the emulator."""

    contender: str
    spaces: int
    concurrency: int
    ideal_s: float
    run: Measured
    server_cpu_s: float  # CPU the emulator process spent during this run


@dataclass
class Results:
    """Every measurement of one ``make bench``."""

    requests: int
    httpx_requests: int
    reps: int
    runs: dict[Key, list[Measured]] = field(default_factory=lambda: defaultdict(list))
    wrk: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))
    latency: list[Latency] = field(default_factory=list)
    instructions: dict[str, float] = field(default_factory=dict)  # per request, callgrind
    duration_s: float = 0.0

    def add(self, section: str, name: str, level: int, m: Measured) -> None:
        """Record one child run."""
        self.runs[section, name, level].append(m)

    def add_wrk(self, conc: int, rate: float) -> None:
        """Record one wrk run."""
        self.wrk[conc].append(rate)

    def add_latency(self, run: Latency) -> None:
        """Record one latency-bound run."""
        self.latency.append(run)

    def names(self, section: str) -> list[str]:
        """Contenders of a section, in first-seen order."""
        return list(dict.fromkeys(name for s, name, _ in self.runs if s == section))

    def paired_ratio(self, section: str, name: str, level: int) -> float:
        """Median over repetitions of this contender's rate / the baseline's in the same one.

        Each pair ran seconds apart, so a slow spell on the host moves both: steadier than
        the ratio of the two medians when the machine is shared (0 when absent).
        """
        ours = self.runs.get((section, name, level), [])
        base = self.runs.get((section, BASELINE, level), [])
        pairs = [a.rate / b.rate for a, b in zip(ours, base, strict=False) if b.rate]
        return statistics.median(pairs) if pairs else 0.0

    def median(self, section: str, name: str, level: int, attr: str) -> float:
        """Median of one attribute over the repetitions (0 when absent)."""
        values = [getattr(m, attr) for m in self.runs.get((section, name, level), [])]
        return statistics.median(values) if values else 0.0


def _versions() -> str:
    names = ("smh-async", "aiohttp", "anyio", "structlog", "yarl", "httpx", "uvloop")
    found = []
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    return ", ".join(
        [f"Python {platform.python_version()}", *found, nginx.replace("nginx version: ", "")]
    )


def _machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    system = f"{platform.system()} {platform.release()}"
    return f"{cpu}, {os.cpu_count()} CPUs, {system}; load average at the end {load}"


def _throughput_table(r: Results) -> list[str]:
    concs = sorted({level for s, _, level in r.runs if s == "throughput"})
    head = (
        "| contender | "
        + " | ".join(f"c={c} req/s | x bare" for c in concs)
        + " | CPU s / 1k req (c=64) |"
    )
    lines = [head, "|---|" + "---:|---:|" * len(concs) + "---:|"]
    for name in r.names("throughput"):
        cells = []
        for conc in concs:
            rate = r.median("throughput", name, conc, "rate")
            ratio = r.paired_ratio("throughput", name, conc)
            cells.append(f"{rate:,.0f} | {ratio:.2f}" if ratio else f"{rate:,.0f} | n/a")
        cpu = r.median("throughput", name, 64, "cpu_per_1k")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {cpu:.3f} |")
    wrk_cells = []
    for conc in concs:
        ceiling = statistics.median(r.wrk[conc]) if r.wrk.get(conc) else 0.0
        base = r.median("throughput", BASELINE, conc, "rate")
        wrk_cells.append(f"{ceiling:,.0f} | {ceiling / base:.1f}" if base else f"{ceiling:,.0f} |")
    lines.append(f"| wrk (ceiling, C) | {' | '.join(wrk_cells)} | n/a |")
    return lines


def _simple_table(r: Results, section: str, attr: str, unit: str) -> list[str]:
    levels = sorted({level for s, _, level in r.runs if s == section})
    lines = ["| contender | " + " | ".join(f"{lv:,}" for lv in levels) + " |"]
    lines.append("|---|" + "---:|" * len(levels))
    for name in r.names(section):
        cells = []
        for lv in levels:
            value = r.median(section, name, lv, attr)
            cells.append(f"{value:,.1f} {unit}" if value else "not run")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _spread(r: Results, section: str, name: str, level: int) -> str:
    rates = sorted(m.rate for m in r.runs.get((section, name, level), []))
    return " / ".join(f"{x:,.0f}" for x in rates)


def render(r: Results) -> str:
    """The generated part of RESULTS.md (figures only; the analysis is appended by hand)."""
    out = [
        "# smh-async benchmark results",
        "",
        f"Generated by `make bench` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} "
        f"in {r.duration_s:.0f} s.",
        "",
        f"- Machine: {_machine()}.",
        f"- Versions: {_versions()}.",
        "- Server: nginx, one worker pinned to CPU 1, `return 204` on `DELETE /api/v1/recycled/*`, "
        "access log off. Clients pinned to CPU 0 (`taskset -c 0`) except the multi-process run.",
        f"- Throughput runs: {r.requests:,} requests each ({r.httpx_requests:,} for httpx), "
        f"{r.reps} repetitions interleaved (A B C … then rotated), medians shown. "
        "req/s is timed inside each process around the fan-out (start-up excluded); "
        "CPU s / 1k is the whole process (user+sys from `wait4`, start-up included).",
        "- Absolute numbers depend on what else runs on the machine (see the load average): "
        "compare ratios within one table, never across runs.",
        "",
        "## Throughput (requests/s, ratio to the bare aiohttp worker loop)",
        "",
        "req/s: median of the repetitions; x bare: median of the per-repetition ratios "
        "(each run against the bare run seconds before or after it).",
        "",
        *_throughput_table(r),
        "",
        "Spread of the library at c=64 (all repetitions): "
        f"{_spread(r, 'throughput', LIBRARY, 64)}; "
        f"bare workers: {_spread(r, 'throughput', BASELINE, 64)}.",
        "",
        "## Instructions per request (callgrind, c=64; deterministic, unlike the rates above)",
        "",
        *_instructions_table(r),
        "",
        "## uvloop (c=64, requests/s, medians)",
        "",
        *_simple_table(r, "uvloop", "rate", "req/s"),
        "",
        "## Multi-process (c=256 per process, requests/s over the whole process lifetime)",
        "",
        *multi_table(r),
        "",
        "## Peak RSS streaming N space ids from a file (c=256, MB, VmHWM of the child)",
        "",
        *_simple_table(r, "memory", "peak_rss_mb", "MB"),
        "",
        "## Latency-bound efficiency (emulator in its own process at 50 ms per request)",
        "",
        *latency_table(r),
        "",
    ]
    return "\n".join(out)


def latency_table(r: Results) -> list[str]:
    """Medians per (spaces, concurrency, contender); x bare = median of the paired ratios.

    Client and emulator are pinned to one core each, so "client CPU s" close to the wall
    time means the client, not the 50 ms, set the pace.
    """
    groups: dict[tuple[int, int, str], list[Latency]] = defaultdict(list)
    for x in r.latency:
        groups[x.spaces, x.concurrency, x.contender].append(x)
    lines = [
        "| spaces | concurrency | contender | ideal s (req/s it needs) | wall s (fan-out) "
        "| wall / ideal | x bare wall (paired) | client CPU s | emulator CPU s |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for (spaces, conc, name), runs in groups.items():
        base = groups.get((spaces, conc, BASELINE), [])
        pairs = [a.run.inner_s / b.run.inner_s for a, b in zip(runs, base, strict=False)]
        wall = statistics.median(x.run.inner_s for x in runs)
        ideal = runs[0].ideal_s
        lines.append(
            f"| {spaces:,} | {conc} | {name} | {ideal:.2f} ({spaces / ideal:,.0f}) | {wall:.2f} "
            f"| {wall / ideal:.2f} "
            f"| {statistics.median(pairs) if pairs else 0:.2f} "
            f"| {statistics.median(x.run.cpu_s for x in runs):.2f} "
            f"| {statistics.median(x.server_cpu_s for x in runs):.2f} |"
        )
    return lines


def _instructions_table(r: Results) -> list[str]:
    base = r.instructions.get(BASELINE)
    lines = [
        "| contender | instructions / request | x bare | bare / contender |",
        "|---|---:|---:|---:|",
    ]
    for name, count in r.instructions.items():
        ratio = f"{count / base:.2f} | {base / count:.2f}" if base and count else "n/a | n/a"
        lines.append(f"| {name} | {count:,.0f} | {ratio} |")
    return lines


def multi_table(r: Results) -> list[str]:
    """The multi-process table: req/s over each whole run and the paired ratio to bare."""
    lines = [
        "| contender | req/s (median) | x bare (paired) | runs |",
        "|---|---:|---:|---|",
    ]
    names = r.names("multi")
    rates = {n: [m.requests / m.wall_s for m in r.runs["multi", n, 256]] for n in names}
    base = rates[names[0]] if names else []
    for name in names:
        pairs = [a / b for a, b in zip(rates[name], base, strict=False) if b]
        paired = f"{statistics.median(pairs):.2f}" if pairs else "n/a"
        shown = " / ".join(f"{x:,.0f}" for x in sorted(rates[name]))
        lines.append(f"| {name} | {statistics.median(rates[name]):,.0f} | {paired} | {shown} |")
    return lines


def plot(r: Results, path: Path) -> None:
    """Two panels: throughput by concurrency, peak RSS by input size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    concs = sorted({lv for s, _, lv in r.runs if s == "throughput"})
    for name in r.names("throughput"):
        left.plot(
            concs, [r.median("throughput", name, c, "rate") for c in concs], marker="o", label=name
        )
    left.set(
        xscale="log",
        yscale="log",
        xlabel="concurrency",
        ylabel="requests/s (median)",
        title="Throughput against nginx on loopback",
    )
    left.set_xticks(concs, [str(c) for c in concs])
    left.minorticks_off()
    left.legend(fontsize=8)
    sizes = sorted({lv for s, _, lv in r.runs if s == "memory"})
    for name in r.names("memory"):
        pts = [(s, r.median("memory", name, s, "peak_rss_mb")) for s in sizes]
        pts = [(s, v) for s, v in pts if v]
        right.plot([s for s, _ in pts], [v for _, v in pts], marker="o", label=name)
    right.set(
        xscale="log",
        xlabel="space ids in the input file",
        ylabel="peak RSS (MB)",
        title="Memory while streaming ids",
    )
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_results(r: Results, md: Path, png: Path) -> None:
    """Write RESULTS.md (figures + the hand-written analysis), the plot, and every raw
    measurement (``results.json``, one object per child run, for re-analysis)."""
    analysis = md.with_name("ANALYSIS.md")
    text = render(r) + "\n![throughput and memory](results.png)\n"
    if analysis.exists():
        text += "\n" + analysis.read_text(encoding="utf-8")
    md.write_text(text, encoding="utf-8")
    plot(r, png)
    raw = {
        "runs": [
            {"section": section, "contender": name, "level": level, **asdict(m)}
            for (section, name, level), runs in r.runs.items()
            for m in runs
        ],
        "wrk": r.wrk,
        "instructions_per_request": r.instructions,
        "latency": [{**asdict(x), "run": asdict(x.run)} for x in r.latency],
    }
    md.with_name("results.json").write_text(json.dumps(raw, indent=1) + "\n", encoding="utf-8")
