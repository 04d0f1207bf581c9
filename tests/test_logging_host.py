"""Logging inside a host application: its structlog, plain stdlib logging, or nothing at all.

structlog's configuration and contextvars are process-global (and the in-process CLI tests
configure them), so every test here starts and ends from structlog's defaults.
"""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import textwrap
from collections.abc import MutableMapping
from typing import Any

import pytest
import structlog

from smh_async import PurgeOutcome, SMHClient
from smh_async.testing import Fault, SMHFake

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("pristine_structlog")]


def seed_mixed_run(smh_fake: SMHFake) -> list[str]:
    """Three good spaces (the first DELETE answered 503 once, so one retry) plus a bad id."""
    ids = smh_fake.add_spaces(3, items_per_space=1)
    smh_fake.add_fault(Fault("status", status=503, route="empty_bin", times=1))
    return [*ids, "bad?id"]


async def test_host_structlog_pipeline_receives_events(
    smh_fake: SMHFake, smh_client: SMHClient
) -> None:
    """With the host's structlog configured, events go through its processors and renderer."""
    out = io.StringIO()

    def add_service(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        event["service"] = "billing-api"
        return event

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            add_service,
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.WriteLoggerFactory(file=out),
    )
    structlog.contextvars.bind_contextvars(trace_id="req-42")
    ids = seed_mixed_run(smh_fake)
    summary = await smh_client.purge_all(ids)
    assert (summary.accepted, summary.failed) == (3, 1)

    events = [json.loads(line) for line in out.getvalue().splitlines()]
    names = [e["event"] for e in events]
    assert names[0] == "purge.started" and names[-1] == "purge.finished"
    assert {"smh.token.minted", "smh.request.retry"} <= set(names)
    spaces = {e["space_id"]: e for e in events if e["event"] == "purge.space"}
    assert sorted(spaces) == sorted(ids)
    assert spaces["bad?id"]["outcome"] == "failed" and spaces["bad?id"]["level"] == "warning"
    assert all(e["service"] == "billing-api" and e["trace_id"] == "req-42" for e in events)
    assert smh_fake.library_secret not in out.getvalue()
    assert structlog.contextvars.get_contextvars() == {"trace_id": "req-42"}


async def test_host_capture_logs_sees_retry(smh_fake: SMHFake, smh_client: SMHClient) -> None:
    """structlog.testing.capture_logs in a user's test captures the library's events."""
    space_id = smh_fake.add_space()
    smh_fake.add_fault(Fault("status", status=429, route="empty_bin", times=1, retry_after="0"))
    with structlog.testing.capture_logs() as logs:
        await smh_client.empty_recycle_bin(space_id)
    retries = [e for e in logs if e["event"] == "smh.request.retry"]
    assert len(retries) == 1
    assert retries[0]["http_status"] == 429 and retries[0]["space_id"] == space_id
    assert retries[0]["route"] == "DELETE /api/v1/recycled/{library_id}/{space_id}"


async def test_stdlib_logging_gets_events_on_smh_async_logger(
    smh_fake: SMHFake, smh_client: SMHClient, caplog: pytest.LogCaptureFixture
) -> None:
    """structlog unconfigured: events arrive on stdlib logger ``smh_async`` with their fields."""
    assert not structlog.is_configured()
    caplog.set_level(logging.INFO, logger="smh_async")
    structlog.contextvars.bind_contextvars(trace_id="req-7")
    ids = seed_mixed_run(smh_fake)
    await smh_client.purge_all(ids)

    records = [r for r in caplog.records if r.name == "smh_async"]
    by_event: dict[str, list[logging.LogRecord]] = {}
    for record in records:
        by_event.setdefault(record.getMessage(), []).append(record)
    assert {"purge.started", "purge.space", "purge.finished", "smh.request.retry"} <= set(by_event)
    spaces = {r.__dict__["space_id"]: r for r in by_event["purge.space"]}
    assert sorted(spaces) == sorted(ids)
    failed = spaces["bad?id"]
    assert failed.levelno == logging.WARNING and failed.__dict__["outcome"] == "failed"
    assert failed.__dict__["error_code"] == "InvalidSpaceId"
    assert all(r.__dict__["trace_id"] == "req-7" for r in records)
    assert by_event["purge.finished"][0].__dict__["accepted"] == 3
    assert all(smh_fake.library_secret not in r.getMessage() for r in records)


async def test_stdlib_logging_below_warning_is_filtered(
    smh_fake: SMHFake, smh_client: SMHClient, caplog: pytest.LogCaptureFixture
) -> None:
    """The ``smh_async`` logger honours the host's level: at WARNING only failures arrive."""
    caplog.set_level(logging.WARNING, logger="smh_async")
    await smh_client.purge_all(seed_mixed_run(smh_fake))
    messages = [r.getMessage() for r in caplog.records if r.name == "smh_async"]
    assert messages == ["purge.space"]


def test_nothing_printed_when_host_configures_no_logging() -> None:
    """In a fresh process with no logging set up, a run with failures prints nothing at all."""
    script = textwrap.dedent(
        """
        import aiohttp, anyio
        from smh_async import SMHClient
        from smh_async.testing import Fault, SMHFake

        async def main() -> None:
            async with SMHFake() as fake:
                ids = fake.add_spaces(3)
                fake.add_fault(Fault("status", status=503, route="empty_bin", times=1))
                # a 2-connection session clamps the concurrency: a warning event too
                connector = aiohttp.TCPConnector(limit=2)
                async with aiohttp.ClientSession(connector=connector) as session:
                    async with SMHClient(fake.settings(), session=session) as smh:
                        s = await smh.purge_all([*ids, "bad?id"], concurrency=8)
            assert (s.accepted, s.failed) == (3, 1), s

        anyio.run(main)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert (proc.stdout, proc.stderr) == (b"", b"")


async def test_space_context_is_cleared_after_each_space(
    smh_fake: SMHFake, smh_client: SMHClient
) -> None:
    """A space's bound space_id never leaks into the next space, the callback or the host."""
    ids = smh_fake.add_spaces(8, items_per_space=1)
    structlog.contextvars.bind_contextvars(job="nightly")
    seen: list[tuple[str, Any]] = []

    def on_outcome(outcome: PurgeOutcome) -> None:
        context = structlog.contextvars.get_contextvars()
        seen.append((outcome.space_id, context.get("space_id")))
        assert context["job"] == "nightly"

    with structlog.testing.capture_logs(
        processors=[structlog.contextvars.merge_contextvars]
    ) as logs:
        await smh_client.purge_all(ids, concurrency=2, on_outcome=on_outcome)
        async with smh_client.purge(ids[:3], concurrency=1) as outcomes:
            async for outcome in outcomes:
                assert "space_id" not in structlog.contextvars.get_contextvars()
                assert outcome.space_id in ids

    assert len(seen) == 8
    assert all(bound in (None, space_id) for space_id, bound in seen)
    assert structlog.contextvars.get_contextvars() == {"job": "nightly"}
    # events emitted outside any space (start/finish) carry no space id at all
    assert [e for e in logs if e["event"] in ("purge.started", "purge.finished")]
    assert all(
        "space_id" not in e for e in logs if e["event"] in ("purge.started", "purge.finished")
    )
