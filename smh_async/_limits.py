"""Open-files preflight: fail before sending anything rather than at connection 1,021.

Every pooled connection is a file descriptor. At high fan-out the process's soft
``RLIMIT_NOFILE`` (often 1024) runs out mid-run and aiohttp reports ``Too many open files``
per request (aiohttp #4067), so some spaces fail for a reason that has nothing to do with
SMH. :func:`ensure_open_files` checks the budget when the client creates its session: it
raises the soft limit towards the hard limit when that is enough (what a careful operator
would do by hand), and otherwise raises :class:`SMHConfigError` saying what to change.
"""

from __future__ import annotations

import sys

from smh_async._errors import SMHConfigError

__all__ = ["FD_MARGIN", "ensure_open_files", "open_files_needed"]

# Descriptors the process needs besides pooled connections: stdio, the event loop's selector
# and self-pipe, the report and .env files, resolver threads, imported extension modules.
FD_MARGIN = 64


def open_files_needed(connections: int) -> int:
    """Descriptors a client with ``connections`` pooled connections may hold at once."""
    return connections + FD_MARGIN


def ensure_open_files(connections: int, *, concurrency: int) -> None:
    """Make sure ``connections`` sockets fit under ``RLIMIT_NOFILE``, raising the soft limit
    if the hard limit allows; otherwise raise :class:`SMHConfigError` naming ``concurrency``.

    A no-op where the platform has no ``resource`` module (Windows).
    """
    if sys.platform == "win32":  # pragma: no cover - no RLIMIT_NOFILE there
        return
    import resource

    needed = open_files_needed(connections)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if _fits(soft, needed):
        return
    if _fits(hard, needed):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
            return
        except (ValueError, OSError):
            pass  # e.g. a sandbox forbids it: fall through to the explanation
    limit = soft if soft != resource.RLIM_INFINITY else hard
    fit = max(1, concurrency - (needed - limit))
    raise SMHConfigError(
        f"invalid settings: concurrency (SMH_CONCURRENCY, --concurrency) {concurrency} needs "
        f"about {needed} open files, but the open-files limit is {soft} (hard limit "
        f"{_show(hard)}); lower concurrency to at most {fit}, or raise the limit before "
        f"starting (`ulimit -n {needed}`, or LimitNOFILE={needed} in a systemd unit)",
        fields=("concurrency",),
    )


def _fits(limit: int, needed: int) -> bool:
    import resource

    return limit == resource.RLIM_INFINITY or limit >= needed


def _show(limit: int) -> str:
    import resource

    return "unlimited" if limit == resource.RLIM_INFINITY else str(limit)
