"""Shared pytest configuration: anyio on the asyncio backend only (aiohttp needs asyncio)."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """Run every anyio test on asyncio; trio is not supported because aiohttp is asyncio-only."""
    return "asyncio"
