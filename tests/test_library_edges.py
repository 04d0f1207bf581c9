"""Library edges: the streaming form's errors, early exits and sources; stdlib logging with a
host's structlog context.

structlog's configuration and contextvars are process-global (the in-process CLI tests
configure them), so every test here starts and ends from structlog's defaults, with the
``smh_async`` stdlib logger recording everything.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest
import structlog

from smh_async import Outcome, PurgeOutcome, SMHClient, SMHNotFoundError
from smh_async.testing import FakeServer, FakeSMH, Fault
from tests.conftest import LIBRARY, make_settings

pytestmark = pytest.mark.anyio


class _Records(logging.Handler):
    """Keeps every record that reaches it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(autouse=True)
def records() -> Iterator[list[logging.LogRecord]]:
    """structlog unconfigured, no context bound; the library's stdlib records, all levels."""
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    logger = logging.getLogger("smh_async")
    handler, level = _Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        structlog.reset_defaults()
        structlog.contextvars.clear_contextvars()


def deletes(fake: FakeSMH) -> int:
    """DELETEs the emulator has answered so far."""
    return sum(1 for r in fake.requests if r.route == "empty_bin")


def errors(records: list[logging.LogRecord]) -> list[str]:
    """Error-level events, as text."""
    return [f"{r.getMessage()} {r.__dict__}" for r in records if r.levelno >= logging.ERROR]


# ---------------------------------------------------------------- stream: errors as themselves


async def test_stream_raises_source_error_itself(fake: FakeSMH, server: FakeServer) -> None:
    """A source that raises SMHNotFoundError after 5 ids makes the stream raise exactly that
    error (not an ExceptionGroup), after handing out the 5 outcomes."""
    ids = fake.add_spaces(LIBRARY, count=20, items_per_space=1, item_size=10)
    broken = SMHNotFoundError("listing broke", status=404, code="LibraryNotFound")

    async def source() -> AsyncIterator[str]:
        for space_id in ids[:5]:
            yield space_id
        raise broken

    seen: list[PurgeOutcome] = []
    streams = []
    async with SMHClient(make_settings(server, concurrency=4)) as smh:

        async def consume() -> None:
            async with smh.purge(source()) as outcomes:
                streams.append(outcomes)
                async for outcome in outcomes:
                    seen.append(outcome)

        with pytest.raises(SMHNotFoundError) as caught:
            await consume()
    assert caught.value is broken
    assert sorted(o.space_id for o in seen) == sorted(ids[:5])
    assert all(o.outcome is Outcome.ACCEPTED for o in seen)
    assert streams[0].summary is None


async def test_stream_raises_callers_exception_itself(
    fake: FakeSMH, server: FakeServer, records: list[logging.LogRecord]
) -> None:
    """An exception raised by the caller inside the body comes out as itself, with no task
    group wrapper as its context, and stops the run without an error event."""
    ids = fake.add_spaces(LIBRARY, count=60, items_per_space=1, item_size=10)
    fake.latency = 0.02
    mine = ValueError("caller's own error")
    async with SMHClient(make_settings(server, concurrency=4)) as smh:

        async def consume() -> None:
            async with smh.purge(ids) as outcomes:
                async for _ in outcomes:
                    raise mine

        with pytest.raises(ValueError, match="caller's own error") as caught:
            await consume()
        await anyio.sleep(0.1)
    assert caught.value is mine and caught.value.__context__ is None
    assert deletes(fake) < len(ids)
    assert errors(records) == []


# ---------------------------------------------------------------- stream: leaving early


@pytest.mark.parametrize(
    "how", ["break", "move_on_after", "task_cancel", "body_error", "no_iteration"]
)
async def test_leaving_stream_early_is_quiet(
    fake: FakeSMH, server: FakeServer, records: list[logging.LogRecord], how: str
) -> None:
    """Each documented way of leaving the stream early stops the run (cancellation still
    propagates as it should) and logs no error-level event, since no on_outcome was given."""
    ids = fake.add_spaces(LIBRARY, count=80, items_per_space=1, item_size=10)
    fake.latency = 0.05
    got: list[PurgeOutcome] = []

    async with SMHClient(make_settings(server, concurrency=4)) as smh:

        async def consume(stop_after: int | None = None) -> None:
            async with smh.purge(ids) as outcomes:
                if how == "no_iteration":
                    # Leave once the first outcomes wait unread and more DELETEs are in flight.
                    while deletes(fake) < 4 or not fake.in_flight_by_route.get("empty_bin"):
                        await anyio.sleep(0.005)
                    return
                async for outcome in outcomes:
                    got.append(outcome)
                    if stop_after is not None and len(got) >= stop_after:
                        if how == "body_error":
                            raise ValueError("stop here")
                        break
            assert outcomes.summary is None

        if how == "break":
            await consume(stop_after=2)
        elif how == "body_error":
            with pytest.raises(ValueError, match="stop here"):
                await consume(stop_after=2)
        elif how == "move_on_after":
            with anyio.move_on_after(0.2) as scope:
                await consume()
            assert scope.cancelled_caught
        elif how == "task_cancel":
            task = asyncio.create_task(consume())
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        else:
            await consume()
        await anyio.sleep(0.2)  # requests the server was still answering have finished
        served = deletes(fake)
        await anyio.sleep(0.2)

    assert 0 < served < len(ids) and deletes(fake) == served  # nothing runs on
    assert any(r.getMessage() == "purge.started" for r in records)
    assert errors(records) == []


