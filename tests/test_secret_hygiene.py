"""Secret hygiene end to end: real CLI runs through every error class and crash path, and a
hostile server that echoes the full URL (query string and token included) back at us.

Every byte of stdout, stderr and the report is searched for a distinctive token and library
secret; ``str``/``repr``/tracebacks of everything a caller can hold are searched too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import signal
import sys
import traceback
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import anyio
import pytest
from aiohttp import web

from smh_async import SMHClient, SMHError, SMHSettings
from smh_async.testing import FakeServer, FakeSMH, Fault
from tests.conftest import LIBRARY, SECRET, make_settings

pytestmark = pytest.mark.anyio

TOKEN = "acctk-Hygiene-Token-5Vq9"  # what the echo server mints
NEEDLES = (SECRET.encode(), TOKEN.encode())
REPORT = "report.jsonl"
SUMMARY = "summary.json"


def cli_env(**extra: str) -> dict[str, str]:
    """The process environment without a developer's SMH_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMH_")}
    env.update(extra)
    return env


async def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, bytes]:
    """Run the CLI; return its exit code and every byte of stdout, stderr, the report and
    the ``--summary-json`` file."""
    files = [Path(REPORT), Path(SUMMARY)]
    for path in files:
        path.unlink(missing_ok=True)
    proc = await anyio.run_process(
        [sys.executable, "-m", "smh_async", *args], env=env or cli_env(), check=False
    )
    written = b"".join(p.read_bytes() for p in files if p.exists())
    return proc.returncode, proc.stdout + proc.stderr + written


def assert_clean(blob: bytes, *extra: str) -> None:
    """No credential anywhere in ``blob``."""
    for needle in (*NEEDLES, *(e.encode() for e in extra)):
        assert needle not in blob, needle


def fault_per_space(fake: FakeSMH) -> tuple[list[str], set[str]]:
    """Spaces that each hit a different error class; returns ids and the codes to expect."""
    plan = [
        (None, None),
        (Fault("status", status=500), "InternalServerError"),
        (Fault("status", status=429, retry_after="0"), "RateLimitExceeded"),
        (Fault("html", status=502), "SMHServerError"),
        (Fault("malformed_json", status=503), "SMHServerError"),
        (Fault("unexpected_body"), "SMHDecodeError"),
        (Fault("drop"), "SMHTransportError"),
        (Fault("truncated", status=500), "SMHTransportError"),
        (Fault("hang", delay=30), "SMHTimeoutError"),
        (Fault("status", status=404, code="SpaceNotFound"), "SpaceNotFound"),
        (Fault("status", status=400, code="RecycleBinNotEnabled"), "RecycleBinNotEnabled"),
        (Fault("status", status=403, code="NoPermission"), "NoPermission"),  # aborts: last
    ]
    ids: list[str] = []
    for fault, _ in plan:
        sid = fake.add_space(LIBRARY, bin_item_sizes=[1])
        if fault is not None:
            fault.route, fault.space_id = "empty_bin", sid
            fake.add_fault(fault)
        ids.append(sid)
    ids.insert(-1, "bad/../id\x1b")  # InvalidSpaceId
    return ids, {code for _, code in plan if code} | {"InvalidSpaceId"}


@pytest.mark.parametrize("log_format", ["json", "console"])
@pytest.mark.parametrize("credential", ["token", "secret"])
async def test_every_error_class_leaks_nothing(
    fake: FakeSMH, server: FakeServer, log_format: str, credential: str
) -> None:
    """One debug-level run hitting every error class: no credential in any output byte."""
    ids, codes = fault_per_space(fake)
    token = fake.issue_token(LIBRARY)
    cred = ["--access-token", token] if credential == "token" else ["--library-secret", SECRET]
    code, out = await run_cli(
        "purge", "--base-url", server.base_url, "--library-id", LIBRARY, *cred, *ids,
        "--report", REPORT, "--log-format", log_format, "--log-level", "debug",
        "--max-attempts", "2", "--timeout", "0.3", "--concurrency", "1",
        "--summary-json", SUMMARY,
    )  # fmt: skip
    assert code == 3  # NoPermission: the auth guard stopped the run after the last space
    assert b'"by_error_code"' in out  # the summary file was written and is checked too
    for expected in codes:
        assert expected.encode() in out, expected
    assert_clean(out, token)


