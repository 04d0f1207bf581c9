"""The smh-async command line, run as a real process against the emulator over loopback."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from smh_async._console import SafeStream
from smh_async._targets import read_space_file
from smh_async.cli import build_parser
from smh_async.testing import FakeServer, FakeSMH, Fault
from tests.conftest import LIBRARY, SECRET

pytestmark = pytest.mark.anyio


async def smh(
    *args: str, env: dict[str, str] | None = None, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run the CLI in a child process (the emulator keeps serving in this event loop)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SMH_")}
    full_env.update(env or {})
    return await anyio.run_process(
        [sys.executable, "-m", "smh_async", *args], env=full_env, input=stdin, check=False
    )


def base(server: FakeServer, *extra: str) -> list[str]:
    """Connection flags for the emulator with the library secret."""
    return ["--base-url", server.base_url, "--library-id", LIBRARY, *extra]


async def test_purge_from_file_with_static_token(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """--access-token + --spaces-file purges every listed space, exit 0, report one row each."""
    ids = fake.add_spaces(LIBRARY, count=20, items_per_space=2, item_size=10)
    token = fake.issue_token(LIBRARY, grant="admin")
    spaces = tmp_path / "spaces.txt"
    spaces.write_text("\n".join(["# comment", *ids, "", ids[0]]) + "\n")
    report = tmp_path / "report.jsonl"
    proc = await smh(
        "purge",
        *base(server, "--access-token", token),
        "--spaces-file",
        str(spaces),
        "--report",
        str(report),
        "--log-format",
        "json",
    )
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in report.read_text().splitlines()]
    assert sorted(r["space_id"] for r in rows) == sorted(ids)
    assert {r["outcome"] for r in rows} == {"accepted"} and all(
        r["http_status"] == 204 for r in rows
    )
    assert b"accepted: 20" in proc.stdout
    events = [json.loads(line) for line in proc.stderr.splitlines()]
    assert [e["event"] for e in events].count("purge.space") == 20


async def test_all_spaces_with_library_secret_from_env(fake: FakeSMH, server: FakeServer) -> None:
    """--all-spaces discovers every space by listing; the secret comes from SMH_LIBRARY_SECRET."""
    ids = fake.add_spaces(LIBRARY, count=1200, items_per_space=1, item_size=10)
    proc = await smh(
        "purge",
        "--all-spaces",
        "--log-level",
        "warning",
        env={
            "SMH_BASE_URL": server.base_url,
            "SMH_LIBRARY_ID": LIBRARY,
            "SMH_LIBRARY_SECRET": SECRET,
            "SMH_CONCURRENCY": "16",
        },
    )
    assert proc.returncode == 0, proc.stderr
    purged = {r.space_id for r in fake.requests if r.route == "empty_bin" and r.status == 204}
    assert purged == set(ids)


async def test_stdin_spaces_and_partial_failure_exit_1(fake: FakeSMH, server: FakeServer) -> None:
    """Space ids on stdin; one unknown space → exit 1 with the code in the summary."""
    ids = fake.add_spaces(LIBRARY, count=3)
    proc = await smh(
        "purge",
        *base(server, "--library-secret", SECRET),
        "--spaces-file",
        "-",
        stdin=("\n".join([*ids, "nosuch"]) + "\n").encode(),
    )
    assert proc.returncode == 1
    assert b"SpaceNotFound=1" in proc.stdout


async def test_failure_threshold_exits_3(fake: FakeSMH, server: FakeServer) -> None:
    """--max-failure-rate stops a run where everything fails, exit 3."""
    ids = fake.add_spaces(LIBRARY, count=200)
    fake.add_fault(Fault("status", status=500, route="empty_bin"))
    proc = await smh(
        "purge",
        *base(server, "--library-secret", SECRET, "--max-attempts", "1"),
        *ids,
        "--max-failure-rate",
        "0.5",
    )
    assert proc.returncode == 3, proc.stderr
    assert len([r for r in fake.requests if r.route == "empty_bin"]) < 100


async def test_wrong_secret_exits_2_before_any_delete(fake: FakeSMH, server: FakeServer) -> None:
    """A library secret that cannot mint a token: exit 2 and no DELETE reaches the server."""
    ids = fake.add_spaces(LIBRARY, count=3)
    proc = await smh("purge", *base(server, "--library-secret", "wrong-Secret-Zz9"), *ids)
    assert proc.returncode == 2
    assert b"WrongLibraryIdOrSecret" in proc.stderr and b"wrong-Secret-Zz9" not in proc.stderr
    assert not [r for r in fake.requests if r.route == "empty_bin"]


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["purge"], {}, b"exactly one target"),
        (["purge", "s1", "--all-spaces"], {}, b"exactly one target"),
        (["purge", "s1", "--library-id", "l"], {"SMH_CONCURRENCY": "many"}, b"SMH_CONCURRENCY"),
        (
            [
                "purge",
                "s1",
                "--base-url",
                "http://smh.example.com",
                "--library-id",
                "l",
                "--access-token",
                "t",
            ],
            {},
            b"base_url",
        ),
        (["purge", "--spaces-file", "/nonexistent/file"], {}, b"no such file"),
    ],
)
async def test_usage_and_config_errors_exit_2(
    args: list[str], env: dict[str, str], needle: bytes
) -> None:
    """Bad usage or configuration exits 2 with a message naming the problem."""
    proc = await smh(*args, env=env)
    assert proc.returncode == 2 and needle in proc.stderr


async def test_spaces_command_lists_ids(fake: FakeSMH, server: FakeServer) -> None:
    """`smh-async spaces` prints every space id, one per line."""
    ids = fake.add_spaces(LIBRARY, count=1500)
    proc = await smh("spaces", *base(server, "--library-secret", SECRET))
    assert proc.returncode == 0 and sorted(proc.stdout.decode().split()) == sorted(ids)


async def test_purge_against_a_plain_documented_api_server(tmp_path: Path) -> None:
    """The CLI works against any server speaking the documented API, not only the emulator."""
    from aiohttp import web

    seen: list[str] = []

    async def empty(request: web.Request) -> web.Response:
        seen.append(
            f"{request.match_info['lib']}/{request.match_info['space']}:{request.query.get('access_token')}"
        )
        return web.Response(status=204)

    app = web.Application()
    app.router.add_delete("/api/v1/recycled/{lib}/{space}", empty)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        spaces = tmp_path / "f"
        spaces.write_text("alpha\nbeta\n")
        proc = await smh(
            "purge",
            "--base-url",
            f"http://127.0.0.1:{port}",
            "--library-id",
            "L",
            "--access-token",
            "T",
            "--spaces-file",
            str(spaces),
        )
    finally:
        await runner.cleanup()
    assert proc.returncode == 0, proc.stderr
    assert sorted(seen) == ["L/alpha:T", "L/beta:T"]


def purge_parser() -> argparse.ArgumentParser:
    """The ``purge`` sub-parser."""
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices["purge"]  # type: ignore[no-any-return]


def test_help_lists_every_documented_flag() -> None:
    """`purge --help` documents the DESIGN.md flags and shows no secret defaults."""
    text = purge_parser().format_help()
    for flag in (
        "--spaces-file",
        "--all-spaces",
        "--concurrency",
        "--max-attempts",
        "--timeout",
        "--access-token",
        "--library-secret",
        "--base-url",
        "--log-format",
    ):
        assert flag in text


def test_space_file_reader_handles_binary_and_huge_lines(tmp_path: Path) -> None:
    """Binary bytes and over-long lines become (rejectable) ids; nothing aborts the read."""
    path = tmp_path / "f"
    path.write_bytes(b"ok1\n\xff\xfe\x00bin\n" + b"x" * 100_000 + b"\nok2\r\n  \n")
    with path.open("rb") as f:
        got = list(read_space_file(f))
    assert got[0] == "ok1" and got[-1] == "ok2" and len(got) == 4
    assert "\\x" in got[1] and 4096 < len(got[2]) <= 4097  # cut, and too long to be valid


async def test_demo_runs_the_production_path_end_to_end() -> None:
    """`smh-async demo` (small) purges every seeded space, finds the bins empty, sees release."""
    proc = await smh("demo", "--spaces", "150", "--concurrency", "16")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout.decode()
    assert "purge: 150 accepted, 0 failed" in out
    assert "items still in the bins (dry-run listing of all 150): 0" in out
    assert "space released" in out and out.rstrip().endswith("demo OK")


def test_purge_gc_tuning_is_scoped_to_the_run() -> None:
    """The purge command's GC settings (threshold 10,000, start-up frozen) are undone after."""
    import gc

    from smh_async._commands import _tuned_gc

    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    with _tuned_gc():
        assert gc.get_threshold()[0] == 10_000
        assert gc.get_freeze_count() > frozen
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == frozen


