"""pytest plugin (entry point ``pytest11``): the ``smh_fake`` and ``smh_client`` fixtures.

Installed with smh-async, active in every pytest run. The fixtures are async and run on the
event loop of whichever plugin runs the test: anyio's (installed with anyio; mark the test
``anyio``) or pytest-asyncio's in its auto mode (no mark). aiohttp needs asyncio, so a test
parametrized over other anyio backends is skipped there::

    @pytest.fixture
    def anyio_backend() -> str:
        return "asyncio"

    @pytest.mark.anyio
    async def test_purge(smh_fake: SMHFake, smh_client: SMHClient) -> None:
        space_id = smh_fake.add_space(bin_item_sizes=[10, 20])
        await smh_client.empty_recycle_bin(space_id)
        assert smh_fake.bin_items(space_id) == []
        assert [r.route for r in smh_fake.requests_to("empty_bin")] == ["empty_bin"]

The fixtures do not ask for ``anyio_backend`` themselves: that would make anyio run them
even for a test that pytest-asyncio runs, and the emulator would then serve on a loop that
is not running while the test is.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

# Imported inside the fixtures: pytest loads this plugin in every run where smh-async is
# installed, and importing the client stack there would slow (or, if broken, break) them all.
if TYPE_CHECKING:
    from smh_async._client import SMHClient
    from smh_async.testing._fixture import SMHFake

__all__ = ["smh_client", "smh_fake"]

_TWO_RUNNERS = (
    "smh_fake: {test} is run by pytest-asyncio (its auto mode, or @pytest.mark.asyncio) and "
    "is also marked for anyio, so the two plugins would run the emulator and the test on "
    "different event loops. Keep one: in pytest-asyncio's auto mode drop @pytest.mark.anyio."
)


def _run_by_two_plugins(request: pytest.FixtureRequest) -> bool:
    """pytest-asyncio runs the test (its marker, which auto mode adds to every async test)
    while anyio would run this fixture (the test is marked for anyio)."""
    return (
        request.config.pluginmanager.has_plugin("asyncio")
        and request.node.get_closest_marker("asyncio") is not None
        and "anyio_backend" in request.fixturenames
    )


@pytest.fixture
async def smh_fake(request: pytest.FixtureRequest) -> AsyncIterator[SMHFake]:
    """A running SMH emulator on loopback with one empty multi-tenant library."""
    if _run_by_two_plugins(request):
        pytest.fail(_TWO_RUNNERS.format(test=request.node.name), pytrace=False)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pytest.skip("smh_fake needs an asyncio event loop (aiohttp): anyio's asyncio backend")
    from smh_async.testing._fixture import SMHFake

    async with SMHFake() as running:
        yield running


@pytest.fixture
async def smh_client(smh_fake: SMHFake) -> AsyncIterator[SMHClient]:
    """An open :class:`SMHClient` for ``smh_fake`` (tokens minted from its library secret)."""
    async with smh_fake.client() as client:
        yield client
