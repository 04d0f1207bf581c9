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
import unicodedata
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import anyio
import pytest

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

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with suppress(ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                method, target = head.split(" ", 2)[:2]
                self.targets.append(target)
                reply = self.answer(method, target)
                if reply is None:
                    break
                if isinstance(reply, bytes):
                    writer.write(reply)
                    await writer.drain()
                else:
                    await reply(writer)
        with suppress(ConnectionError, OSError):
            writer.close()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        """Serve on a free loopback port; yields the base URL."""
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            yield f"http://127.0.0.1:{port}"
            server.close()

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
