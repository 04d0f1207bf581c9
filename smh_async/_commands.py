"""The commands that talk to SMH (``purge``, ``spaces``, ``fake-server``, ``demo``).

Kept apart from :mod:`smh_async.cli` so that its light paths (``--help``, ``report``, the
``--processes`` parent) start without importing aiohttp, pydantic or structlog.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import difflib
import errno
import gc
import json
import os
import signal
import sys
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, TextIO, cast

import anyio
import structlog

from smh_async._auth import TOKEN_UNAVAILABLE, LibrarySecretToken
from smh_async._bulk import FATAL_AUTH_CODES, PurgeRun
from smh_async._cli_args import ENV_OPTIONS, SETTING_FLAGS, env_name
from smh_async._client import SMHClient
from smh_async._console import ALREADY_DONE, ProgressLog, SafeStream, StatusLine, print_summary, say
from smh_async._dedupe import FingerprintSet
from smh_async._errors import SMHAuthError, SMHConfigError, SMHError
from smh_async._leftovers import holding_part, settle_leftovers
from smh_async._lock import ReportBusy, ReportLock, lock_report
from smh_async._logging import Redactor, configure_cli_logging
from smh_async._multiproc import FLAG_SECRET_ENV, LIVE_LINE_ENV, PARENT_PID_ENV
from smh_async._progress import ProgressSnapshot
from smh_async._proxy import proxy_for
from smh_async._report import (
    ReportWriter,
    forget_release_rows,
    release_destination,
    resume_set,
    write_summary_json,
)
from smh_async._settings import SMHSettings
from smh_async._shard import COUNT_ENV, SHARD_INDEX_ENV, Shard
from smh_async._targets import TargetFilter, Targets, count_targets, file_encoding_problem
from smh_async.cli import (
    EXIT_ABORTED,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    check_files,
    exit_code,
    same_file,
    shows_status_line,
)

__all__ = ["fake_server_command", "load_settings", "purge_command", "spaces_command"]

TTY_REFRESH_S = 0.25
PARENT_CHECK_S = 1.0  # how often a --processes child checks that its parent is alive


def load_settings(args: argparse.Namespace) -> SMHSettings:
    """Settings from flags (which win) over SMH_* environment and .env."""
    overrides = {
        field: getattr(args, flag)
        for flag, field in SETTING_FLAGS.items()
        if getattr(args, flag, None) is not None
    }
    if _parent_pid() is not None:  # a --processes child: the parent's credential flags
        for field, name in FLAG_SECRET_ENV.items():
            if field not in overrides and name in os.environ:
                overrides[field] = os.environ[name]
    # --library-secret wins over an SMH_ACCESS_TOKEN from the environment or .env (which
    # would otherwise be used first, and may be stale).
    if "library_secret" in overrides and "access_token" not in overrides:
        overrides["access_token"] = None
    return SMHSettings(**overrides)


def _secrets(settings: SMHSettings) -> list[str]:
    """Every credential value the log must never show: token, library secret, and the
    proxy's (a proxy error page echoing the request head shows its header); the redactor
    masks their percent-encoded forms too."""
    values = [s.get_secret_value() for s in (settings.access_token, settings.library_secret) if s]
    if settings.proxy_from_env:
        values += proxy_for(settings.base_url).secrets
    return values


def _setup(
    args: argparse.Namespace, err: SafeStream, status: StatusLine | None = None
) -> tuple[SMHSettings, Redactor]:
    settings = load_settings(args)
    level = args.log_level or ("warning" if status is not None else "info")
    # StatusLine is file-like (write/flush/isatty), which is all structlog's WriteLogger uses.
    stream = cast("TextIO", status if status is not None else err)
    if status is None and os.environ.get(LIVE_LINE_ENV) and err.isatty():
        # A --processes child on the parent's terminal, where the parent draws its live
        # line: each log line clears that line first (a StatusLine that never shows one)
        # instead of starting at its end; the parent redraws it below.
        stream = cast("TextIO", StatusLine(cast("TextIO", err)))
    redactor = configure_cli_logging(
        fmt=args.log_format, level=level, secrets=_secrets(settings), stream=stream
    )
    if _parent_pid() is None or str(getattr(args, "shard", None)).startswith("0/"):
        _warn_unknown_variables(args.environ)  # under --processes, child 0 speaks for all
    return settings, redactor


def _warn_unknown_variables(environ: Mapping[str, str]) -> None:
    """Name each ``SMH_*`` variable (environment or .env) that nothing reads, never its
    value: a misspelt ``SMH_DRYRUN=1`` would otherwise run a real purge without a word."""
    known = {env_name(field) for field in SMHSettings.model_fields}
    known |= {env_name(option) for option in ENV_OPTIONS}
    known |= {COUNT_ENV, SHARD_INDEX_ENV, PARENT_PID_ENV, LIVE_LINE_ENV}
    known |= set(FLAG_SECRET_ENV.values())
    log = structlog.get_logger("smh_async.cli")
    for name in sorted(environ):
        if name.upper() not in known:  # the settings' names are not case-sensitive
            close = difflib.get_close_matches(name.upper(), known, n=1)
            log.warning(
                "config.unknown_variable", variable=name, did_you_mean=next(iter(close), None)
            )


def _client(settings: SMHSettings, redactor: Redactor) -> SMHClient:
    """The client, with each token it mints masked in the log from then on, like the
    configured token and secret (a server may echo one where no pattern would catch it)."""
    client = SMHClient(settings)
    provider = client.token_provider
    if isinstance(provider, LibrarySecretToken):
        provider.on_token = redactor.learn
    return client


# ---------------------------------------------------------------- purge


def _check_args(args: argparse.Namespace) -> Shard | None:
    sources = sum(bool(x) for x in (args.space_ids, args.spaces_file, args.all_spaces))
    if sources != 1:
        raise UsageError(
            "give exactly one target: SPACE_ID arguments, --spaces-file PATH|- or --all-spaces"
        )
    if args.spaces_file == "-" and sys.stdin is None:  # started with `<&-`
        raise UsageError("--spaces-file -: standard input is closed")
    if args.spaces_file and args.spaces_file != "-":
        source = Path(args.spaces_file)
        if not source.exists():
            raise UsageError(f"--spaces-file: no such file: {args.spaces_file}")
        if source.is_dir():
            raise UsageError(f"--spaces-file: {args.spaces_file} is a directory")
        # A pipe (bash's <(...)) is read once, as it comes: nothing may be peeked at first.
        if source.is_file() and (problem := file_encoding_problem(args.spaces_file)):
            raise UsageError(f"--spaces-file: {problem}")
    if args.max_failure_rate is not None and not 0 < args.max_failure_rate <= 1:
        raise UsageError("--max-failure-rate must be in (0, 1]")
    if args.max_duration is not None and not 0 < args.max_duration < float("inf"):
        raise UsageError("--max-duration must be a positive number of seconds")
    for flag in ("max_spaces", "wait_release", "grace", "min_sample", "progress_interval"):
        value = getattr(args, flag)
        if value is not None and not value >= 0:  # NaN included
            raise UsageError(f"--{flag.replace('_', '-')} must be a number, not negative")
    check_files(args)
    try:
        # SMH_SHARD_* from .env too, as every SMH_* variable (JOB_COMPLETION_INDEX: Kubernetes').
        return Shard.parse(args.shard, {**os.environ, **args.environ})
    except ValueError as exc:
        raise UsageError(f"--shard: {exc}") from None


class _Reports:
    """The run's report file and its ``--wait-release`` sibling, opened and closed together."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.path: str | None = args.report
        same = bool(args.resume and args.report) and same_file(args.resume, args.report)
        self.main = ReportWriter(args.report, append=same) if args.report else None
        self.release = None
        if args.report and args.wait_release is not None and not args.dry_run:
            self.release = ReportWriter(release_destination(args.report), append=same)
        self.lock = self._lock(args.report)

    @staticmethod
    def _lock(report: str | None) -> ReportLock | None:
        """Hold the report (and so its release file) from now, before anything is sent, to
        the end: a second run into it is refused (smh_async._lock). A ``--processes``
        child's report is a part, held with holding_part; the report is its parent's."""
        if not report or _parent_pid() is not None:
            return None
        try:
            return lock_report(report)
        except ReportBusy as exc:
            raise UsageError(f"--report {exc}; nothing was sent") from None

    def open(self, stack: ExitStack) -> None:
        if self.lock is not None:  # released last: after the writers are closed
            stack.callback(self.lock.release)
        if self.main is not None and self._starts_afresh(self.main):
            # A fresh report starts fresh release rows: `report` would fold an earlier run's
            # into this one's (a run without --wait-release writes none to replace them).
            try:
                forget_release_rows(self.main.path)
            except OSError as exc:
                raise UsageError(
                    f"--report: cannot remove the earlier run's release rows beside "
                    f"{self.main.path}: {exc.strerror or exc}"
                ) from None
        for writer, role in ((self.main, "--report"), (self.release, "--wait-release report")):
            if writer is not None:
                try:
                    stack.enter_context(writer)
                except OSError as exc:
                    raise UsageError(f"{role}: cannot write {writer.path}: {exc}") from None
                if writer.sealed_torn_line:
                    structlog.get_logger("smh_async.cli").warning(
                        "report.torn_line_ended",
                        path=str(writer.path),
                        why="its last line was cut off (a run killed mid-write, a full disk);"
                        " it stays as an unreadable line and this run's rows start below it",
                    )

    @staticmethod
    def _starts_afresh(writer: ReportWriter) -> bool:
        """The run writes a new report: not appending, or appending to nothing yet."""
        try:
            return not writer.append or os.stat(writer.path).st_size == 0
        except FileNotFoundError:
            return True

    def failed(self, exc: BaseException) -> ReportWriter | None:
        """The writer whose failed write raised ``exc``, if one did."""
        return next((w for w in (self.main, self.release) if w and w.error is exc), None)

    def options(self) -> dict[str, Any]:
        """``on_outcome`` / ``on_release`` callbacks for :class:`PurgeRun`."""
        release = self.release
        return {
            "on_outcome": self.main.write if self.main else None,
            "on_release": (lambda r: release.write_record(r.to_record())) if release else None,
        }


