"""An in-memory Smart Media Hosting emulator for tests, the demo and benchmarks.

It speaks the business-level HTTP API this project uses (tokens, tenant-space listing, space
size and usage, recycle-bin list and empty) over a real loopback socket, with SMH's error bodies,
permission checks, asynchronous space release after emptying, and injectable faults::

    from smh_async.testing import FakeServer, FakeSMH, Fault

    fake = FakeSMH(release_delay=0.2)           # emptied bytes leave size/usage 0.2 s later
    fake.add_library("lib1", secret="sec")
    ids = fake.add_spaces("lib1", count=100, items_per_space=3, item_size=4096)
    fault = fake.add_fault(Fault("status", status=503, route="empty_bin", times=2))
    async with FakeServer(fake) as server:
        ...  # point a client at server.base_url, library "lib1", secret "sec"
    assert fault.applied == 2                   # the client had to retry twice
    assert all(fake.bin_items("lib1", space_id) == [] for space_id in ids)

``fake.requests`` records every request that reached the server (never the token or secret),
``fake.peak_in_flight`` / ``peak_in_flight_by_route`` measure concurrency, ``fake.latency``
(seconds, or a callable returning seconds) slows every non-token route, ``fake.issue_token``
mints tokens without HTTP, and ``serve_forever`` runs a seeded emulator until cancelled.

For pytest suites, the plugin ``smh_async.testing._plugin`` (registered by entry point, so
active once smh-async is installed) provides the fixtures ``smh_fake`` (an :class:`SMHFake`:
a running emulator with one library, ``base_url``, ``library_id``, ``library_secret``,
``add_space``/``add_spaces`` and the ``requests`` record) and ``smh_client`` (an open
``SMHClient`` pointed at it). ``SMHFake`` works without pytest too: ``async with SMHFake()``.

Note that aiohttp's client silently retries an idempotent request (GET, DELETE) once after a
disconnect, so a ``drop``/``hang``/``close_after`` fault that fires once may never surface in
an aiohttp-based client.

Names are imported on first use (PEP 562): pytest imports the plugin module, and so this
package, in every run where smh-async is installed, and a suite that never asks for
``smh_fake`` should not pay for (or be broken by) importing aiohttp, pydantic and the client.
"""

import typing as _typing

from smh_async._lazy import lazy_names as _lazy_names

if _typing.TYPE_CHECKING:
    from smh_async.testing._fake import FakeSMH
    from smh_async.testing._fixture import SMHFake
    from smh_async.testing._main import serve_forever
    from smh_async.testing._records import Fault, RecordedRequest
    from smh_async.testing._server import FakeServer

__all__ = ["FakeSMH", "FakeServer", "Fault", "RecordedRequest", "SMHFake", "serve_forever"]

_HOME_OF = {
    "FakeSMH": "smh_async.testing._fake",
    "FakeServer": "smh_async.testing._server",
    "Fault": "smh_async.testing._records",
    "RecordedRequest": "smh_async.testing._records",
    "SMHFake": "smh_async.testing._fixture",
    "serve_forever": "smh_async.testing._main",
}

_getattr, __dir__ = _lazy_names(globals(), _HOME_OF)
# Hidden from type checkers: they see the imports above, so a misspelt name stays an error.
if not _typing.TYPE_CHECKING:
    __getattr__ = _getattr
