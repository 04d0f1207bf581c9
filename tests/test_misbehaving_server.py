"""A misbehaving server, byte for byte: replies no emulator would send (undecodable text,
credentials echoed in a 2xx, oversized or endless bodies, circular paging, a token endpoint
that dies mid-run), each answered by a raw asyncio server on 127.0.0.1 written here.

Each test runs the real client or the real CLI against it and checks what an operator sees:
one report row per space, no traceback, no credential anywhere.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import traceback
import tracemalloc
import unicodedata
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from urllib.parse import quote

import anyio
import pytest
import structlog

from smh_async import (
    SMHAuthError,
    SMHClient,
    SMHDecodeError,
    SMHError,
    SMHNotFoundError,
    SMHServerError,
    SMHSettings,
    SMHTransportError,
)

pytestmark = pytest.mark.anyio

LIBRARY = "lib"
TOKEN = "SeCrEtToKeN0123456789abcdef"  # distinctive, so outputs can be searched for it
REPORT = "report.jsonl"

Writer = Callable[[asyncio.StreamWriter], Awaitable[None]]
Answer = Callable[[str, str], "bytes | Writer | None"]


def http(status: int, body: bytes = b"", *headers: str, ctype: str | None = None) -> bytes:
    """One raw HTTP/1.1 reply; Content-Length is added unless a header says otherwise."""
    lines = [f"HTTP/1.1 {status} X", *headers]
    if ctype:
        lines.append(f"Content-Type: {ctype}")
    framed = any(h.lower().startswith(("content-length", "transfer-encoding")) for h in headers)
    if not framed and status != 204:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def error_json(status: int, payload: object, *headers: str) -> bytes:
    """A JSON error reply."""
    return http(status, json.dumps(payload).encode(), *headers, ctype="application/json")


class RawServer:
    """Answers each request with what ``answer(method, target)`` returns: the reply's bytes,
    a coroutine function that writes it itself, or None to close the connection. Records
    every request target (query string included)."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.targets: list[str] = []
        self._handlers: set[asyncio.Task[None]] = set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._converse(reader, writer)
        except asyncio.CancelledError:  # the test is over (asyncio would log it as an error)
            pass
        finally:
            with suppress(ConnectionError, OSError):
                writer.close()

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with suppress(ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                method, target = head.split(" ", 2)[:2]
                self.targets.append(target)
                reply = self.answer(method, target)
                if reply is None:
                    return
                if isinstance(reply, bytes):
                    writer.write(reply)
                    await writer.drain()
                else:
                    await reply(writer)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        """Serve on a free loopback port; yields the base URL. Connections still open at the
        end are cut."""
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            try:
                yield f"http://127.0.0.1:{port}"
            finally:
                server.close()
                for task in self._handlers:
                    task.cancel()
                await asyncio.gather(*self._handlers, return_exceptions=True)

    def sent(self, method_path: str) -> int:
        """How many requests went to paths starting with ``method_path``."""
        return sum(t.startswith(method_path) for t in self.targets)


def space_of(target: str) -> str:
    """The last path segment of a request target."""
    return target.split("?", 1)[0].rsplit("/", 1)[-1]


async def run_cli(
    base_url: str, *args: str, credential: tuple[str, str] = ("--access-token", TOKEN)
) -> tuple[int, bytes, list[dict[str, object]]]:
    """``smh-async purge`` against ``base_url`` with a report and JSON logs at debug level;
    returns the exit code, stdout + stderr, and the report rows."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMH_")}
    command = [sys.executable, "-m", "smh_async", "purge", "--base-url", base_url]
    command += ["--library-id", LIBRARY, *credential, "--report", REPORT, "--no-progress"]
    command += ["--log-format", "json", "--log-level", "debug", "--max-attempts", "2", *args]
    with anyio.fail_after(60):
        proc = await anyio.run_process(command, env=env, check=False)
    path = Path(REPORT)
    rows = [json.loads(x) for x in path.read_text().splitlines() if x] if path.exists() else []
    return proc.returncode, proc.stdout + proc.stderr, rows


def assert_plain_text(text: str) -> None:
    """``text`` can be written as UTF-8 and holds no control character or lone surrogate."""
    text.encode("utf-8")
    assert not [ch for ch in text if unicodedata.category(ch) in ("Cc", "Cs")], repr(text)


# ---------------------------------------------------------------- P1: undecodable text

BINARY_ID = b"X-Request-Id: abc\xff\xfe\x80def"


def undecodable(method: str, target: str) -> bytes:
    """s404: a JSON message with an escaped lone surrogate and control characters; s204: a
    204 whose request id is not UTF-8; sbin: a 404 with that request id."""
    space = space_of(target)
    if space == "s404":
        payload = {"code": "SpaceNotFound", "message": "gone \udc80 away\r\n\x1b[2Jfake line"}
        return error_json(404, payload)
    head = f"HTTP/1.1 {204 if space == 's204' else 404} X\r\n".encode()
    if space == "s204":
        return head + BINARY_ID + b"\r\n\r\n"
    body = b'{"code":"SpaceNotFound","message":"m"}'
    length = f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n".encode()
    return head + length + BINARY_ID + b"\r\n\r\n" + body


async def test_undecodable_server_text_gets_a_row_for_every_space() -> None:
    """A lone surrogate in a JSON message and non-UTF-8 bytes in X-Request-Id (of a 204 and
    of a 404): every space gets its report row and the run ends normally (exit 1, no
    traceback); it used to die in the report writer (UnicodeEncodeError), rows lost."""
    async with RawServer(undecodable).running() as url:
        code, out, rows = await run_cli(url, "s404", "s204", "sbin")
    assert code == 1 and b"Traceback" not in out, out[-3000:]
    by_space = {str(r["space_id"]): r for r in rows}
    assert sorted(by_space) == ["s204", "s404", "sbin"]
    assert by_space["s204"]["outcome"] == "accepted"
    assert by_space["s204"]["request_id"] == "abc\ufffd\ufffd\ufffddef"
    assert by_space["sbin"]["request_id"] == "abc\ufffd\ufffd\ufffddef"
    assert by_space["s404"]["error_message"] == "gone \ufffd away   [2Jfake line"
    for row in rows:
        for value in row.values():
            if isinstance(value, str):
                assert_plain_text(value)


# ---------------------------------------------------------------- P2/P3: credentials echoed

MINTED = "MinTed-Tok+en/Value=0987654321"  # what the secret-minting server hands out
LIBRARY_SECRET = "LibSecret-Qz8Wk2Lp7Xv4-secret"
NEEDLES = (TOKEN, MINTED, LIBRARY_SECRET, TOKEN[:12], MINTED[:12], LIBRARY_SECRET[:12])


def token_of(target: str) -> str:
    """The access token as it was on the wire (percent-encoded), or ''."""
    return target.split("access_token=", 1)[1].split("&", 1)[0] if "access_token=" in target else ""


def mint(method: str, target: str) -> bytes | None:
    """The token endpoint of a server that knows LIBRARY_SECRET."""
    if target.startswith("/api/v1/token?"):
        return http(200, json.dumps({"accessToken": MINTED, "expiresIn": 3600}).encode())
    return None


def echoing(method: str, target: str) -> bytes | None:
    """Echo the credential back where no ``access_token=`` pattern can catch it: the bare
    token (as sent and decoded) or the whole request target in the X-Request-Id of a 204
    or of a 200 with a body; a long message with the token (encoded and not) right at the
    300-character cut of an error message, and in a long request id."""
    if (minted := mint(method, target)) is not None:
        return minted
    space, sent = space_of(target), token_of(target)
    plain = sent.replace("%2B", "+").replace("%2F", "/").replace("%3D", "=")
    if space == "ok204":
        return http(204, b"", f"X-Request-Id: {plain}")
    if space == "url204":
        return http(204, b"", f"X-Request-Id: {target}")
    if space == "ok200":
        return http(200, b'{"ok":true}', f"X-Request-Id: rid-{plain}", ctype="application/json")
    pad = "x" * (290 if space == "cut" else 280)
    message = f"{pad} {plain} tail" if space == "cut" else f"{pad} {sent} tail"
    return error_json(400, {"code": "Bad", "message": message}, f"X-Request-Id: {'r' * 195}{sent}")


@pytest.mark.parametrize("credential", ["token", "secret"])
async def test_credentials_echoed_in_replies_appear_nowhere(credential: str) -> None:
    """The token (static, or minted from the library secret) echoed in a 204's or a 200's
    request id, or in an error message right at its 300-character cut (verbatim or
    percent-encoded): no byte of it, nor its first 12 characters, in stdout, stderr or the
    report. The 2xx request id used to reach the report and the purge.space event as sent;
    the cut left 'SeCrEtToKeN01…' behind."""
    token = TOKEN if credential == "token" else MINTED
    cred = (
        ("--access-token", TOKEN) if credential == "token" else ("--library-secret", LIBRARY_SECRET)
    )
    spaces = ["ok204", "url204", "ok200", "cut", "encoded"]
    async with RawServer(echoing).running() as url:
        code, out, rows = await run_cli(url, *spaces, credential=cred)
    blob = out + Path(REPORT).read_bytes()
    assert code == 1 and len(rows) == 5, out[-3000:]
    by_space = {str(r["space_id"]): r for r in rows}
    assert by_space["ok204"]["request_id"] == "[REDACTED]"
    assert by_space["ok204"]["outcome"] == by_space["url204"]["outcome"] == "accepted"
    assert by_space["ok200"]["error_code"] == "SMHDecodeError"
    assert str(by_space["cut"]["error_message"]).endswith(" [REDACTE…")
    for needle in (token, token[:12]):
        assert needle.encode() not in blob, needle
        assert quote(needle, safe="").encode() not in blob, needle


@pytest.mark.parametrize("space", ["cut", "encoded", "ok200", "ok204", "url204"])
async def test_library_results_and_errors_hold_no_echoed_credential(space: str) -> None:
    """Through the library: the result of a 204 and every view of the error (str, repr,
    args, vars, traceback) hold neither the token nor its first 6 characters, whether it
    was echoed at the cut of a message ("cut": redacted only after the cut, its head
    survived), percent-encoded ("encoded") or in the request id of a 2xx whose body fails
    to decode ("ok200": never redacted)."""
    settings = SMHSettings(
        base_url="http://127.0.0.1:1", library_id=LIBRARY, access_token=TOKEN, max_attempts=1
    )
    async with RawServer(echoing).running() as url, SMHClient(settings, base_url=url) as smh:
        try:
            views = [repr(await smh.empty_recycle_bin(space))]
        except SMHError as exc:
            views = [str(exc), repr(exc), repr(exc.args), repr(vars(exc))]
            views += traceback.format_exception(exc)
    text = "\n".join(views)
    for needle in (TOKEN, TOKEN[:6], quote(TOKEN[:6], safe="")):
        assert needle not in text, text


# ---------------------------------------------------------------- P10: no URL in errors


def body_on_204(method: str, target: str) -> bytes:
    """A 204 that carries a body anyway (aiohttp fails to parse what follows)."""
    return http(204, b"", "Content-Type: application/json", "Content-Length: 7") + b'{"x":1}'


async def test_a_204_with_a_body_fails_with_a_route_template_not_a_url() -> None:
    """aiohttp's parser error for a 204 with a body becomes a transport error whose text
    names the route template and no URL (it quoted ``url='http://…?access_token=…'``)."""
    settings = SMHSettings(
        base_url="http://127.0.0.1:1", library_id=LIBRARY, access_token=TOKEN, max_attempts=1
    )
    async with RawServer(body_on_204).running() as url, SMHClient(settings, base_url=url) as smh:
        with pytest.raises(SMHTransportError) as caught:
            await smh.empty_recycle_bin("s1")
    shown = str(caught.value) + repr(caught.value)
    assert "Bad status line" in shown and "DELETE /api/v1/recycled/{library_id}/{space_id}" in shown
    for absent in ("http://", "url=", "127.0.0.1", "access_token", "/lib/s1"):
        assert absent not in shown, shown


# ---------------------------------------------------------------- P6: bodies past the limit

MB = 1 << 20
BOMB = zlib.compress(b"\0" * 64 * MB, 9)  # 64 KB of zlib stream that inflates to 64 MB


class Flood:
    """Writes a chunked body of ``mb`` megabytes after a reply head; remembers whether all
    of it was taken (a client that reads it whole) or the client hung up first."""

    def __init__(self, status: int, mb: int) -> None:
        self.status, self.mb, self.finished = status, mb, 0

    async def __call__(self, writer: asyncio.StreamWriter) -> None:
        head = f"HTTP/1.1 {self.status} X\r\nContent-Type: application/json\r\n"
        writer.write(head.encode() + b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"100000\r\n" + b" " * MB + b"\r\n"
        for _ in range(self.mb):
            writer.write(chunk)
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        self.finished += 1


@pytest.mark.parametrize(
    ("kind", "error", "attempts"),
    [
        ("chunked 503", SMHServerError, 2),
        ("gzip 500", SMHServerError, 2),
        ("chunked 200", SMHDecodeError, 1),
    ],
)
async def test_a_body_past_16_mb_is_not_read_whatever_its_framing(
    kind: str, error: type[SMHError], attempts: int
) -> None:
    """A 40 MB chunked body (no Content-Length) and a 64 KB deflate body that inflates to
    64 MB are given up on past 16 MB: the attempt fails keeping the status's meaning (a 5xx
    is retried, a 2xx is a decode error), the client hangs up before the flood ends, and the
    memory allocated stays far below the body's size. Both used to be read whole (peak RSS
    2 GB for a 1 GB bomb)."""
    flood = Flood(int(kind[-3:]), 40)

    def answer(method: str, target: str) -> bytes | Writer:
        if kind.startswith("gzip"):
            return http(500, BOMB, "Content-Encoding: deflate", ctype="application/json")
        return flood

    settings = SMHSettings(
        base_url="http://127.0.0.1:1", library_id=LIBRARY, access_token=TOKEN,
        max_attempts=2, backoff_initial=0.001, timeout=20,
    )  # fmt: skip
    server = RawServer(answer)
    tracemalloc.start()
    try:
        async with server.running() as url, SMHClient(settings, base_url=url) as smh:
            with pytest.raises(error) as caught:
                await smh.empty_recycle_bin("s1")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "over 16777216 bytes" in caught.value.message, caught.value
    assert (caught.value.status, caught.value.attempts) == (int(kind[-3:]), attempts)
    assert server.sent("/api/v1/recycled/") == attempts and flood.finished == 0
    assert peak < 40 * MB, peak


async def test_an_oversized_404_keeps_its_status_and_is_not_retried() -> None:
    """A 404 declaring a 17 MB body: SMHNotFoundError (404, not retried, one request), its
    message saying the body was too large; it used to become a retryable transport error
    and be sent max_attempts times."""

    async def huge_404(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 404 X\r\nContent-Length: 17000000\r\n\r\n" + b"Y" * MB)
        await writer.drain()
        await asyncio.sleep(30)  # the client must not wait for the rest

    settings = SMHSettings(
        base_url="http://127.0.0.1:1", library_id=LIBRARY, access_token=TOKEN,
        max_attempts=3, backoff_initial=0.001,
    )  # fmt: skip
    server = RawServer(lambda method, target: huge_404)
    with anyio.fail_after(10):
        async with server.running() as url, SMHClient(settings, base_url=url) as smh:
            with pytest.raises(SMHNotFoundError) as caught:
                await smh.empty_recycle_bin("s1")
    assert (caught.value.status, caught.value.attempts, caught.value.retryable) == (404, 1, False)
    assert caught.value.message == "HTTP 404 with a body over 16777216 bytes (not read)"
    assert server.sent("/api/v1/recycled/") == 1
    assert_no_token_in_locals(caught.value)


def assert_no_token_in_locals(error: BaseException, token: str = TOKEN, frames: int = 2) -> None:
    """No frame of smh-async in ``error``'s traceback holds the token in a local (a
    traceback renderer that shows locals would print it); at least ``frames`` checked."""
    tb, checked = error.__traceback__, 0
    while tb is not None:
        if "smh_async" in tb.tb_frame.f_code.co_filename:
            checked += 1
            for name, value in tb.tb_frame.f_locals.items():
                assert token not in repr(value), (tb.tb_frame.f_code.co_name, name)
        tb = tb.tb_next
    assert checked >= frames


# ---------------------------------------------------------------- P5: paging that never ends


def listing(mode: str) -> Answer:
    """A space listing of 3 spaces per page whose markers go a → b → a ("toggle") or are
    new on every page over the same 3 spaces ("grow"); DELETEs are accepted."""
    served = 0

    def answer(method: str, target: str) -> bytes:
        nonlocal served
        if not target.startswith(f"/api/v1/space/{LIBRARY}/list"):
            return http(204)
        served += 1
        page = [f"t{served}-{i}" for i in range(3)] if mode == "toggle" else ["s0", "s1", "s2"]
        following = ("b" if "marker=a" in target else "a") if mode == "toggle" else f"m{served}"
        rows = [{"spaceId": s, "userId": "", "creationTime": ""} for s in page]
        return http(200, json.dumps({"list": rows, "nextMarker": following}).encode())

    return answer


@pytest.mark.parametrize(("mode", "pages", "spaces"), [("toggle", 3, 9), ("grow", 2, 3)])
async def test_a_listing_that_goes_round_in_circles_ends_with_a_warning(
    mode: str, pages: int, spaces: int
) -> None:
    """Markers alternating a → b → a, or a new marker each time over the same page: the
    listing ends once it comes round (every space listed once), with a warning that the
    server's paging is inconsistent. Only a marker equal to the one just sent used to be
    caught: both looped forever."""
    settings = SMHSettings(base_url="http://127.0.0.1:1", library_id=LIBRARY, access_token=TOKEN)
    server = RawServer(listing(mode))
    with anyio.fail_after(10), structlog.testing.capture_logs() as logs:
        async with server.running() as url, SMHClient(settings, base_url=url) as smh:
            listed = [space.space_id async for space in smh.iter_spaces()]
    assert len(listed) == len(set(listed)) == spaces
    assert server.sent(f"/api/v1/space/{LIBRARY}/list") == pages
    warned = [e for e in logs if e["event"] == "smh.paging.inconsistent"]
    assert [(e["listing"], e["log_level"]) for e in warned] == [("spaces", "warning")]


@pytest.mark.parametrize("command", ["spaces", "purge"])
async def test_the_cli_ends_a_circular_listing(command: str) -> None:
    """``smh-async spaces`` and ``purge --all-spaces`` against markers a → b → a: the ids
    listed are printed / purged once each, exit 0, a warning in the log; both used to run
    until killed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMH_")}
    async with RawServer(listing("toggle")).running() as url:
        env.update(SMH_BASE_URL=url, SMH_LIBRARY_ID=LIBRARY, SMH_ACCESS_TOKEN=TOKEN)
        args = ["spaces"] if command == "spaces" else ["purge", "--all-spaces", "--report", REPORT]
        with anyio.fail_after(30):
            proc = await anyio.run_process(
                [sys.executable, "-m", "smh_async", *args, "--log-format", "json"],
                env=env,
                check=False,
            )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert b'"smh.paging.inconsistent"' in proc.stderr
    if command == "spaces":
        assert proc.stdout.decode().split() == [f"t{p}-{i}" for p in (1, 2, 3) for i in range(3)]
    else:
        rows = Path(REPORT).read_text().splitlines()
        assert len(rows) == 9 and all('"accepted"' in row for row in rows)