def _progress(
    args: argparse.Namespace, status: StatusLine | None
) -> tuple[Callable[[ProgressSnapshot], None] | None, float]:
    """The progress callback and how often the engine calls it."""
    if args.no_progress:
        return None, 1.0
    if status is not None:
        return status.show, TTY_REFRESH_S
    log = structlog.get_logger("smh_async.cli")
    return ProgressLog(log, interval=args.progress_interval), 0.5


def _resume_set(path: str) -> FingerprintSet:
    """``--resume``: a missing file resumes nothing; an unreadable one is a usage error."""
    try:
        return resume_set([path])
    except OSError as exc:
        raise UsageError(f"--resume: cannot read {path}: {exc}") from None


@contextmanager
def _tuned_gc() -> Iterator[None]:
    """Fewer cyclic-GC passes while purging: -6% CPU per space (benchmarks/RESULTS.md).

    With hundreds of requests in flight, a collection every 700 allocations (the default)
    mostly traverses live objects and promotes them, to traverse them again later. Every
    10,000 allocations lets most die first; cycles are still collected. What start-up left
    is frozen out of the traversals. Restored afterwards (``main()`` may run in a host).
    """
    previous = gc.get_threshold()
    freeze = gc.get_freeze_count() == 0  # a host's own frozen set is left alone
    if freeze:
        gc.freeze()
    gc.set_threshold(10_000, *previous[1:])
    try:
        yield
    finally:
        gc.set_threshold(*previous)
        if freeze:
            gc.unfreeze()


