"""smh-async as a library, the way a host application embeds it.

The host configures structlog (JSON lines to a log file, one ``purge.space`` event per
space) and writes the JSON Lines report through :class:`smh_async.ReportWriter`; the
library's :meth:`SMHClient.purge_all` does the fan-out with its retry policy armed.

``BENCH_LIB_MODE`` takes parts away, for the cost breakdown (``python -m benchmarks.breakdown``):
``no-report`` (log events, no report), ``quiet`` (host log level WARNING, no report: the
engine alone), ``client`` (no engine: ``empty_recycle_bin`` in plain worker tasks).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import anyio
import structlog

from benchmarks.contenders._common import (
    LIBRARY_ID,
    TOKEN,
    Args,
    Stopwatch,
    iter_ids,
    parse_args,
)
from smh_async import ReportWriter, SMHClient, SMHSettings


def configure_logging(log: TextIO, level: int = logging.INFO) -> None:
    """A typical host structlog set-up: JSON lines with level and UTC timestamp."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.WriteLoggerFactory(file=log),
        cache_logger_on_first_use=True,
    )


def settings_for(args: Args) -> SMHSettings:
    """A static token for nginx; against the emulator, SMH_LIBRARY_* from the environment."""
    if os.environ.get("SMH_LIBRARY_SECRET"):
        return SMHSettings(base_url=args.base_url, concurrency=args.concurrency)
    return SMHSettings(
        base_url=args.base_url,
        library_id=LIBRARY_ID,
        access_token=TOKEN,
        concurrency=args.concurrency,
    )


async def main() -> None:
    """Purge every id in the file; log and report each space."""
    args = parse_args(__doc__ or "")
    out = Path(os.environ.get("BENCH_OUT_DIR", "."))
    mode = os.environ.get("BENCH_LIB_MODE", "full")
    settings = settings_for(args)
    with (out / "lib.log").open("w", encoding="utf-8") as log:
        configure_logging(log, logging.INFO if mode in ("full", "no-report") else logging.WARNING)
        with ReportWriter(out / "lib-report.jsonl") as report:
            async with SMHClient(settings) as smh:
                watch = Stopwatch()
                if mode == "client":
                    done = await plain_workers(smh, iter_ids(args.spaces_file), args.concurrency)
                    watch.emit(done, done)
                    return
                on_outcome = report.write if mode == "full" else None
                summary = await smh.purge_all(iter_ids(args.spaces_file), on_outcome=on_outcome)
                watch.emit(summary.total, summary.accepted)


async def plain_workers(smh: SMHClient, ids: Iterator[str], concurrency: int) -> int:
    """``empty_recycle_bin`` for every id from ``concurrency`` plain tasks (no engine)."""
    done = 0

    async def worker() -> None:
        nonlocal done
        for space_id in ids:
            await smh.empty_recycle_bin(space_id)
            done += 1

    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
    return done


if __name__ == "__main__":
    anyio.run(main, backend_options={"use_uvloop": os.environ.get("BENCH_LOOP") == "uvloop"})
