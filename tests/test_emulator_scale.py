"""The emulator stays fast and compact at 100,000 tenant spaces."""

from __future__ import annotations

import time
import tracemalloc

import aiohttp
import pytest

from smh_async.testing import FakeServer, FakeSMH

LIB = "big"


def test_bulk_seeding_is_fast_and_deterministic() -> None:
    """100,000 spaces seed in about a second (0.3 s idle), and ids follow the seed."""
    fake = FakeSMH(seed=5)
    fake.add_library(LIB, secret="s")
    started = time.perf_counter()
    ids = fake.add_spaces(LIB, count=100_000, items_per_space=3, item_size=4096)
    assert time.perf_counter() - started < 3.0  # generous: shared CI machines are slow
    assert len(set(ids)) == 100_000
    assert fake.bin_items(LIB, ids[-1]) == [4096] * 3
    again = FakeSMH(seed=5)
    again.add_library(LIB, secret="s")
    assert again.add_spaces(LIB, count=3) == ids[:3]


def test_bulk_seeding_is_memory_compact() -> None:
    """A bulk-seeded space costs a few hundred bytes (its bin tuple is shared, not copied)."""
    fake = FakeSMH()
    fake.add_library(LIB, secret="s")
    tracemalloc.start()
    try:
        fake.add_spaces(LIB, count=20_000, items_per_space=50, item_size=4096)
        used = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert used / 20_000 < 400


@pytest.mark.anyio
async def test_listing_100k_spaces_over_http() -> None:
    """All 100 pages of a 100,000-space library list quickly, each space exactly once."""
    fake = FakeSMH()
    fake.add_library(LIB, secret="s")
    ids = fake.add_spaces(LIB, count=100_000)
    token = fake.issue_token(LIB)
    seen: list[str] = []
    started = time.perf_counter()
    async with FakeServer(fake) as server, aiohttp.ClientSession(server.base_url) as http:
        marker = ""
        while True:
            params = {"access_token": token, **({"marker": marker} if marker else {})}
            async with http.get(f"/api/v1/space/{LIB}/list", params=params) as response:
                body = await response.json()
            seen += [item["spaceId"] for item in body["list"]]
            if "nextMarker" not in body:
                break
            marker = body["nextMarker"]
    assert time.perf_counter() - started < 5.0
    assert seen == ids
    assert fake.peak_in_flight_by_route == {"space_list": 1}
    assert len(fake.requests) == 100