@pytest.fixture
async def echo_server(anyio_backend: str) -> AsyncIterator[str]:
    """A hostile SMH: mints TOKEN, then echoes each request's full URL (with the token) in
    every error field it can: code, message, requestId, X-Request-Id, HTML title and body;
    ``bare*`` spaces get the bare token value back in the message and request id."""

    async def handler(request: web.Request) -> web.StreamResponse:
        url = str(request.url)
        if request.path == "/api/v1/token" and request.query.get("library_secret") == SECRET:
            return web.json_response({"accessToken": TOKEN, "expiresIn": 3600})
        space = request.path.rsplit("/", 1)[-1]
        headers = {"X-Request-Id": url, "Retry-After": url, "Location": url}
        if space.startswith("html"):
            page = f"<html><title>502 at {url}</title><body>{url}</body></html>"
            return web.Response(status=502, text=page, content_type="text/html", headers=headers)
        if space.startswith("ok200"):
            return web.json_response({"echo": url}, status=200, headers=headers)
        if space.startswith("moved"):
            return web.Response(status=307, text=url, headers=headers)
        if space.startswith("bare"):
            sent = request.query.get("access_token", "")
            body = {"code": "NoAccess", "message": f"token {sent} refused", "requestId": sent}
            return web.json_response(body, status=409, headers=headers)
        body = {"code": url, "message": f"cannot serve {url}", "requestId": url}
        return web.json_response(body, status=500 if space.startswith("e5") else 400)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


ECHO_SPACES = ["e5xx", "e4xx", "html1", "ok200", "moved1", "bare1"]


@pytest.mark.parametrize("log_format", ["json", "console"])
@pytest.mark.parametrize("credential", ["token", "secret"])
async def test_server_echoing_the_url_leaks_nothing(
    echo_server: str, log_format: str, credential: str
) -> None:
    """Error bodies, headers and HTML pages that echo the URL never bring the token back out."""
    cred = ["--access-token", TOKEN] if credential == "token" else ["--library-secret", SECRET]
    code, out = await run_cli(
        "purge", "--base-url", echo_server, "--library-id", LIBRARY, *cred, *ECHO_SPACES,
        "--report", REPORT, "--log-format", log_format, "--log-level", "debug",
        "--max-attempts", "2", "--summary-json", SUMMARY,
    )  # fmt: skip
    assert code == 1 and b"cannot serve" in out and b"access_token=[REDACTED]" in out
    assert b'"by_error_code"' in out
    assert_clean(out)


async def test_library_api_objects_from_an_echoing_server_hold_no_secret(
    echo_server: str,
) -> None:
    """str/repr/args/tracebacks of every error, outcome and summary the library returns."""
    settings = SMHSettings(
        base_url=echo_server, library_id=LIBRARY, library_secret=SECRET, max_attempts=1
    )
    texts = [repr(settings), str(settings), settings.model_dump_json()]
    async with SMHClient(settings) as smh:
        texts += [repr(smh), repr(smh.token_provider)]
        for space in ECHO_SPACES:
            try:
                await smh.empty_recycle_bin(space)
            except SMHError as exc:
                texts += [str(exc), repr(exc), repr(exc.args), str(vars(exc))]
                texts += traceback.format_exception(exc)
        outcomes: list[object] = []
        summary = await smh.purge_all(ECHO_SPACES, on_outcome=outcomes.append)
    texts += [repr(o) for o in outcomes] + [repr(summary), repr(summary.to_dict())]
    assert_clean("\n".join(texts).encode())


def shown_with_locals(exc: BaseException) -> str:
    """The traceback as a renderer that shows local variables prints it (Sentry's default
    ``include_local_variables``, rich's ``show_locals``)."""
    rendered = traceback.TracebackException.from_exception(exc, capture_locals=True)
    return "".join(rendered.format())


class LongestBackoff(random.Random):
    """Full jitter that always draws its ceiling: a retry then surely waits."""

    def uniform(self, a: float, b: float) -> float:
        return b


async def cancelled_while_retrying(smh: SMHClient, space_id: str) -> BaseException:
    """The cancellation a request gets while it waits to retry (a web handler whose client
    went away), as it left the library."""
    caught: list[BaseException] = []

    async def purge_one() -> None:
        try:
            await smh.empty_recycle_bin(space_id)
        except BaseException as exc:
            caught.append(exc)
            raise

    smh.retry_policy = dataclasses.replace(smh.retry_policy, rng=LongestBackoff())
    with anyio.move_on_after(1.0):
        await purge_one()
    assert len(caught) == 1 and isinstance(caught[0], anyio.get_cancelled_exc_class())
    return caught[0]


