"""``smh-async fake-server`` as a user runs it: a real child process on loopback."""

from __future__ import annotations

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
