"""``python -m benchmarks.breakdown``: where the library's instructions per request go.

Runs the library contender under callgrind with parts taken away (``BENCH_LIB_MODE``, see
``contenders/lib_purge.py``) next to the bare worker loop, against a fresh nginx, c=64, and
prints one Markdown row per configuration (about three minutes on two cores). The table in
``ANALYSIS.md`` ("where the instructions go") comes from this command.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from benchmarks import _contenders as c
from benchmarks._instr import per_request
from benchmarks._nginx import running_nginx
from benchmarks.run import write_ids

REQUESTS = 1_000
MODES = {
    "bare aiohttp worker loop": None,
    "empty_recycle_bin in plain workers (no engine)": "client",
    "purge_all, host log level WARNING, no report (the engine)": "quiet",
    "+ one purge.space event per space": "no-report",
    "+ one report row per space (the library contender)": "full",
}


def main() -> None:
    """Count, then print the table."""
    with tempfile.TemporaryDirectory(prefix="smh-breakdown-") as tmp, running_nginx(1) as url:
        scratch = Path(tmp)
        small = write_ids(scratch / "ids-1.txt", REQUESTS)
        big = write_ids(scratch / "ids-2.txt", 2 * REQUESTS)
        contenders = {
            name: (
                c.for_ids("bare_workers" if mode is None else "lib_purge", url, 64, scratch),
                {"BENCH_OUT_DIR": tmp, **({"BENCH_LIB_MODE": mode} if mode else {})},
            )
            for name, mode in MODES.items()
        }
        counts = per_request(contenders, small, big, REQUESTS, parallel=2)
    print("| configuration | instructions / request | added |")
    print("|---|---:|---:|")
    previous = None
    for name, count in counts.items():
        added = f"+{count - previous:,.0f}" if previous is not None else ""
        print(f"| {name} | {count:,.0f} | {added} |")
        previous = count


if __name__ == "__main__":
    main()
