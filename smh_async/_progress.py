"""Run statistics in constant memory, and the progress snapshot handed to progress callbacks.

The total number of spaces is often not known while a run is going: ``--all-spaces`` learns
it only when the listing ends, stdin only at EOF. A snapshot therefore says how much it knows:
``total`` is exact when ``total_final`` is true and a lower bound otherwise (rendered
``N of ≥M``), or ``None`` when nothing is known yet (``N of ?``). It never guesses.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = ["LatencyHistogram", "ProgressSnapshot", "format_duration"]


class LatencyHistogram:
    """Log-bucketed latencies (±2.5%): percentiles in constant memory for any run size."""

    _RATIO = 1.05
    _MIN_MS = 0.05

    def __init__(self) -> None:
        self._buckets: Counter[int] = Counter()
        self.count = 0
        self.max_ms = 0.0

    def add(self, ms: float) -> None:
        """Record one latency in milliseconds."""
        self.count += 1
        self.max_ms = max(self.max_ms, ms)
        self._buckets[int(math.log(max(ms, self._MIN_MS) / self._MIN_MS, self._RATIO))] += 1

    def percentile(self, q: float) -> float:
        """Approximate ``q``-quantile (0..1) in milliseconds; 0 when empty."""
        if not self.count:
            return 0.0
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for bucket in sorted(self._buckets):
            seen += self._buckets[bucket]
            if seen >= rank:
                return min(self.max_ms, float(self._MIN_MS * self._RATIO ** (bucket + 0.5)))
        return self.max_ms

    def summary(self) -> dict[str, float]:
        """p50/p95/max in ms, rounded."""
        return {
            "p50": round(self.percentile(0.5), 1),
            "p95": round(self.percentile(0.95), 1),
            "max": round(self.max_ms, 1),
        }


@dataclass(frozen=True, slots=True)
class ProgressSnapshot:
    """Where a purge run stands: passed to ``on_progress`` and returned by ``progress()``."""

    done: int
    total: int | None
    total_final: bool
    accepted: int
    failed: int
    dry_run: int
    in_flight: int
    elapsed_s: float
    by_error_code: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    skipped: int = 0  # of ``done``: never started (the run stopped first)

    @property
    def rate_per_s(self) -> float:
        """Spaces finished per second since the run started (not counting those skipped)."""
        return (self.done - self.skipped) / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the current rate, only when the total is exact."""
        if not self.total_final or self.total is None or self.rate_per_s <= 0:
            return None
        return max(0, self.total - self.done) / self.rate_per_s

    @property
    def total_text(self) -> str:
        """``"M"`` (exact), ``"≥M"`` (lower bound) or ``"?"`` (unknown)."""
        if self.total is None:
            return "?"
        return str(self.total) if self.total_final else f"≥{self.total}"

    def to_dict(self) -> dict[str, object]:
        """JSON-ready fields of the ``purge.progress`` event."""
        eta = self.eta_s
        return {
            "progress": f"{self.done} of {self.total_text.replace('≥', '>=')}",  # ASCII for grep
            "done": self.done,
            "total": self.total,
            "total_final": self.total_final,
            "accepted": self.accepted,
            "failed": self.failed,
            "dry_run": self.dry_run,
            "skipped": self.skipped,
            "in_flight": self.in_flight,
            "rate_per_s": round(self.rate_per_s, 1),
            "eta_s": None if eta is None else round(eta, 1),
            "elapsed_s": round(self.elapsed_s, 1),
            "failures_by_code": dict(self.by_error_code),
        }

    def line(self) -> str:
        """One human line: done/total, share, rate, ETA, in flight, spaces never started
        (the run stopped), failures by code."""
        share = ""
        if self.total_final and self.total:
            share = f" ({100.0 * self.done / self.total:.1f}%)"
        eta = self.eta_s
        parts = [
            f"{self.done}/{self.total_text}{share}",
            f"{self.rate_per_s:.1f}/s",
            f"ETA {format_duration(eta) if eta is not None else '?'}",
            f"in flight {self.in_flight}",
        ]
        if self.skipped:  # a stopped run: "400/400 (100.0%)" alone read as all purged
            parts.append(f"not started {self.skipped}")
        if self.failed:
            codes = ", ".join(f"{c}={n}" for c, n in sorted(self.by_error_code.items()))
            parts.append(f"failed {self.failed} ({codes})")
        return "  ".join(parts)


def format_duration(seconds: float) -> str:
    """``h:mm:ss`` or ``m:ss``."""
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