async def test_tracebacks_with_locals_hold_no_echoed_token(echo_server: str) -> None:
    """Every error from an echoing server renders with its frames' locals and no token: the
    raw reply is not kept in call() (error statuses) nor in empty_recycle_bin (a 200 with a
    body), where it was, URL and token included."""
    settings = SMHSettings(
        base_url=echo_server, library_id=LIBRARY, access_token=TOKEN, max_attempts=1
    )
    shown: list[str] = []
    async with SMHClient(settings) as smh:
        for space in ECHO_SPACES:
            with pytest.raises(SMHError) as info:
                await smh.empty_recycle_bin(space)
            shown.append(shown_with_locals(info.value))
    assert all("empty_recycle_bin" in text and "call" in text for text in shown)
    assert_clean("".join(shown).encode())


async def test_request_cancelled_while_waiting_to_retry_shows_no_echoed_reply(
    echo_server: str,
) -> None:
    """A request cancelled in its backoff after a 500 that echoed the URL: its traceback,
    shown with locals, holds neither the reply nor the token."""
    settings = SMHSettings(
        base_url=echo_server, library_id=LIBRARY, access_token=TOKEN, backoff_initial=30
    )
    async with SMHClient(settings) as smh:
        cancelled = await cancelled_while_retrying(smh, "e5xx")
    shown = shown_with_locals(cancelled)
    assert "in call" in shown
    assert_clean(shown.encode())


async def test_request_cancelled_after_a_token_was_rejected_shows_no_token(
    fake: FakeSMH, server: FakeServer
) -> None:
    """A request whose token was rejected (403 InvalidAccessToken, re-minted) and that is
    cancelled while waiting to retry a 503: no token, old or new, among its locals."""
    space_id = fake.add_space(LIBRARY, bin_item_sizes=[1])
    fake.add_fault(
        Fault("status", status=403, code="InvalidAccessToken", route="empty_bin", times=1)
    )
    fake.add_fault(Fault("status", status=503, route="empty_bin"))
    async with SMHClient(make_settings(server, backoff_initial=30, backoff_max=30)) as smh:
        cancelled = await cancelled_while_retrying(smh, space_id)
    shown = shown_with_locals(cancelled)
    assert "in call" in shown and len(fake.tokens) == 2  # the rejected one and its successor
    assert_clean(shown.encode(), *fake.tokens)


async def test_aiohttp_client_response_error_is_scrubbed(echo_server: str) -> None:
    """A borrowed session with raise_for_status: aiohttp's ClientResponseError, whose text
    holds the full URL, never surfaces unscrubbed (nor in the printed traceback)."""
    settings = SMHSettings(
        base_url=echo_server, library_id=LIBRARY, access_token=TOKEN, max_attempts=1
    )
    async with (
        aiohttp.ClientSession(raise_for_status=True) as session,
        SMHClient(settings, session=session) as smh,
    ):
        with pytest.raises(SMHError) as info:
            await smh.empty_recycle_bin("e5xx")
    shown = "".join(traceback.format_exception(info.value)) + repr(info.value)
    assert "500" in shown
    assert_clean(shown.encode())


async def test_crash_paths_leak_nothing(fake: FakeSMH, server: FakeServer) -> None:
    """Refused connections, an unwritable report, a wrong secret, a bad setting: no secret."""
    sid = fake.add_space(LIBRARY)
    base = ["purge", "--library-id", LIBRARY, "--log-level", "debug", "--log-format", "json"]
    env = cli_env(SMH_LIBRARY_SECRET=SECRET, SMH_ACCESS_TOKEN=TOKEN)
    runs = [
        (1, [*base, "--base-url", "http://127.0.0.1:9", "--max-attempts", "1", sid]),
        (2, [*base, "--base-url", server.base_url, "--report", "/proc/nope/r.jsonl", sid]),
        (2, [*base, "--base-url", server.base_url, "--access-token", "", sid]),
        (2, [*base, "--base-url", f"http://127.0.0.1:1/?access_token={TOKEN}", sid]),
    ]
    for expected, args in runs:
        proc = await anyio.run_process(
            [sys.executable, "-m", "smh_async", *args], env=env, check=False
        )
        assert expected is None or proc.returncode == expected, proc.stderr
        assert proc.returncode != 0
        assert_clean(proc.stdout + proc.stderr)
    wrong = cli_env(SMH_LIBRARY_SECRET=SECRET + "-wrong")
    proc = await anyio.run_process(
        [sys.executable, "-m", "smh_async", *base, "--base-url", server.base_url, sid],
        env=wrong,
        check=False,
    )
    assert proc.returncode == 2 and b"WrongLibraryIdOrSecret" in proc.stderr
    assert_clean(proc.stdout + proc.stderr, SECRET + "-wrong")


