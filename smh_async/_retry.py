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

    Attempt ``n`` (1-based) that failed retryably waits ``uniform(0, min(maximum,
    initial * 2**(n-1)))``; a server ``Retry-After`` replaces that wait, capped at
    ``retry_after_max``. No retry is started that would end past ``max_total`` seconds.
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
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            wait = min(float(retry_after), self.retry_after_max)
        else:
            wait = self.rng.uniform(0.0, min(self.maximum, self.initial * 2 ** (attempt - 1)))
        if time.monotonic() + wait - started > self.max_total:
            return None
        return wait


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
