"""Hostile inputs: path-changing space ids, binary and huge spaces files, bad configuration.

Nothing hostile may change the request path, be sent twice, or vanish from the report; bad
configuration exits 2 naming the field with nothing sent.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import re
import socketserver
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from smh_async import InvalidSpaceIdError, SMHClient, SMHConfigError, SMHSettings
from smh_async import _protocol as proto
from smh_async._targets import read_space_file
from smh_async.testing import FakeServer, FakeSMH
from tests.conftest import LIBRARY

UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
SAFE_PATH = re.compile(rf"/api/v1/recycled/{LIBRARY}/[A-Za-z0-9._~-]{{1,256}}")
HOSTILE_IDS = [
    "a/b",
    "..",
    ".",
    "../escape",
    "ok/..",
    "%2F",
    "a%2Fb",
    "%2e%2e",
    "x?access_token=stolen",
    "x#fragment",
    "a b",
    "a\tb",
    "esc\x1b[31mred",
    "nul\x00byte",
    "del\x7f",
    "空间",
    "café",
    "\u202eevil",
    "a;b",
    "a\\b",
    "z" * 257,
]
EXAMPLES = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
# Any code point, surrogates included (they cannot even be encoded as UTF-8).
ANY_TEXT = st.text(st.characters(codec=None, categories=None), max_size=300)


async def run_cli(
    *args: str, env: dict[str, str] | None = None
) -> tuple[int, bytes, list[dict[str, object]]]:
    """Run ``smh-async purge`` with a report; return exit code, stderr and report rows."""
    report = Path("report.jsonl")
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SMH_")}
    full_env.update(env or {})
    logs = ["--log-format", "json", "--log-level", "warning"]
    proc = await anyio.run_process(
        [sys.executable, "-m", "smh_async", "purge", *args, "--report", str(report), *logs],
        env=full_env,
        check=False,
    )
    rows = [json.loads(x) for x in report.read_text().split("\n") if x] if report.exists() else []
    return proc.returncode, proc.stderr, rows


def cli_base(server: FakeServer, token: str) -> list[str]:
    """Connection flags for the emulator with a static token."""
    return ["--base-url", server.base_url, "--library-id", LIBRARY, "--access-token", token]


def assert_only_safe_paths(fake: FakeSMH) -> None:
    """Every empty-bin request that reached the emulator had a one-segment, safe path."""
    for r in fake.requests:
        if r.route == "empty_bin" or r.method == "DELETE":
            assert SAFE_PATH.fullmatch(r.path), r.path


# ---------------------------------------------------------------- command line


@pytest.mark.anyio
async def test_hostile_ids_in_a_spaces_file(fake: FakeSMH, server: FakeServer) -> None:
    """Path-changing ids fail as InvalidSpaceId without a request; valid ids (duplicated,
    padded, CRLF) are purged once and reported once; empty lines are ignored."""
    valid = fake.add_spaces(LIBRARY, count=3, items_per_space=1, item_size=10)
    lines = [valid[0], "", "   ", f"  {valid[1]}  ", *HOSTILE_IDS, valid[0], "a b", valid[2]]
    Path("spaces.txt").write_bytes("\r\n".join(lines).encode("utf-8", "surrogatepass") + b"\n")
    code, stderr, rows = await run_cli(
        *cli_base(server, fake.issue_token(LIBRARY)), "--spaces-file", "spaces.txt"
    )
    assert code == 1, stderr
    by_id = Counter(str(r["space_id"]) for r in rows)
    assert set(by_id.values()) == {1} and len(rows) == 3 + len(HOSTILE_IDS)
    outcomes = {str(r["space_id"]): (r["outcome"], r["error_code"]) for r in rows}
    assert all(outcomes[s] == ("accepted", None) for s in valid)
    assert [outcomes[h] for h in HOSTILE_IDS] == [("failed", "InvalidSpaceId")] * len(HOSTILE_IDS)
    sent = Counter(r.space_id for r in fake.requests if r.method == "DELETE")
    assert sent == Counter(valid)
    assert_only_safe_paths(fake)


@pytest.mark.anyio
async def test_hostile_ids_as_arguments(fake: FakeSMH, server: FakeServer) -> None:
    """The same holds for ids given on the command line (argv cannot carry NUL)."""
    valid = fake.add_space(LIBRARY)
    hostile = [h for h in HOSTILE_IDS if "\x00" not in h]
    code, _, rows = await run_cli(*cli_base(server, fake.issue_token(LIBRARY)), valid, *hostile)
    assert code == 1 and len(rows) == 1 + len(hostile)
    assert [r.space_id for r in fake.requests if r.method == "DELETE"] == [valid]


@pytest.mark.anyio
async def test_binary_spaces_file(fake: FakeSMH, server: FakeServer) -> None:
    """200 kB of random bytes: one report row per distinct line, no unsafe path sent."""
    data = random.Random(4).randbytes(200_000)
    Path("spaces.bin").write_bytes(data)
    with Path("spaces.bin").open("rb") as f:
        expected = set(read_space_file(f))
    code, stderr, rows = await run_cli(
        *cli_base(server, fake.issue_token(LIBRARY)), "--spaces-file", "spaces.bin"
    )
    assert code == 1, stderr
    assert Counter(str(r["space_id"]) for r in rows) == Counter(expected)
    assert {r["error_code"] for r in rows} <= {"InvalidSpaceId", "SpaceNotFound"}
    assert_only_safe_paths(fake)


@pytest.mark.anyio
async def test_a_utf8_bom_and_crlf_from_a_windows_editor_are_harmless(
    fake: FakeSMH, server: FakeServer
) -> None:
    """Notepad's UTF-8 with BOM and CRLF: every id purged (the first one used to carry the
    BOM and fail as InvalidSpaceId), exit 0."""
    valid = fake.add_spaces(LIBRARY, count=3, items_per_space=1, item_size=10)
    Path("spaces.txt").write_bytes(b"\xef\xbb\xbf" + "\r\n".join(valid).encode() + b"\r\n")
    code, stderr, rows = await run_cli(
        *cli_base(server, fake.issue_token(LIBRARY)), "--spaces-file", "spaces.txt"
    )
    assert code == 0, stderr
    assert sorted(str(r["space_id"]) for r in rows) == sorted(valid)


@pytest.mark.anyio
@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32", "utf-16-le", "utf-32-le"])
async def test_a_utf16_spaces_file_is_refused_before_anything_is_sent(
    fake: FakeSMH, server: FakeServer, encoding: str
) -> None:
    """PowerShell's ``>`` writes UTF-16: exit 2 saying so and how to fix it (every id would
    otherwise fail as garbage), no request sent, no report row; without a byte-order mark
    too (its NUL bytes give it away: the ids used to fail one by one as invalid)."""
    valid = fake.add_spaces(LIBRARY, count=2, items_per_space=1, item_size=10)
    bom = {"utf-16-be": "\ufeff"}.get(encoding, "")  # utf-16, utf-32: the codec adds one
    Path("spaces.txt").write_bytes((bom + "\r\n".join(valid) + "\r\n").encode(encoding))
    code, stderr, rows = await run_cli(
        *cli_base(server, fake.issue_token(LIBRARY)), "--spaces-file", "spaces.txt"
    )
    assert code == 2, stderr
    said = b"is UTF-16 or UTF-32" if encoding in ("utf-16", "utf-16-be", "utf-32") else b"NUL"
    assert b"--spaces-file: the spaces file" in stderr and said in stderr
    assert rows == [] and fake.requests == []


def test_read_space_file_drops_a_utf8_bom_and_refuses_a_utf16_one() -> None:
    """The line reader itself (also used for stdin): UTF-8 BOM dropped, UTF-16 BOM refused."""
    assert list(read_space_file(io.BytesIO(b"\xef\xbb\xbfs1\r\ns2\n"))) == ["s1", "s2"]
    with pytest.raises(SMHConfigError, match="UTF-16"):
        list(read_space_file(io.BytesIO("s1\ns2\n".encode("utf-16"))))


@pytest.mark.anyio
async def test_huge_lines_in_spaces_file(fake: FakeSMH, server: FakeServer) -> None:
    """Multi-megabyte lines are cut and rejected; the ids around them are purged."""
    valid = fake.add_spaces(LIBRARY, count=2, items_per_space=1, item_size=10)
    Path("spaces.txt").write_bytes(
        valid[0].encode() + b"\n" + b"a" * 5_000_000 + b"\n" + valid[1].encode() + b"\n"
        + b"/" * 3_000_000
    )  # fmt: skip
    code, _, rows = await run_cli(
        *cli_base(server, fake.issue_token(LIBRARY)), "--spaces-file", "spaces.txt"
    )
    assert code == 1 and len(rows) == 4
    accepted = sorted(str(r["space_id"]) for r in rows if r["outcome"] == "accepted")
    assert accepted == sorted(valid)
    assert all(len(str(r["space_id"])) <= 4097 for r in rows)
    assert sorted(r.space_id or "" for r in fake.requests) == sorted(valid)


BAD_CONFIG = [
    ({"SMH_CONCURRENCY": "0"}, [], "SMH_CONCURRENCY"),
    ({"SMH_CONCURRENCY": "lots"}, [], "SMH_CONCURRENCY"),
    ({}, ["--concurrency", "-3"], "SMH_CONCURRENCY"),
    ({"SMH_TIMEOUT": "-1"}, [], "SMH_TIMEOUT"),
    ({"SMH_TIMEOUT": "nan"}, [], "SMH_TIMEOUT"),
    ({"SMH_MAX_ATTEMPTS": "0"}, [], "SMH_MAX_ATTEMPTS"),
    ({"SMH_RATE": "0"}, [], "SMH_RATE"),
    ({"SMH_BACKOFF_MAX": "-1"}, [], "SMH_BACKOFF_MAX"),
    ({"SMH_TOKEN_PERIOD": "10"}, [], "SMH_TOKEN_PERIOD"),
    ({"SMH_VERIFY_TLS": "maybe"}, [], "SMH_VERIFY_TLS"),
    ({"SMH_CA_BUNDLE": "/nonexistent/ca.pem"}, [], "ca_bundle"),
    ({"SMH_LIBRARY_ID": "a/b"}, ["--library-id", "a/b"], "SMH_LIBRARY_ID"),
    ({}, ["--library-id", ".."], "SMH_LIBRARY_ID"),
    ({}, ["--base-url", "ftp://127.0.0.1:1"], "SMH_BASE_URL"),
    ({}, ["--base-url", "http://smh.example.com"], "base_url"),
    ({}, ["--base-url", "http://127.0.0.1:1/?access_token=Leak-Me-77"], "SMH_BASE_URL"),
    ({}, ["--base-url", "http://u:Leak-Me-77@127.0.0.1:1"], "SMH_BASE_URL"),
    ({}, ["--access-token", ""], "access_token"),
    ({}, ["--access-token", "  "], "access_token"),
]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("env", "flags", "named"), BAD_CONFIG, ids=[f"{e}{f}" for e, f, _ in BAD_CONFIG]
)
async def test_bad_configuration_exits_2_with_nothing_sent(
    fake: FakeSMH, server: FakeServer, env: dict[str, str], flags: list[str], named: str
) -> None:
    """A bad setting (env or flag) exits 2 naming the field, echoes no value, sends nothing."""
    sid = fake.add_space(LIBRARY)
    token = fake.issue_token(LIBRARY)
    code, stderr, rows = await run_cli(*cli_base(server, token), *flags, sid, env=env)
    assert code == 2, stderr
    assert named.encode() in stderr and b"Leak-Me-77" not in stderr and token.encode() not in stderr
    assert fake.requests == [] and rows == []


@pytest.mark.anyio
async def test_empty_library_secret_is_a_config_error(fake: FakeSMH, server: FakeServer) -> None:
    """``SMH_LIBRARY_SECRET=`` (an unset Kubernetes secret) exits 2 before any request."""
    sid = fake.add_space(LIBRARY)
    args = ["--base-url", server.base_url, "--library-id", LIBRARY, sid]
    code, stderr, _ = await run_cli(*args, env={"SMH_LIBRARY_SECRET": ""})
    assert code == 2 and b"library_secret" in stderr and fake.requests == []


# ---------------------------------------------------------------- properties


def _expect_exact_path(library_id: str, space_id: str) -> None:
    request = proto.empty_recycle_bin(library_id, space_id)
    path = f"/api/v1/recycled/{library_id}/{space_id}"
    assert request.path == path and request.space_id == space_id
    # The id needs no escaping and yarl/aiohttp keep the path byte for byte.
    assert quote(space_id, safe="") == space_id
    url = URL("https://smh.example" + path, encoded=True).with_query([("access_token", "t")])
    assert url.raw_path == path and url.raw_parts[-1] == space_id and len(url.raw_parts) == 6
    assert URL(str(url)).raw_path == path


@EXAMPLES
@given(space_id=ANY_TEXT)
def test_any_space_id_is_one_exact_segment_or_rejected(space_id: str) -> None:
    """For any text the request path is exactly /api/v1/recycled/{lib}/{id}, or it is rejected."""
    try:
        _expect_exact_path(LIBRARY, space_id)
    except InvalidSpaceIdError as exc:
        rejected: InvalidSpaceIdError | None = exc
    else:
        rejected = None
    if rejected is not None:
        assert rejected.code == "InvalidSpaceId" and "\x00" not in str(rejected)


@EXAMPLES
@given(space_id=st.text(UNRESERVED, min_size=1, max_size=256).filter(lambda s: s not in ".."))
def test_every_unreserved_id_is_accepted(space_id: str) -> None:
    """The whitelist is not over-strict: every unreserved-character id (not . or ..) passes."""
    _expect_exact_path(LIBRARY, space_id)


@EXAMPLES
@given(library_id=ANY_TEXT)
def test_any_library_id_is_one_exact_segment_or_rejected(library_id: str) -> None:
    """Library ids obey the same rule as space ids."""
    with contextlib.suppress(InvalidSpaceIdError):
        _expect_exact_path(library_id, "space1")


class _RequestLineServer(socketserver.ThreadingTCPServer):
    """A raw HTTP server that records each request-target byte for byte and answers 204."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _RequestLineHandler)
        self.targets: list[bytes] = []


