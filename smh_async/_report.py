"""JSON Lines purge reports: one object per space, written and flushed as it finishes."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from smh_async._dedupe import FingerprintSet
from smh_async._models import Outcome, PurgeOutcome

__all__ = ["ReportWriter", "read_report", "resume_set"]


class ReportWriter:
    """Appends one JSON object per outcome and flushes it, so a crash loses no finished row.

    ``append=True`` keeps earlier rows (used when resuming into the same file).
    """

    def __init__(self, path: str | os.PathLike[str], *, append: bool = False) -> None:
        self.path = Path(path)
        self._file: IO[str] | None = None
        self._append = append
        self.rows = 0

    def __repr__(self) -> str:
        return f"ReportWriter({str(self.path)!r}, rows={self.rows})"

    def open(self) -> ReportWriter:
        """Open (or create) the report file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a" if self._append else "w", encoding="utf-8")
        return self

    def __enter__(self) -> ReportWriter:
        return self.open()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def write(self, outcome: PurgeOutcome) -> None:
        """Write one row and flush it to the OS."""
        if self._file is None:
            raise RuntimeError("ReportWriter is not open")
        self._file.write(json.dumps(outcome.to_record(), ensure_ascii=False) + "\n")
        self._file.flush()
        self.rows += 1

    def close(self) -> None:
        """Flush to disk and close."""
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None


def read_report(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Rows of a report; a torn last line (crash mid-write) is skipped, not fatal."""
    with Path(path).open(encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and isinstance(row.get("space_id"), str):
                yield row


def resume_set(paths: Iterable[str | os.PathLike[str]]) -> FingerprintSet:
    """Ids already ``accepted`` in earlier reports (compact: 8 bytes-ish per id)."""
    done = FingerprintSet()
    for path in paths:
        if not Path(path).exists():
            continue
        for row in read_report(path):
            if row.get("outcome") == Outcome.ACCEPTED.value:
                done.add(row["space_id"])
    return done