async def test_interrupted_run_leaks_nothing(fake: FakeSMH, server: FakeServer) -> None:
    """SIGINT (twice) during hanging requests: exit 130, report flushed, no secret anywhere."""
    ids = fake.add_spaces(LIBRARY, count=20, items_per_space=1, item_size=1)
    fake.add_fault(Fault("hang", route="empty_bin", delay=30))
    args = [sys.executable, "-m", "smh_async", "purge", "--base-url", server.base_url]
    args += ["--library-id", LIBRARY, "--report", REPORT, "--log-level", "debug", *ids]
    async with await anyio.open_process(args, env=cli_env(SMH_LIBRARY_SECRET=SECRET)) as proc:
        with anyio.fail_after(20):
            while fake.in_flight < 5:  # requests are hanging in the emulator
                await anyio.sleep(0.02)
            proc.send_signal(signal.SIGINT)
            await anyio.sleep(0.3)
            proc.send_signal(signal.SIGINT)  # a second one stops waiting for hung requests
            out = b""
            assert proc.stdout is not None and proc.stderr is not None
            async for chunk in proc.stdout:
                out += chunk
            async for chunk in proc.stderr:
                out += chunk
            await proc.wait()
    assert proc.returncode == 130, out[-2000:]
    assert b"Interrupted" in Path(REPORT).read_bytes()
    assert_clean(out + Path(REPORT).read_bytes())
    assert_clean(repr(make_settings(server)).encode())


async def _truncated_200(request: web.Request) -> web.StreamResponse:
    """A 200 that promises 1,000 bytes, sends 10 and hangs up."""
    resp = web.StreamResponse(status=200, headers={"Content-Length": "1000"})
    await resp.prepare(request)
    await resp.write(b"{" * 10)
    assert request.transport is not None
    request.transport.close()
    return resp


async def _stalled_200(request: web.Request) -> web.StreamResponse:
    """A 200 whose body stops after one byte (the attempt times out reading it)."""
    resp = web.StreamResponse(status=200, headers={"Content-Length": "1000"})
    await resp.prepare(request)
    await resp.write(b"{")
    await asyncio.sleep(5)
    return resp


async def _huge_404_echoing_the_url(request: web.Request) -> web.StreamResponse:
    """A 404 over 16 MB, chunked, with a header echoing the request URL (token included)."""
    resp = web.StreamResponse(status=404, headers={"X-Echo": str(request.url)})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    for _ in range(18):
        await resp.write(b"x" * (1 << 20))
    return resp


@pytest.mark.anyio
async def test_a_reply_that_fails_while_read_leaves_no_token_in_locals() -> None:
    """A body cut short, a body that stalls, and an oversized reply echoing the URL: the
    raised error's traceback rendered with locals holds no token (aiohttp's response,
    whose repr is the URL, and the raw reply stayed in _attempt's locals)."""
    token = "tok-Locals-Vq7Rz2Kw"
    app = web.Application()
    handlers = {"trunc": _truncated_200, "slow": _stalled_200, "huge": _huge_404_echoing_the_url}
    for name, handler in handlers.items():
        app.router.add_route("DELETE", f"/api/v1/recycled/lib/{name}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    settings = SMHSettings(
        base_url=f"http://127.0.0.1:{port}",
        library_id="lib",
        access_token=token,
        max_attempts=1,
        timeout=1,
    )
    try:
        async with SMHClient(settings) as smh:
            for name in handlers:
                with pytest.raises(SMHError) as caught:
                    await smh.empty_recycle_bin(name)
                shown = traceback.TracebackException.from_exception(
                    caught.value, capture_locals=True
                )
                ours = [f for f in shown.stack if "smh_async" in f.filename]
                assert ours, name
                for frame in ours:  # (this test's own frame holds the token, of course)
                    assert token not in repr(frame.locals), (name, frame.name)
    finally:
        await runner.cleanup()
