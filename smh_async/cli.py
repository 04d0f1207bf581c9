"""The ``smh-async`` command line. The only place that configures logging; owns exit codes.

Exit codes: 0 every targeted space accepted (or dry run fine); 1 at least one space failed;
2 usage, configuration or authentication error before anything was purged; 3 run aborted by
a threshold or guard; 130 interrupted (report flushed, resumable).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import anyio

from smh_async._bulk import PurgeRun
from smh_async._client import SMHClient
from smh_async._errors import SMHConfigError, SMHError
from smh_async._logging import Redactor, configure_cli_logging
from smh_async._models import PurgeSummary
from smh_async._report import ReportWriter, resume_set
from smh_async._settings import SMHSettings
from smh_async._version import __version__

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ABORTED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
MAX_LINE = 4096

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


class UsageError(Exception):
    """Bad command-line usage: exit 2 with this message."""


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
    g.add_argument("--rate", type=float, help="requests per second cap for this process")
    g.add_argument("--rate-burst", type=int, help="requests allowed back to back (default 1)")
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
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="log level (info)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used by the docs test to check the README reference)."""
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
    run = purge.add_argument_group("run")
    run.add_argument("--report", help="write a JSON Lines report, one row per space")
    run.add_argument("--resume", help="skip spaces already accepted in this earlier report")
    run.add_argument("--dry-run", action="store_true", help="list bin sizes, send no DELETE")
    run.add_argument("--verify", action="store_true", help="after each 204, check the bin is empty")
    run.add_argument(
        "--max-failure-rate",
        type=float,
        help="stop launching when this share of spaces failed (0..1)",
    )
    run.add_argument("--max-spaces", type=int, help="never purge more than this many spaces")
    run.add_argument("--no-progress", action="store_true", help="no progress display/events")
    _connection_flags(purge)
    _log_flags(purge)

    spaces = sub.add_parser("spaces", help="list tenant space ids, one per line")
    _connection_flags(spaces)
    _log_flags(spaces)

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "purge":
            return anyio.run(_purge_command, args)
        if args.command == "spaces":
            return anyio.run(_spaces_command, args)
        if args.command == "fake-server":
            return anyio.run(_fake_server_command, args)
        from smh_async._demo import run_demo

        return anyio.run(run_demo, args.spaces, args.concurrency)
    except (UsageError, SMHConfigError) as exc:
        print(f"smh-async: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("smh-async: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def load_settings(args: argparse.Namespace) -> SMHSettings:
    """Settings from flags (which win) over SMH_* environment and .env."""
    overrides = {
        field: getattr(args, flag)
        for flag, field in SETTING_FLAGS.items()
        if getattr(args, flag, None) is not None
    }
    return SMHSettings(**overrides)


def _secrets(settings: SMHSettings) -> list[str]:
    return [s.get_secret_value() for s in (settings.access_token, settings.library_secret) if s]


def _setup(args: argparse.Namespace) -> SMHSettings:
    settings = load_settings(args)
    configure_cli_logging(fmt=args.log_format, level=args.log_level, secrets=_secrets(settings))
    return settings


# ---------------------------------------------------------------- purge


def read_space_file(stream: IO[bytes]) -> Iterator[str]:
    """Space ids from a file: one per line, blank lines and ``#`` comments skipped.

    Undecodable bytes and over-long lines are passed on (escaped / cut) so that they are
    rejected per space with a clear reason instead of aborting the run.
    """
    while True:
        line = stream.readline(MAX_LINE + 1)
        if not line:
            return
        if len(line) > MAX_LINE and not line.endswith(b"\n"):
            while (rest := stream.readline(1 << 16)) and not rest.endswith(b"\n"):
                pass
        text = line.strip().decode("utf-8", "backslashreplace")
        if text and not text.startswith("#"):
            yield text


def _check_sources(args: argparse.Namespace) -> None:
    sources = sum(bool(x) for x in (args.space_ids, args.spaces_file, args.all_spaces))
    if sources != 1:
        raise UsageError(
            "give exactly one target: SPACE_ID arguments, --spaces-file PATH|- or --all-spaces"
        )
    if args.spaces_file and args.spaces_file != "-" and not Path(args.spaces_file).is_file():
        raise UsageError(f"--spaces-file: no such file: {args.spaces_file}")
    if args.max_failure_rate is not None and not 0 < args.max_failure_rate <= 1:
        raise UsageError("--max-failure-rate must be in (0, 1]")


async def _space_ids(args: argparse.Namespace, client: SMHClient) -> AsyncIterator[str]:
    if args.all_spaces:
        async for space in client.iter_spaces():
            yield space.space_id
        return
    if args.space_ids:
        for space_id in args.space_ids:
            yield space_id
        return
    if args.spaces_file == "-":
        source: IO[bytes] = sys.stdin.buffer
        for n, space_id in enumerate(read_space_file(source)):
            yield space_id
            if n % 256 == 255:
                await anyio.lowlevel.checkpoint()
        return
    with Path(args.spaces_file).open("rb") as f:  # noqa: ASYNC230 (a local file, read lazily)
        for n, space_id in enumerate(read_space_file(f)):
            yield space_id
            if n % 256 == 255:
                await anyio.lowlevel.checkpoint()


async def _purge_command(args: argparse.Namespace) -> int:
    _check_sources(args)
    settings = _setup(args)
    client = SMHClient(settings)
    resumed = resume_set([args.resume]) if args.resume else None
    same_file = bool(args.resume and args.report and Path(args.resume) == Path(args.report))
    writer = ReportWriter(args.report, append=same_file) if args.report else None
    async with client:
        if settings.library_secret is not None and settings.access_token is None:
            await _preflight(client)
        run = PurgeRun(
            client,
            skip=resumed.__contains__ if resumed is not None else None,
            dry_run=args.dry_run,
            verify=args.verify,
            max_failure_rate=args.max_failure_rate,
            max_spaces=args.max_spaces,
            on_outcome=writer.write if writer else None,
        )
        if writer:
            writer.open()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_watch_signals, run, tg.cancel_scope)
                summary = await run.run(_space_ids(args, client))
                tg.cancel_scope.cancel()
        finally:
            if writer:
                writer.close()
    _print_summary(summary, args.report, resumed=run.filtered)
    return exit_code(summary)