async def purge_command(args: argparse.Namespace) -> int:
    """``smh-async purge`` in one process."""
    shard = _check_args(args)
    # The report's lock first: leftover parts are merged into it under the lock, never by
    # two runs starting at the same moment.
    reports = _Reports(args)
    if _parent_pid() is None:  # a --processes child's report is a part: its parent's matter
        same = bool(args.resume and args.report) and same_file(args.resume, args.report)
        if merged := settle_leftovers(args.report, append=same):
            print(merged, flush=True)
    # Logs and the live line survive a reader that goes away (see SafeStream).
    err = SafeStream(sys.stderr)
    status = StatusLine(cast("TextIO", err)) if shows_status_line(args) else None
    settings, redactor = _setup(args, err, status)
    targets = Targets(ids=args.space_ids, file=args.spaces_file, all_spaces=args.all_spaces)
    skip = TargetFilter(shard, _resume_set(args.resume) if args.resume else None)
    _log_plan(settings, shard)
    if shard is not None:  # every event of a shard's run says which shard it is
        structlog.contextvars.bind_contextvars(shard=str(shard))
    with _tuned_gc(), _SignalGate() as gate:
        code = await _run_purge(args, settings, targets, skip, reports, status, err, gate, redactor)
        if gate.late:
            structlog.get_logger("smh_async.cli").warning(
                "purge.signal_ignored", signals=gate.late, reason="the run was already finishing"
            )
        return code


