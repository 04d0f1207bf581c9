"""UTC timestamps for per-space records: the date and time are formatted once per second.

Every purged space gets a report row (``finished_at``, milliseconds) and, from the CLI, a log
line (``timestamp``, microseconds, as structlog's ``TimeStamper(fmt="iso", utc=True)``
writes it). ``datetime.now(timezone.utc).isoformat()`` costs about 3 µs; most of that is
formatting the part that changes once a second.
"""

from __future__ import annotations

import time

__all__ = ["utc_iso", "utc_now_ms", "utc_now_us"]

_NS = 1_000_000_000
_second, _prefix = -1, ""


def utc_iso(ns: int, digits: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS.fffZ`` (``digits`` 3) or ``…ffffffZ`` (6) for Unix time in ns.

    The fraction is truncated, as ``datetime.now()`` truncates the clock.
    """
    global _second, _prefix
    second, rest = divmod(ns, _NS)
    if second != _second:
        _prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second = second
    if digits == 3:
        return f"{_prefix}.{rest // 1_000_000:03d}Z"
    return f"{_prefix}.{rest // 1_000:06d}Z"


def utc_now_ms() -> str:
    """Now, to the millisecond (report rows' ``finished_at``)."""
    return utc_iso(time.time_ns(), 3)


def utc_now_us() -> str:
    """Now, to the microsecond (log events' ``timestamp``)."""
    return utc_iso(time.time_ns(), 6)
