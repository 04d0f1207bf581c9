"""Frozen value objects returned by the client and the bulk engine."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = [
    "EmptyBinResult",
    "Outcome",
    "PurgeOutcome",
    "PurgeSummary",
    "RecycleBinPage",
    "RecycledItem",
    "Space",
    "SpaceUsage",
]


class Outcome(str, enum.Enum):
    """Final state of one space in a purge run.

    ``accepted`` means SMH answered 204: the items are hidden from the bin at once, but the
    service deletes them and releases the space *asynchronously*, later. It does not mean the
    bytes are gone yet; ``--wait-release`` checks that.
    """

    ACCEPTED = "accepted"
    FAILED = "failed"
    SKIPPED = "skipped"
    DRY_RUN = "dry_run"

    def __str__(self) -> str:
        return self.value


# The shared, read-only "no extra fields" of an outcome (one object, not one per outcome).
NO_EXTRA: Mapping[str, Any] = MappingProxyType({})
# error_code of a ``skipped`` outcome: the run stopped before this space was started.
NOT_STARTED = "NotStarted"
# Outcome -> its text, for per-space hot paths (``Enum.value`` is a descriptor call).
OUTCOME_TEXT: Mapping[Outcome, str] = MappingProxyType({kind: kind.value for kind in Outcome})


@dataclass(frozen=True, slots=True)
class Space:
    """A tenant space as listed by ``GET /api/v1/space/{library}/list``."""

    space_id: str
    user_id: str = ""
    creation_time: str = ""


@dataclass(frozen=True, slots=True)
class RecycledItem:
    """One item in a space's recycle bin."""

    item_id: int
    name: str
    size: int
    type: str = ""
    removal_time: str = ""


@dataclass(frozen=True, slots=True)
class RecycleBinPage:
    """One page of a recycle-bin listing. ``total`` is set in page mode, ``next_marker`` in
    marker mode (``None`` once the last page has been read)."""

    items: tuple[RecycledItem, ...]
    total: int | None = None
    next_marker: str | None = None


@dataclass(frozen=True, slots=True)
class SpaceUsage:
    """Bytes counted against a space (``size``), with its quota if one is set."""

    space_id: str
    size: int
    capacity: int | None = None
    available: int | None = None


@dataclass(frozen=True, slots=True)
class EmptyBinResult:
    """SMH accepted an empty-bin request (HTTP 204): deletion continues server-side."""

    space_id: str
    http_status: int
    request_id: str | None
    attempts: int


@dataclass(frozen=True, slots=True)
class PurgeOutcome:
    """The one final result of one space in a purge run; one report row."""

    space_id: str
    outcome: Outcome
    http_status: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    request_id: str | None = None
    attempts: int = 0
    elapsed_ms: float = 0.0
    finished_at: str = ""
    extra: Mapping[str, Any] = field(default_factory=lambda: NO_EXTRA)

    def to_record(self) -> dict[str, Any]:
        """The report row for this outcome (JSON-ready, keys in a stable order)."""
        record: dict[str, Any] = {
            "space_id": self.space_id,
            "outcome": self.outcome.value,
            "http_status": self.http_status,
            "error_code": self.error_code,
            "error_message": self.error_message,
            "request_id": self.request_id,
            "attempts": self.attempts,
            "elapsed_ms": round(self.elapsed_ms, 1),
            "finished_at": self.finished_at,
        }
        record.update(self.extra)
        return record


@dataclass(frozen=True, slots=True)
class PurgeSummary:
    """Totals of a purge run. ``interrupted``/``aborted`` say whether it stopped early."""

    total: int
    accepted: int
    failed: int
    skipped: int
    dry_run: int
    duplicates: int
    by_error_code: Mapping[str, int]
    elapsed_s: float
    latency_ms: Mapping[str, float]
    aborted: str | None = None
    interrupted: bool = False
    # Optional tallies: bin_items/bin_bytes (dry run), verified/verify_not_empty/verify_error
    # (--verify), released/release_pending/nothing_to_release/unknown (--wait-release).
    counters: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def ok(self) -> bool:
        """True when nothing failed and the run was neither aborted nor interrupted."""
        return self.failed == 0 and self.aborted is None and not self.interrupted

    @property
    def rate_per_s(self) -> float:
        """Spaces finished per second over the whole run (those never started not counted)."""
        done = self.total - self.skipped
        return done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, used by ``purge.finished`` and the CLI summary."""
        return {
            "total": self.total,
            "accepted": self.accepted,
            "failed": self.failed,
            "skipped": self.skipped,
            "dry_run": self.dry_run,
            "duplicates": self.duplicates,
            "by_error_code": dict(self.by_error_code),
            "elapsed_s": round(self.elapsed_s, 3),
            "rate_per_s": round(self.rate_per_s, 1),
            "latency_ms": dict(self.latency_ms),
            "aborted": self.aborted,
            "interrupted": self.interrupted,
            "counters": dict(self.counters),
        }
