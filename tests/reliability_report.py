"""The fault matrix: one table of scenarios, run by ``tests/test_faults.py`` and by
``python -m tests.reliability_report``, which prints the figures quoted in docs/RELIABILITY.md.

Each scenario purges ``SPACES`` tenant spaces of a fresh emulator through the real client
(loopback HTTP, token minted from the library secret). Two kinds of scenario:

- *planned*: every space gets its own number of injected faults ``k`` drawn from a seeded RNG,
  so each space's outcome and attempt count is known in advance whatever the scheduling:
  ``k < max_attempts`` → accepted after ``k + 1`` attempts; otherwise failed after
  ``max_attempts`` (or after 1 attempt for a fault that must not be retried).
- *whole-run*: faults that are about the connection or the token rather than one space (keep-
  alive closes, token storms, the emulator restarted mid-run); every space must be accepted.

Both kinds check that no space is lost or reported twice. Run ``python -m tests.reliability_report
--update docs/RELIABILITY.md`` to refresh the table in the document.
"""

from __future__ import annotations

import argparse
import email.utils
import logging
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from smh_async import PurgeOutcome, SMHClient, SMHSettings
from smh_async._client import STALE_RETRIES
from smh_async.testing import FakeServer, FakeSMH, Fault

LIBRARY = "lib1"
SECRET = "libsecret-Matrix-7Qd"
SPACES = 200
MAX_ATTEMPTS = 4
SEED = 20240601
# How many faults a space gets in a planned scenario (drawn uniformly from this list):
# about 40% clean, the rest 1-3 faults, 1 in 8 fails for good (k >= MAX_ATTEMPTS).
FAULT_COUNTS = (0, 0, 0, 1, 1, 2, 3, MAX_ATTEMPTS)
TOKEN_FAULT_COUNTS = (0, 0, 1)  # a second 403 after a fresh token is fatal by design

MARK_START = "<!-- fault-matrix:start -->"
MARK_END = "<!-- fault-matrix:end -->"


@dataclass(frozen=True)
class Planned:
    """A per-space fault: ``Fault(action, status=..., ...)`` fired ``k`` times for that space."""

    action: str
    status: int | None = None
    code: str | None = None
    retry_after: Callable[[], str] | None = None
    delay: float | None = None
    retryable: bool = True
    operation_runs: bool = False  # the emulator performs the purge even though the reply fails
    counts: tuple[int, ...] = FAULT_COUNTS
    # Immediate re-sends that do not use up max_attempts (a connection closed before any
    # reply looks like a stale keep-alive connection to the client).
    free: int = 0