def recycle_bin(mode: str) -> Answer:
    """Bin listings whose totalNum (48,626,000) the pages never reach: one item per page
    ("short"), or the same full page of 1,000 whatever page is asked for ("repeat")."""

    def answer(method: str, target: str) -> bytes:
        size = 1 if mode == "short" else 1000
        items = [{"recycledItemId": i, "name": "f", "size": "10"} for i in range(size)]
        return http(200, json.dumps({"contents": items, "totalNum": 48_626_000}).encode())

    return answer


@pytest.mark.parametrize(("mode", "pages", "items"), [("short", 1, 1), ("repeat", 2, 1000)])
async def test_bin_totals_end_on_a_short_or_repeated_page(
    mode: str, pages: int, items: int
) -> None:
    """``--dry-run`` counting a bin whose totalNum the pages never reach: a short page, or a
    repeat of the previous one, ends the count (with a warning) instead of paging on to
    totalNum (48,626 requests for one space)."""
    settings = SMHSettings(base_url="http://127.0.0.1:1", library_id=LIBRARY, access_token=TOKEN)
    server = RawServer(recycle_bin(mode))
    with anyio.fail_after(10), structlog.testing.capture_logs() as logs:
        async with server.running() as url, SMHClient(settings, base_url=url) as smh:
            totals = await smh.recycle_bin_totals("s1")
    assert totals == (items, items * 10)
    assert server.sent(f"/api/v1/recycled/{LIBRARY}/s1?") == pages
    warned = [e for e in logs if e["event"] == "smh.paging.inconsistent"]
    assert [(e["listing"], e["space_id"]) for e in warned] == [("recycle_bin", "s1")]


