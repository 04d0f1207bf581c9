"""The emulator's recycle bin: listing modes, emptying, delayed release, permissions."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from smh_async.testing import FakeServer, FakeSMH

pytestmark = pytest.mark.anyio

LIB = "lib1"


@pytest.fixture
def fake() -> FakeSMH:
    """A multi-tenant library whose emptied bytes are released 0.2 s after emptying."""
    smh = FakeSMH(release_delay=0.2)
    smh.add_library(LIB, secret="bin-secret")
    return smh


@pytest.fixture
async def http(fake: FakeSMH) -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp session against the running emulator."""
    async with FakeServer(fake) as server, aiohttp.ClientSession(server.base_url) as session:
        yield session


async def call(http: aiohttp.ClientSession, method: str, path: str, **params: Any) -> Any:
    """Send one request; return (status, decoded JSON body or None)."""
    query = {key: str(value) for key, value in params.items()}
    async with http.request(method, path, params=query) as response:
        raw = await response.read()
        return response.status, (json.loads(raw) if raw else None)


async def test_bin_list_page_mode(http: aiohttp.ClientSession, fake: FakeSMH) -> None:
    """Page mode returns totalNum and page_size items per page (default 20)."""
    sid = fake.add_space(LIB, bin_item_sizes=range(1, 46))
    token = fake.issue_token(LIB)
    path = f"/api/v1/recycled/{LIB}/{sid}"
    status, body = await call(http, "GET", path, access_token=token)
    assert (status, body["totalNum"], len(body["contents"])) == (200, 45, 20)
    status, body = await call(http, "GET", path, access_token=token, page=3, page_size=20)
    assert [item["size"] for item in body["contents"]] == [str(n) for n in range(41, 46)]
    item = body["contents"][0]
    assert isinstance(item["recycledItemId"], int)
    assert (item["type"], item["spaceId"], item["remainingTime"]) == ("file", sid, 30)
    assert isinstance(item["originalPath"], list)
    assert item["removalTime"].endswith("Z")
    status, body = await call(http, "GET", path, access_token=token, page_size=0)
    assert (body["totalNum"], body["contents"]) == (45, [])


async def test_bin_list_marker_mode(http: aiohttp.ClientSession, fake: FakeSMH) -> None:
    """Marker mode pages by nextMarker (an item id) until it is absent."""
    sid = fake.add_space(LIB, bin_item_sizes=[7] * 45)
    token = fake.issue_token(LIB)
    path = f"/api/v1/recycled/{LIB}/{sid}"
    seen: list[int] = []
    params: dict[str, Any] = {"access_token": token, "by-marker": 1, "limit": 20}
    for _ in range(10):
        status, body = await call(http, "GET", path, **params)
        assert status == 200
        assert "totalNum" not in body
        seen += [item["recycledItemId"] for item in body["contents"]]
        if not body.get("nextMarker"):
            break
        params["marker"] = body["nextMarker"]
    assert len(seen) == len(set(seen)) == 45


async def test_bin_list_param_errors(http: aiohttp.ClientSession, fake: FakeSMH) -> None:
    """Mixing page and marker params, or out-of-range sizes, is 400 ParamInvalid."""
    sid = fake.add_space(LIB, bin_item_sizes=[1])
    token = fake.issue_token(LIB)
    path = f"/api/v1/recycled/{LIB}/{sid}"
    for params in ({"page": 1, "marker": 3}, {"page_size": 1001}, {"limit": 0}, {"page": 0}):
        status, body = await call(http, "GET", path, access_token=token, **params)
        assert (status, body["code"]) == (400, "ParamInvalid"), params


async def test_empty_hides_at_once_and_releases_after_delay(
    http: aiohttp.ClientSession, fake: FakeSMH
) -> None:
    """Emptying answers 204 with no body, hides items now and frees bytes release_delay later."""
    sid = fake.add_space(LIB, bin_item_sizes=[100, 200], file_bytes=1000)
    other = fake.add_space(LIB, bin_item_sizes=[5])
    token = fake.issue_token(LIB)
    sizes = f"/api/v1/usage/{LIB}/{sid},{other}"
    assert (await call(http, "GET", sizes, access_token=token))[1][0]["size"] == "1300"
    async with http.delete(f"/api/v1/recycled/{LIB}/{sid}", params={"access_token": token}) as r:
        assert (r.status, await r.read()) == (204, b"")
    status, body = await call(http, "GET", f"/api/v1/recycled/{LIB}/{sid}", access_token=token)
    assert (status, body["totalNum"], body["contents"]) == (200, 0, [])
    status, usage = await call(http, "GET", sizes, access_token=token)
    assert status == 200
    assert usage == [
        {"spaceId": sid, "capacity": None, "availableSpace": None, "size": "1300"},
        {"spaceId": other, "capacity": None, "availableSpace": None, "size": "5"},
    ]
    assert (await call(http, "GET", f"/api/v1/usage/{LIB}", access_token=token))[1] == {
        "totalFileSize": "1305"
    }
    await asyncio.sleep(0.3)
    size = await call(http, "GET", f"/api/v1/space/{LIB}/{sid}/size", access_token=token)
    assert size == (200, {"size": "1000"})
    assert (await call(http, "GET", f"/api/v1/usage/{LIB}", access_token=token))[1] == {
        "totalFileSize": "1005"
    }
    again = await call(http, "DELETE", f"/api/v1/recycled/{LIB}/{sid}", access_token=token)
    assert again == (204, None)  # emptying an already-empty bin is still a plain 204