# ---------------------------------------------------------------- stream: generator sources


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_leaving_stream_early_closes_generator_source(
    fake: FakeSMH, server: FakeServer, kind: str
) -> None:
    """A generator source (async or sync) is closed when the stream is left early: its
    finally runs at the exit of the context, though the caller still holds it."""
    ids = fake.add_spaces(LIBRARY, count=50, items_per_space=1, item_size=10)
    fake.latency = 0.02
    events: list[str] = []

    async def agen() -> AsyncIterator[str]:
        try:
            for space_id in ids:
                yield space_id
        finally:
            events.append("closed")

    def sgen() -> Iterator[str]:
        try:
            yield from ids
        finally:
            events.append("closed")

    source: Any = agen() if kind == "async" else sgen()
    async with SMHClient(make_settings(server, concurrency=4)) as smh:
        async with smh.purge(source) as outcomes:
            async for _ in outcomes:
                break
        assert events == ["closed"]
    assert source is not None  # held until here: not a garbage collection's close


# ---------------------------------------------------------------- stdlib logging, host context


async def test_contextvars_clashing_with_logrecord_are_renamed(
    fake: FakeSMH, server: FakeServer, records: list[logging.LogRecord]
) -> None:
    """Host contextvars named like LogRecord attributes (name, module, process, message, ...)
    do not break purge_all: the summary is right and the records carry them as ctx_<key>."""
    ids = fake.add_spaces(LIBRARY, count=3, items_per_space=1, item_size=10)
    fault = Fault("status", status=404, code="SpaceNotExist", route="empty_bin", space_id=ids[0])
    fake.add_fault(fault)
    bound = {
        "name": "tenant-a",
        "module": "billing",
        "process": "worker-7",
        "message": "hello",
        "msg": "m",
        "args": "a",
        "levelname": "LOUD",
        "event": "host-event",
        "stacklevel": "high",
        "tenant": "acme",
    }
    structlog.contextvars.bind_contextvars(**bound)
    async with SMHClient(make_settings(server, concurrency=3)) as smh:
        summary = await smh.purge_all(ids)

    assert (summary.total, summary.accepted, summary.failed) == (3, 2, 1)
    assert summary.by_error_code == {"SpaceNotExist": 1}
    assert deletes(fake) == 3
    mine = [r for r in records if r.name == "smh_async"]
    assert {r.getMessage() for r in mine} >= {"purge.started", "purge.space", "purge.finished"}
    for record in mine:
        fields = record.__dict__
        assert {f"ctx_{k}": v for k, v in bound.items() if k != "tenant"}.items() <= fields.items()
        assert record.tenant == "acme"  # type: ignore[attr-defined]
        assert fields["module"] != "billing" and fields["process"] == os.getpid()  # logging's
        assert record.levelname in ("DEBUG", "INFO", "WARNING")
    failed = [r for r in mine if r.levelno == logging.WARNING and r.getMessage() == "purge.space"]
    assert [(r.space_id, r.error_code) for r in failed] == [(ids[0], "SpaceNotExist")]  # type: ignore[attr-defined]


async def test_record_factory_attributes_are_renamed(
    fake: FakeSMH, server: FakeServer, records: list[logging.LogRecord]
) -> None:
    """A host record factory that adds attributes (tenant, request_id) clashes with the same
    keys from the context: they arrive renamed, the purge works; SMH's request id is not
    among them (smh_request_id)."""
    ids = fake.add_spaces(LIBRARY, count=3, items_per_space=1, item_size=10)
    stock = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = stock(*args, **kwargs)
        record.tenant = "from-factory"
        record.request_id = None
        return record

    logging.setLogRecordFactory(factory)
    try:
        structlog.contextvars.bind_contextvars(tenant="acme")
        async with SMHClient(make_settings(server, concurrency=3)) as smh:
            summary = await smh.purge_all(ids)
    finally:
        logging.setLogRecordFactory(stock)

    assert (summary.total, summary.accepted) == (3, 3)
    spaces = [r for r in records if r.getMessage() == "purge.space"]
    assert sorted(r.space_id for r in spaces) == sorted(ids)  # type: ignore[attr-defined]
    for record in spaces:
        assert record.tenant == "from-factory"  # type: ignore[attr-defined]
        assert record.ctx_tenant == "acme"  # type: ignore[attr-defined]
        assert record.smh_request_id  # type: ignore[attr-defined]  # the server's request id
