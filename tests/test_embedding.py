"""The library inside a host application: what the host's own tools and habits must not break.

structlog's configuration and contextvars are process-global (and the in-process CLI tests
configure them), so every test here starts and ends from structlog's defaults.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
import structlog

from smh_async import SMHClient
from smh_async.testing import SMHFake

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def _pristine_structlog() -> Iterator[None]:
    """structlog unconfigured and no context bound, before and after each test."""
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


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
