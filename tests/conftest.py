"""Shared fixtures: anyio on asyncio only, an isolated environment, a running emulator."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from smh_async import SMHSettings
from smh_async.testing import FakeServer, FakeSMH

LIBRARY = "lib1"
SECRET = "libsecret-Qz8Wk2Lp7Xv4"  # distinctive, so tests can grep output for it


@pytest.fixture
def anyio_backend() -> str:
    """Run every anyio test on asyncio; trio is not supported because aiohttp is asyncio-only."""
    return "asyncio"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keep a developer's SMH_* variables and .env out of the tests."""
    for name in list(os.environ):
        if name.startswith("SMH_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def fake() -> FakeSMH:
    """An emulator with one multi-tenant library ``lib1`` (no spaces yet)."""
    f = FakeSMH(release_delay=0.2, seed=7)
    f.add_library(LIBRARY, secret=SECRET, multi_tenant=True, recycle_bin=True)
    return f


@pytest.fixture
async def server(fake: FakeSMH, anyio_backend: str) -> AsyncIterator[FakeServer]:
    """The emulator served on a loopback port."""
    async with FakeServer(fake) as running:
        yield running


@pytest.fixture
def pristine_structlog() -> Iterator[None]:
    """structlog unconfigured and no context bound, before and after the test (its
    configuration and contextvars are process-global; the in-process CLI tests set them)."""
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def make_settings(server: FakeServer, **overrides: Any) -> SMHSettings:
    """Settings pointing at the emulator, with near-instant backoff so retries are quick."""
    values: dict[str, Any] = {
        "base_url": server.base_url,
        "library_id": LIBRARY,
        "library_secret": SECRET,
        "backoff_initial": 0.001,
        "backoff_max": 0.01,
        "timeout": 5.0,
    }
    values.update(overrides)
    return SMHSettings(**values)
