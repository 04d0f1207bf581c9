"""The contenders: how to start each one against a server, by name."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.contenders._common import LIBRARY_ID, TOKEN

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
CLI = str(Path(PYTHON).with_name("smh-async"))


@dataclass(frozen=True)
class Target:
    """Where and how hard to send: server, ids file, concurrency, scratch directory."""

    base_url: str
    spaces_file: Path
    concurrency: int
    out_dir: Path


def script(module: str, t: Target) -> list[str]:
    """A Python contender from ``benchmarks/contenders``."""
    return [
        PYTHON,
        "-m",
        f"benchmarks.contenders.{module}",
        "--base-url",
        t.base_url,
        "--spaces-file",
        str(t.spaces_file),
        "--concurrency",
        str(t.concurrency),
    ]


def cli(t: Target, *extra: str) -> list[str]:
    """The smh-async command line as a whole process (token from the environment)."""
    return [
        CLI,
        "purge",
        "--spaces-file",
        str(t.spaces_file),
        "--report",
        str(t.out_dir / "cli-report.jsonl"),
        "--log-format",
        "json",
        "--no-progress",
        "--base-url",
        t.base_url,
        "--library-id",
        LIBRARY_ID,
        "--concurrency",
        str(t.concurrency),
        *extra,
    ]


def for_ids(
    module: str, base_url: str, concurrency: int, out_dir: Path
) -> Callable[[Path], list[str]]:
    """A contender's command line for any ids file (``module="cli"``: the smh-async CLI)."""

    def command(spaces_file: Path) -> list[str]:
        target = Target(base_url, spaces_file, concurrency, out_dir)
        return cli(target) if module == "cli" else script(module, target)

    return command


CLI_ENV = {"SMH_ACCESS_TOKEN": TOKEN}
# name → module; "cli" is special-cased by the runner.
SCRIPTS = {
    "smh-async library": "lib_purge",
    "bare aiohttp gather": "bare_gather",
    "bare aiohttp workers": "bare_workers",
    "httpx gather": "httpx_gather",
}
