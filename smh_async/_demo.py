"""``smh-async demo``: the zero-credential tour.

Seeds the built-in emulator on loopback, then purges it through the production path: a
token minted from the library secret, spaces discovered by listing, every DELETE over real
HTTP. Then it shows that the bins are empty and waits until the emulator releases the space.
"""

from __future__ import annotations

import secrets
import sys
import time

import anyio

from smh_async._client import SMHClient
from smh_async._errors import SMHError
from smh_async.testing import FakeServer, FakeSMH
from smh_async.testing._fixture import KeywordOnlySettings

__all__ = ["run_demo"]

LIBRARY = "demo-lib"
ITEMS, ITEM_SIZE, FILE_BYTES = 3, 256 * 1024, 1024 * 1024
RELEASE_DELAY = 2.0
LATENCY = 0.02  # server time per request, so the bounded concurrency is visible


def _say(text: str) -> None:
    print(text, flush=True)


async def run_demo(spaces: int = 2000, concurrency: int = 64) -> int:
    """Run the tour; exit 0 only if every space was accepted, emptied and released.

    An :class:`SMHError` (which the demo's own emulator should never cause) ends it with one
    line on stderr and exit 1, not a traceback.
    """
    try:
        return await _tour(spaces, concurrency)
    except SMHError as exc:
        print(f"smh-async: error: demo failed: {exc}", file=sys.stderr, flush=True)
        return 1


async def _tour(spaces: int, concurrency: int) -> int:
    secret = secrets.token_urlsafe(24)
    fake = FakeSMH(release_delay=RELEASE_DELAY)
    fake.latency = LATENCY
    fake.add_library(LIBRARY, secret=secret, multi_tenant=True, recycle_bin=True)
    fake.add_spaces(
        LIBRARY, count=spaces, items_per_space=ITEMS, item_size=ITEM_SIZE, file_bytes=FILE_BYTES
    )
    async with FakeServer(fake) as server:
        _say(
            f"emulator: {server.base_url}  library {LIBRARY}: {spaces} tenant spaces, "
            f"{ITEMS} bin items of {ITEM_SIZE // 1024} KiB each"
        )
        # Its own emulator: SMH_* variables and .env must not change (or break) the tour.
        settings = KeywordOnlySettings(
            base_url=server.base_url,
            library_id=LIBRARY,
            library_secret=secret,
            concurrency=concurrency,
        )
        async with SMHClient(settings) as smh:
            ids = [space.space_id async for space in smh.iter_spaces()]
            before = sum(u.size for u in await smh.usage(ids))
            _say(f"listed {len(ids)} spaces; {before / 2**20:.1f} MiB counted before the purge")
            summary = await smh.purge_all(ids, concurrency=concurrency)
            _say(
                f"purge: {summary.accepted} accepted, {summary.failed} failed in "
                f"{summary.elapsed_s:.2f} s ({summary.rate_per_s:.0f} spaces/s, p95 "
                f"{summary.latency_ms['p95']} ms); peak in flight on the server: "
                f"{fake.peak_in_flight_by_route.get('empty_bin', 0)} (limit {concurrency})"
            )
            _say("accepted = SMH answered 204: the bin is hidden now, space is released later")
            # A dry run lists every bin (concurrently) and sends no DELETE.
            check = await smh.purge_all(ids, concurrency=concurrency, dry_run=True)
            left = check.counters.get("bin_items", 0) + check.failed
            _say(f"items still in the bins (dry-run listing of all {check.dry_run}): {left}")
            released = await _wait_release(smh, ids, target=FILE_BYTES * len(ids))
    ok = summary.accepted == spaces and summary.failed == 0 and not left and released
    _say("demo OK" if ok else "demo FAILED")
    return 0 if ok else 1


async def _wait_release(smh: SMHClient, ids: list[str], *, target: int) -> bool:
    deadline = time.monotonic() + RELEASE_DELAY + 30
    while True:
        size = sum(u.size for u in await smh.usage(ids))
        if size <= target:
            _say(f"space released: {size / 2**20:.1f} MiB counted now (only live files remain)")
            return True
        if time.monotonic() > deadline:
            _say(f"space NOT released before the deadline: {size / 2**20:.1f} MiB counted")
            return False
        _say(f"waiting for asynchronous release: {size / 2**20:.1f} MiB still counted")
        await anyio.sleep(0.5)
