"""The hand-rolled baseline: aiohttp + ``asyncio.Semaphore`` + ``gather`` over every id.

Deliberately naive, as such scripts are written: all ids are read into a list and one task
per id is created up front, so memory grows with the number of spaces.
"""

from __future__ import annotations

import asyncio

import aiohttp

from benchmarks.contenders._common import Stopwatch, iter_ids, parse_args, purge_url


async def main() -> None:
    """Purge every id in the file with at most ``concurrency`` requests in flight."""
    args = parse_args(__doc__ or "")
    ids = list(iter_ids(args.spaces_file))
    semaphore = asyncio.Semaphore(args.concurrency)
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def purge(space_id: str) -> int:
            async with semaphore, session.delete(purge_url(args.base_url, space_id)) as resp:
                await resp.read()
                return resp.status

        watch = Stopwatch()
        statuses = await asyncio.gather(*(purge(space_id) for space_id in ids))
        watch.emit(len(statuses), sum(1 for s in statuses if s == 204))


if __name__ == "__main__":
    asyncio.run(main())
