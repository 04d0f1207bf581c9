"""Secret hygiene: a known token and library secret never appear in any output byte."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from urllib.parse import quote

import anyio
import pytest
import structlog

from smh_async import SMHClient, SMHError, SMHSettings
from smh_async._commands import _client
from smh_async._logging import Redactor
from smh_async.testing import FakeServer, FakeSMH, Fault
from tests.conftest import LIBRARY, SECRET, make_settings

pytestmark = pytest.mark.anyio


async def run_cli(args: list[str], tmp_path: Path) -> bytes:
    """Run a CLI purge; return stdout + stderr + the report, every byte of them."""
    report = tmp_path / "report.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMH_")}
    proc = await anyio.run_process(
        [sys.executable, "-m", "smh_async", *args, "--report", str(report)], env=env, check=False
    )
    return proc.stdout + proc.stderr + (report.read_bytes() if report.exists() else b"")


@pytest.mark.parametrize("log_format", ["json", "console"])
@pytest.mark.parametrize("scenario", ["ok", "server_errors", "auth_rejected", "html_and_drops"])
async def test_cli_output_never_contains_token_or_secret(
    fake: FakeSMH, server: FakeServer, tmp_path: Path, log_format: str, scenario: str
) -> None:
    """Across success and error paths, at debug level, no output contains either credential."""
    ids = fake.add_spaces(LIBRARY, count=12, items_per_space=1, item_size=10)
    token = fake.issue_token(LIBRARY, grant="admin")
    if scenario == "server_errors":
        fake.add_fault(Fault("status", status=503, route="empty_bin", retry_after="0"))
    elif scenario == "auth_rejected":
        fake.expire_all_tokens()
    elif scenario == "html_and_drops":
        fake.add_fault(Fault("html", status=502, route="empty_bin", probability=0.3))
        fake.add_fault(Fault("drop", route="empty_bin", probability=0.3))
    common = [
        "purge",
        "--base-url",
        server.base_url,
        "--library-id",
        LIBRARY,
        "--log-format",
        log_format,
        "--log-level",
        "debug",
        "--max-attempts",
        "2",
        *ids,
    ]
    out = await run_cli([*common, "--access-token", token], tmp_path)
    out += await run_cli([*common, "--library-secret", SECRET], tmp_path)
    assert b"purge.space" in out or b"space_id" in out  # the run really produced output
    assert token.encode() not in out and SECRET.encode() not in out


async def test_reprs_and_errors_hold_no_secret(fake: FakeSMH, server: FakeServer) -> None:
    """repr/str of settings, client, token provider, errors and outcomes hold no credential."""
    sid = fake.add_space(LIBRARY)
    fake.add_fault(Fault("status", status=404, code="SpaceNotFound", route="empty_bin"))
    settings = make_settings(server)
    texts = [repr(settings), str(settings)]
    async with SMHClient(settings) as smh:
        token = await smh.token_provider.get()
        texts += [repr(smh), repr(smh.token_provider)]
        try:
            await smh.empty_recycle_bin(sid)
        except SMHError as exc:
            texts += [str(exc), repr(exc), repr(exc.args)]
        outcomes: list[object] = []
        await smh.purge_all([sid], on_outcome=outcomes.append)
        texts += [repr(o) for o in outcomes]
    blob = "\n".join(texts)
    assert "SpaceNotFound" in blob
    assert token not in blob and SECRET not in blob


def test_redactor_masks_keys_query_values_and_known_secrets() -> None:
    """The CLI's processor masks secret keys, access_token= values and known secret values."""
    redact = Redactor(["s3cret-VALUE-9"])
    event = redact(
        None,
        "info",
        {
            "event": "x",
            "access_token": "abc",
            "nested": {"library_secret": "zzz"},
            "url": "https://h/api?access_token=tok123&x=1",
            "msg": "boom s3cret-VALUE-9 end",
            "tokens_minted": 3,
        },
    )
    rendered = json.dumps(event)
    for leaked in ("abc", "zzz", "tok123", "s3cret-VALUE-9"):
        assert leaked not in rendered
    assert event["tokens_minted"] == 3


async def test_transport_errors_are_scrubbed(anyio_backend: str) -> None:
    """Connection errors (whose aiohttp text may hold the URL) never carry the token."""
    settings = SMHSettings(
        base_url="http://127.0.0.1:9",
        library_id="l",
        access_token="tok-Transport-55",
        max_attempts=1,
    )
    with structlog.testing.capture_logs() as events:
        async with SMHClient(settings) as smh:
            with pytest.raises(SMHError) as info:
                await smh.empty_recycle_bin("s1")
    assert "tok-Transport-55" not in f"{info.value} {info.value!r} {events}"


async def test_the_cli_log_masks_every_token_minted_during_the_run(
    fake: FakeSMH, server: FakeServer
) -> None:
    """The CLI's client tells the log's redactor each token it mints (the first and one
    re-minted after a rejection): later log text holding either one, verbatim or as it was
    in the URL, is masked. The redactor used to know only the configured token and secret."""
    redactor = Redactor([SECRET])
    async with _client(make_settings(server), redactor) as smh:
        first = await smh.token_provider.get()
        assert await smh.token_provider.invalidate(first)
        second = await smh.token_provider.get()
    assert first != second
    for token in (first, second):
        shown = redactor.text(f"echo {token} and {quote(token, safe='')} end")
        assert token not in shown and shown.count("[REDACTED]") >= 1


def test_redactor_learns_a_token_also_percent_encoded_and_keeps_the_latest() -> None:
    """``learn`` masks a value and its percent-encoded form; it keeps the latest 32 tokens
    (a long run re-mints now and then) besides the configured secrets."""
    redactor = Redactor(["static-Secret-1"])
    redactor.learn("Tok+en/Value=1")
    assert (
        redactor.text("a Tok+en/Value=1 b Tok%2Ben%2FValue%3D1 c") == "a [REDACTED] b [REDACTED] c"
    )
    for n in range(40):
        redactor.learn(f"minted-token-{n:02d}")
    assert redactor.text("minted-token-39 minted-token-07") == "[REDACTED] minted-token-07"
    assert redactor.text("static-Secret-1") == "[REDACTED]"