class _RequestLineHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        while True:
            line = self.rfile.readline(65536)
            if not line:
                return
            while self.rfile.readline(65536) not in (b"\r\n", b"\n", b""):
                pass
            self.server.targets.append(line.split(b" ")[1])  # type: ignore[attr-defined]
            self.wfile.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
            self.wfile.flush()


@pytest.fixture(scope="module")
def wire() -> Iterator[_RequestLineServer]:
    """The raw recording server, on a loopback port, for the whole module."""
    server = _RequestLineServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@EXAMPLES
@given(space_id=st.one_of(ANY_TEXT, st.text(UNRESERVED, min_size=1, max_size=64)))
def test_path_on_the_wire_is_exact(wire: _RequestLineServer, space_id: str) -> None:
    """End to end: the request-target a real server receives is exactly the expected path
    (plus the query), or the id is rejected and nothing is sent."""
    port = wire.server_address[1]
    settings_ = SMHSettings(
        base_url=f"http://127.0.0.1:{port}", library_id="lib", access_token="t0k", max_attempts=1
    )
    wire.targets.clear()

    async def purge() -> None:
        async with SMHClient(settings_) as smh:
            await smh.empty_recycle_bin(space_id)

    try:
        anyio.run(purge)
    except InvalidSpaceIdError:
        assert wire.targets == []
        return
    (target,) = wire.targets
    path, _, query = target.partition(b"?")
    assert path == f"/api/v1/recycled/lib/{space_id}".encode() and query == b"access_token=t0k"
