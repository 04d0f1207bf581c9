"""Retry policy and request-rate cap.

Hand-written rather than stamina/tenacity or aiolimiter: we need the server's
``Retry-After`` (seconds or HTTP-date) to override the backoff, an attempt count reported
per space, a budget on both attempts and total time, and a rate cap with an explicit burst.
Together that is ~60 lines; the libraries would each cover part of it.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import anyio

from smh_async._errors import SMHError

__all__ = ["RateLimiter", "RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter, capped in attempts and in total time.

    Attempt ``n`` (1-based) that failed retryably waits ``uniform(0, ceiling)`` with
    ``ceiling = min(maximum, initial * 2**(n-1))``. A server ``Retry-After`` (capped at
    ``retry_after_max``) is the earliest retry instead: the wait is drawn between it and
    itself plus ``max(it, ceiling)``. Without that spread every request a throttling server
    turned away together came back in the same instant (a thundering herd it turns away
    again). No retry is started past ``max_total`` seconds: a draw beyond the budget is
    shortened to it, down to the server's Retry-After.
    """

    max_attempts: int = 5
    max_total: float = 120.0
    initial: float = 0.2
    maximum: float = 20.0
    retry_after_max: float = 60.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def next_wait(self, error: SMHError, attempt: int, started: float) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None to give up."""
        if not error.retryable or attempt >= self.max_attempts:
            return None
        ceiling = min(self.maximum, self.initial * 2 ** (attempt - 1))
        left = self.max_total - (time.monotonic() - started)  # of the retry budget
        retry_after = getattr(error, "retry_after", None)
        if retry_after is None:
            wait = self.rng.uniform(0.0, ceiling)
            return wait if wait <= left else None
        earliest = min(float(retry_after), self.retry_after_max)
        if earliest > left:
            return None
        return self.rng.uniform(earliest, min(earliest + max(earliest, ceiling), left))


class RateLimiter:
    """A GCRA (virtual-scheduling) cap of ``rate`` requests per second.

    Up to ``burst`` requests may go back to back after an idle period; after that they are
    spaced ``1/rate`` apart. Over any window of T seconds at most ``rate*T + burst`` requests
    start. Each call reserves its slot before sleeping, so no lock is needed.
    """

    def __init__(self, rate: float, burst: int = 1) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._interval = 1.0 / rate
        self._tolerance = (burst - 1) * self._interval
        self._theoretical_arrival = 0.0

    def __repr__(self) -> str:
        return f"RateLimiter(rate={self.rate}, burst={self.burst})"

    async def acquire(self) -> float:
        """Wait until one more request may start; return the seconds waited (0 if none)."""
        now = time.monotonic()
        arrival = max(self._theoretical_arrival, now)
        self._theoretical_arrival = arrival + self._interval
        wait = arrival - self._tolerance - now
        if wait <= 0:
            return 0.0
        await anyio.sleep(wait)
        return wait
