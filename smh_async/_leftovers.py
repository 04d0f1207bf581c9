"""Report parts that an earlier ``purge --processes`` run left beside its report unmerged.

The parent merges its children's parts (``REPORT.partIofN``) into the report when they have
all ended. When it cannot (it was killed, or the merge hit a full disk) the parts are the
only record of what that run did: the spaces accepted there must not be purged again, and
no row may be thrown away. So before a run writes a report:

- resuming into that same report, the leftovers are merged into it first (and said so),
  then the run resumes from it;
- otherwise the run is refused (exit 2, nothing sent), naming the files and the command
  that merges them;
- either way, a part still being written (a child of a killed parent that has not stopped
  yet holds a lock on it, see :func:`holding_part`) refuses the run until it is done.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from smh_async._lock import ReportBusy, being_written
from smh_async._report import (
    append_files,
    is_regular_or_missing,
    release_destination,
    summarize_reports,
)
from smh_async.cli import UsageError

__all__ = ["holding_part", "parts_home", "settle_leftovers", "totals_path"]


def totals_path(part: Path) -> Path:
    """Where the child writing report part ``part`` leaves its summary."""
    return part.with_name(part.name + ".summary.json")


def parts_home(target: Path) -> Path | None:
    """The directory where a ``--processes`` run into ``target`` writes its parts: beside
    the report (same file system), or None for a device or pipe (``/dev/stdout``), whose
    parts go to a scratch directory of that run."""
    return target.resolve().parent if is_regular_or_missing(target) else None


def settle_leftovers(report: str | None, *, append: bool) -> str | None:
    """Deal with the parts an earlier run left beside ``report`` before this run starts.

    ``append``: this run resumes into ``report`` itself. Returns the line telling what was
    merged (None when there was nothing); raises :class:`UsageError` when the run must not
    start. Totals files without their part hold no row and are removed.
    """
    if not report:
        return None
    if being_written(report):  # its parts, if any, are that run's: not leftovers
        raise UsageError(f"--report {ReportBusy(report)}; nothing was sent")
    target = Path(report)
    home = parts_home(target)
    if home is None:  # a device or pipe: its runs kept their parts in scratch directories
        return None
    found = _leftover_files(home, target.name)
    if not found:
        return None
    names = " ".join(shlex.quote(str(p)) for p in found)
    busy = [p for p in found if _is_held(p)]
    if busy:
        raise UsageError(
            f"--report {report}: {busy[0]} is still being written by another smh-async "
            "process (a run into the same report, or a child of a killed run that has not "
            "stopped yet: it does within seconds): run again once it has ended; nothing was sent"
        )
    if not append:
        raise UsageError(_refusal(report, target, found, names))
    _merge_into(target, found)
    return (
        f"merged into {report} the report parts an earlier run left unmerged (it was killed, "
        f"or its merge failed): {names}; the spaces accepted there are not purged again"
    )


def _leftover_files(home: Path, name: str) -> list[Path]:
    """Part and ``--wait-release`` part files of any earlier run into ``home/name``, oldest
    first (so that, merged in that order, the newest row of a space wins). Totals files
    whose part is gone are removed on the way: they hold no row."""
    part = re.compile(rf"{re.escape(name)}(?:\.release)?\.part\d+of\d+")
    totals = re.compile(rf"({re.escape(name)}\.part\d+of\d+)\.summary\.json")
    found = []
    for path in home.iterdir():
        if part.fullmatch(path.name) and path.is_file():
            found.append(path)
        elif (match := totals.fullmatch(path.name)) and not (home / match[1]).exists():
            path.unlink(missing_ok=True)
    return sorted(found, key=lambda p: (p.stat().st_mtime_ns, p.name))


def _refusal(report: str, target: Path, found: Sequence[Path], names: str) -> str:
    """Why a run that does not resume into ``report`` is refused, and the ways on."""
    parts = [p for p in found if not _is_release_part(p, target.name)]
    inputs = [str(target)] if target.is_file() else []
    merge = shlex.join(["smh-async", "report", *inputs, *map(str, parts), "--output", report])
    return (
        f"--report {report}: an earlier run left report parts it never merged (it was "
        f"killed, or its merge failed): {names}. They hold its rows: resume into the report "
        f"(--resume {report} --report {report}), which merges them first, or merge them "
        f"with '{merge}' and remove them; nothing was sent"
    )


def _merge_into(target: Path, found: Sequence[Path]) -> None:
    """Fold ``found`` into ``target`` (last row per space wins, after its earlier rows) and
    the release parts into its release report, then remove them and their totals files."""
    parts = [p for p in found if not _is_release_part(p, target.name)]
    releases = [p for p in found if _is_release_part(p, target.name)]
    try:
        if parts:
            summarize_reports([target, *parts] if target.exists() else parts, output=target)
        if releases:
            append_files(release_destination(target), releases)
    except OSError as exc:  # a disk still full: every file stays as it was
        raise UsageError(
            f"--report {target}: cannot merge into it the report parts an earlier run left "
            f"({exc.strerror or exc}); they are kept; nothing was sent"
        ) from None
    for path in found:
        totals_path(path).unlink(missing_ok=True)
        path.unlink()


def _is_release_part(path: Path, name: str) -> bool:
    return path.name.startswith(f"{name}.release.part")


def _is_held(path: Path) -> bool:
    """True while a process holds ``path`` with :func:`holding_part`: it is being written."""
    if sys.platform == "win32":  # pragma: no cover - no flock(); parts are never held
        return False
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:  # a file system without locks: nobody can hold it either
        return False
    finally:
        os.close(fd)  # releases the lock if it was taken
    return False


@contextlib.contextmanager
def holding_part(part: Path) -> Iterator[None]:
    """A ``--processes`` child holds its report part while it runs (released by the kernel
    when it ends, killed or not), so that a next run tells a part still being written by an
    orphan from one left behind, and never merges (and removes) rows still to come."""
    if sys.platform == "win32":  # pragma: no cover
        yield
        return
    import fcntl

    try:
        fd = os.open(part, os.O_RDONLY)
    except OSError:  # the writer reports that itself
        yield
        return
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield
    finally:
        os.close(fd)