async def test_fake_server_runs_and_a_taken_port_is_a_usage_error() -> None:
    """``smh-async fake-server`` prints where it listens; a second one on that port exits 2
    with one line naming the address (it used to end in a traceback)."""
    cmd = [sys.executable, "-m", "smh_async", "fake-server", "--port", "0", "--spaces", "2"]
    async with await anyio.open_process(cmd, stderr=subprocess.DEVNULL) as first:
        assert first.stdout is not None
        line = b""
        while not line.endswith(b"\n"):
            line += await first.stdout.receive(1)
        info = json.loads(line)
        port = info["base_url"].rsplit(":", 1)[1]
        assert info["base_url"].startswith("http://127.0.0.1:") and info["library_id"]
        second = await anyio.run_process([*cmd[:4], "--port", port], check=False)
        first.terminate()
    assert second.returncode == 2
    assert f"smh-async: error: cannot listen on 127.0.0.1:{port}".encode() in second.stderr
    assert b"Traceback" not in second.stderr


def one_error_line(proc: subprocess.CompletedProcess[bytes]) -> str:
    """The single ``smh-async: error:`` line a usage or config error prints (exit 2)."""
    lines = proc.stderr.decode().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("smh-async: error: ")
    return lines[0]


@pytest.mark.parametrize(
    ("command", "flags", "env", "named"),
    [
        ("purge", ["--timeout", "inf"], {}, "timeout (SMH_TIMEOUT)"),
        ("purge", ["--timeout", "nan"], {}, "timeout (SMH_TIMEOUT)"),
        ("purge", [], {"SMH_CONNECT_TIMEOUT": "inf"}, "connect_timeout (SMH_CONNECT_TIMEOUT)"),
        ("spaces", [], {"SMH_TIMEOUT": "inf"}, "timeout (SMH_TIMEOUT)"),
        ("spaces", [], {"SMH_CONNECT_TIMEOUT": "inf"}, "connect_timeout (SMH_CONNECT_TIMEOUT)"),
    ],
)
async def test_infinite_timeout_exits_2_with_nothing_sent(
    fake: FakeSMH,
    server: FakeServer,
    command: str,
    flags: list[str],
    env: dict[str, str],
    named: str,
) -> None:
    """An inf/NaN timeout exits 2 naming the field and variable, no traceback, nothing sent."""
    ids = fake.add_spaces(LIBRARY, count=1)
    args = [*base(server, "--library-secret", SECRET), *flags, *(ids if command == "purge" else [])]
    line = one_error_line(await smh(command, *args, env=env))
    assert f"{named}: Input should be a finite number" in line
    assert not fake.requests