async def _preflight(client: SMHClient) -> None:
    """Mint the first token before purging, so a wrong secret exits 2 with nothing sent."""
    try:
        await client.token_provider.get()
    except SMHError as exc:
        raise UsageError(f"cannot obtain an access token: {exc}") from None


async def _watch_signals(run: PurgeRun, scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            if run.stopping:
                scope.cancel()  # a second signal: stop waiting for in-flight requests
                return
            run.stop(interrupted=True)


def exit_code(summary: PurgeSummary) -> int:
    """Map a run's summary to the documented exit code."""
    if summary.interrupted:
        return EXIT_INTERRUPTED
    if summary.aborted == "auth" and summary.accepted == 0:
        return EXIT_USAGE
    if summary.aborted:
        return EXIT_ABORTED
    return EXIT_FAILED if summary.failed else EXIT_OK


def _print_summary(summary: PurgeSummary, report: str | None, *, resumed: int = 0) -> None:
    s = summary
    lines = [
        f"spaces: {s.total}  accepted: {s.accepted}  failed: {s.failed}  "
        f"dry_run: {s.dry_run}  skipped: {s.skipped}  duplicates: {s.duplicates}"
        + (f"  already done (resume/shard): {resumed}" if resumed else ""),
        f"elapsed: {s.elapsed_s:.2f} s  rate: {s.rate_per_s:.1f}/s  latency ms "
        f"p50 {s.latency_ms['p50']}  p95 {s.latency_ms['p95']}  max {s.latency_ms['max']}",
    ]
    if s.by_error_code:
        codes = ", ".join(f"{c}={n}" for c, n in sorted(s.by_error_code.items()))
        lines.append(f"failures by code: {codes}")
    if s.aborted:
        lines.append(f"ABORTED: {s.aborted}")
    if s.interrupted:
        lines.append("INTERRUPTED: re-run with --resume REPORT to finish the rest")
    if s.accepted:
        lines.append("accepted = SMH answered 204; it deletes and releases space asynchronously")
    if report:
        lines.append(f"report: {report}")
    print("\n".join(lines), flush=True)


# ---------------------------------------------------------------- other commands


async def _spaces_command(args: argparse.Namespace) -> int:
    settings = _setup(args)
    async with SMHClient(settings) as client:
        try:
            async for space in client.iter_spaces():
                sys.stdout.write(space.space_id + "\n")
        except SMHError as exc:
            print(
                f"smh-async: error: {Redactor(_secrets(settings)).text(str(exc))}", file=sys.stderr
            )
            return EXIT_FAILED
    sys.stdout.flush()
    return EXIT_OK


async def _fake_server_command(args: argparse.Namespace) -> int:
    from smh_async.testing._main import serve_forever

    def ready(server: Any, fake: Any, secret: str) -> None:
        info = {"base_url": server.base_url, "library_id": "demo-lib", "library_secret": secret}
        print(json.dumps(info), flush=True)
        print(
            f"export SMH_BASE_URL={server.base_url} SMH_LIBRARY_ID=demo-lib "
            f"SMH_LIBRARY_SECRET={secret}",
            file=sys.stderr,
            flush=True,
        )

    try:
        await serve_forever(
            host=args.host,
            port=args.port,
            spaces=args.spaces,
            items_per_space=args.items_per_space,
            release_delay=args.release_delay,
            latency=args.latency,
            ready=ready,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
