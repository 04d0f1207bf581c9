"""``smh-async fake-server`` as a user runs it: a real child process on loopback."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--port", "70000"], "port"),
        (["--port", "-1"], "port"),
        (["--latency", "inf"], "latency"),
        (["--latency", "-1"], "latency"),
        (["--release-delay", "nan"], "release_delay"),
        (["--spaces", "-3"], "spaces"),
        (["--items-per-space", "-1"], "items_per_space"),
    ],
)
def test_fake_server_bad_values_are_usage_errors(flags: list[str], named: str) -> None:
    """A value the emulator cannot serve with is exit 2 and one line naming it, before it
    listens (not a traceback, nor an emulator that hangs every request or seeds nothing)."""
    done = subprocess.run(
        [sys.executable, "-m", "smh_async", "fake-server", *flags],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("smh-async: error: "), done.stderr
    assert named in lines[0]


def test_fake_server_stops_cleanly_on_sigterm() -> None:
    """SIGTERM (docker stop, a CI service container, systemd) stops it cleanly, exit 0: it
    used to die by the signal, and as a container's PID 1, where a signal without a handler
    does nothing, it ignored it until killed."""
    with subprocess.Popen(
        [sys.executable, "-m", "smh_async", "fake-server", "--spaces", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            assert json.loads(proc.stdout.readline())["base_url"].startswith("http://")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
