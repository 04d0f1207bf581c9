"""The careful hand-rolled baseline: aiohttp with ``concurrency`` workers sharing one iterator.

No per-id task and no list of ids: this is the fastest plain-aiohttp shape we know, and the
one smh-async's engine is measured against.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import aiohttp

from benchmarks.contenders._common import (
    Stopwatch,
    credentials,
    install_loop,
    iter_ids,
    parse_args,
    purge_url,
)


async def main() -> None:
    """Purge every id in the file with ``concurrency`` worker tasks."""
    args = parse_args(__doc__ or "")
    ids = iter_ids(args.spaces_file)
    counts = [0, 0]
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        library, token = await credentials(session, args.base_url)

        async def worker(source: Iterator[str]) -> None:
            for space_id in source:
                url = purge_url(args.base_url, space_id, library, token)
                async with session.delete(url) as resp:
                    await resp.read()
                    counts[0] += 1
                    counts[1] += resp.status == 204

        watch = Stopwatch()
        await asyncio.gather(*(worker(ids) for _ in range(args.concurrency)))
        watch.emit(counts[0], counts[1])


if __name__ == "__main__":
    install_loop(os.environ.get("BENCH_LOOP"))
    asyncio.run(main())
