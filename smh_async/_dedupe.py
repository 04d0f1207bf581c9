"""A compact set of 64-bit fingerprints of space ids.

Deduplicating a stream of N ids needs memory proportional to N; a Python ``set`` of the
id strings costs ~100 bytes per id (a million ids: ~100 MB). This open-addressing table
stores an 8-byte BLAKE2b fingerprint per id in a flat ``array('Q')`` (~16 bytes per id at
its load factor), so a million ids cost ~16 MB. Two distinct ids collide with probability
~N²/2⁶⁵ (about 3e-8 for a million): a collision makes one id look like a duplicate,
which the run counts and reports, so nothing disappears silently.
"""

from __future__ import annotations

from array import array
from hashlib import blake2b

__all__ = ["FingerprintSet", "fingerprint"]

_EMPTY = 0


def fingerprint(value: str) -> int:
    """Stable 64-bit fingerprint of ``value`` (never 0, the empty-slot marker)."""
    digest = blake2b(value.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little") or 1


class FingerprintSet:
    """Insert-only set of strings, stored as fingerprints with linear probing."""

    __slots__ = ("_len", "_mask", "_slots")

    def __init__(self, capacity: int = 1024) -> None:
        size = 1
        while size < capacity * 2:
            size *= 2
        self._slots = array("Q", [0]) * size
        self._mask = size - 1
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, str):
            return False
        fp = fingerprint(value)
        slots, mask = self._slots, self._mask
        i = fp & mask
        while True:
            slot = slots[i]
            if slot == _EMPTY:
                return False
            if slot == fp:
                return True
            i = (i + 1) & mask

    def add(self, value: str) -> bool:
        """Insert ``value``; return False if it (or a colliding id) was already present."""
        return self.add_fingerprint(fingerprint(value))

    def add_fingerprint(self, fp: int) -> bool:
        """Insert a precomputed :func:`fingerprint`; False if it was already present."""
        if (self._len + 1) * 3 > len(self._slots) * 2:
            self._grow()
        slots, mask = self._slots, self._mask
        i = fp & mask
        while True:
            slot = slots[i]
            if slot == _EMPTY:
                slots[i] = fp
                self._len += 1
                return True
            if slot == fp:
                return False
            i = (i + 1) & mask

    def _grow(self) -> None:
        old = self._slots
        size = len(old) * 2
        self._slots = array("Q", [0]) * size
        self._mask = size - 1
        slots, mask = self._slots, self._mask
        for fp in old:
            if fp != _EMPTY:
                i = fp & mask
                while slots[i] != _EMPTY:
                    i = (i + 1) & mask
                slots[i] = fp