@pytest.mark.parametrize("kind", ["text", "directory"])
async def test_unusable_ca_bundle_exits_2_with_nothing_sent(
    fake: FakeSMH, server: FakeServer, tmp_path: Path, kind: str
) -> None:
    """A non-PEM or directory SMH_CA_BUNDLE exits 2 naming ca_bundle and why; nothing sent."""
    ids = fake.add_spaces(LIBRARY, count=1)
    bundle = tmp_path / "bundle"
    if kind == "text":
        bundle.write_text("myhostname\n")
    else:
        bundle.mkdir()
    proc = await smh(
        "purge",
        *base(server, "--library-secret", SECRET),
        *ids,
        env={"SMH_CA_BUNDLE": str(bundle)},
    )
    line = one_error_line(proc)
    assert "ca_bundle (SMH_CA_BUNDLE): " in line
    assert ("no PEM certificate" if kind == "text" else "is a directory") in line
    assert not fake.requests


async def test_non_utf8_dotenv_exits_2_naming_the_file_not_its_secret(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """A non-UTF-8 .env exits 2 naming the file and line, never its secret; nothing sent."""
    ids = fake.add_spaces(LIBRARY, count=1)
    (tmp_path / ".env").write_bytes(
        f"SMH_LIBRARY_SECRET={SECRET}\nSMH_USER_ID=caf\xe9\n".encode("latin-1")
    )
    proc = await smh("purge", "--base-url", server.base_url, "--library-id", LIBRARY, *ids)
    line = one_error_line(proc)
    assert f"the env file {tmp_path.resolve() / '.env'} is not utf-8 text (line 2)" in line
    assert SECRET.encode() not in proc.stderr + proc.stdout
    assert not fake.requests


def test_safe_stream_on_lost_is_called_once_whether_assigned_before_or_after_the_loss() -> None:
    """on_lost runs exactly once when a real pipe's reader is gone, even if assigned after."""
    calls: list[str] = []
    for assign_first in (True, False):
        read_fd, write_fd = os.pipe()
        with open(write_fd, "w") as pipe:
            stream = SafeStream(pipe)
            if assign_first:
                stream.on_lost = lambda: calls.append("before")
            stream.write("read\n")
            stream.flush()
            assert os.read(read_fd, 100) == b"read\n" and stream.lost is None
            assert calls == ([] if assign_first else ["before"])  # not called while read
            os.close(read_fd)
            for _ in range(3):
                stream.write("lost\n")
                stream.flush()
            assert isinstance(stream.lost, BrokenPipeError)
            if not assign_first:  # `purge` assigns it only once its client is open
                stream.on_lost = lambda: calls.append("after")
            stream.write("later\n")
            stream.flush()
    assert calls == ["before", "after"]


@pytest.mark.parametrize("output", ["--report", "--summary-json"])
async def test_output_hard_linked_to_the_input_is_refused(
    fake: FakeSMH, server: FakeServer, tmp_path: Path, output: str
) -> None:
    """An output hard-linked to --spaces-file exits 2 and leaves the input untouched."""
    ids = fake.add_spaces(LIBRARY, count=2)
    spaces = tmp_path / "ids.txt"
    spaces.write_text("\n".join(ids) + "\n")
    hard = tmp_path / "ids-hard.txt"
    os.link(spaces, hard)
    proc = await smh(
        "purge",
        *base(server, "--library-secret", SECRET),
        "--spaces-file",
        str(spaces),
        output,
        str(hard),
        "--dry-run",
    )
    line = one_error_line(proc)
    assert f"{output} {hard} is also the --spaces-file file" in line
    assert spaces.read_text() == "\n".join(ids) + "\n"
    assert not fake.requests
