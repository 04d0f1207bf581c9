"""``FakeSMH``: the emulator's whole in-memory state, seeding helpers and request statistics."""

from __future__ import annotations

import bisect
import random
import secrets
import string
import time
from collections.abc import Callable, Iterable

from smh_async.testing._model import (
    SINGLE_TENANT_SPACE,
    Library,
    Space,
    Token,
    clamp_period,
    parse_grants,
)
from smh_async.testing._records import Fault, RecordedRequest
from smh_async.testing._routes import RouteMatch

_ID_ALPHABET = string.ascii_lowercase + string.digits
_LIST_MARKER_FIELDS = ("nextMarker", "marker")


class FakeSMH:
    """In-memory SMH: libraries, tenant spaces, recycle bins, tokens, faults and statistics.

    Serve it with :class:`FakeServer`. Everything is plain attributes and synchronous methods,
    so tests can seed, inject faults and inspect ``requests`` between (or during) requests.

    ``release_delay``: seconds between emptying a bin and its bytes leaving size/usage figures.
    ``seed``: makes generated space ids and fault probabilities reproducible.
    ``list_marker_field``: ``"nextMarker"`` (documented) or ``"marker"`` (SDK variant where the
    space list's continuation is under ``marker`` and absent on the last page).
    ``require_space_scope``: a non-admin token minted without ``space_id`` is refused (403
    ``AccessTokenNotMatchSpace``) on the per-space routes of a multi-tenant library, as the
    token doc says (``space_id`` is optional with ``admin``, "otherwise required"). On by
    default, so code that would fail so in production fails against the emulator too; turn
    it off to enforce only an explicit ``space_id`` list.
    ``record_requests``: keep ``requests`` (turn off for very long benchmark runs).
    """

    def __init__(
        self,
        *,
        release_delay: float = 0.5,
        seed: int = 0,
        list_marker_field: str = "nextMarker",
        require_space_scope: bool = True,
        record_requests: bool = True,
    ) -> None:
        if list_marker_field not in _LIST_MARKER_FIELDS:
            raise ValueError(f"list_marker_field must be one of {_LIST_MARKER_FIELDS}")
        self.release_delay = release_delay
        self.list_marker_field = list_marker_field
        self.require_space_scope = require_space_scope
        self.record_requests = record_requests
        self.latency: float | Callable[[], float] = 0.0
        self.token_max_uses: int | None = None
        self.libraries: dict[str, Library] = {}
        self.tokens: dict[str, Token] = {}
        self.faults: list[Fault] = []
        self.tokens_minted = 0
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0
        self.peak_in_flight = 0
        self.in_flight_by_route: dict[str, int] = {}
        self.peak_in_flight_by_route: dict[str, int] = {}
        self._id_rng = random.Random(seed)
        self.fault_rng = random.Random(seed + 1)

    # --- seeding -------------------------------------------------------------------------
    def add_library(
        self, library_id: str, *, secret: str, multi_tenant: bool = True, recycle_bin: bool = True
    ) -> None:
        """Create a library; a single-tenant one gets its only space ``-`` (empty) at once."""
        if library_id in self.libraries:
            raise ValueError(f"library {library_id!r} already exists")
        library = Library(library_id, secret, multi_tenant, recycle_bin)
        if not multi_tenant:
            library.add(Space(SINGLE_TENANT_SPACE, "", time.time(), (), 0))
        self.libraries[library_id] = library

    def add_space(
        self,
        library_id: str,
        space_id: str | None = None,
        *,
        bin_item_sizes: Iterable[int] = (),
        file_bytes: int = 0,
        user_id: str = "",
    ) -> str:
        """Create a tenant space with bin items of the given sizes and return its id.

        On a single-tenant library the content is added to its only space ``-`` instead.
        """
        library = self._library(library_id)
        sizes = tuple(bin_item_sizes)
        if not library.multi_tenant:
            if space_id not in (None, SINGLE_TENANT_SPACE):
                raise ValueError("a single-tenant library has only the space '-'")
            space = library.spaces[SINGLE_TENANT_SPACE]
            space.add_items(sizes, time.time())
            space.file_bytes += file_bytes
            return SINGLE_TENANT_SPACE
        if space_id is None:
            space_id = self._new_space_id(library)
        elif space_id in library.spaces or space_id == SINGLE_TENANT_SPACE:
            raise ValueError(f"space id {space_id!r} is taken or reserved")
        library.add(Space(space_id, user_id, time.time(), sizes, file_bytes))
        return space_id

    def add_spaces(
        self,
        library_id: str,
        *,
        count: int,
        items_per_space: int = 3,
        item_size: int = 4096,
        file_bytes: int = 0,
        user_id: str = "",
    ) -> list[str]:
        """Bulk-create ``count`` identical spaces fast (they share one bin-size tuple)."""
        library = self._library(library_id)
        if not library.multi_tenant:
            raise ValueError("bulk seeding needs a multi-tenant library")
        sizes = (item_size,) * items_per_space
        created = time.time()
        ids = [self._new_space_id(library) for _ in range(count)]
        for space_id in ids:
            library.add(Space(space_id, user_id, created, sizes, file_bytes))
        return ids

    def add_bin_items(self, library_id: str, space_id: str, sizes: Iterable[int]) -> None:
        """Move more items into a space's bin (as if files were deleted just now)."""
        self._space(library_id, space_id).add_items(tuple(sizes), time.time())

    def _new_space_id(self, library: Library) -> str:
        while True:
            space_id = "space" + "".join(self._id_rng.choices(_ID_ALPHABET, k=13))
            if space_id not in library.spaces:
                return space_id

    # --- tokens --------------------------------------------------------------------------
    def issue_token(
        self,
        library_id: str,
        *,
        grant: str = "admin",
        period: int = 86_400,
        user_id: str = "",
        space_ids: Iterable[str] | None = None,
        max_uses: int | None = None,
    ) -> str:
        """Mint a token directly (no HTTP, not counted in ``tokens_minted``).

        ``max_uses=None`` falls back to ``token_max_uses``.
        """
        self._library(library_id)
        scope = frozenset(space_ids) if space_ids is not None else None
        uses = max_uses if max_uses is not None else self.token_max_uses
        token = Token(library_id, parse_grants(grant), clamp_period(period), user_id, scope, uses)
        value = "acctk" + secrets.token_hex(24)
        self.tokens[value] = token
        return value

    def expire_all_tokens(self) -> None:
        """Make every existing token answer 403 ``InvalidAccessToken`` from now on."""
        self.tokens.clear()

    # --- faults --------------------------------------------------------------------------
    def add_fault(self, fault: Fault) -> Fault:
        """Append a fault (earlier faults take precedence); returns it to inspect ``applied``."""
        self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        """Remove every injected fault."""
        self.faults.clear()

    def pick_fault(self, match: RouteMatch, method: str) -> Fault | None:
        """The first matching fault that fires for this request, if any."""
        for fault in self.faults:
            if fault.matches(match.route, method, match.space_id) and fault.roll(self.fault_rng):
                return fault
        return None

    def latency_seconds(self) -> float:
        """The delay to apply to the current non-token request."""
        latency = self.latency
        return max(0.0, latency() if callable(latency) else latency)

    # --- statistics ----------------------------------------------------------------------
    def enter(self, route: str) -> None:
        """Count a request arriving in the handler (before latency)."""
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        current = self.in_flight_by_route.get(route, 0) + 1
        self.in_flight_by_route[route] = current
        self.peak_in_flight_by_route[route] = max(
            self.peak_in_flight_by_route.get(route, 0), current
        )

    def leave(self, route: str, record: RecordedRequest) -> None:
        """Count a request leaving the handler and record it in arrival order."""
        self.in_flight -= 1
        self.in_flight_by_route[route] -= 1
        if self.record_requests:
            bisect.insort(self.requests, record, key=lambda item: item.started_at)

    def reset_stats(self) -> None:
        """Forget recorded requests; peaks restart from what is in flight right now."""
        self.requests.clear()
        self.peak_in_flight = self.in_flight
        self.peak_in_flight_by_route = {k: v for k, v in self.in_flight_by_route.items() if v}

    # --- inspection ----------------------------------------------------------------------
    def bin_items(self, library_id: str, space_id: str) -> list[int]:
        """Sizes of the items currently visible in the space's recycle bin."""
        return list(self._space(library_id, space_id).bin_sizes)

    def space_size(self, library_id: str, space_id: str) -> int:
        """Bytes the space counts now (files + bin + emptied bytes not yet released)."""
        return self._space(library_id, space_id).counted_bytes(time.monotonic())

    def library_size(self, library_id: str) -> int:
        """Sum of ``space_size`` over the library (what ``totalFileSize`` reports)."""
        now = time.monotonic()
        return sum(space.counted_bytes(now) for space in self._library(library_id).order)

    def _library(self, library_id: str) -> Library:
        try:
            return self.libraries[library_id]
        except KeyError:
            raise KeyError(f"no library {library_id!r}") from None

    def _space(self, library_id: str, space_id: str) -> Space:
        try:
            return self._library(library_id).spaces[space_id]
        except KeyError:
            raise KeyError(f"no space {space_id!r} in library {library_id!r}") from None
