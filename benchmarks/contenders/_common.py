"""What every contender shares: its command line, reading ids, and its one-line JSON result.

Each contender sends ``DELETE {base}/api/v1/recycled/{library}/{space}?access_token=…`` once
per space id and prints ``{"requests", "ok", "elapsed_s", "cpu_s"}`` on stdout, where
``elapsed_s`` and ``cpu_s`` cover only the fan-out (not interpreter start-up or imports).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import aiohttp

LIBRARY_ID = "benchlib"
TOKEN = "bench-token-0123456789"  # a dummy: nginx ignores it, the emulator is not used here


@dataclass(frozen=True)
class Args:
    """A contender's options."""

    base_url: str
    spaces_file: Path
    concurrency: int


def parse_args(description: str) -> Args:
    """``--base-url``, ``--spaces-file`` and ``--concurrency``, the same for every contender."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--spaces-file", required=True, type=Path)
    parser.add_argument("--concurrency", type=int, default=64)
    ns = parser.parse_args()
    return Args(ns.base_url.rstrip("/"), ns.spaces_file, ns.concurrency)


def iter_ids(path: Path) -> Iterator[str]:
    """Space ids from a file, one per line, read lazily."""
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line := line.strip():
                yield line


def purge_url(base_url: str, space_id: str, library: str = LIBRARY_ID, token: str = TOKEN) -> str:
    """The same URL (token in the query) that smh-async sends."""
    return f"{base_url}/api/v1/recycled/{library}/{space_id}?access_token={token}"


async def credentials(session: aiohttp.ClientSession, base_url: str) -> tuple[str, str]:
    """``(library id, access token)`` for the purge URLs.

    Against nginx, the dummies above. Against the emulator (``SMH_LIBRARY_SECRET`` and
    ``SMH_LIBRARY_ID`` set, as for the latency-bound runs), one token minted with a plain
    ``POST /api/v1/token`` before the stopwatch starts, as a hand-rolled script would.
    """
    secret = os.environ.get("SMH_LIBRARY_SECRET")
    if not secret:
        return LIBRARY_ID, TOKEN
    library = os.environ["SMH_LIBRARY_ID"]
    params = {"library_id": library, "library_secret": secret, "grant": "admin"}
    async with session.post(f"{base_url}/api/v1/token", params=params) as resp:
        resp.raise_for_status()
        token = (await resp.json())["accessToken"]
    return library, str(token)


class Stopwatch:
    """Wall and CPU time of the fan-out alone."""

    def __init__(self) -> None:
        _check_loop()
        self.wall = time.perf_counter()
        self.cpu = time.process_time()

    def emit(self, requests: int, ok: int) -> None:
        """Print the contender's result line."""
        result = {
            "requests": requests,
            "ok": ok,
            "elapsed_s": time.perf_counter() - self.wall,
            "cpu_s": time.process_time() - self.cpu,
        }
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()


def install_loop(name: str | None) -> None:
    """Use uvloop's event loop policy when ``name == "uvloop"`` (the uvloop experiment)."""
    if name == "uvloop":
        import asyncio

        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _check_loop() -> None:
    """Refuse to time a run on another event loop than ``BENCH_LOOP`` asked for.

    The bare worker loop once ignored ``BENCH_LOOP``, so its "uvloop" rows timed asyncio.
    """
    import asyncio

    wanted = os.environ.get("BENCH_LOOP") or "asyncio"
    running = type(asyncio.get_running_loop()).__module__.split(".")[0]
    if running != wanted:
        raise SystemExit(f"BENCH_LOOP={wanted} but the running event loop is from {running}")
