"""Typed use of the public API, checked by ``mypy --strict`` (``make lint``) and run by a test.

If a public signature loses or changes its types, ``assert_type`` here stops ``make lint``;
``tests/test_public_api.py`` runs :func:`exercise` against the emulator so it cannot rot.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator

import aiohttp

import smh_async
from smh_async import (
    EmptyBinResult,
    Outcome,
    ProgressSnapshot,
    PurgeOutcome,
    PurgeStream,
    PurgeSummary,
    RecycleBinPage,
    SMHClient,
    SMHError,
    SMHNotFoundError,
    SMHSettings,
    Space,
    SpaceUsage,
)
from smh_async.testing import FakeSMH, RecordedRequest, SMHFake

if sys.version_info >= (3, 11):
    from typing import assert_type
else:  # pragma: no cover
    from typing_extensions import assert_type


async def _ids(space_ids: list[str]) -> AsyncIterator[str]:
    for space_id in space_ids:
        yield space_id


async def exercise(settings: SMHSettings, space_ids: list[str]) -> PurgeSummary:
    """Touch each public client method once with its real types; return the bulk summary."""
    assert_type(smh_async.__version__, str)
    finished: list[PurgeOutcome] = []
    snapshots: list[ProgressSnapshot] = []

    async def on_outcome(outcome: PurgeOutcome) -> None:
        finished.append(outcome)

    async with aiohttp.ClientSession() as session, SMHClient(settings, session=session) as smh:
        assert_type(smh, SMHClient)
        result = await smh.empty_recycle_bin(space_ids[0])
        assert_type(result, EmptyBinResult)
        spaces = [space async for space in smh.iter_spaces(page_size=50)]
        assert_type(spaces, list[Space])
        page = await smh.list_recycle_bin(space_ids[0])
        assert_type(page, RecycleBinPage)
        usage = await smh.usage(space_ids)
        assert_type(usage, list[SpaceUsage])
        size = await smh.space_size(space_ids[0])
        assert_type(size, int)
        code: str | None = None
        try:
            await smh.empty_recycle_bin("no-such-space")
        except SMHNotFoundError as exc:
            error: SMHError = exc  # every error is an SMHError
            code = error.code
        assert code == "SpaceNotFound"
        summary = await smh.purge_all(
            _ids(space_ids), concurrency=4, on_outcome=on_outcome, on_progress=snapshots.append
        )
        assert_type(summary, PurgeSummary)
        async with smh.purge(space_ids[:2], concurrency=2) as outcomes:
            assert_type(outcomes, PurgeStream)
            async for outcome in outcomes:
                assert_type(outcome, PurgeOutcome)
                assert outcome.outcome is Outcome.ACCEPTED
    assert len(finished) == summary.total and snapshots
    return summary


async def exercise_testing() -> list[RecordedRequest]:
    """The emulator's typed surface: SMHFake and the request record."""
    async with SMHFake() as smh_fake:
        assert_type(smh_fake.fake, FakeSMH)
        space_id: str = smh_fake.add_space(bin_item_sizes=[1, 2])
        async with smh_fake.client() as smh:
            await smh.empty_recycle_bin(space_id)
        sizes: list[int] = smh_fake.bin_items(space_id)
        assert sizes == []
        return smh_fake.requests_to("empty_bin")