async def _run_purge(
    args: argparse.Namespace,
    settings: SMHSettings,
    targets: Targets,
    skip: TargetFilter,
    reports: _Reports,
    status: StatusLine | None,
    err: SafeStream,
    gate: _SignalGate,
    redactor: Redactor,
) -> int:
    on_progress, interval = _progress(args, status)
    async with _client(settings, redactor) as client:
        if settings.library_secret is not None and settings.access_token is None:
            await _preflight(client)
        run = PurgeRun(
            client,
            skip=skip,
            dry_run=args.dry_run,
            verify=args.verify,
            wait_release=args.wait_release,
            max_failure_rate=args.max_failure_rate,
            min_sample=args.min_sample,
            max_spaces=args.max_spaces,
            max_duration=args.max_duration,
            grace=args.grace,
            on_progress=on_progress,
            progress_interval=interval,
            # After a stop, the rest of a file or of the arguments is read to report it
            # not started; the listing is not (more requests, maybe to a failing API), nor
            # a pipe (its writer may keep it open for long): a resume reads them again.
            report_not_started=targets.rereadable and not targets.all_spaces,
            **reports.options(),
        )
        err.on_lost = lambda: _log_lost(run, err.lost)
        with ExitStack() as stack:
            reports.open(stack)
            if reports.path and _parent_pid() is not None:
                stack.enter_context(holding_part(Path(reports.path)))
            with gate.watching():  # afterwards the run is finishing: signals only recorded
                failure = await _drive(
                    run, targets, client, skip, reports, gate, count=on_progress is not None
                )
    if status is not None:
        status.close()
    if failure == "unreadable":  # refused as the file would have been, before any request
        raise UsageError(f"--spaces-file {args.spaces_file}: {run.source_error}")
    summary = run.summary()
    reasons = {"not in shard": skip.not_in_shard, ALREADY_DONE: skip.already_done}
    release = str(reports.release.path) if reports.release else None
    print_summary(summary, reports.path, skipped_reasons=reasons, release_report=release)
    code = exit_code(summary)
    if failure == "source":
        print(
            "INPUT FAILED: the space listing or spaces file broke off (see purge.source_failed);"
            " the spaces read before it were purged: re-run with --resume REPORT",
            flush=True,
        )
        code = code if summary.interrupted else EXIT_FAILED
    elif failure is not None:  # the path of a report that could not be written
        print(
            f"REPORT FAILED: cannot write {failure}, so the run was stopped. Spaces finished "
            "after its last readable row are only in the log (purge.space events); resume "
            "from it into a new --report once there is room",
            flush=True,
        )
        code = EXIT_ABORTED
    if args.summary_json:
        extra = {"report": reports.path, "exit_code": code, "skipped_reasons": reasons}
        try:
            write_summary_json(args.summary_json, {**summary.to_dict(), **extra})
        except OSError as exc:  # checked at the start; the disk may have filled since
            say(f"smh-async: error: cannot write the summary {args.summary_json}: {exc}")
    return code


