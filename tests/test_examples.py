"""The example web backends, driven by their frameworks' test clients against the emulator.

The emulator comes from the project's own pytest plugin (``smh_fake``), as a user's suite
would get it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest
from aiohttp import test_utils

from examples.aiohttp_backend import app as aiohttp_example
from smh_async.testing import SMHFake

pytestmark = pytest.mark.anyio

Poll = Callable[[str], Awaitable[dict[str, Any]]]


async def poll_until_settled(poll: Poll, location: str) -> list[dict[str, Any]]:
    """Every progress body seen while polling ``location`` until it is no longer running."""
    seen: list[dict[str, Any]] = []
    with anyio.fail_after(10):
        while True:
            body = await poll(location)
            seen.append(body)
            if body["state"] != "running":
                return seen
            await anyio.sleep(0.01)


# ---------------------------------------------------------------- aiohttp


@pytest.fixture
async def aiohttp_client(smh_fake: SMHFake) -> AsyncIterator[test_utils.TestClient[Any, Any]]:
    """The aiohttp example app served on loopback, configured for the emulator."""
    app = aiohttp_example.create_app(smh_fake.settings())
    async with test_utils.TestClient(test_utils.TestServer(app)) as client:
        yield client


async def test_aiohttp_empties_one_tenant(
    smh_fake: SMHFake, aiohttp_client: test_utils.TestClient[Any, Any]
) -> None:
    """POST …/recycle-bin/empty answers 200 accepted and exactly one DELETE reaches SMH."""
    space_id = smh_fake.add_space(bin_item_sizes=[10, 20])
    resp = await aiohttp_client.post(f"/tenants/{space_id}/recycle-bin/empty")
    assert resp.status == 200
    body = await resp.json()
    assert body["space_id"] == space_id and body["status"] == "accepted"
    assert body["request_id"]
    assert smh_fake.bin_items(space_id) == []
    assert [r.space_id for r in smh_fake.requests_to("empty_bin")] == [space_id]


async def test_aiohttp_maps_errors(
    smh_fake: SMHFake, aiohttp_client: test_utils.TestClient[Any, Any]
) -> None:
    """An unknown tenant is 404 from SMH; a path-changing id is 400 and never sent."""
    resp = await aiohttp_client.post("/tenants/no-such-space/recycle-bin/empty")
    assert resp.status == 404
    assert (await resp.json())["error"] == "SpaceNotFound"
    resp = await aiohttp_client.post("/tenants/bad%3Fid/recycle-bin/empty")
    assert resp.status == 400
    assert (await resp.json())["error"] == "InvalidSpaceId"
    assert [r.space_id for r in smh_fake.requests_to("empty_bin")] == ["no-such-space"]


async def test_aiohttp_background_purge_reports_progress(smh_fake: SMHFake) -> None:
    """POST /purges answers 202 at once; polling shows progress, then the final counts."""
    ids = smh_fake.add_spaces(12, items_per_space=1)
    smh_fake.fake.latency = 0.03  # 13 spaces, 4 at a time: about 0.1 s of observable progress

    app = aiohttp_example.create_app(smh_fake.settings(concurrency=4))
    async with test_utils.TestClient(test_utils.TestServer(app)) as client:

        async def poll(location: str) -> dict[str, Any]:
            resp = await client.get(location)
            assert resp.status == 200
            body: dict[str, Any] = await resp.json()
            return body

        resp = await client.post("/purges", json={"space_ids": [*ids, "bad?id", ids[0]]})
        assert resp.status == 202
        started = await resp.json()
        assert (started["state"], started["done"], started["total"]) == ("running", 0, 13)
        seen = await poll_until_settled(poll, resp.headers["Location"])
    done = [body["done"] for body in seen]
    assert done == sorted(done) and done[0] < 13 == done[-1]  # progress only moves forward
    final = seen[-1]
    assert (final["state"], final["total"], final["accepted"], final["failed"]) == (
        "finished",
        13,
        12,
        1,
    )
    assert all(smh_fake.bin_items(space_id) == [] for space_id in ids)


async def test_aiohttp_borrows_the_app_session_and_cancels_on_shutdown(
    smh_fake: SMHFake,
) -> None:
    """The client uses the app's session and leaves it open; shutdown cancels running purges."""
    smh_fake.add_spaces(50, items_per_space=1)
    smh_fake.fake.latency = 0.5
    app = aiohttp_example.create_app(smh_fake.settings())
    async with test_utils.TestClient(test_utils.TestServer(app)) as client:
        session, smh = app[aiohttp_example.SESSION], app[aiohttp_example.SMH]
        assert smh.connection_limit == 64  # the app's connector, not one of the client's own
        resp = await client.post("/purges", json={"all_spaces": True})
        purge_id = (await resp.json())["purge_id"]
        job = app[aiohttp_example.JOBS][purge_id]
        with anyio.fail_after(5):
            while not smh_fake.fake.in_flight_by_route.get("empty_bin"):
                await anyio.sleep(0.01)
        assert job.total == 50 and job.state == "running"
        assert not session.closed
    assert session.closed
    assert job.state == "cancelled" and job.done < 50