Hook = Callable[["Run"], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class Scenario:
    """One row of the matrix."""

    name: str
    behaviour: str
    planned: Planned | None = None
    setup: Callable[[FakeSMH], None] | None = None
    on_outcome: Callable[[Run, PurgeOutcome], None] | None = None
    background: Hook | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    all_reach_server: bool = True  # False when some attempts never reach it (refused, stale)


@dataclass
class Run:
    """A scenario being executed: its emulator, server and what came back."""

    fake: FakeSMH
    server: FakeServer
    ids: list[str]
    outcomes: list[PurgeOutcome] = field(default_factory=list)
    expected: dict[str, tuple[str, int]] = field(default_factory=dict)
    done: anyio.Event = field(default_factory=anyio.Event)


@dataclass(frozen=True)
class Figures:
    """The measured result of one scenario (one table row)."""

    name: str
    spaces: int
    requests: int
    attempts: int
    retried: int
    accepted: int
    failed: int
    lost: int
    duplicates: int
    tokens_minted: int
    failure_codes: dict[str, int]


def _http_date(seconds_ahead: float) -> str:
    return email.utils.formatdate(time.time() + seconds_ahead, usegmt=True)


def _expire_every(n: int, times: int) -> Callable[[Run, PurgeOutcome], None]:
    """Revoke every token after each ``n`` outcomes, ``times`` times. A storm only starts once
    the previous one healed (a re-mint happened) and ``n`` more spaces finished after that:
    a request rejected by one storm is allowed one re-mint, so a second storm landing on its
    retry would fail it (see docs/RELIABILITY.md)."""
    state = {"storms": 0, "healed_at": 0, "run": 0}

    def hook(run: Run, outcome: PurgeOutcome) -> None:
        if state["run"] != id(run):  # a new run starts from scratch
            state.update(storms=0, healed_at=0, run=id(run))
        finished = len(run.outcomes)
        if run.fake.tokens_minted == state["storms"] + 1 and not state["healed_at"]:
            state["healed_at"] = finished
        if state["storms"] < times and state["healed_at"] and finished - state["healed_at"] >= n:
            run.fake.expire_all_tokens()
            state["storms"] += 1
            state["healed_at"] = 0

    return hook


async def _restart_mid_run(run: Run) -> None:
    """Kill the emulator once a quarter of the spaces finished; bring it back 0.3 s later."""
    while len(run.outcomes) < len(run.ids) // 4 and not run.done.is_set():
        await anyio.sleep(0.005)
    await run.server.stop()
    await anyio.sleep(0.3)
    await run.server.start()


def _close_after_each_204(fake: FakeSMH) -> None:
    fake.add_fault(Fault("close_after", route="empty_bin"))


def _token_uses(uses: int) -> Callable[[FakeSMH], None]:
    def setup(fake: FakeSMH) -> None:
        fake.token_max_uses = uses

    return setup


SCENARIOS: tuple[Scenario, ...] = (
    *(
        Scenario(
            f"{status} {code}",
            "retried with backoff (full jitter)",
            Planned("status", status, code),
        )
        for status, code in (
            (500, "InternalServerError"),
            (502, "BadGateway"),
            (503, "ServerOverloaded"),
            (504, "GatewayTimeout"),
            (408, "ReadRequestTimeout"),
        )
    ),
    Scenario(
        "429, Retry-After: 1 (seconds)",
        "waits Retry-After (capped by retry_after_max), up to twice that, then retries",
        Planned("status", 429, retry_after=lambda: "1"),
    ),
    Scenario(
        "429, Retry-After as HTTP-date",
        "waits until that date (capped by retry_after_max), up to twice that, then retries",
        Planned("status", 429, retry_after=lambda: _http_date(30)),
    ),
    Scenario(
        "429, no Retry-After",
        "retried with backoff (full jitter)",
        Planned("status", 429),
    ),
    Scenario(
        "connection dropped before the response",
        "transport error; up to 2 immediate re-sends off the attempt budget (it looks like a "
        "stale keep-alive connection), then retried with backoff; every request is counted",
        Planned("drop", free=STALE_RETRIES),
    ),
    Scenario(
        "hang past the per-attempt timeout",
        "attempt cancelled at `timeout`, retried",
        Planned("hang", delay=30.0),
    ),
    Scenario(
        "204 held back past the timeout (slow)",
        "attempt times out and is retried; the retry's 204 is accepted (emptying is idempotent)",
        Planned("slow_body", delay=1.0, operation_runs=True),
    ),
    Scenario(
        "error body trickled slowly (within timeout)",
        "the whole slow body is read, then handled as its status (503: retried)",
        Planned("slow_body", 503, delay=0.1),
    ),
    Scenario(
        "reply truncated (Content-Length not met)",
        "transport error, retried",
        Planned("truncated", operation_runs=True),
    ),
    Scenario(
        "malformed JSON error body (500)",
        "status decides: retried; message says the body was not JSON",
        Planned("malformed_json", 500),
    ),
    Scenario(
        "gateway HTML error page (502)",
        "status decides: retried; message quotes the page <title>",
        Planned("html", 502),
    ),
    Scenario(
        "empty error body (500)",
        "status decides: retried",
        Planned("empty_body_error", 500),
    ),
    Scenario(
        "2xx with an unexpected body",
        "not counted as accepted, not retried: failed SMHDecodeError (operation may have run)",
        Planned("unexpected_body", retryable=False, operation_runs=True, counts=(0, 0, 1)),
    ),
    Scenario(
        "403 InvalidAccessToken for one request",
        "token re-minted (single flight), request retried once",
        Planned("status", 403, "InvalidAccessToken", counts=TOKEN_FAULT_COUNTS),
    ),
    Scenario(
        "403 InvalidAccessToken storm (all tokens revoked 3x mid-run)",
        "every in-flight request is rejected; one re-mint per storm; all retried",
        on_outcome=_expire_every(40, 3),
    ),
    Scenario(
        "token expiry mid-run (token dies after 40 uses)",
        "re-minted on 403 as it expires; all accepted",
        setup=_token_uses(40),
        settings={"concurrency": 8},
    ),
    Scenario(
        "keep-alive closed after every 204, no `Connection: close` (aiohttp #3507)",
        "a request sent on the dead connection is re-sent at once (up to 2 times off the "
        "attempt budget), then retried with backoff; every request is counted",
        setup=lambda fake: _close_after_each_204(fake),
        all_reach_server=False,
    ),
    Scenario(
        "emulator killed and restarted on the same port",
        "refused/cut requests are retried with backoff until it is back",
        background=_restart_mid_run,
        settings={"max_attempts": 12, "backoff_initial": 0.1, "backoff_max": 0.5},
        all_reach_server=False,
    ),
)


def settings_for(server: FakeServer, scenario: Scenario) -> SMHSettings:
    """Client settings used by every scenario (fast backoff, short timeout)."""
    values: dict[str, Any] = {
        "base_url": server.base_url,
        "library_id": LIBRARY,
        "library_secret": SECRET,
        "concurrency": 32,
        "max_attempts": MAX_ATTEMPTS,
        "timeout": 0.25,
        "backoff_initial": 0.001,
        "backoff_max": 0.01,
        "retry_after_max": 0.05,
    }
    values.update(scenario.settings)
    return SMHSettings(**values)


def _plan(run: Run, planned: Planned, rng: random.Random) -> None:
    """Install each space's faults and record its expected (outcome, attempts)."""
    for space_id in run.ids:
        k = rng.choice(planned.counts)
        if k:
            run.fake.add_fault(
                Fault(
                    planned.action,
                    status=planned.status,
                    code=planned.code,
                    route="empty_bin",
                    space_id=space_id,
                    times=k,
                    retry_after=planned.retry_after() if planned.retry_after else None,
                    delay=planned.delay,
                )
            )
        if not planned.retryable:
            run.expected[space_id] = ("failed", 1) if k else ("accepted", 1)
        elif k < MAX_ATTEMPTS + planned.free:
            run.expected[space_id] = ("accepted", k + 1)
        else:
            run.expected[space_id] = ("failed", MAX_ATTEMPTS + planned.free)


async def run_scenario(scenario: Scenario, *, spaces: int = SPACES) -> tuple[Run, Figures]:
    """Execute one scenario on a fresh emulator; return the run (for assertions) and figures."""
    fake = FakeSMH(release_delay=0.05, seed=SEED)
    fake.add_library(LIBRARY, secret=SECRET, multi_tenant=True, recycle_bin=True)
    ids = fake.add_spaces(LIBRARY, count=spaces, items_per_space=2, item_size=100)
    async with FakeServer(fake) as server:
        run = Run(fake, server, ids)
        if scenario.planned is not None:
            _plan(run, scenario.planned, random.Random(SEED))
        if scenario.setup is not None:
            scenario.setup(fake)

        def record(outcome: PurgeOutcome) -> None:
            run.outcomes.append(outcome)
            if scenario.on_outcome is not None:
                scenario.on_outcome(run, outcome)

        async with (
            SMHClient(settings_for(server, scenario)) as smh,
            anyio.create_task_group() as tg,
        ):
            if scenario.background is not None:
                tg.start_soon(scenario.background, run)
            await smh.purge_all(ids, on_outcome=record)
            run.done.set()
        with anyio.fail_after(10):  # hung handlers are recorded once the server cancels them
            while fake.in_flight:
                await anyio.sleep(0.01)
    return run, figures(scenario.name, run)


def deletes(fake: FakeSMH) -> list[Any]:
    """The empty-bin requests that reached the emulator."""
    return [r for r in fake.requests if r.route == "empty_bin"]


def figures(name: str, run: Run) -> Figures:
    """Count what was sent and what came back."""
    counts = Counter(o.space_id for o in run.outcomes)
    attempts = sum(o.attempts for o in run.outcomes)
    return Figures(
        name=name,
        spaces=len(run.ids),
        requests=len(deletes(run.fake)),
        attempts=attempts,
        retried=sum(max(0, o.attempts - 1) for o in run.outcomes),
        accepted=sum(o.outcome.value == "accepted" for o in run.outcomes),
        failed=sum(o.outcome.value == "failed" for o in run.outcomes),
        lost=len(set(run.ids) - set(counts)),
        duplicates=sum(n - 1 for n in counts.values()),
        tokens_minted=run.fake.tokens_minted,
        failure_codes=dict(Counter(o.error_code or "?" for o in run.outcomes if o.error_code)),
    )


def markdown(rows: list[tuple[Scenario, Figures]]) -> str:
    """The figures as a markdown table."""
    head = (
        "| fault | what the client does | spaces | DELETEs reaching server | attempts "
        "| retried | accepted | failed (code) | lost | reported twice | tokens minted |\n"
        "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|\n"
    )
    lines = []
    for scenario, f in rows:
        codes = ", ".join(f"{c} {n}" for c, n in sorted(f.failure_codes.items()))
        failed = f"{f.failed} ({codes})" if codes else str(f.failed)
        lines.append(
            f"| {f.name} | {scenario.behaviour} | {f.spaces} | {f.requests} | {f.attempts} "
            f"| {f.retried} | {f.accepted} | {failed} | {f.lost} | {f.duplicates} "
            f"| {f.tokens_minted} |"
        )
    return head + "\n".join(lines) + "\n"


async def _all() -> list[tuple[Scenario, Figures]]:
    return [(s, (await run_scenario(s))[1]) for s in SCENARIOS]


def main(argv: list[str] | None = None) -> int:
    """Print the matrix (or rewrite it between the markers of ``--update FILE``)."""
    parser = argparse.ArgumentParser(prog="python -m tests.reliability_report")
    parser.add_argument("--update", type=Path, help="rewrite the table inside this document")
    args = parser.parse_args(argv)
    logging.getLogger("smh_async").addHandler(logging.NullHandler())  # no lastResort echo
    logging.getLogger("smh_async").propagate = False
    table = markdown(anyio.run(_all))
    if args.update is None:
        sys.stdout.write(table)
        return 0
    text = args.update.read_text(encoding="utf-8")
    head, _, rest = text.partition(MARK_START)
    _, _, tail = rest.partition(MARK_END)
    if not rest:
        sys.stderr.write(f"{args.update}: markers {MARK_START} / {MARK_END} not found\n")
        return 1
    args.update.write_text(f"{head}{MARK_START}\n{table}{MARK_END}{tail}", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