async def _drive(
    run: PurgeRun,
    targets: Targets,
    client: SMHClient,
    skip: TargetFilter,
    reports: _Reports,
    gate: _SignalGate,
    *,
    count: bool,
) -> str | None:
    """Run the purge with the signal watcher (and the counting pass).

    Returns None, ``"source"`` if the input gave out, ``"unreadable"`` if it could not be
    read at all (its first line refused, nothing started), or the path of a report file that
    could not be written (the run stopped then).
    """
    log = structlog.get_logger("smh_async.cli")
    parent = _parent_pid()
    if parent is not None:
        parent = _watched_parent(parent)
    async with anyio.create_task_group() as tg:
        tg.start_soon(_watch_signals, run, tg.cancel_scope, gate)
        # Checked once before the first request: a parent gone already, nothing is sent.
        if parent is not None and not _stop_if_orphaned(run, parent):
            tg.start_soon(_watch_parent, run, parent)
        if count and targets.rereadable:
            tg.start_soon(_count, run, targets, client, skip)
        try:
            await run.run(targets.iterate(client))
        except SMHError as exc:  # the listing or the file gave out: the target set is partial
            tg.cancel_scope.cancel()
            if isinstance(exc, SMHConfigError) and run.launched == 0:
                return "unreadable"  # e.g. UTF-16 through a pipe: not a resumable break
            log.error("purge.source_failed", error_code=exc.code, error=str(exc))
            return "source"
        except OSError as exc:
            writer = reports.failed(exc)
            if writer is None:
                raise
            log.error("purge.report_failed", path=str(writer.path), error=str(exc))
            tg.cancel_scope.cancel()
            return f"{writer.path}: {exc.strerror or exc}"
        tg.cancel_scope.cancel()
    return None


async def _count(run: PurgeRun, targets: Targets, client: SMHClient, skip: TargetFilter) -> None:
    def update(n: int, final: bool) -> None:
        run.set_total(n, final=final)

    try:
        await count_targets(targets.iterate(client), skip.skips, update)
    except SMHError as exc:  # only the display loses its total
        structlog.get_logger("smh_async.cli").warning("purge.count_failed", error_code=exc.code)


async def _watch_parent(run: PurgeRun, parent: int) -> None:
    """A ``--processes`` child stops as on SIGTERM once its parent is gone (SIGKILL, the OOM
    killer): an orphan would go on sending requests that nobody supervises, into a report
    part nobody merges. Stopped, its in-flight spaces finish and the rest are reported not
    started, so its part holds one row per space for the next run to merge (see
    smh_async._leftovers). Checked once a second: one system call."""
    # No event tells of a parent's end (PR_SET_PDEATHSIG is Linux-only, and a signal sent
    # before the handlers are in place would kill): polling it is portable and cheap.
    while not _stop_if_orphaned(run, parent):  # noqa: ASYNC110
        await anyio.sleep(PARENT_CHECK_S)


def _stop_if_orphaned(run: PurgeRun, parent: int) -> bool:
    """Stop ``run`` (and say so) if ``parent`` is no longer this process's parent."""
    if os.getppid() == parent:
        return False
    structlog.get_logger("smh_async.cli").warning(
        "purge.parent_gone",
        parent_pid=parent,
        then="in-flight spaces finish, the rest are reported not started; the next run "
        "resuming into the report merges this part",
    )
    run.stop(interrupted=True)
    return True


def _watched_parent(parent: int) -> int:
    """The process whose end orphans this child: normally ``parent``, the pid the parent
    passed; but under a launcher that runs Python as a child of its own, our parent is the
    launcher, so the process we started under is watched while ``parent`` lives (a parent
    gone already is returned as is: the first check stops the run)."""
    actual = os.getppid()
    if actual == parent:
        return parent
    try:
        os.kill(parent, 0)  # does the --processes parent still exist?
    except ProcessLookupError:
        return parent
    except OSError:  # it exists (another user's, say): assume the launcher case
        pass
    return actual