# ---------------------------------------------------------------- FastAPI


@pytest.fixture
async def fastapi_client(smh_fake: SMHFake) -> AsyncIterator[Any]:
    """The FastAPI example behind httpx's ASGI transport, its lifespan entered."""
    pytest.importorskip("fastapi", reason="needs the fastapi extra")
    import httpx

    from examples.fastapi_backend import app as fastapi_example

    app = fastapi_example.create_app(smh_fake.settings())
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://example") as client,
    ):
        yield client


async def test_fastapi_empties_one_tenant(smh_fake: SMHFake, fastapi_client: Any) -> None:
    """POST …/recycle-bin/empty answers 200 accepted; unknown tenants are 404."""
    space_id = smh_fake.add_space(bin_item_sizes=[5])
    resp = await fastapi_client.post(f"/tenants/{space_id}/recycle-bin/empty")
    assert resp.status_code == 200
    assert resp.json()["status"] == "accepted" and resp.json()["space_id"] == space_id
    assert smh_fake.bin_items(space_id) == []
    resp = await fastapi_client.post("/tenants/nobody/recycle-bin/empty")
    assert resp.status_code == 404
    assert resp.json()["detail"]["error"] == "SpaceNotFound"
    assert [r.space_id for r in smh_fake.requests_to("empty_bin")] == [space_id, "nobody"]


async def test_fastapi_background_purge_of_all_spaces(
    smh_fake: SMHFake, fastapi_client: Any
) -> None:
    """{"all_spaces": true} lists the tenants, purges them in the background, reports counts."""
    ids = smh_fake.add_spaces(15, items_per_space=2)
    smh_fake.fake.latency = 0.01

    async def poll(location: str) -> dict[str, Any]:
        resp = await fastapi_client.get(location)
        assert resp.status_code == 200
        body: dict[str, Any] = resp.json()
        return body

    resp = await fastapi_client.post("/purges", json={"all_spaces": True})
    assert resp.status_code == 202
    started = resp.json()
    assert (started["state"], started["total"]) == ("running", None)
    seen = await poll_until_settled(poll, f"/purges/{started['purge_id']}")
    final = seen[-1]
    assert (final["state"], final["done"], final["total"], final["accepted"]) == (
        "finished",
        15,
        15,
        15,
    )
    assert all(smh_fake.bin_items(space_id) == [] for space_id in ids)
    assert len(smh_fake.requests_to("empty_bin")) == 15


async def test_fastapi_rejects_bad_requests(fastapi_client: Any) -> None:
    """A purge needs exactly one target (422), and unknown purge ids are 404."""
    resp = await fastapi_client.post("/purges", json={"space_ids": ["a"], "all_spaces": True})
    assert resp.status_code == 422
    resp = await fastapi_client.post("/purges", json={})
    assert resp.status_code == 422
    resp = await fastapi_client.get("/purges/unknown")
    assert resp.status_code == 404


async def test_fastapi_shutdown_cancels_purge_and_closes_session(smh_fake: SMHFake) -> None:
    """Leaving the lifespan cancels a running purge and closes the session it lent."""
    pytest.importorskip("fastapi", reason="needs the fastapi extra")
    import httpx

    from examples.fastapi_backend import app as fastapi_example

    ids = smh_fake.add_spaces(40, items_per_space=1)
    smh_fake.fake.latency = 0.5
    app = fastapi_example.create_app(smh_fake.settings())
    async with app.router.lifespan_context(app):
        backend = app.state.backend
        assert backend.smh.connection_limit == 64
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://example") as client:
            resp = await client.post("/purges", json={"space_ids": ids})
        job = backend.jobs[resp.json()["purge_id"]]
        with anyio.fail_after(5):
            while not smh_fake.fake.in_flight_by_route.get("empty_bin"):
                await anyio.sleep(0.01)
        assert not backend.session.closed
    assert backend.session.closed
    assert job.state == "cancelled" and job.done < 40
