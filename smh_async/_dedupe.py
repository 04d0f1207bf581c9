"""A compact set of 64-bit fingerprints of space ids.

Deduplicating a stream of N ids needs memory proportional to N; a Python ``set`` of the
id strings costs ~100 bytes per id (a million ids: ~100 MB). This table stores an 8-byte
fingerprint per id, 10 to 12.5 bytes per id at its load, so a million ids cost about 11 MB.
Two distinct ids collide with probability ~N²/2⁶⁵ (about 3e-8 for a million): a collision
makes one id look like a duplicate, which the run counts in its summary.

The fingerprint is Python's own string hash (SipHash, 64 bits on 64-bit builds): computed
in C, cached on the string, and salted per process, so crafted ids cannot be made to pile
up in one probe chain. Salted also means it differs between processes: fingerprints are
never stored or compared across processes (sharding uses :mod:`smh_async._shard`'s stable
hash instead). BLAKE2b, used before, cost ~4x more per id for no gain inside one process.

Layout, chosen so that growing never holds two whole tables at once (the peak memory of a
run is what operators size pods by): linear probing over a list of fixed-size segments,
with the home slot taken from the fingerprint's high bits (``fp * size >> 64``), so slot
order follows fingerprint order. Growing re-inserts the old segments in order and frees each
as soon as it is drained; the new segments fill up in the same order. Probing never wraps:
it runs on into extra segments appended at the end.
"""

from __future__ import annotations

import sys
from array import array
from hashlib import blake2b

__all__ = ["FingerprintSet", "fingerprint"]

_EMPTY = 0
_MASK = (1 << 64) - 1
_SHIFT = 15
_SEGMENT = 1 << _SHIFT  # slots per segment (256 KiB)
_OFFSET = _SEGMENT - 1
_ZEROS = array("Q", [0]) * _SEGMENT
_MAX_LOAD = 0.8
_GROWTH = 1.25
_DOUBLE_BELOW = 1 << 20  # small tables double (cheap); large ones grow by 1.25 (tight)


def fingerprint(value: str) -> int:
    """64-bit fingerprint of ``value`` for this process (never 0, the empty-slot marker)."""
    return (hash(value) & _MASK) or 1


if sys.hash_info.width < 64:  # pragma: no cover (32-bit builds: str hashes are 32 bits)

    def fingerprint(value: str) -> int:
        """64-bit BLAKE2b fingerprint of ``value`` (never 0, the empty-slot marker)."""
        digest = blake2b(value.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        return int.from_bytes(digest, "little") or 1


def _segments_for(slots: float) -> int:
    return max(1, -(-int(slots) // _SEGMENT))


class FingerprintSet:
    """Insert-only set of strings, stored as 64-bit fingerprints (see the module docstring)."""

    __slots__ = ("_len", "_limit", "_segments", "_size")

    def __init__(self, capacity: int = 1024) -> None:
        self._len = 0
        self._resize(_segments_for(capacity / _MAX_LOAD) * _SEGMENT)
        self._segments: list[array[int]] = []

    def _resize(self, size: int) -> None:
        self._size = size
        self._limit = int(size * _MAX_LOAD)

    def __len__(self) -> int:
        return self._len

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, str):
            return False
        fp = fingerprint(value)
        segments = self._segments
        position = (fp * self._size) >> 64
        while (index := position >> _SHIFT) < len(segments):
            slot = segments[index][position & _OFFSET]
            if slot == _EMPTY:
                return False
            if slot == fp:
                return True
            position += 1
        return False

    def add(self, value: str) -> bool:
        """Insert ``value``; return False if it (or a colliding id) was already present."""
        return self.add_fingerprint(fingerprint(value))

    def add_fingerprint(self, fp: int) -> bool:
        """Insert a precomputed :func:`fingerprint`; False if it was already present."""
        if self._len >= self._limit:
            self._grow()
        segments = self._segments
        position = (fp * self._size) >> 64
        while True:
            index = position >> _SHIFT
            while index >= len(segments):
                segments.append(array("Q", _ZEROS))
            segment = segments[index]
            offset = position & _OFFSET
            slot = segment[offset]
            if slot == _EMPTY:
                segment[offset] = fp
                self._len += 1
                return True
            if slot == fp:
                return False
            position += 1

    def _grow(self) -> None:
        old = self._segments[::-1]
        self._resize(
            _segments_for(self._size * (2.0 if self._size < _DOUBLE_BELOW else _GROWTH)) * _SEGMENT
        )
        new: list[array[int]] = []
        self._segments = new
        size, append = self._size, new.append
        while old:
            segment = old.pop()  # in slot order; each is freed once drained
            for fp in segment:
                if fp == _EMPTY:
                    continue
                position = (fp * size) >> 64  # (inlined add: no duplicates here)
                while True:
                    index = position >> _SHIFT
                    while index >= len(new):
                        append(array("Q", _ZEROS))
                    target = new[index]
                    offset = position & _OFFSET
                    if target[offset] == _EMPTY:
                        target[offset] = fp
                        break
                    position += 1
            del segment
