"""``python -m benchmarks``: run every section, then write RESULTS.md and results.png.

Client processes are pinned to CPU 0 and nginx's single worker to CPU 1 (the machine has
two cores); the multi-process section is the exception and runs its children on both.
Environment knobs: ``BENCH_REQUESTS`` (per throughput run, default 6000),
``BENCH_REPS`` (default 5), ``BENCH_FULL=1`` (also run the naive script at 1,000,000 ids),
``BENCH_QUICK=1`` (a smoke test of the harness: small inputs, numbers meaningless).
"""

from __future__ import annotations

import compileall
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from benchmarks import _contenders as c
from benchmarks._instr import per_request
from benchmarks._nginx import running_nginx
from benchmarks._proc import Measured, measure
from benchmarks._results import Latency, Results, write_results

REQUESTS = int(os.environ.get("BENCH_REQUESTS", "6000"))
# httpx is 10-50x slower: about the same time per run needs 20x fewer requests.
HTTPX_REQUESTS = max(250, REQUESTS // 20)
REPS = int(os.environ.get("BENCH_REPS", "5"))
FULL = os.environ.get("BENCH_FULL") == "1"
CONCURRENCIES = (16, 64, 256)
QUICK = os.environ.get("BENCH_QUICK") == "1"
MEMORY_SIZES = (1_000, 3_000) if QUICK else (10_000, 100_000, 1_000_000)
LATENCY = 0.05
LATENCY_RUNS: tuple[tuple[int, int], ...] = ((20_000, 500), (5_000, 100))  # (spaces, concurrency)
if QUICK:
    LATENCY_RUNS = ((1_000, 100),)
MULTI_REQUESTS = 2_000 if QUICK else 30_000
UVLOOP_REPS = 3
LATENCY_REPS = 1 if QUICK else 3
MULTI_PROCESSES = 2
INSTR_REQUESTS = 200 if QUICK else 1_000  # callgrind runs N and 2N ids per contender
HERE = Path(__file__).resolve().parent

Runner = Callable[[c.Target], Measured]


def write_ids(path: Path, count: int, prefix: str = "space") -> Path:
    """``count`` distinct space ids, one per line."""
    with path.open("w", encoding="ascii") as f:
        f.writelines(f"{prefix}{n:09d}\n" for n in range(count))
    return path


def runners(scratch: Path) -> dict[str, Runner]:
    """Every throughput contender by display name (each a fresh child process)."""
    env = {"BENCH_OUT_DIR": str(scratch)}

    def script_runner(module: str) -> Runner:
        return lambda t: measure(c.script(module, t), env=env)

    table = {name: script_runner(module) for name, module in c.SCRIPTS.items()}
    table["smh-async CLI"] = lambda t: measure(
        c.cli(t), env=c.CLI_ENV, stderr_to=scratch / "cli.log"
    )
    return table


def log(message: str) -> None:
    """Progress on stderr (the run takes minutes)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def throughput(base_url: str, scratch: Path, results: Results) -> None:
    """Every contender at each concurrency, interleaved, REPS times (rotating the order)."""
    table = runners(scratch)
    ids = write_ids(scratch / "ids.txt", REQUESTS)
    few = write_ids(scratch / "ids-httpx.txt", HTTPX_REQUESTS)
    names = list(table)
    for rep in range(REPS):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for conc in CONCURRENCIES:
            for name in order:
                spaces = few if name == "httpx gather" else ids
                m = table[name](c.Target(base_url, spaces, conc, scratch))
                results.add("throughput", name, conc, m)
            results.add_wrk(conc, wrk(base_url, conc))
        log(f"throughput rep {rep + 1}/{REPS} done")


def wrk(base_url: str, conc: int) -> float:
    """wrk's requests/s on the same URL (one thread, pinned like the clients)."""
    url = f"{base_url}/api/v1/recycled/benchlib/space000000001?access_token=x"
    lua = HERE / "contenders" / "wrk_delete.lua"
    cmd = ["taskset", "-c", "0", "wrk", "-t1", f"-c{conc}", "-d1s", "-s", str(lua), url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("Requests/sec:"))
    return float(line.split()[1])


def uvloop_trial(base_url: str, scratch: Path, results: Results) -> None:
    """The library and the bare worker loop with and without uvloop, concurrency 64."""
    ids = scratch / "ids.txt"
    t = c.Target(base_url, ids, 64, scratch)
    for _ in range(min(REPS, UVLOOP_REPS)):
        for loop in ("asyncio", "uvloop"):
            env = {"BENCH_OUT_DIR": str(scratch), "BENCH_LOOP": loop}
            for name, module in (
                ("smh-async library", "lib_purge"),
                ("bare aiohttp workers", "bare_workers"),
            ):
                results.add("uvloop", f"{name} ({loop})", 64, measure(c.script(module, t), env=env))
    log("uvloop trial done")


def memory(base_url: str, scratch: Path, results: Results) -> None:
    """Peak RSS of the CLI and of the naive gather script streaming 10k/100k/1M ids."""
    for size in MEMORY_SIZES:
        ids = write_ids(scratch / f"ids-{size}.txt", size)
        t = c.Target(base_url, ids, 256, scratch)
        results.add("memory", "smh-async CLI", size, measure(c.cli(t), env=c.CLI_ENV))
        if size < 1_000_000 or FULL:
            naive = measure(c.script("bare_gather", t), env={"BENCH_OUT_DIR": str(scratch)})
            results.add("memory", "bare aiohttp gather", size, naive)
        ids.unlink()
        log(f"memory {size:,} done")


def multi_process(base_url: str, scratch: Path, results: Results, reps: int = REPS) -> None:
    """``purge --processes 2`` (both cores, shared with nginx) vs one bare aiohttp process."""
    ids = write_ids(scratch / "ids-multi.txt", MULTI_REQUESTS)
    t = c.Target(base_url, ids, 256, scratch)
    for _ in range(reps):
        bare = measure(c.script("bare_workers", t), env={"BENCH_OUT_DIR": str(scratch)})
        results.add("multi", "bare aiohttp workers (1 process)", 256, bare)
        multi = measure(c.cli(t, "--processes", str(MULTI_PROCESSES)), env=c.CLI_ENV, cpus="0,1")
        results.add("multi", f"smh-async CLI --processes {MULTI_PROCESSES}", 256, multi)
    log("multi-process done")


def instruction_counts(base_url: str, scratch: Path, results: Results) -> None:
    """Instructions per request under callgrind (c=64): the noise-free ratio to bare.

    Pinned to CPU 1 so that it does not slow the memory runs it overlaps on CPU 0. The CLI
    runs on both event loops (``--event-loop uvloop`` is what the uvloop extra is for); the
    bare loop on uvloop is in the timed uvloop table only, to keep ``make bench`` short.
    """
    small = write_ids(scratch / "ids-instr-1.txt", INSTR_REQUESTS)
    big = write_ids(scratch / "ids-instr-2.txt", 2 * INSTR_REQUESTS)
    env = {"BENCH_OUT_DIR": str(scratch)}

    def cli_uvloop(ids: Path) -> list[str]:
        return c.cli(c.Target(base_url, ids, 64, scratch), "--event-loop", "uvloop")

    contenders = {
        "bare aiohttp workers": (c.for_ids("bare_workers", base_url, 64, scratch), env),
        "smh-async library": (c.for_ids("lib_purge", base_url, 64, scratch), env),
        "smh-async CLI": (c.for_ids("cli", base_url, 64, scratch), c.CLI_ENV),
        "smh-async CLI --event-loop uvloop": (cli_uvloop, c.CLI_ENV),
    }
    results.instructions = per_request(contenders, small, big, INSTR_REQUESTS, cpus="1")
    log("instruction counts done")


@contextmanager
def emulator(spaces: int) -> Iterator[tuple[dict[str, str], Callable[[], float]]]:
    """``smh-async fake-server`` at 50 ms per request, in its own process on CPU 1.

    Yields its connection details and a function giving the CPU seconds it has used so far.
    """
    cmd = ["taskset", "-c", "1", c.CLI, "fake-server", "--spaces", str(spaces)]
    cmd += ["--items-per-space", "1", "--latency", str(LATENCY)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        yield json.loads(proc.stdout.readline()), lambda: cpu_seconds(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process (``/proc/PID/stat``; taskset execs)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def latency_bound(scratch: Path, results: Results) -> None:
    """The library and the bare worker loop against the emulator at 50 ms, interleaved.

    Wall time vs the ideal spaces / concurrency * 50 ms. The bare loop in the same run
    tells how much of any shortfall is this machine's (both processes share two cores)
    rather than smh-async's. The bins are empty after the first run; an empty bin is
    emptied (204) just the same, at the same injected latency.
    """
    for spaces, conc in LATENCY_RUNS:
        with emulator(spaces) as (info, server_cpu):
            env = {
                "SMH_BASE_URL": info["base_url"],
                "SMH_LIBRARY_ID": info["library_id"],
                "SMH_LIBRARY_SECRET": info["library_secret"],
            }
            listing = subprocess.run(
                [c.CLI, "spaces"], env={**os.environ, **env}, capture_output=True, check=True
            )
            ids = scratch / f"emulator-{spaces}.txt"
            ids.write_bytes(listing.stdout)
            run_env = {**env, "BENCH_OUT_DIR": str(scratch)}
            t = c.Target(info["base_url"], ids, conc, scratch)
            for _ in range(LATENCY_REPS):
                for name, module in (
                    ("smh-async library", "lib_purge"),
                    ("bare aiohttp workers", "bare_workers"),
                ):
                    before = server_cpu()
                    m = measure(c.script(module, t), env=run_env)
                    ideal = spaces / conc * LATENCY
                    results.add_latency(
                        Latency(name, spaces, conc, ideal, m, server_cpu() - before)
                    )
    log("latency-bound done")


def byte_compile() -> None:
    """Compile smh_async and the contenders to bytecode first, as installing a package does.

    Without it (an editable install with ``PYTHONDONTWRITEBYTECODE`` set, as on CI and the
    benchmark machine) every contender process would compile its modules again at start-up,
    about 0.1 s each for smh-async: a cost no installed copy pays.
    """
    for package in (HERE.parent / "smh_async", HERE):
        compileall.compile_dir(package, quiet=1)


def main() -> None:
    """Run all sections and write the results next to this file."""
    # SIGTERM (a CI timeout, kill) unwinds like Ctrl-C, so nginx and scratch files go too.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    started = time.monotonic()
    byte_compile()
    results = Results(requests=REQUESTS, httpx_requests=HTTPX_REQUESTS, reps=REPS)
    with tempfile.TemporaryDirectory(prefix="smh-bench-") as tmp:
        scratch = Path(tmp)
        with running_nginx(cpu=1) as base_url:
            throughput(base_url, scratch, results)
            uvloop_trial(base_url, scratch, results)
            multi_process(base_url, scratch, results)
            # Neither instruction counts nor peak RSS depend on timing, so they share the
            # machine (the memory runs on CPU 0, callgrind beside nginx): ~100 s saved.
            with ThreadPoolExecutor(max_workers=1) as side:
                counting = side.submit(instruction_counts, base_url, scratch, results)
                memory(base_url, scratch, results)
                counting.result()
        latency_bound(scratch, results)
    results.duration_s = time.monotonic() - started
    write_results(results, HERE / "RESULTS.md", HERE / "results.png")
    log(f"wrote {HERE / 'RESULTS.md'} in {results.duration_s:.0f} s")


if __name__ == "__main__":
    main()
