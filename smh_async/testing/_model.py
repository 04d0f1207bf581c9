"""In-memory records of the emulator: libraries, tenant spaces, access tokens, SMH errors.

Kept compact on purpose: benchmarks seed 100,000 spaces, so a space is a ``__slots__`` object
whose recycle bin is a tuple of item sizes that bulk seeding shares between all spaces.
"""

from __future__ import annotations

import functools
import time
from datetime import datetime, timezone

SINGLE_TENANT_SPACE = "-"
DEFAULT_PERIOD = 86_400
MIN_PERIOD = 300
MAX_PERIOD = 315_360_000
# Grants that may empty a recycle bin, and grants that may see every tenant space.
EMPTY_BIN_GRANTS = frozenset({"admin", "space_admin", "delete_recycled"})
LIST_ALL_GRANTS = frozenset({"admin", "space_admin"})


class SMHError(Exception):
    """An SMH error reply: rendered as ``{"code", "message", "requestId"}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


@functools.lru_cache(maxsize=4096)
def iso_time(epoch: float) -> str:
    """Format an epoch timestamp the way SMH does (``2020-10-16T02:31:50.000Z``)."""
    moment = datetime.fromtimestamp(epoch, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def clamp_period(raw: str | int | None) -> int:
    """Apply the documented ``period`` rules: invalid/non-positive → 86400, then [300, 10 years]."""
    try:
        period = int(raw) if raw not in (None, "") else DEFAULT_PERIOD
    except (TypeError, ValueError):
        return DEFAULT_PERIOD
    if period <= 0:
        return DEFAULT_PERIOD
    return min(max(period, MIN_PERIOD), MAX_PERIOD)


def parse_grants(raw: str) -> frozenset[str]:
    """Split a comma-separated grant list; an empty list means read-only."""
    return frozenset(part.strip() for part in raw.split(",") if part.strip())


class Space:
    """One tenant space: its bin (item sizes, ids contiguous from ``first_item_id``) and bytes."""

    __slots__ = (
        "bin_sizes",
        "created_at",
        "file_bytes",
        "first_item_id",
        "pending",
        "removed_at",
        "space_id",
        "user_id",
    )

    def __init__(
        self,
        space_id: str,
        user_id: str,
        created_at: float,
        bin_sizes: tuple[int, ...],
        file_bytes: int,
    ) -> None:
        self.space_id = space_id
        self.user_id = user_id
        self.created_at = created_at
        self.removed_at = created_at
        self.bin_sizes = bin_sizes
        self.first_item_id = 1
        self.file_bytes = file_bytes
        # (release_at monotonic, bytes) for emptied bins whose space is not yet released.
        self.pending: list[tuple[float, int]] | None = None

    def add_items(self, sizes: tuple[int, ...], now_wall: float) -> None:
        """Put more items into the bin (they get the next recycled item ids)."""
        self.bin_sizes = self.bin_sizes + sizes
        self.removed_at = now_wall

    def empty_bin(self, release_at: float) -> None:
        """Hide every bin item at once; their bytes stay counted until ``release_at``."""
        freed = sum(self.bin_sizes)
        self.first_item_id += len(self.bin_sizes)
        self.bin_sizes = ()
        if freed:
            if self.pending is None:
                self.pending = []
            self.pending.append((release_at, freed))

    def counted_bytes(self, now: float) -> int:
        """Bytes SMH still reports: files + visible bin + emptied-but-unreleased (pruned lazily)."""
        total = self.file_bytes + sum(self.bin_sizes)
        if self.pending is not None:
            self.pending = [entry for entry in self.pending if entry[0] > now] or None
            if self.pending is not None:
                total += sum(freed for _, freed in self.pending)
        return total


class Library:
    """A media library: its secret, tenancy mode, bin switch and spaces in creation order."""

    __slots__ = ("library_id", "multi_tenant", "order", "recycle_bin", "secret", "spaces")

    def __init__(self, library_id: str, secret: str, multi_tenant: bool, recycle_bin: bool) -> None:
        self.library_id = library_id
        self.secret = secret
        self.multi_tenant = multi_tenant
        self.recycle_bin = recycle_bin
        self.spaces: dict[str, Space] = {}
        # Creation order is the listing order; positions never move (spaces are never deleted),
        # so a list marker can be a plain position and every page costs O(page).
        self.order: list[Space] = []

    def add(self, space: Space) -> None:
        """Register a space (caller guarantees a fresh id)."""
        self.spaces[space.space_id] = space
        self.order.append(space)


class Token:
    """An access token's server-side record (the token string is only the dict key)."""

    __slots__ = (
        "expires_at",
        "grants",
        "library_id",
        "period",
        "space_ids",
        "user_id",
        "uses_left",
    )

    def __init__(
        self,
        library_id: str,
        grants: frozenset[str],
        period: int,
        user_id: str,
        space_ids: frozenset[str] | None,
        max_uses: int | None,
    ) -> None:
        self.library_id = library_id
        self.grants = grants
        self.period = period
        self.user_id = user_id
        self.space_ids = space_ids
        self.uses_left = max_uses
        self.expires_at = time.monotonic() + period

    def alive(self, now: float) -> bool:
        """Whether the token still authenticates (not past its period, uses not exhausted)."""
        return now < self.expires_at and (self.uses_left is None or self.uses_left > 0)

    def use(self, now: float) -> None:
        """Count one use: consumes a use and slides the expiry to ``now + period``."""
        if self.uses_left is not None:
            self.uses_left -= 1
        self.expires_at = max(self.expires_at, now + self.period)

    def renew(self, now: float) -> None:
        """Renew with the original period (does not restore exhausted uses)."""
        self.expires_at = max(self.expires_at, now + self.period)
