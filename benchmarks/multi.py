"""``python -m benchmarks.multi``: only the multi-process comparison, with more pairs.

``BENCH_MULTI_REPS`` pairs (default 10) of one bare aiohttp process and ``purge --processes 2``
on the same 30,000 ids against a fresh nginx, alternated; prints the table ``RESULTS.md`` has,
whose paired ratio is the median over the pairs. About 2 minutes.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from benchmarks import run
from benchmarks._nginx import running_nginx
from benchmarks._results import Results, multi_table


def main() -> None:
    """Run the pairs and print the table."""
    reps = int(os.environ.get("BENCH_MULTI_REPS", "10"))
    run.byte_compile()
    results = Results(requests=run.MULTI_REQUESTS, httpx_requests=0, reps=reps)
    with tempfile.TemporaryDirectory(prefix="smh-bench-") as tmp, running_nginx(cpu=1) as url:
        run.multi_process(url, Path(tmp), results, reps=reps)
    print("\n".join(multi_table(results)))


if __name__ == "__main__":
    main()
