"""One smh-async run at a time per report: an exclusive ``flock`` on a lock file beside it.

Two runs writing the same report at once (last night's cron run still going when tonight's
starts, or an operator's manual run) each purge every space the other has not reported yet
(a resume reads the report once, at the start), and a run that starts the report afresh
truncates the other's rows, or a ``--processes`` merge replaces the file under the other's
feet. So a run holds ``REPORT.lock`` for its whole life and a second run into the same
report is refused before anything is sent.

- A file beside the report, not the report itself: merges (``--processes``, leftovers,
  ``report --output``) replace the report atomically, which would move a lock held on it
  off its path while the run goes on.
- ``flock``: the kernel drops it when the process ends, killed or not, so a lock file left
  by a killed run never blocks the next one (it takes it over). The holder removes the file
  when done; a process that locked a file just removed sees that it no longer names the
  path and tries again, so two runs can never both hold "the" lock.
- Taken once when the run starts, never per row: the report write is on the hot path.
- No lock at all where none can be had: Windows (no ``fcntl``), a report that is a device
  or pipe (``/dev/stdout``: nothing to protect, and ``/dev/stdout.lock`` is no place for a
  file), a directory where no lock file can be created, or a file system without ``flock``.
  The run then goes on as it did before locks existed: quietly, as ``git`` or ``pip`` do.
"""

from __future__ import annotations

import contextlib
import os
import sys
import weakref
from pathlib import Path

from smh_async._report import StrPath, is_regular_or_missing

__all__ = ["ReportBusy", "ReportLock", "being_written", "lock_path", "lock_report"]

_ATTEMPTS = 20  # a lock file removed just as it was locked, again and again: give up
_HELD: set[Path] = set()  # the lock files this process holds (it is not "another run")


class ReportBusy(Exception):
    """Another process holds the report's lock: another smh-async run is writing it."""

    def __init__(self, report: StrPath) -> None:
        super().__init__(
            f"{report}: another smh-async run is writing this report (it holds "
            f"{lock_path(report)}); run again once that run has ended"
        )


def lock_path(report: StrPath) -> Path:
    """The lock file of ``report``: ``r.jsonl.lock`` beside it. Links are followed, so every
    path to the report (``./r.jsonl``, a symbolic link) shares one lock."""
    target = Path(report).resolve()
    return target.with_name(target.name + ".lock")


class ReportLock:
    """The lock of one report, held by this process until :meth:`release` (or until it is
    garbage-collected, or the process ends: a run stopped by a usage error before its report
    was opened must not keep it, e.g. when ``main()`` runs inside a host)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        _HELD.add(path)
        self._release = weakref.finalize(self, _release, path, fd)

    def release(self) -> None:
        """Remove the lock file and drop the lock (once; later calls do nothing)."""
        self._release()


def _release(path: Path, fd: int) -> None:
    """Remove ``path`` while still holding its lock (a waiting run that locks the removed
    file sees it is gone and tries again), then drop the lock."""
    try:
        with contextlib.suppress(OSError):
            if _names(path, fd):
                path.unlink()
    finally:
        os.close(fd)


def lock_report(report: StrPath) -> ReportLock | None:
    """Take ``report``'s lock for this run; raise :class:`ReportBusy` if another process
    holds it. None when no lock can be had here (see the module docstring)."""
    if sys.platform == "win32" or not is_regular_or_missing(report):  # pragma: no cover - win
        return None
    import fcntl

    path = lock_path(report)
    for _ in range(_ATTEMPTS):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:  # cannot create it here: the report's own checks say what is wrong
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ReportBusy(report) from None
        except OSError:  # a file system without flock (ENOLCK, EOPNOTSUPP): go on unlocked
            os.close(fd)
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        if _names(path, fd):
            return ReportLock(path, fd)
        os.close(fd)  # removed by the run that held it, as we opened it: take the new one
    raise ReportBusy(report)


def being_written(report: StrPath) -> bool:
    """True while another process holds ``report``'s lock: a run is writing it. Probed with
    a shared lock, so two ``report`` commands looking at once do not see each other."""
    if sys.platform == "win32":  # pragma: no cover
        return False
    import fcntl

    path = lock_path(report)
    if path in _HELD:
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # no lock file: no run, or one that could not lock
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False


def _names(path: Path, fd: int) -> bool:
    """True when ``path`` is still the file open as ``fd`` (not removed or replaced)."""
    try:
        here, held = os.stat(path), os.fstat(fd)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (held.st_dev, held.st_ino)
