"""``SMHFake``: a running emulator with one library, ready for a client (what ``smh_fake`` is).

It needs no pytest, so it also serves ``unittest`` suites and scripts::

    async with SMHFake() as smh_fake:
        space_id = smh_fake.add_space(bin_item_sizes=[1024, 2048])
        async with smh_fake.client() as smh:
            await smh.empty_recycle_bin(space_id)
        assert smh_fake.bin_items(space_id) == []
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from types import TracebackType
from typing import Any

from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from smh_async._client import SMHClient
from smh_async._settings import SMHSettings
from smh_async.testing._fake import FakeSMH
from smh_async.testing._records import Fault, RecordedRequest
from smh_async.testing._server import FakeServer

__all__ = ["KeywordOnlySettings", "SMHFake"]

# Retry waits in tests should be instant-ish; SMHSettings' defaults are for production.
_FAST_RETRIES: dict[str, Any] = {"backoff_initial": 0.001, "backoff_max": 0.01, "timeout": 5.0}


class KeywordOnlySettings(SMHSettings):
    """Settings from keyword arguments only, for a client of an emulator started in-process.

    Tests (and the demo) talk to their own emulator: a developer's ``SMH_*`` variables or
    ``.env`` (``SMH_MAX_ATTEMPTS=1``, ``SMH_RATE``, a proxy, a value that does not parse) must
    not change or break them.
    """

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


class SMHFake:
    """An SMH emulator serving one multi-tenant library on a loopback port.

    Use as ``async with SMHFake() as smh_fake:``. ``base_url``, ``library_id`` and
    ``library_secret`` are what a client needs; :meth:`settings` and :meth:`client` build
    one. ``requests`` is the record of every request that reached the server (never the
    token or secret). ``fake`` and ``server`` give the full emulator API (faults, latency,
    tokens, stopping and restarting the server) when the shortcuts here are not enough.
    """

    def __init__(
        self,
        *,
        library_id: str = "smh-test-library",
        library_secret: str | None = None,
        release_delay: float = 0.05,
        seed: int = 0,
    ) -> None:
        self.library_id = library_id
        self.library_secret = library_secret or "libsecret-" + secrets.token_urlsafe(16)
        self.fake = FakeSMH(release_delay=release_delay, seed=seed)
        self.fake.add_library(library_id, secret=self.library_secret, multi_tenant=True)
        self.server = FakeServer(self.fake)

    def __repr__(self) -> str:
        return f"SMHFake(base_url={self.base_url!r}, library_id={self.library_id!r})"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` of the running emulator."""
        return self.server.base_url

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request served so far, in arrival order (a live list)."""
        return self.fake.requests

    def requests_to(self, route: str) -> list[RecordedRequest]:
        """The served requests of one route, e.g. ``"empty_bin"``, ``"space_list"``."""
        return [r for r in self.fake.requests if r.route == route]

    def add_space(
        self, space_id: str | None = None, *, bin_item_sizes: Iterable[int] = (1024,)
    ) -> str:
        """Create a tenant space whose recycle bin holds items of these sizes; return its id."""
        return self.fake.add_space(self.library_id, space_id, bin_item_sizes=bin_item_sizes)

    def add_spaces(
        self, count: int, *, items_per_space: int = 3, item_size: int = 4096
    ) -> list[str]:
        """Create ``count`` tenant spaces with generated ids, each with a full bin."""
        return self.fake.add_spaces(
            self.library_id, count=count, items_per_space=items_per_space, item_size=item_size
        )

    def bin_items(self, space_id: str) -> list[int]:
        """Sizes of the items a space's recycle bin shows right now."""
        return self.fake.bin_items(self.library_id, space_id)

    def add_fault(self, fault: Fault) -> Fault:
        """Inject a fault (see :class:`Fault`); returns it so ``applied`` can be checked."""
        return self.fake.add_fault(fault)

    def settings(self, **overrides: Any) -> SMHSettings:
        """Settings for this emulator: its library and secret, near-instant retry backoff.

        Only these values and ``overrides`` count: no ``SMH_*`` variable and no ``.env``
        file, so a developer's real credentials never reach the emulator and their tuning
        (``SMH_MAX_ATTEMPTS``, ``SMH_RATE``, ...) never changes what a test sees.
        """
        values: dict[str, Any] = {
            "base_url": self.base_url,
            "library_id": self.library_id,
            "library_secret": self.library_secret,
            **_FAST_RETRIES,
        }
        values.update(overrides)
        return KeywordOnlySettings(**values)

    def client(self, **overrides: Any) -> SMHClient:
        """A new (not yet opened) :class:`SMHClient` for this emulator."""
        return SMHClient(self.settings(**overrides))

    async def __aenter__(self) -> SMHFake:
        await self.server.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.server.stop()
