"""Public value types of the emulator: injected faults and the record of each served request."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

FAULT_ACTIONS = frozenset(
    {
        "status",
        "drop",
        "hang",
        "html",
        "malformed_json",
        "truncated",
        "slow_body",
        "unexpected_body",
        "empty_body_error",
        "close_after",
    }
)

# Status each action answers with when ``Fault.status`` is not given.
_DEFAULT_STATUS = {
    "status": 500,
    "html": 502,
    "malformed_json": 500,
    "empty_body_error": 500,
    "unexpected_body": 200,
}
_DEFAULT_DELAY = {"hang": 3600.0, "slow_body": 1.0}

DEFAULT_CODES = {
    400: "BadRequest",
    403: "InvalidAccessToken",
    404: "RouteNotFound",
    408: "ReadRequestTimeout",
    409: "PathConflict",
    429: "RateLimitExceeded",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServerOverloaded",
    504: "GatewayTimeout",
}


def default_code(status: int) -> str:
    """The SMH error code the emulator sends for ``status`` when a fault names none."""
    if status in DEFAULT_CODES:
        return DEFAULT_CODES[status]
    return "InternalServerError" if status >= 500 else "BadRequest"


@dataclass
class Fault:
    """A fault to inject in front of the emulated API (like a misbehaving gateway).

    ``action`` is one of: ``status``, ``drop``, ``hang``, ``html``, ``malformed_json``,
    ``truncated``, ``slow_body``, ``unexpected_body``, ``empty_body_error``, ``close_after``.
    A fault matches when every given filter (``route``, ``method``, ``space_id``) equals the
    request's; then it fires with ``probability`` (rolled on the FakeSMH's seeded RNG), at most
    ``times`` times. ``applied`` counts how often it fired. Faults hit like a gateway, before
    token checks and app logic, so the operation does not happen -- except ``close_after``,
    ``unexpected_body``, and ``truncated``/``slow_body`` without a ``status``: those run the real
    operation and only mangle how its answer is delivered (a body-less 204 is truncated as a
    500 error body). ``delay`` defaults to 3600 s for ``hang`` and 1 s for ``slow_body``.
    """

    action: str
    status: int | None = None
    code: str | None = None
    route: str | None = None
    method: str | None = None
    space_id: str | None = None
    probability: float = 1.0
    times: int | None = None
    retry_after: str | None = None
    delay: float | None = None
    message: str = "injected fault"
    applied: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        if self.action not in FAULT_ACTIONS:
            raise ValueError(
                f"unknown fault action {self.action!r}; one of {sorted(FAULT_ACTIONS)}"
            )
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError("probability must be within [0, 1]")
        if self.times is not None and self.times < 0:
            raise ValueError("times must be >= 0")
        if self.method is not None:
            self.method = self.method.upper()

    @property
    def effective_status(self) -> int | None:
        """The status this fault answers with (``None`` if it sends no status of its own)."""
        return self.status if self.status is not None else _DEFAULT_STATUS.get(self.action)

    @property
    def effective_code(self) -> str:
        """The SMH ``code`` put in JSON error bodies."""
        if self.code is not None:
            return self.code
        return default_code(self.effective_status or 500)

    @property
    def effective_delay(self) -> float:
        """Seconds a ``hang`` waits before dropping, or a ``slow_body`` spreads its body over."""
        return self.delay if self.delay is not None else _DEFAULT_DELAY.get(self.action, 0.0)

    def matches(self, route: str, method: str, space_id: str | None) -> bool:
        """Whether the filters select this request and the fault has uses left."""
        if self.times is not None and self.applied >= self.times:
            return False
        return (
            (self.route is None or self.route == route)
            and (self.method is None or self.method == method)
            and (self.space_id is None or self.space_id == space_id)
        )

    def roll(self, rng: random.Random) -> bool:
        """Decide (reproducibly) whether the fault fires this time; counts it if so."""
        if self.probability < 1.0 and rng.random() >= self.probability:
            return False
        self.applied += 1
        return True


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """What reached the emulator: one per request, without the access token or secret.

    ``path`` is the raw path without the query string; on the token renew/delete routes the
    token path segment is replaced by ``{token}``. ``status`` is the status actually sent, or
    ``None`` when the connection was dropped or the request hung until abandoned.
    """

    method: str
    route: str
    path: str
    library_id: str | None
    space_id: str | None
    status: int | None
    fault: str | None
    started_at: float
    finished_at: float
    wall_time: float
    has_token: bool
    request_id: str = ""