async def test_zero_delay_and_new_items_after_emptying(
    http: aiohttp.ClientSession, fake: FakeSMH
) -> None:
    """With release_delay 0 bytes go at once; items added later get fresh ids and count again."""
    fake.release_delay = 0
    sid = fake.add_space(LIB, bin_item_sizes=[1, 2])
    token = fake.issue_token(LIB)
    path = f"/api/v1/recycled/{LIB}/{sid}"
    assert (await call(http, "DELETE", path, access_token=token))[0] == 204
    assert fake.space_size(LIB, sid) == 0
    fake.add_bin_items(LIB, sid, [30])
    _, body = await call(http, "GET", path, access_token=token)
    assert [(i["recycledItemId"], i["size"]) for i in body["contents"]] == [(3, "30")]
    assert (fake.bin_items(LIB, sid), fake.space_size(LIB, sid)) == ([30], 30)


async def test_empty_bin_permissions(http: aiohttp.ClientSession, fake: FakeSMH) -> None:
    """Only admin, space_admin or delete_recycled may empty; others get 403 NoPermission."""
    sid = fake.add_space(LIB, bin_item_sizes=[9])
    path = f"/api/v1/recycled/{LIB}/{sid}"
    for grant in ("", "upload_file,restore_recycled"):
        token = fake.issue_token(LIB, grant=grant, space_ids=[sid])
        status, body = await call(http, "DELETE", path, access_token=token)
        assert (status, body["code"]) == (403, "NoPermission")
        assert (await call(http, "GET", path, access_token=token))[0] == 200
    assert fake.bin_items(LIB, sid) == [9]
    for grant in ("delete_recycled", "space_admin", "admin", "upload_file, delete_recycled"):
        token = fake.issue_token(LIB, grant=grant, space_ids=[sid])
        assert (await call(http, "DELETE", path, access_token=token))[0] == 204
    reader = fake.issue_token(LIB, grant="delete_recycled")
    status, body = await call(http, "GET", f"/api/v1/usage/{LIB}", access_token=reader)
    assert (status, body["code"]) == (403, "NoPermission")


async def test_require_space_scope_option(fake: FakeSMH) -> None:
    """By default (as SMH documents), a non-admin token without space_id cannot touch a
    space of a multi-tenant library; with require_space_scope off it can."""
    assert fake.require_space_scope
    sid = fake.add_space(LIB, bin_item_sizes=[1])
    async with FakeServer(fake) as server, aiohttp.ClientSession(server.base_url) as session:
        unscoped = fake.issue_token(LIB, grant="delete_recycled")
        path = f"/api/v1/recycled/{LIB}/{sid}"
        status, body = await call(session, "DELETE", path, access_token=unscoped)
        assert (status, body["code"]) == (403, "AccessTokenNotMatchSpace")
        admin = fake.issue_token(LIB, grant="admin")
        assert (await call(session, "DELETE", path, access_token=admin))[0] == 204
        fake.require_space_scope = False
        assert (await call(session, "DELETE", path, access_token=unscoped))[0] == 204


async def test_bin_disabled_library(http: aiohttp.ClientSession, fake: FakeSMH) -> None:
    """A library without a recycle bin answers 400 RecycleBinNotEnabled to list and empty."""
    fake.add_library("nobin", secret="s", recycle_bin=False)
    sid = fake.add_space("nobin")
    token = fake.issue_token("nobin")
    for method in ("GET", "DELETE"):
        status, body = await call(http, method, f"/api/v1/recycled/nobin/{sid}", access_token=token)
        assert (status, body["code"]) == (400, "RecycleBinNotEnabled")


async def test_user_id_per_request(http: aiohttp.ClientSession, fake: FakeSMH) -> None:
    """An admin token without a user may act as any user_id; other tokens may not switch user."""
    sid = fake.add_space(LIB, user_id="alice")
    path = f"/api/v1/space/{LIB}/{sid}/size"
    admin = fake.issue_token(LIB)
    assert (await call(http, "GET", path, access_token=admin, user_id="alice"))[0] == 200
    alice = fake.issue_token(LIB, grant="", user_id="alice", space_ids=[sid])
    assert (await call(http, "GET", path, access_token=alice, user_id="alice"))[0] == 200
    status, body = await call(http, "GET", path, access_token=alice, user_id="mallory")
    assert (status, body["code"]) == (403, "NoPermission")
