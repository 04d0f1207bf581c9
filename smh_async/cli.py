"""The ``smh-async`` command line: parsing, dispatch and exit codes.

With :mod:`smh_async._commands` (the commands that talk to SMH, imported only when one
runs) it is the only place that configures logging.

Exit codes: 0 every targeted space accepted (or dry run fine); 1 at least one space failed;
2 usage, configuration or authentication error before anything was purged; 3 run aborted by
a threshold or guard; 130 interrupted (report flushed, resumable).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TextIO, cast

from smh_async._cli_args import build_parser, read_environment
from smh_async._console import SafeStream, dumb_terminal, print_report_summary, say
from smh_async._errors import SMHConfigError
from smh_async._report import summarize_reports
from smh_async._shard import COUNT_ENV

if TYPE_CHECKING:
    from smh_async._models import PurgeSummary

__all__ = ["build_parser", "exit_code", "main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ABORTED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class UsageError(Exception):
    """Bad command-line usage: exit 2 with this message."""


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point; returns the process exit code."""
    # Started with stdout or stderr closed (`2>&-`): Python leaves None there, which the
    # first print or isatty() would trip on. Such output goes nowhere, as asked.
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w"))  # noqa: SIM115 (lives as long as we do)
        _escape_what_cannot_be_encoded(getattr(sys, name))
    args = build_parser(read_environment()).parse_args(argv)
    if getattr(args, "env_error", None):  # an SMH_<OPTION> that does not fit its option
        say(f"smh-async: error: {args.env_error}")
        return EXIT_USAGE
    if args.command in ("purge", "report", "demo"):
        # Their output survives a reader gone (`| head`, a hang-up) or a full disk: the
        # exit code stays what the run earned (see _stdout_lost).
        sys.stdout = cast("TextIO", SafeStream(sys.stdout))
    code = _run(args, argv)
    return _stdout_lost(args.command, code)


