"""The library inside a host application: what the host's own tools and habits must not break.

structlog's configuration and contextvars are process-global (and the in-process CLI tests
configure them), so every test here starts and ends from structlog's defaults.
"""

from __future__ import annotations

import gc
import io
import logging
from collections.abc import Mapping
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import structlog

from smh_async import PurgeOutcome, PurgeRun, SMHClient, SMHSettings
from smh_async._client import OutcomeCallback
from smh_async.testing import Fault, SMHFake

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("pristine_structlog")]


def _library_records(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "smh_async"]


# ---------------------------------------------------------------- structlog left at defaults


async def test_capture_logs_once_does_not_make_the_library_print(
    smh_fake: SMHFake,
    smh_client: SMHClient,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A host on stdlib logging that used capture_logs() once (a test) gets no library event
    on stdout afterwards: structlog's restored defaults count as not configured."""
    caplog.set_level(logging.INFO, logger="smh_async")
    ids = smh_fake.add_spaces(2, items_per_space=1)
    with structlog.testing.capture_logs() as captured:
        await smh_client.purge_all(ids[:1])
    assert "purge.space" in [e["event"] for e in captured]
    assert structlog.is_configured()  # what capture_logs leaves behind

    caplog.clear()
    await smh_client.purge_all(ids[1:])
    assert capsys.readouterr() == ("", "")
    assert {"purge.started", "purge.space", "purge.finished"} <= set(_library_records(caplog))


async def test_capture_logs_still_captures_after_an_earlier_one(
    smh_fake: SMHFake, smh_client: SMHClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second capture_logs() (the next test) still sees every event, with or without the
    host's cache_logger_on_first_use, and nothing is printed between or after them."""
    structlog.configure(cache_logger_on_first_use=True)  # defaults otherwise: not configured
    for space_id in smh_fake.add_spaces(3, items_per_space=1):
        with structlog.testing.capture_logs() as captured:
            await smh_client.empty_recycle_bin(space_id)
            await smh_client.purge_all([space_id])
        assert [e["event"] for e in captured][-1] == "purge.finished"
        await smh_client.purge_all([space_id])
    assert capsys.readouterr() == ("", "")


async def test_host_that_chose_a_logger_factory_keeps_its_pipeline(
    smh_fake: SMHFake, smh_client: SMHClient
) -> None:
    """Guard: default processors with the host's own logger factory is a configuration (the
    host chose where events go): library events are written there."""
    out = io.StringIO()
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=out))
    await smh_client.purge_all(smh_fake.add_spaces(1))
    assert "purge.space" in out.getvalue() and "purge.finished" in out.getvalue()