# ---------------------------------------------------------------- P8: absurd token lifetime


async def test_a_401_digit_token_lifetime_does_not_crash_the_run() -> None:
    """The token endpoint answers ``expiresIn`` with 401 digits: the purge runs (exit 0, one
    accepted row); it ended in an OverflowError traceback, exit 1, nothing purged."""

    def answer(method: str, target: str) -> bytes:
        if target.startswith("/api/v1/token?"):
            body = b'{"accessToken": "tok-x", "expiresIn": 1' + b"0" * 400 + b"}"
            return http(200, body, ctype="application/json")
        return http(204)

    async with RawServer(answer).running() as url:
        code, out, rows = await run_cli(url, "s1", credential=("--library-secret", LIBRARY_SECRET))
    assert code == 0 and b"Traceback" not in out, out[-3000:]
    assert [(r["space_id"], r["outcome"]) for r in rows] == [("s1", "accepted")]


# ---------------------------------------------------------------- P7: the token endpoint dies


class MintThenFail:
    """A token endpoint that mints one token (``expiresIn`` 0: stale after a second), then
    answers 500 to every mint and renewal; DELETEs are answered as ``delete`` says: a 204
    after ``delay`` seconds, or 403 InvalidAccessToken."""

    def __init__(self, delete: str = "ok", delay: float = 0.0) -> None:
        self.delete, self.delay, self.minted = delete, delay, 0

    def __call__(self, method: str, target: str) -> bytes | Writer:
        if target.startswith("/api/v1/token"):
            self.minted += 1
            if self.minted > 1:
                return error_json(500, {"code": "InternalServerError", "message": "mint down"})
            return http(200, json.dumps({"accessToken": MINTED, "expiresIn": 0}).encode())
        if self.delete == "rejected":
            payload = {"code": "InvalidAccessToken", "message": "token expired"}
            return error_json(403, payload)

        async def slow_204(writer: asyncio.StreamWriter) -> None:
            await asyncio.sleep(self.delay)
            writer.write(http(204))
            await writer.drain()

        return slow_204