def _run(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    """Run the parsed command; returns its exit code."""
    try:
        if args.command == "purge" and args.processes != 1:
            return _multi_process_purge(args, sys.argv[1:] if argv is None else list(argv))
        if args.command == "report":
            return _report_command(args)
        # The commands that talk to SMH import aiohttp, pydantic and structlog (~0.4 s).
        import anyio

        from smh_async import _commands

        if args.command == "purge":
            return anyio.run(_commands.purge_command, args, backend_options=_loop_options(args))
        if args.command == "spaces":
            return anyio.run(_commands.spaces_command, args)
        if args.command == "fake-server":
            return anyio.run(_commands.fake_server_command, args)
        from smh_async._demo import run_demo

        return anyio.run(run_demo, args.spaces, args.concurrency)
    except (UsageError, SMHConfigError) as exc:
        given = sys.argv[1:] if argv is None else list(argv)
        say(f"smh-async: error: {_name_the_source(str(exc), args, given)}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        say("smh-async: interrupted")
        return EXIT_INTERRUPTED


def _escape_what_cannot_be_encoded(stream: object) -> None:
    """Give ``stream`` (stdout; stderr has it already) the error handler Python gives
    stderr: a character its encoding lacks (an ASCII locale: ``LC_ALL=C PYTHONUTF8=0``; a
    file name that is not UTF-8) is written as an escape, ``caf\\xe9``, not UnicodeEncodeError:
    ``--help`` died on its '→', ``report`` without a summary, and purge's summary was lost."""
    if not isinstance(stream, io.TextIOWrapper) or stream.errors == "backslashreplace":
        return
    try:  # a non-ASCII character, and a byte of a file name that is not UTF-8
        "\u2192\udcff".encode(stream.encoding, stream.errors or "strict")
    except (UnicodeEncodeError, LookupError):
        stream.reconfigure(errors="backslashreplace")


def _stdout_lost(command: str, code: int) -> int:
    """The exit code once stdout may have failed (:class:`SafeStream` dropped the rest).

    A reader that went away (``| head``) is not an error: it read what it wanted. Any other
    failure (a full disk) gets one line on stderr; ``report``'s and ``demo``'s output is
    their product, so they exit 1, as ``spaces`` does; ``purge`` keeps the run's exit code
    (the report and ``--summary-json`` hold its outcome)."""
    lost = getattr(sys.stdout, "lost", None)
    if lost is None or isinstance(lost, BrokenPipeError):
        return code
    reason = lost.strerror if isinstance(lost, OSError) and lost.strerror else lost
    say(f"smh-async: error: cannot write to stdout: {reason}")
    return code if command == "purge" or code != EXIT_OK else EXIT_FAILED


def _name_the_source(message: str, args: argparse.Namespace, argv: Sequence[str]) -> str:
    """``--grace must …`` → ``--grace (from SMH_GRACE) must …`` when the value came from the
    environment or .env: the operator did not type that flag."""
    flag = message.split(" ", 1)[0].split(":", 1)[0]
    sources = getattr(args, "env_sources", None) or {}
    name = sources.get(flag.removeprefix("--").replace("-", "_"))
    typed = any(a == flag or a.startswith(flag + "=") for a in argv)
    if not flag.startswith("--") or name is None or typed:
        return message
    return f"{flag} (from {name}){message[len(flag) :]}"


def _loop_options(args: argparse.Namespace) -> dict[str, bool]:
    """anyio's asyncio backend options for ``--event-loop`` (checked before anything runs)."""
    if args.event_loop != "uvloop":
        return {}
    try:
        import uvloop  # noqa: F401
    except ImportError:
        raise UsageError(
            "--event-loop uvloop needs uvloop: pip install 'smh-async[uvloop]'"
        ) from None
    return {"use_uvloop": True}


def _multi_process_purge(args: argparse.Namespace, argv: list[str]) -> int:
    """``purge --processes N``: N shard processes, one merged report (smh_async._multiproc)."""
    if not 1 < args.processes <= 256:
        raise UsageError("--processes must be between 1 and 256")
    if args.shard or args.environ.get(COUNT_ENV, "").strip():
        raise UsageError(
            "--processes cannot take --shard or SMH_SHARD_COUNT (it makes the shards itself)"
        )
    if args.spaces_file and args.spaces_file != "-" and not Path(args.spaces_file).exists():
        raise UsageError(f"--spaces-file: no such file: {args.spaces_file}")
    if args.spaces_file == "-" or (args.spaces_file and not Path(args.spaces_file).is_file()):
        # Every process reads the whole input to find its shard: a pipe can be read once.
        raise UsageError(
            "--processes needs --spaces-file to be a regular file (not stdin or a pipe)"
        )
    check_files(args)
    _loop_options(args)  # before spawning: each child would fail the same way
    # The parent holds the report from before the leftovers are merged to after its own
    # merge: the children (whose reports are parts) take no lock on it.
    with _holding_report(args.report, "--report", "nothing was sent"):
        return _locked_multi_process_purge(args, argv)


def _locked_multi_process_purge(args: argparse.Namespace, argv: list[str]) -> int:
    """:func:`_multi_process_purge` once the report is held."""
    from smh_async._leftovers import settle_leftovers
    from smh_async._multiproc import FLAG_SECRET_ENV, count_to_purge, drop_option, run_processes

    append = bool(args.resume and args.report and same_file(args.resume, args.report))
    # Before counting for --max-spaces: the rows an earlier run left unmerged count as done.
    merged = settle_leftovers(args.report, append=append)
    if merged:
        print(merged, flush=True)
    if args.max_spaces is not None:
        # Checked once here: a limit per child would let N children purge N times as many.
        if args.all_spaces:
            raise UsageError(
                "--max-spaces with --processes needs the ids up front (--spaces-file or"
                " arguments): with --all-spaces each process reads its own listing"
            )
        pending = count_to_purge(args.space_ids, args.spaces_file, args.resume)
        if pending > args.max_spaces:
            print(
                f"smh-async: error: --max-spaces {args.max_spaces}: the input holds {pending}"
                " spaces to purge; nothing was sent",
                file=sys.stderr,
            )
            return EXIT_ABORTED
        argv = drop_option(argv, "--max-spaces")
    tty = shows_status_line(args)
    if tty:  # the parent draws the one live line; children log warnings unless told otherwise
        argv = [*argv, "--no-progress", *([] if args.log_level else ["--log-level", "warning"])]
    return run_processes(
        argv,
        args.processes,
        args.report,
        append=append,
        summary_json=args.summary_json,
        terminal=cast("TextIO", SafeStream(sys.stderr)) if tty else None,
        secrets={f: getattr(args, f) for f in FLAG_SECRET_ENV if getattr(args, f)},
    )


@contextmanager
def _holding_report(report: str | None, flag: str, consequence: str) -> Iterator[None]:
    """Hold ``report``'s lock (smh_async._lock) for the block; another run holding it is a
    usage error naming ``flag`` and saying ``consequence``."""
    from smh_async._lock import ReportBusy, lock_report

    try:
        lock = lock_report(report) if report else None
    except ReportBusy as exc:
        raise UsageError(f"{flag} {exc}; {consequence}") from None
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


def shows_status_line(args: argparse.Namespace) -> bool:
    """A live progress line on stderr: a terminal that can redraw a line (not
    ``TERM=dumb``), progress on, logs not forced to JSON."""
    return (
        not args.no_progress
        and sys.stderr.isatty()
        and args.log_format != "json"
        and not dumb_terminal()
    )


def check_files(args: argparse.Namespace) -> None:
    """Output paths must be writable (their directory is created now) and an output file may
    not also be an input or another output: ``--report ids.txt --spaces-file ids.txt`` would
    truncate the list before reading it. The one exception is ``--resume`` into its own
    ``--report``, which appends."""
    files = {
        "--spaces-file": args.spaces_file if args.spaces_file != "-" else None,
        "--resume": args.resume,
        "--report": args.report,
        "--summary-json": args.summary_json,
    }
    for output in ("--report", "--summary-json"):
        path = files[output]
        allowed = {output, "--resume"} if output == "--report" else {output}
        for flag, other in files.items():
            if path and other and flag not in allowed and same_file(path, other):
                raise UsageError(
                    f"{output} {path} is also the {flag} file: it would be overwritten"
                )
        ensure_parent(path, output)


def ensure_parent(path: str | None, flag: str) -> None:
    """Create ``path``'s directory and check it can be written now, so an impossible output
    path fails before anything is sent (as a usage error), not after the run. The file
    itself is only created when the run starts."""
    if not path:
        return
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{flag}: cannot create the directory of {path}: {exc}") from None
    if target.is_dir() or not os.access(target if target.exists() else target.parent, os.W_OK):
        raise UsageError(f"{flag}: cannot write {path}")


def same_file(a: str, b: str) -> bool:
    """True when two paths name the same file (``./r.jsonl`` and ``r.jsonl``, a symlink, a
    hard link): same device and inode, or the same resolved path while one does not exist."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # not created yet (or not stat-able): compare where they would be
        return Path(a).resolve() == Path(b).resolve()


def exit_code(summary: PurgeSummary) -> int:
    """Map a run's summary to the documented exit code."""
    if summary.interrupted:
        return EXIT_INTERRUPTED
    if summary.aborted == "auth" and summary.accepted == 0:
        return EXIT_USAGE
    if summary.aborted:
        return EXIT_ABORTED
    return EXIT_FAILED if summary.failed else EXIT_OK


# ---------------------------------------------------------------- report


def _report_command(args: argparse.Namespace) -> int:
    missing = [p for p in args.paths if not Path(p).is_file()]
    if missing:
        raise UsageError(f"no such report: {', '.join(missing)}")
    ensure_parent(args.output, "--output")
    if (
        args.output
        and args.spaces_file not in (None, "-")
        and same_file(args.output, args.spaces_file)
    ):
        raise UsageError(f"--output {args.output} is also the --spaces-file: it would be replaced")
    with ExitStack() as stack:
        # Replacing a report while a run appends to it would lose the rows written after.
        stack.enter_context(_holding_report(args.output, "--output", "nothing was written"))
        writing = _being_written(args.paths, args.output)
        spaces = _input_ids(args.spaces_file, stack) if args.spaces_file else None
        try:
            summary = summarize_reports(
                args.paths, output=args.output, release_output=True, spaces=spaces
            )
        except OSError as exc:
            raise UsageError(f"cannot merge the reports: {exc}") from None
    print_report_summary(summary)
    for path in writing:
        print(
            f"note: {path} is still being written by a running smh-async purge: these are "
            "its rows so far",
            flush=True,
        )
    return EXIT_OK if summary.complete else EXIT_FAILED


def _being_written(paths: Sequence[str], output: str | None) -> list[str]:
    """The reports that a run is still writing (``report`` reads them as they are so far:
    a note, not a failure). The output is held by this command itself."""
    from smh_async._lock import being_written

    return [p for p in paths if not (output and same_file(p, output)) and being_written(p)]


def _input_ids(path: str, stack: ExitStack) -> Iterator[str]:
    """``report --spaces-file``: the ids ``purge --spaces-file PATH`` reads (its own reader:
    the same comments, byte-order mark, cut lines and escapes, so the same ids)."""
    from smh_async._targets import file_encoding_problem, read_space_file

    if path == "-":
        if sys.stdin is None:  # started with `<&-`
            raise UsageError("--spaces-file -: standard input is closed")
        return read_space_file(sys.stdin.buffer)
    source = Path(path)
    if not source.exists():
        raise UsageError(f"--spaces-file: no such file: {path}")
    if source.is_dir():
        raise UsageError(f"--spaces-file: {path} is a directory")
    try:
        # A pipe (bash's <(...)) is read once, as it comes: nothing may be peeked at first.
        if source.is_file() and (problem := file_encoding_problem(path)):
            raise UsageError(f"--spaces-file: {problem}")
        return read_space_file(stack.enter_context(source.open("rb")))
    except OSError as exc:
        raise UsageError(f"--spaces-file: cannot read {path}: {exc.strerror or exc}") from None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
