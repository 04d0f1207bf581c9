"""Split a set of tenant spaces over N independent workers by a stable hash of the space id.

Every worker sees the same input (the same ``--all-spaces`` listing or ids file) and keeps
only the ids of its own shard, so no coordinator is needed: shards ``0..N-1`` partition any
input exactly, whatever its order, and a re-run (or a retried Kubernetes index) picks the same
spaces again. The hash is the first 8 bytes of SHA-256 of the UTF-8 id, big-endian, mod N:
reproducible anywhere (``printf %s "$id" | sha256sum``) and, unlike Python's ``hash()``, not
salted per process. It is deliberately a different hash from the de-duplication fingerprint
(Python's salted string hash), so a shard's ids still spread evenly over that table.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Shard", "shard_of"]

# Kubernetes sets this in every pod of an Indexed Job (0 .. completions-1).
INDEX_ENV = "JOB_COMPLETION_INDEX"
COUNT_ENV = "SMH_SHARD_COUNT"
SHARD_INDEX_ENV = "SMH_SHARD_INDEX"


def shard_of(space_id: str, count: int) -> int:
    """The shard (0..count-1) that owns ``space_id``; stable across processes and machines."""
    if count < 1:
        raise ValueError("shard count must be >= 1")
    digest = hashlib.sha256(space_id.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % count


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard ``index`` of ``count``; ``shard(space_id)`` says whether this worker owns it.

    Pass ``shard.__contains__`` (or ``lambda s: s not in shard``) where a filter is wanted.
    """

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"shard count must be at least 1 (got {self.count})")
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard index must be in 0..{self.count - 1} (got {self.index})")

    def __contains__(self, space_id: object) -> bool:
        return isinstance(space_id, str) and shard_of(space_id, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @classmethod
    def parse(cls, spec: str | None, environ: Mapping[str, str] | None = None) -> Shard | None:
        """``"I/N"``, ``"/N"`` (I from ``JOB_COMPLETION_INDEX``), or None.

        With no ``spec``, ``SMH_SHARD_COUNT`` (and ``SMH_SHARD_INDEX`` or
        ``JOB_COMPLETION_INDEX``) select the shard; with neither, there is no sharding.
        Raises ``ValueError`` with an operator-readable message on anything malformed.
        """
        env = os.environ if environ is None else environ
        if spec is None:
            count_text = env.get(COUNT_ENV, "").strip()
            if not count_text:
                return None
            spec = f"{env.get(SHARD_INDEX_ENV, '').strip()}/{count_text}"
        index_text, sep, count_text = spec.strip().partition("/")
        if not sep:
            raise ValueError(f"shard must look like I/N or /N, got {spec!r}")
        if not index_text:
            index_text = env.get(INDEX_ENV, "").strip()
            if not index_text:
                raise ValueError(f"shard {spec!r} gives no index and {INDEX_ENV} is not set")
        try:
            return cls(int(index_text), int(count_text))
        except ValueError as exc:
            raise ValueError(f"bad shard {spec!r}: {exc}") from None