def _parent_pid() -> int | None:
    """The ``--processes`` parent's pid when this process is one of its children."""
    value = os.environ.get(PARENT_PID_ENV, "")
    return int(value) if value.isdigit() else None


# A log that cannot be written, as opposed to one nobody reads any more.
_LOG_UNWRITABLE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def _log_lost(run: PurgeRun, lost: BaseException | None) -> None:
    """The log on stderr failed: stop, so that nothing is done without a trace, and every
    space started is finished and reported, not cut off. Nobody reads it any more (`| head`
    is done, the terminal hung up): as on SIGTERM, interrupted. It cannot be written (a full
    disk or quota): aborted ``log_unwritable``, exit 3, which no one would read as a Ctrl-C.
    """
    if isinstance(lost, OSError) and lost.errno in _LOG_UNWRITABLE:
        run.stop(reason="log_unwritable")
    else:
        run.stop(interrupted=True)


def _log_plan(settings: SMHSettings, shard: Shard | None) -> None:
    """The run's shape (what protection is off, the client says itself when it opens:
    ``smh.connection.insecure``)."""
    count = shard.count if shard else 1
    structlog.get_logger("smh_async.cli").info(
        "purge.plan",
        shard=str(shard) if shard else None,
        rate_per_s=settings.rate,
        rate_all_shards_per_s=settings.rate * count if settings.rate else None,
        concurrency=settings.concurrency,
        # The loop actually running (--event-loop), not the one asked for.
        event_loop=type(asyncio.get_running_loop()).__module__.split(".")[0],
    )


async def _preflight(client: SMHClient) -> None:
    """Mint the first token before purging, so a wrong secret exits 2 with nothing sent."""
    try:
        await client.token_provider.get()
    except SMHError as exc:
        raise UsageError(f"cannot obtain an access token: {exc}") from None


async def _watch_signals(run: PurgeRun, scope: anyio.CancelScope, gate: _SignalGate) -> None:
    # SIGHUP: the terminal of an ssh session went away; stop as gracefully as on SIGTERM.
    while True:
        signum = await gate.next()
        if run.stopping:
            scope.cancel()  # a second signal: stop waiting for in-flight requests
            return
        structlog.get_logger("smh_async.cli").warning(
            "purge.stopping",
            signal=signal.Signals(signum).name,
            grace_s=run.grace,
            then="the rest of the input is reported not started; signal again to quit now",
        )
        run.stop(interrupted=True)


class _SignalGate:
    """SIGINT, SIGTERM and SIGHUP from the start of the run until ``purge_command`` returns.

    While the run runs, :func:`_watch_signals` acts on them. Once the run is over, it is
    finishing (the report closed, the client shut down, the summary and ``--summary-json``
    written): a signal then is only recorded (``late``, logged at the end), and the exit
    code stays what the run earned (130 if it was interrupted). anyio's signal receiver
    gave the default action back as soon as its reader stopped, so a second Ctrl-C or
    SIGTERM just then killed the process (exit 143, often before the summary); the
    ``--processes`` parent took such a death of a child for an interruption. Before the run
    starts nothing has been sent, and the default actions stand.

    On exit, the handlers found when the run started are put back (``main()`` may run in a
    host with handlers of its own). Built on the event loop's ``add_signal_handler``, not on
    anyio's receiver: closed, that puts the default action back, not the handler it found,
    and it keeps to itself what arrives once its reader has stopped.
    """

    _SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.late: list[str] = []
        self._queue: deque[int] = deque()
        self._arrived: anyio.Event | None = None
        self._watching = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous: dict[signal.Signals, Any] = {}

    def __enter__(self) -> _SignalGate:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._loop is None:
            return
        for sig, handler in self._previous.items():
            self._loop.remove_signal_handler(sig)  # sets the default action...
            if handler is not None:  # ...and this, the one found (None: not set from Python)
                signal.signal(sig, handler)
        self._loop = None

    @contextmanager
    def watching(self) -> Iterator[None]:
        """While the run runs, its signals come to :meth:`next`; afterwards they are only
        recorded. The event loop's handlers wake it whichever thread a signal interrupts."""
        self._loop = asyncio.get_running_loop()
        for sig in self._SIGNALS:
            self._previous[sig] = signal.getsignal(sig)
            self._loop.add_signal_handler(sig, self._deliver, sig)
        self._watching = True
        try:
            yield
        finally:
            self._finish()

    async def next(self) -> int:
        """The next signal received while the run runs."""
        while not self._queue:
            self._arrived = anyio.Event()
            await self._arrived.wait()
        return self._queue.popleft()

    def _finish(self) -> None:
        """The run is over: from now on a signal is only recorded."""
        self._watching = False
        self.late.extend(signal.Signals(s).name for s in self._queue)
        self._queue.clear()
        for sig in self._SIGNALS:
            # The Python-level handler only: the event loop keeps the signal caught by the
            # OS, so there is no moment with the default action (removing the loop's
            # handler would make one).
            signal.signal(sig, self._record)

    def _deliver(self, signum: int) -> None:
        if self._watching:  # afterwards, _record has it (it runs even with the loop idle)
            self._queue.append(signum)
            if self._arrived is not None:
                self._arrived.set()

    def _record(self, signum: int, frame: object) -> None:
        self.late.append(signal.Signals(signum).name)