async def test_host_that_chose_a_level_keeps_structlog_output(
    smh_fake: SMHFake, smh_client: SMHClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """Guard: a host that only set a filtering level uses structlog's printing on purpose:
    the library's warnings follow it (and its info events are filtered out)."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    await smh_client.purge_all(["bad?id"])
    out = capsys.readouterr().out
    assert "purge.space" in out and "InvalidSpaceId" in out
    assert "purge.started" not in out


# ---------------------------------------------------------------- stream + on_outcome


def _recorder(kind: str, seen: list[PurgeOutcome], fail_at: int | None = None) -> OutcomeCallback:
    """A sync or async on_outcome that records, and raises OSError at the ``fail_at``-th."""

    def record(outcome: PurgeOutcome) -> None:
        seen.append(outcome)
        if fail_at is not None and len(seen) >= fail_at:
            raise OSError(28, "No space left on device")

    async def record_async(outcome: PurgeOutcome) -> None:
        await anyio.lowlevel.checkpoint()
        record(outcome)

    return record if kind == "sync" else record_async


def _deletes_sent(smh_fake: SMHFake) -> list[str]:
    return [r.space_id or "" for r in smh_fake.requests_to("empty_bin")]


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_stream_hands_every_outcome_to_on_outcome_too(
    smh_fake: SMHFake, smh_client: SMHClient, kind: str
) -> None:
    """smh.purge(ids, on_outcome=cb) runs (it raised TypeError): the callback and the
    iterator each get every outcome, and the summary is set."""
    ids = smh_fake.add_spaces(12, items_per_space=1)
    seen: list[PurgeOutcome] = []
    callback = _recorder(kind, seen)
    async with smh_client.purge(ids, concurrency=3, on_outcome=callback) as outcomes:
        got = [outcome async for outcome in outcomes]
    assert sorted(o.space_id for o in got) == sorted(ids)
    assert sorted(o.space_id for o in seen) == sorted(ids)
    assert outcomes.summary is not None and outcomes.summary.accepted == 12


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_stream_on_outcome_that_raises_stops_the_run_and_is_raised(
    smh_fake: SMHFake, smh_client: SMHClient, kind: str
) -> None:
    """As with purge_all: a failing callback stops launching, the spaces in flight finish and
    still reach it, and its own error comes out of the context."""
    ids = smh_fake.add_spaces(200, items_per_space=1)
    smh_fake.fake.latency = 0.02
    seen: list[PurgeOutcome] = []
    runs: list[PurgeRun] = []

    async def consume() -> None:
        callback = _recorder(kind, seen, fail_at=3)
        async with smh_client.purge(ids, concurrency=4, on_outcome=callback) as outcomes:
            runs.append(outcomes.run)
            async for _ in outcomes:
                pass

    with pytest.raises(OSError, match="No space left") as caught:
        await consume()
    assert type(caught.value) is OSError  # itself, not wrapped in an ExceptionGroup
    sent = _deletes_sent(smh_fake)
    assert sorted(o.space_id for o in seen) == sorted(sent) and 3 <= len(sent) <= 3 + 4
    assert runs[0].summary().aborted == "on_outcome_failed"


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_stream_on_outcome_still_gets_spaces_cut_short_by_leaving(
    smh_fake: SMHFake, smh_client: SMHClient, kind: str
) -> None:
    """A caller that leaves the stream early still has every space that was sent a DELETE
    in its on_outcome record (accepted or Interrupted), each once; nothing is raised."""
    ids = smh_fake.add_spaces(40, items_per_space=1)
    smh_fake.fake.latency = 0.05
    seen: list[PurgeOutcome] = []
    got: list[PurgeOutcome] = []
    async with smh_client.purge(ids, concurrency=4, on_outcome=_recorder(kind, seen)) as outcomes:
        async for outcome in outcomes:
            got.append(outcome)
            break
    assert got[0] in seen
    seen_ids = [o.space_id for o in seen]
    assert len(seen_ids) == len(set(seen_ids)) and set(_deletes_sent(smh_fake)) <= set(seen_ids)
    assert any(o.error_code == "Interrupted" for o in seen)
    assert len(seen) < len(ids) and outcomes.summary is None


async def test_stream_with_an_unknown_option_fails_cleanly(smh_client: SMHClient) -> None:
    """A misspelt option is a plain TypeError from purge(), leaving no unclosed stream
    behind (collected, it warned: an error under this suite's warning filter)."""
    with pytest.raises(TypeError, match="concurency"):
        async with smh_client.purge(["space1"], concurency=4):
            pass
    gc.collect()


# ---------------------------------------------------------------- event loop


def _offline_settings() -> SMHSettings:
    return SMHSettings(base_url="http://127.0.0.1:9", library_id="lib", access_token="tok-abc")


def test_client_outside_asyncio_says_it_needs_asyncio() -> None:
    """Entered where no asyncio loop runs, the client says it needs the asyncio backend
    (it failed inside aiohttp with a bare 'no running event loop'), before doing anything."""
    entering = SMHClient(_offline_settings()).__aenter__()
    with pytest.raises(RuntimeError, match=r"needs the asyncio backend.*no asyncio event loop"):
        entering.send(None)


def test_client_under_trio_names_trio() -> None:
    """Under anyio's trio backend the error names trio and the way out (asyncio backend)."""
    pytest.importorskip("trio")  # not a dependency: skipped where trio is not installed

    async def main() -> None:
        async with SMHClient(_offline_settings()):
            pass

    with pytest.raises(RuntimeError, match=r"asyncio backend.*runs under trio.*anyio\.run"):
        anyio.run(main, backend="trio")


# ---------------------------------------------------------------- the host's request_id

HOST_REQUEST_ID = "req-host-7f3a"  # a web backend's correlation id, bound per request


async def _events_of_a_retried_purge(
    smh_fake: SMHFake, smh_client: SMHClient, host: str, caplog: pytest.LogCaptureFixture
) -> dict[str, Mapping[str, Any]]:
    """The library's events by name, with their fields as the host sees them, for one space
    whose first DELETE got a 503, purged with the host's ``request_id`` bound in structlog's
    contextvars; ``host`` is a structlog pipeline or stdlib logging."""
    smh_fake.add_fault(Fault("status", status=503, route="empty_bin", times=1))
    space_id = smh_fake.add_space(bin_item_sizes=[1])
    structlog.contextvars.bind_contextvars(request_id=HOST_REQUEST_ID)
    if host == "structlog":
        merge = [structlog.contextvars.merge_contextvars]
        with structlog.testing.capture_logs(processors=merge) as events:
            await smh_client.purge_all([space_id])
        return {e["event"]: e for e in events}
    caplog.set_level(logging.DEBUG, logger="smh_async")
    await smh_client.purge_all([space_id])
    records = [r for r in caplog.records if r.name == "smh_async"]
    return {r.getMessage(): vars(r) for r in records}


@pytest.mark.parametrize("host", ["structlog", "stdlib"])
async def test_retry_event_keeps_the_hosts_request_id(
    smh_fake: SMHFake, smh_client: SMHClient, host: str, caplog: pytest.LogCaptureFixture
) -> None:
    """smh.request.retry carries SMH's id as smh_request_id, and the host's request_id
    (its correlation id, from contextvars) is left as the host bound it, not overridden."""
    events = await _events_of_a_retried_purge(smh_fake, smh_client, host, caplog)
    retry = events["smh.request.retry"]
    assert retry["request_id"] == HOST_REQUEST_ID
    served = smh_fake.requests_to("empty_bin")[0].request_id
    assert served and retry["smh_request_id"] == served


@pytest.mark.parametrize("host", ["structlog", "stdlib"])
async def test_space_event_keeps_the_hosts_request_id(
    smh_fake: SMHFake, smh_client: SMHClient, host: str, caplog: pytest.LogCaptureFixture
) -> None:
    """purge.space carries SMH's id as smh_request_id, and the host's request_id is left as
    the host bound it, not overridden."""
    events = await _events_of_a_retried_purge(smh_fake, smh_client, host, caplog)
    space = events["purge.space"]
    assert space["request_id"] == HOST_REQUEST_ID
    served = smh_fake.requests_to("empty_bin")[-1].request_id
    assert served and space["smh_request_id"] == served