async def test_a_request_that_gets_no_token_says_so_and_the_mint_is_not_retried_per_request() -> (
    None
):
    """The token lapses and the token endpoint answers 500: the DELETE never sent fails as
    TokenUnavailable with 0 attempts, no status and its own route (it was reported as the
    mint's 500 after 2 attempts on POST /api/v1/token); the next request within the
    cool-down fails at once, without another mint request."""
    settings = SMHSettings(
        base_url="http://127.0.0.1:1", library_id=LIBRARY, library_secret=LIBRARY_SECRET,
        max_attempts=2, backoff_initial=0.001,
    )  # fmt: skip
    server = RawServer(MintThenFail())
    async with server.running() as url, SMHClient(settings, base_url=url) as smh:
        await smh.empty_recycle_bin("s1")
        await anyio.sleep(1.05)  # past the token's (one-second) life
        with pytest.raises(SMHAuthError) as caught:
            await smh.empty_recycle_bin("s2")
        token_requests = server.sent("/api/v1/token")
        with pytest.raises(SMHAuthError):
            await smh.empty_recycle_bin("s3")
    error = caught.value
    assert (error.code, error.status, error.attempts) == ("TokenUnavailable", None, 0)
    assert error.route == "DELETE /api/v1/recycled/{library_id}/{space_id}"
    assert "no access token could be obtained: 500 InternalServerError: mint down" in str(error)
    assert token_requests == 1 + 2 + 2  # the mint, then 2 renewals and 2 mints that failed
    assert server.sent("/api/v1/token") == token_requests  # s3: none
    assert server.sent(f"/api/v1/recycled/{LIBRARY}/") == 1
    assert_no_token_in_locals(error, MINTED, frames=1)


