"""pytest plugin (entry point ``pytest11``): the ``smh_fake`` and ``smh_client`` fixtures.

Installed with smh-async, active in every pytest run. The fixtures are async and run under
anyio's pytest plugin (installed with anyio); aiohttp needs its ``asyncio`` backend, so a
test parametrized over other backends is skipped there::

    @pytest.fixture
    def anyio_backend() -> str:
        return "asyncio"

    @pytest.mark.anyio
    async def test_purge(smh_fake: SMHFake, smh_client: SMHClient) -> None:
        space_id = smh_fake.add_space(bin_item_sizes=[10, 20])
        await smh_client.empty_recycle_bin(space_id)
        assert smh_fake.bin_items(space_id) == []
        assert [r.route for r in smh_fake.requests_to("empty_bin")] == ["empty_bin"]
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

# Imported inside the fixtures: pytest loads this plugin in every run where smh-async is
# installed, and importing the client stack there would slow (or, if broken, break) them all.
if TYPE_CHECKING:
    from smh_async._client import SMHClient
    from smh_async.testing._fixture import SMHFake

__all__ = ["smh_client", "smh_fake"]


@pytest.fixture
async def smh_fake(anyio_backend_name: str) -> AsyncIterator[SMHFake]:
    """A running SMH emulator on loopback with one empty multi-tenant library."""
    if anyio_backend_name != "asyncio":
        pytest.skip(f"smh_fake needs anyio's asyncio backend (aiohttp), not {anyio_backend_name}")
    from smh_async.testing._fixture import SMHFake

    async with SMHFake() as running:
        yield running


@pytest.fixture
async def smh_client(smh_fake: SMHFake) -> AsyncIterator[SMHClient]:
    """An open :class:`SMHClient` for ``smh_fake`` (tokens minted from its library secret)."""
    async with smh_fake.client() as client:
        yield client
