"""The command line's output on a real terminal (a pseudo-terminal), in pipes that close or
fill, and in locales whose encoding is not UTF-8: what an operator sees, and exit codes."""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import struct
import subprocess
import sys
import termios
from collections.abc import Mapping
from pathlib import Path

import anyio
import pytest

from smh_async._console import PartsProgress
from smh_async._progress import ProgressSnapshot
from smh_async.testing import FakeServer, FakeSMH
from tests.conftest import LIBRARY, SECRET

pytestmark = pytest.mark.anyio

CLEAR = b"\r\x1b[K"
# Python's own way to an ASCII stdout (also what LC_ALL=C with PYTHONUTF8=0 gives).
ASCII = {"PYTHONIOENCODING": "ascii", "PYTHONUTF8": "0"}


def _env(
    server: FakeServer | None = None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The test's environment without SMH_* and terminal variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMH_")}
    for name in ("COLUMNS", "NO_COLOR", "FORCE_COLOR", "TERM"):
        env.pop(name, None)
    if server is not None:
        env |= {
            "SMH_BASE_URL": server.base_url,
            "SMH_LIBRARY_ID": LIBRARY,
            "SMH_LIBRARY_SECRET": SECRET,
        }
    return env | dict(extra or {})


def _read_all(primary: int) -> bytes:
    """Everything written to the terminal, once no writer is left (EIO then)."""
    screen = b""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:
            return screen
        if not chunk:
            return screen
        screen += chunk


async def on_terminal(
    *args: str, env: Mapping[str, str], columns: int = 80, stdout_too: bool = False
) -> tuple[int, bytes, bytes]:
    """Run the CLI with stderr (and stdout if ``stdout_too``) on a terminal ``columns``
    wide. Returns the exit code, what the terminal showed, and stdout if it was a pipe."""
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    screen = b""

    async def drain() -> None:  # while the CLI runs: a full terminal would block it
        nonlocal screen
        screen = await anyio.to_thread.run_sync(_read_all, primary)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(drain)
            try:
                proc = await anyio.run_process(
                    [sys.executable, "-m", "smh_async", *args],
                    env=dict(env),
                    stdout=secondary if stdout_too else subprocess.PIPE,
                    stderr=secondary,
                    check=False,
                )
            finally:
                os.close(secondary)  # the reader ends once no writer is left
    finally:
        os.close(primary)
    return proc.returncode, screen, proc.stdout or b""


def status_lines(screen: bytes) -> list[bytes]:
    """Each drawing of the live line: what follows a clear-line up to the next line end."""
    drawn = [part.split(b"\r")[0] for part in screen.split(CLEAR)[1:]]
    return [line for line in drawn if line.startswith(b"purge ")]


async def test_status_line_fits_the_terminal_when_stdout_is_redirected(
    fake: FakeSMH, server: FakeServer
) -> None:
    """With stdout redirected (`> summary.txt`) the live line is cut to stderr's terminal
    width: it was measured on stdout (no terminal: 100 columns), so on a narrower terminal
    it wrapped and every redraw left a line behind."""
    ids = fake.add_spaces(LIBRARY, count=3)
    bad = ["nosuch-space-1", "nosuch-space-2", "bad%id"]  # failures make the line long
    code, screen, stdout = await on_terminal(
        "purge", *ids, *bad, "--log-level", "error", env=_env(server), columns=40
    )
    assert code == 1, screen
    drawn = status_lines(screen)
    assert drawn and all(len(line) <= 39 for line in drawn), drawn
    assert b"failed: 3" in stdout


async def test_no_color_turns_off_colours_on_a_terminal(fake: FakeSMH, server: FakeServer) -> None:
    """NO_COLOR (no-color.org) and TERM=dumb: console logs on a terminal carry no ANSI
    colours; without them they do."""
    seen = {}
    cases = {"default": {}, "NO_COLOR": {"NO_COLOR": "1"}, "dumb": {"TERM": "dumb"}}
    for name, extra in cases.items():
        code, screen, _ = await on_terminal(
            "purge", "nosuch-space", "--no-progress", env=_env(server, extra), stdout_too=True
        )
        assert code == 1 and b"purge.space" in screen, screen
        seen[name] = b"\x1b[" in screen
    assert seen == {"default": True, "NO_COLOR": False, "dumb": False}


async def test_dumb_terminal_gets_progress_events_not_a_redrawn_line(
    fake: FakeSMH, server: FakeServer
) -> None:
    """TERM=dumb cannot erase a line: progress comes as purge.progress log lines instead of
    a live line drawn with escape sequences."""
    ids = fake.add_spaces(LIBRARY, count=3)
    code, screen, _ = await on_terminal("purge", *ids, env=_env(server, {"TERM": "dumb"}))
    assert code == 0, screen
    assert CLEAR not in screen and b"\x1b" not in screen
    assert b"purge.progress" in screen and b"progress='3 of 3'" in screen


@pytest.mark.parametrize("command", ["purge", "report", "spaces", "fake-server", "demo"])
async def test_help_prints_in_an_ascii_locale(command: str) -> None:
    """Every --help works with an ASCII stdout (LC_ALL=C PYTHONUTF8=0): purge's help has a
    '→' and died with a UnicodeEncodeError traceback, exit 1."""
    proc = await anyio.run_process(
        [sys.executable, "-m", "smh_async", command, "--help"], env=_env(extra=ASCII), check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(b"usage: smh-async " + command.encode())
    assert proc.stderr == b""


async def test_report_names_a_non_ascii_missing_id_in_an_ascii_locale(tmp_path: Path) -> None:
    """`report --spaces-file` with a missing id that is not ASCII, on an ASCII stdout: the
    summary is printed with the id escaped, exit 1 (it died with a traceback, no summary)."""
    report = tmp_path / "r.jsonl"
    report.write_text(json.dumps({"space_id": "s1", "outcome": "accepted"}) + "\n")
    ids = tmp_path / "ids.txt"
    ids.write_text("s1\ncafé\n", encoding="utf-8")
    proc = await anyio.run_process(
        [sys.executable, "-m", "smh_async", "report", str(report), "--spaces-file", str(ids)],
        env=_env(extra=ASCII),
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert b"Traceback" not in proc.stderr
    assert b"MISSING: 1 spaces of the input (2) have no row (first: caf\\xe9)" in proc.stdout


async def test_purge_summary_survives_an_ascii_locale(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """A report path that is not ASCII, on an ASCII stdout: the summary is printed (it was
    silently dropped whole, as if stdout had gone away)."""
    ids = fake.add_spaces(LIBRARY, count=2)
    report = tmp_path / "résumé.jsonl"
    proc = await anyio.run_process(
        [sys.executable, "-m", "smh_async", "purge", *ids, "--report", str(report)],
        env=_env(server, ASCII),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert b"accepted: 2" in proc.stdout
    assert b"report: " in proc.stdout and b"r\\xe9sum\\xe9.jsonl" in proc.stdout
    assert len(report.read_text(encoding="utf-8").splitlines()) == 2


def _report_with(tmp_path: Path, outcome: str) -> Path:
    report = tmp_path / f"{outcome}.jsonl"
    report.write_text(json.dumps({"space_id": "s1", "outcome": outcome}) + "\n")
    return report


@pytest.mark.parametrize("outcome", ["accepted", "failed"])
async def test_report_to_a_reader_that_went_away(tmp_path: Path, outcome: str) -> None:
    """`report R | head -1` where head has gone: no traceback, and the exit code still says
    whether the reports show a finished purge (a BrokenPipeError traceback, exit 1, before)."""
    report = _report_with(tmp_path, outcome)
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = await anyio.run_process(
            [sys.executable, "-m", "smh_async", "report", str(report)],
            env=_env(),
            stdout=write_end,
            check=False,
        )
    finally:
        os.close(write_end)
    assert proc.stderr == b""
    assert proc.returncode == (0 if outcome == "accepted" else 1)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
@pytest.mark.parametrize("command", ["report", "demo"])
async def test_stdout_on_a_full_disk_is_one_error_line(tmp_path: Path, command: str) -> None:
    """`report R > /dev/full` and `demo > /dev/full`: one error line saying stdout could
    not be written, exit 1, no traceback (as `spaces` does)."""
    args = [str(_report_with(tmp_path, "accepted"))] if command == "report" else ["--spaces", "5"]
    with open("/dev/full", "wb") as full:
        proc = await anyio.run_process(
            [sys.executable, "-m", "smh_async", command, *args],
            env=_env(),
            stdout=full,
            check=False,
        )
    assert proc.returncode == 1
    lines = proc.stderr.decode().splitlines()
    assert lines == ["smh-async: error: cannot write to stdout: No space left on device"]


async def test_purge_summary_on_a_full_disk_says_so_and_keeps_the_exit_code(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """`purge > /dev/full`: the summary cannot be written; one error line says so (it was
    dropped without a word) and the exit code is still the run's."""
    if not Path("/dev/full").exists():
        pytest.skip("needs /dev/full (Linux)")
    ids = fake.add_spaces(LIBRARY, count=2)
    report = tmp_path / "r.jsonl"
    with open("/dev/full", "wb") as full:
        proc = await anyio.run_process(
            [sys.executable, "-m", "smh_async", "purge", *ids, "--report", str(report)],
            env=_env(server, {"SMH_LOG_LEVEL": "warning"}),
            stdout=full,
            check=False,
        )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.decode().splitlines() == [
        "smh-async: error: cannot write to stdout: No space left on device"
    ]
    assert len(report.read_text().splitlines()) == 2


async def test_processes_children_log_lines_do_not_run_into_the_live_line(
    fake: FakeSMH, server: FakeServer, tmp_path: Path
) -> None:
    """--processes on a terminal: a child's warning clears the parent's live line before it
    is written (it was glued to the end of "purge N done … (2 processes)")."""
    ids = fake.add_spaces(LIBRARY, count=40)
    spaces = tmp_path / "ids.txt"
    spaces.write_text("\n".join([*ids, "nosuch-space-1", "nosuch-space-2"]) + "\n")
    code, screen, stdout = await on_terminal(
        "purge", "--spaces-file", str(spaces), "--processes", "2", env=_env(server)
    )
    assert code == 1, screen
    logged = [line for line in screen.split(b"\n") if b"purge.space" in line]
    assert len(logged) == 2, screen
    for line in logged:  # what is left on screen: the text after the last clear-line
        assert b"(2 processes)" not in line.rsplit(CLEAR, 1)[-1], line
    assert b"failed: 2" in stdout


@pytest.mark.parametrize("extra", [["--log-format", "json"], ["--no-progress"], ["TERM=dumb"]])
async def test_processes_children_clear_no_line_the_parent_does_not_draw(
    fake: FakeSMH, server: FakeServer, tmp_path: Path, extra: list[str]
) -> None:
    """--processes on a terminal with no live line (JSON logs, --no-progress, TERM=dumb):
    the children's log lines come as they are, without the clear-line sequence that only
    makes sense under a line the parent draws (a dumb terminal shows it as ^[[K)."""
    ids = fake.add_spaces(LIBRARY, count=20)
    spaces = tmp_path / "ids.txt"
    spaces.write_text("\n".join([*ids, "nosuch-space-1"]) + "\n")
    env = _env(server, {"TERM": "dumb"} if extra == ["TERM=dumb"] else {})
    flags = [] if extra == ["TERM=dumb"] else extra
    code, screen, _ = await on_terminal(
        "purge", "--spaces-file", str(spaces), "--processes", "2", *flags, env=env
    )
    assert code == 1, screen
    assert b"purge.space" in screen
    assert CLEAR not in screen, screen
    if extra == ["TERM=dumb"]:  # no colours either
        assert b"\x1b[" not in screen, screen


def test_live_line_of_a_stopped_run_says_how_many_never_started() -> None:
    """After a stop, the live line's last drawing names the spaces never started: "400/400
    (100.0%)" alone read as a finished purge on the operator's screen."""
    stopped = ProgressSnapshot(400, 400, True, 30, 2, 0, in_flight=0, elapsed_s=1.0, skipped=368)
    line = stopped.line()
    assert line.startswith("400/400 (100.0%)")
    assert "not started 368" in line and "failed 2" in line
    running = ProgressSnapshot(40, 400, True, 40, 0, 0, in_flight=2, elapsed_s=1.0)
    assert "not started" not in running.line()


def test_processes_live_line_of_a_stopped_run_says_how_many_never_started(
    tmp_path: Path,
) -> None:
    """The --processes parent's live line counts the children's NotStarted rows apart, not
    as done: "400 done" read as a finished purge when most spaces were never started."""
    part = tmp_path / "r.jsonl.part0of1"
    rows = [{"space_id": f"s{i}", "outcome": "accepted"} for i in range(3)]
    rows += [
        {"space_id": f"n{i}", "outcome": "skipped", "error_code": "NotStarted"} for i in range(5)
    ]
    part.write_text("".join(json.dumps(r) + "\n" for r in rows))
    screen = io.StringIO()
    progress = PartsProgress([part], screen)
    progress.update()
    last = screen.getvalue().rsplit(CLEAR.decode(), 1)[-1]
    assert last.startswith("purge 3 done") and "not started 5" in last, last