# ---------------------------------------------------------------- other commands


async def spaces_command(args: argparse.Namespace) -> int:
    """``smh-async spaces``: every space id of the library, one per line."""
    settings, redactor = _setup(args, SafeStream(sys.stderr))
    async with _client(settings, redactor) as client:
        try:
            async for space in client.iter_spaces():
                sys.stdout.write(space.space_id + "\n")
            sys.stdout.flush()  # here, so that a full disk is reported like a failed write
        except BrokenPipeError:  # `smh-async spaces | head`: the reader has all it wants
            _drop_stdout()
            return EXIT_OK
        except SMHError as exc:
            print(f"smh-async: error: {redactor.text(str(exc))}", file=sys.stderr)
            # A credential problem (wrong secret, rejected token, a certificate that does
            # not verify, a proxy's 407 or refusal of the tunnel) is exit 2, as for purge.
            # (No token because the token endpoint is down is not the credential's fault.)
            auth = exc.code != TOKEN_UNAVAILABLE and (
                isinstance(exc, SMHAuthError) or exc.code in FATAL_AUTH_CODES
            )
            return EXIT_USAGE if auth else EXIT_FAILED
        # After SMHError (a transport error is an OSError too): e.g. a full disk (ENOSPC)
        # under `spaces > file`.
        except OSError as exc:
            _drop_stdout()
            say(f"smh-async: error: cannot write the space list to stdout: {exc.strerror or exc}")
            return EXIT_FAILED
    return EXIT_OK


def _drop_stdout() -> None:
    """Send what is left of stdout nowhere: the flush at exit would fail again, and print
    a second error (or a traceback) after ours."""
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (lives as long as we do)


async def fake_server_command(args: argparse.Namespace) -> int:
    """``smh-async fake-server``: the emulator on loopback until interrupted."""
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

    # docker stop, a CI service container, systemd: SIGTERM closes it cleanly, exit 0, as a
    # service's manager expects (as a container's PID 1 a signal without a handler was
    # ignored until SIGKILL). Ctrl-C stays "interrupted", 130.
    loop, stop = asyncio.get_running_loop(), anyio.CancelScope()
    with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows' loop
        loop.add_signal_handler(signal.SIGTERM, stop.cancel)
    try:
        with stop:
            await serve_forever(
                host=args.host,
                port=args.port,
                spaces=args.spaces,
                items_per_space=args.items_per_space,
                release_delay=args.release_delay,
                latency=args.latency,
                ready=ready,
                # The record of served requests is only readable in-process: keeping it
                # here would grow memory (and the garbage collector's work) per request.
                record_requests=False,
            )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:  # the port is taken, or the address is not ours
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    finally:
        with contextlib.suppress(NotImplementedError):
            loop.remove_signal_handler(signal.SIGTERM)
    return EXIT_OK
