"""Run a seeded emulator until cancelled (behind ``smh-async fake-server`` and the demo)."""

from __future__ import annotations

import asyncio
import math
import secrets
from collections.abc import Callable

from smh_async.testing._fake import FakeSMH
from smh_async.testing._server import FakeServer, check_loopback

ReadyCallback = Callable[[FakeServer, FakeSMH, str], None]


def seeded_fake(
    *,
    library_id: str,
    library_secret: str,
    spaces: int,
    items_per_space: int,
    item_size: int,
    release_delay: float,
    latency: float,
    record_requests: bool = True,
) -> FakeSMH:
    """A FakeSMH with one multi-tenant library of ``spaces`` identical tenant spaces.

    Raises ``ValueError`` naming a negative count or size, or a delay that is negative, inf
    or nan (an infinite latency would hang every request, a nan delay release at once).
    """
    for name, count in (("spaces", spaces), ("items_per_space", items_per_space)):
        if count < 0:
            raise ValueError(f"{name} must be 0 or more, not {count}")
    if item_size < 0:
        raise ValueError(f"item_size must be 0 or more bytes, not {item_size}")
    for name, seconds in (("release_delay", release_delay), ("latency", latency)):
        if not 0 <= seconds < math.inf:
            raise ValueError(f"{name} must be a finite number of seconds >= 0, not {seconds}")
    fake = FakeSMH(release_delay=release_delay, record_requests=record_requests)
    fake.latency = latency
    fake.add_library(library_id, secret=library_secret, multi_tenant=True, recycle_bin=True)
    fake.add_spaces(library_id, count=spaces, items_per_space=items_per_space, item_size=item_size)
    return fake


async def serve_forever(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    library_id: str = "demo-lib",
    library_secret: str | None = None,
    spaces: int = 1000,
    items_per_space: int = 3,
    item_size: int = 4096,
    release_delay: float = 2.0,
    latency: float = 0.0,
    ready: ReadyCallback | None = None,
    allow_remote: bool = False,
    record_requests: bool = True,
) -> None:
    """Seed an emulator, serve it, call ``ready(server, fake, secret)``, then wait forever.

    Returns only by cancellation (Ctrl-C in the CLI), after closing the server. A random
    library secret is generated when none is given; it is handed to ``ready`` and never logged.
    Non-loopback hosts raise ``ValueError`` unless ``allow_remote`` is true.
    ``record_requests=False`` keeps no record of served requests, so memory stays flat
    however long it serves (``smh-async fake-server``, where nobody could read the record).
    """
    check_loopback(host, allow_remote=allow_remote)
    secret = library_secret if library_secret is not None else secrets.token_urlsafe(24)
    fake = seeded_fake(
        library_id=library_id,
        library_secret=secret,
        spaces=spaces,
        items_per_space=items_per_space,
        item_size=item_size,
        release_delay=release_delay,
        latency=latency,
        record_requests=record_requests,
    )
    async with FakeServer(fake, host=host, port=port, allow_remote=allow_remote) as server:
        if ready is not None:
            ready(server, fake, secret)
        await asyncio.Event().wait()
