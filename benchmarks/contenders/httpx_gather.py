"""The other common hand-rolled script: ``httpx.AsyncClient`` + ``asyncio.Semaphore`` + gather."""

from __future__ import annotations

import asyncio

import httpx

from benchmarks.contenders._common import Stopwatch, iter_ids, parse_args, purge_url


async def main() -> None:
    """Purge every id in the file with at most ``concurrency`` requests in flight."""
    args = parse_args(__doc__ or "")
    ids = list(iter_ids(args.spaces_file))
    semaphore = asyncio.Semaphore(args.concurrency)
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=None)
    async with httpx.AsyncClient(limits=limits) as client:

        async def purge(space_id: str) -> int:
            async with semaphore:
                resp = await client.delete(purge_url(args.base_url, space_id))
                return resp.status_code

        watch = Stopwatch()
        statuses = await asyncio.gather(*(purge(space_id) for space_id in ids))
        watch.emit(len(statuses), sum(1 for s in statuses if s == 204))


if __name__ == "__main__":
    asyncio.run(main())