async def test_a_run_whose_token_endpoint_dies_reports_what_was_sent() -> None:
    """CLI, 20 spaces, the token lapsing while s1's DELETE takes a second and every later
    mint failing: no row claims an HTTP 500 or an attempt for a DELETE never sent (each
    says TokenUnavailable, 0 attempts) and the token endpoint gets 5 requests, not 4 more
    per space); the run stops as token_unavailable, exit 3 (not 2, kept for credentials)."""
    server = RawServer(MintThenFail(delay=1.1))
    spaces = [f"s{i}" for i in range(1, 21)]
    async with server.running() as url:
        code, out, rows = await run_cli(
            url, *spaces, "--concurrency", "1", credential=("--library-secret", LIBRARY_SECRET)
        )
    by_space = {str(r["space_id"]): r for r in rows}
    assert len(by_space) == 20 and by_space["s1"]["outcome"] == "accepted", out[-3000:]
    others = [by_space[s] for s in spaces[1:]]
    assert {(r["error_code"], r["http_status"], r["attempts"]) for r in others} <= {
        ("TokenUnavailable", None, 0),
        ("NotStarted", None, 0),  # if the run stops at the first, as an auth failure
    }
    assert server.sent("/api/v1/token") == 5 and server.sent("/api/v1/recycled/") == 1
    # A token endpoint that is down is not a credential to fix: exit 3, resumable, not 2.
    assert code == 3 and b"ABORTED: token_unavailable" in out and b"Traceback" not in out


async def test_a_rejected_token_that_cannot_be_replaced_is_reported_as_the_rejection() -> None:
    """The DELETE is answered 403 InvalidAccessToken and the re-mint fails: the space's row
    is that 403 after its one attempt, and the run stops as an auth failure (exit 2: nothing
    was purged; the rest not started); it used to carry the mint's 500 and the mint's
    attempts, and every remaining space cost another round of mint requests."""
    server = RawServer(MintThenFail(delete="rejected"))
    spaces = [f"s{i}" for i in range(1, 6)]
    async with server.running() as url:
        code, out, rows = await run_cli(
            url, *spaces, "--concurrency", "1", credential=("--library-secret", LIBRARY_SECRET)
        )
    first = {str(r["space_id"]): r for r in rows}["s1"]
    assert (first["http_status"], first["error_code"], first["attempts"]) == (
        403,
        "InvalidAccessToken",
        1,
    )
    assert code == 2 and b"ABORTED: auth" in out, out[-3000:]
    assert [r["error_code"] for r in rows[1:]] == ["NotStarted"] * 4
    assert server.sent("/api/v1/token") == 1 + 2 and server.sent("/api/v1/recycled/") == 1
