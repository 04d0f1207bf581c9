"""The ``smh-async`` argument parser (kept apart from :mod:`smh_async.cli`, which runs it)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from smh_async._version import __version__

__all__ = ["ENV_OPTIONS", "SETTING_FLAGS", "build_parser", "env_name", "read_environment"]

# CLI flag → SMHSettings field (None values are left to the environment / .env / defaults).
SETTING_FLAGS = {
    "base_url": "base_url",
    "library_id": "library_id",
    "access_token": "access_token",
    "library_secret": "library_secret",
    "user_id": "user_id",
    "allow_insecure_http": "allow_insecure_http",
    "ca_bundle": "ca_bundle",
    "concurrency": "concurrency",
    "rate": "rate",
    "rate_burst": "rate_burst",
    "max_attempts": "max_attempts",
    "timeout": "timeout",
}


# Options that also read SMH_<OPTION> from the environment or .env when the flag is absent,
# as every connection setting does (SMH_DRY_RUN=1, SMH_REPORT=/var/log/smh/r.jsonl…). What to
# purge never does: SPACE_ID, --spaces-file and --all-spaces are always on the command line,
# so a leftover variable cannot widen a run; --shard has SMH_SHARD_COUNT / SMH_SHARD_INDEX.
ENV_OPTIONS = frozenset(
    {
        "report",
        "resume",
        "summary_json",
        "dry_run",
        "verify",
        "wait_release",
        "processes",
        "max_failure_rate",
        "min_sample",
        "max_spaces",
        "max_duration",
        "grace",
        "event_loop",
        "no_progress",
        "progress_interval",
        "log_format",
        "log_level",
    }
)
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def env_name(dest: str) -> str:
    """The environment variable of an option: ``dry_run`` → ``SMH_DRY_RUN``."""
    return f"SMH_{dest.upper()}"


def read_environment() -> dict[str, str]:
    """``SMH_*`` from ``.env`` in the working directory, overridden by the environment (as
    for the settings). A ``.env`` that cannot be read is left to the settings to report."""
    found: dict[str, str] = {}
    dotenv = Path(".env")
    if dotenv.is_file():
        try:
            from dotenv import dotenv_values

            found = {k: v for k, v in dotenv_values(dotenv).items() if v is not None}
        except (OSError, UnicodeDecodeError):
            found = {}
    found.update(os.environ)
    return {k: v for k, v in found.items() if k.startswith("SMH_")}


def _environment_defaults(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    """Defaults of ``parser``'s :data:`ENV_OPTIONS` from ``environ`` (the flag still wins).

    Raises ``ValueError`` naming the variable when its value does not fit the option.
    """
    defaults: dict[str, Any] = {}
    for action in parser._actions:
        name = env_name(action.dest)
        raw = environ.get(name, "").strip()
        if action.dest in ENV_OPTIONS and raw:
            defaults[action.dest] = _env_value(action, name, raw)
    # Which values came from where, for messages about them (see cli.main).
    parser.set_defaults(**defaults, env_sources={d: env_name(d) for d in defaults})


def _env_value(action: argparse.Action, name: str, raw: str) -> Any:
    if action.nargs == 0:  # a switch (--dry-run)
        if raw.lower() in _TRUE | _FALSE:
            return raw.lower() in _TRUE
        raise ValueError(f"{name} must be true or false (1/0, yes/no, on/off)")
    try:
        value = action.type(raw) if callable(action.type) else raw
    except (TypeError, ValueError):
        kind = getattr(action.type, "__name__", "value")
        raise ValueError(f"{name} must be a valid {kind}") from None
    if action.choices is not None and value not in action.choices:
        raise ValueError(f"{name} must be one of: {', '.join(map(str, action.choices))}")
    return value


def _connection_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("connection (each also read from SMH_* environment / .env)")
    g.add_argument("--base-url", help="SMH API root (default https://api.tencentsmh.cn)")
    g.add_argument("--library-id", help="media library id")
    g.add_argument(
        "--access-token", help="access token (prefer SMH_ACCESS_TOKEN: argv is visible in ps)"
    )
    g.add_argument(
        "--library-secret", help="library secret to mint tokens (prefer SMH_LIBRARY_SECRET)"
    )
    g.add_argument("--user-id", help="user_id sent with each request")
    g.add_argument(
        "--allow-insecure-http",
        action="store_true",
        default=None,
        help="allow plain http to a non-loopback host",
    )
    g.add_argument("--ca-bundle", help="PEM file of certificate authorities to trust")
    g.add_argument("--concurrency", type=int, help="requests in flight at most (default 32)")
    g.add_argument(
        "--rate",
        type=float,
        help="requests per second cap for THIS process (each shard has its own cap)",
    )
    g.add_argument(
        "--rate-burst",
        type=int,
        help="requests that may start back to back after an idle spell (default 1)",
    )
    g.add_argument(
        "--max-attempts", type=int, help="attempts per request incl. retries (default 5)"
    )
    g.add_argument("--timeout", type=float, help="per-attempt timeout in seconds (default 30)")


def _log_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--log-format",
        choices=["auto", "json", "console"],
        default="auto",
        help="log rendering on stderr: console on a TTY, JSON otherwise (auto)",
    )
    p.add_argument(
        "--log-level",
        default=None,
        choices=["debug", "info", "warning", "error"],
        help="log level (info; warning under the live progress line)",
    )


def _run_flags(purge: argparse.ArgumentParser) -> None:
    run = purge.add_argument_group(
        "run (each also read from SMH_<OPTION>, e.g. SMH_DRY_RUN=1, SMH_REPORT=PATH; flags win)"
    )
    run.add_argument("--report", help="write a JSON Lines report, one row per space")
    run.add_argument(
        "--resume", help="skip spaces already accepted in this report (may equal --report)"
    )
    run.add_argument(
        "--summary-json",
        metavar="PATH",
        help="also write the end-of-run summary to PATH as one JSON object (for monitoring)",
    )
    # --no-…: turns off a switch that SMH_DRY_RUN / SMH_VERIFY (environment, .env) turned on.
    switch = argparse.BooleanOptionalAction
    run.add_argument(
        "--dry-run", action=switch, default=False, help="list bin sizes, send no DELETE"
    )
    run.add_argument(
        "--verify", action=switch, default=False, help="after each 204, check the bin is empty"
    )
    run.add_argument(
        "--wait-release",
        type=float,
        metavar="SECONDS",
        help="after the purge, poll usage until the space is released or SECONDS pass",
    )
    run.add_argument(
        "--shard",
        metavar="I/N",
        help="purge only shard I of N (stable hash of the space id); '/N' takes I from "
        "JOB_COMPLETION_INDEX; default from SMH_SHARD_COUNT/SMH_SHARD_INDEX",
    )
    run.add_argument(
        "--processes",
        type=int,
        default=1,
        metavar="N",
        help="split the run over N processes on this machine (shards i/N, one merged report)",
    )
    run.add_argument(
        "--max-failure-rate",
        type=float,
        help="stop launching when this share of spaces failed (0..1), exit 3",
    )
    run.add_argument(
        "--min-sample", type=int, default=20, help="spaces finished before the rate counts (20)"
    )
    run.add_argument(
        "--max-spaces", type=int, help="purge at most N spaces; more in the input → exit 3"
    )
    run.add_argument(
        "--max-duration",
        type=float,
        metavar="SECONDS",
        help="start no new space after SECONDS (in-flight ones get --grace), exit 3; "
        "--resume finishes the rest",
    )
    run.add_argument(
        "--grace",
        type=float,
        default=10.0,
        help="seconds in-flight requests get after SIGINT/SIGTERM (10)",
    )
    run.add_argument(
        "--event-loop",
        choices=["asyncio", "uvloop"],
        default="asyncio",
        help="event loop to run on; uvloop (the 'uvloop' extra) spends ~4%% fewer CPU "
        "instructions per request, within timing noise here (asyncio)",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress display/events")
    run.add_argument(
        "--progress-interval",
        type=float,
        default=5.0,
        help="seconds between purge.progress log events off a terminal (5)",
    )


def build_parser(environ: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """The argument parser (also used by the docs test to check the README reference).

    ``environ``: ``SMH_*`` variables giving defaults to :data:`ENV_OPTIONS` (see
    :func:`read_environment`); a value that does not fit sets ``env_error`` on the parsed
    arguments of the commands that read it, ``env_sources`` names the variables used, and
    ``environ`` is all of them.
    """
    parser = argparse.ArgumentParser(
        prog="smh-async",
        description="Empty the recycle bins of many Tencent Cloud SMH tenant spaces at once.",
    )
    parser.add_argument("--version", action="version", version=f"smh-async {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    purge = sub.add_parser(
        "purge",
        help="empty the recycle bins of the given spaces",
        description="Empty recycle bins. A 204 means SMH *accepted* the "
        "request: it deletes and releases space asynchronously.",
    )
    purge.add_argument("space_ids", nargs="*", metavar="SPACE_ID", help="space ids to purge")
    src = purge.add_argument_group("targets (exactly one source)")
    src.add_argument("--spaces-file", help="file with one space id per line ('-' = stdin)")
    src.add_argument("--all-spaces", action="store_true", help="every tenant space of the library")
    _run_flags(purge)
    _connection_flags(purge)
    _log_flags(purge)

    report = sub.add_parser(
        "report",
        help="summarise or merge purge reports (last row per space wins)",
        description="Summarise one report or merge several (shards, resumed runs). "
        "Exit 1 if any space's final row is failed, or skipped (not started: the run "
        "that wrote it stopped early), or has an unknown outcome; if a line cannot be read; "
        "if spaces have only dry_run rows beside real outcomes; or, with --spaces-file, if "
        "an input space has no row.",
    )
    report.add_argument("paths", nargs="+", metavar="PATH", help="JSON Lines report files")
    report.add_argument(
        "--output", help="write the final row of every space here (release rows beside it)"
    )
    report.add_argument(
        "--spaces-file",
        metavar="IDS",
        help="the run's input ids, read as purge reads them ('-' = stdin): exit 1 if any "
        "has no row",
    )

    spaces = sub.add_parser("spaces", help="list tenant space ids, one per line")
    _connection_flags(spaces)
    _log_flags(spaces)
    for sub_parser in (purge, spaces):
        # A variable that does not fit fails only the command that reads it (not
        # `report`, `--help` or `--version`): cli.main reports ``env_error``.
        try:
            _environment_defaults(sub_parser, environ or {})
        except ValueError as exc:
            sub_parser.set_defaults(env_error=str(exc))

    fake = sub.add_parser("fake-server", help="run the built-in SMH emulator on loopback")
    fake.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    fake.add_argument("--port", type=int, default=0, help="port (0 = any free port)")
    fake.add_argument("--spaces", type=int, default=1000, help="tenant spaces to seed")
    fake.add_argument("--items-per-space", type=int, default=3, help="bin items per space")
    fake.add_argument(
        "--release-delay",
        type=float,
        default=2.0,
        help="seconds until an emptied bin's bytes are released",
    )
    fake.add_argument("--latency", type=float, default=0.0, help="seconds added to each request")

    demo = sub.add_parser("demo", help="seed the emulator and purge it through the real path")
    demo.add_argument("--spaces", type=int, default=2000, help="tenant spaces to seed (2000)")
    demo.add_argument("--concurrency", type=int, default=64, help="requests in flight (64)")
    # The SMH_* variables read once for the run (the shard, the unknown-variable warning).
    parser.set_defaults(environ=dict(environ or {}))
    return parser
