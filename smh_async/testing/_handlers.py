"""The emulated SMH routes besides tokens: space list/size, usage, recycle-bin list and empty.

Handlers are plain functions ``Call -> Reply`` that raise :class:`SMHError`; the dispatcher in
``_app`` turns both into HTTP. Pages cost O(page) so 100,000-space libraries stay fast.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections.abc import Callable, Mapping

from smh_async.testing._model import (
    EMPTY_BIN_GRANTS,
    LIST_ALL_GRANTS,
    SMHError,
    Space,
    iso_time,
)
from smh_async.testing._tokens import (
    Call,
    Caller,
    Reply,
    authenticate,
    create_token,
    delete_token,
    renew_token,
    resolve_space,
)

_MARKER = re.compile(r"p(\d{1,12})")
RETENTION_DAYS = 30


def int_param(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """Read an integer query parameter within ``[low, high]`` or raise 400 ``ParamInvalid``."""
    raw = query.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SMHError(400, "ParamInvalid", f"{name} must be an integer") from None
    if not low <= value <= high:
        raise SMHError(400, "ParamInvalid", f"{name} must be within [{low}, {high}]")
    return value


def encode_marker(position: int) -> str:
    """An opaque list marker for a position in the library's space order."""
    return base64.urlsafe_b64encode(f"p{position}".encode()).decode().rstrip("=")


def decode_marker(marker: str, size: int) -> int:
    """The position a marker stands for; 404 ``MarkerNotFound`` if it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(marker + "=" * (-len(marker) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raw = ""
    found = _MARKER.fullmatch(raw)
    if found is None or int(found.group(1)) > size:
        raise SMHError(404, "MarkerNotFound", "marker not found")
    return int(found.group(1))


def space_list(call: Call) -> Reply:
    """``GET /api/v1/space/{lib}/list``: one page of tenant spaces in creation order."""
    caller = authenticate(call)
    library = caller.library
    if not library.multi_tenant:
        raise SMHError(400, "NotMultiSpaceLibrary", "library is not multi-tenant")
    limit = int_param(call.query, "limit", 1000, 1, 1000)
    marker = call.query.get("marker", "")
    start = decode_marker(marker, len(library.order)) if marker else 0
    if caller.has_any(LIST_ALL_GRANTS):
        page = library.order[start : start + limit]
        following = start + len(page)
        next_position = following if following < len(library.order) else None
    else:
        page, next_position = _own_spaces(library.order, start, limit, caller.user_id)
    body: dict[str, object] = {
        "list": [
            {"spaceId": s.space_id, "userId": s.user_id, "creationTime": iso_time(s.created_at)}
            for s in page
        ]
    }
    next_marker = encode_marker(next_position) if next_position is not None else None
    if call.fake.list_marker_field == "nextMarker":
        body["marker"] = marker
        if next_marker is not None:
            body["nextMarker"] = next_marker
    elif next_marker is not None:
        body["marker"] = next_marker
    return Reply(200, body)


def _own_spaces(
    order: list[Space], start: int, limit: int, user_id: str
) -> tuple[list[Space], int | None]:
    """Spaces created by ``user_id`` from ``start``; a scan, since ownership is not indexed."""
    page: list[Space] = []
    for position in range(start, len(order)):
        if order[position].user_id == user_id:
            if len(page) == limit:
                return page, position
            page.append(order[position])
    return page, None


def space_size(call: Call) -> Reply:
    """``GET /api/v1/space/{lib}/{space}/size``: counted bytes as a string."""
    caller = authenticate(call)
    space = resolve_space(call, caller, call.match.space_id or "")
    return Reply(200, {"size": str(space.counted_bytes(time.monotonic()))})


def usage_spaces(call: Call) -> Reply:
    """``GET /api/v1/usage/{lib}/{id1,id2,...}``: per-space usage; no quota (null capacity)."""
    caller = authenticate(call)
    ids = (call.match.space_id or "").split(",")
    if any(not space_id for space_id in ids):
        raise SMHError(400, "ParamInvalid", "empty space id in list")
    now = time.monotonic()
    spaces = [resolve_space(call, caller, space_id) for space_id in ids]
    return Reply(
        200,
        [
            {
                "spaceId": space.space_id,
                "capacity": None,
                "availableSpace": None,
                "size": str(space.counted_bytes(now)),
            }
            for space in spaces
        ],
    )


def usage_library(call: Call) -> Reply:
    """``GET /api/v1/usage/{lib}``: the library's total bytes (admin only)."""
    caller = authenticate(call)
    if "admin" not in caller.token.grants:
        raise SMHError(403, "NoPermission", "library usage needs the admin grant")
    return Reply(200, {"totalFileSize": str(call.fake.library_size(caller.library.library_id))})


def _bin_space(call: Call) -> tuple[Caller, Space]:
    caller = authenticate(call)
    space = resolve_space(call, caller, call.match.space_id or "")
    return caller, space


def _require_bin(caller: Caller) -> None:
    if not caller.library.recycle_bin:
        raise SMHError(400, "RecycleBinNotEnabled", "recycle bin is not enabled")


def _item(space: Space, index: int, size: int) -> dict[str, object]:
    item_id = space.first_item_id + index
    name = f"file-{item_id}.bin"
    created = iso_time(space.created_at)
    return {
        "recycledItemId": item_id,
        "name": name,
        "type": "file",
        "size": str(size),
        "spaceId": space.space_id,
        "originalPath": ["documents", name],
        "creationTime": created,
        "modificationTime": created,
        "removalTime": iso_time(space.removed_at),
        "remainingTime": RETENTION_DAYS,
    }


def bin_list(call: Call) -> Reply:
    """``GET /api/v1/recycled/{lib}/{space}``: page mode (``totalNum``) or marker mode."""
    caller, space = _bin_space(call)
    _require_bin(caller)
    query = call.query
    page_mode = "page" in query or "page_size" in query
    marker_mode = any(key in query for key in ("marker", "limit", "by-marker"))
    if page_mode and marker_mode:
        raise SMHError(400, "ParamInvalid", "page/page_size cannot be mixed with marker/limit")
    sizes = space.bin_sizes
    if marker_mode:
        limit = int_param(query, "limit", 20, 1, 1000)
        marker = int_param(query, "marker", space.first_item_id, 0, 2**62)
        offset = max(0, marker - space.first_item_id)
        end = offset + limit
        body: dict[str, object] = {
            "contents": [_item(space, i, sizes[i]) for i in range(offset, min(end, len(sizes)))]
        }
        if end < len(sizes):
            body["nextMarker"] = space.first_item_id + end
        return Reply(200, body)
    page = int_param(query, "page", 1, 1, 2**31)
    page_size = int_param(query, "page_size", 20, 0, 1000)
    offset = (page - 1) * page_size
    chosen = range(offset, min(offset + page_size, len(sizes)))
    return Reply(
        200, {"totalNum": len(sizes), "contents": [_item(space, i, sizes[i]) for i in chosen]}
    )


def empty_bin(call: Call) -> Reply:
    """``DELETE /api/v1/recycled/{lib}/{space}``: hide all items now, release bytes later; 204."""
    caller, space = _bin_space(call)
    if not caller.has_any(EMPTY_BIN_GRANTS):
        raise SMHError(
            403, "NoPermission", "emptying the bin needs admin, space_admin or delete_recycled"
        )
    _require_bin(caller)
    space.empty_bin(time.monotonic() + max(0.0, call.fake.release_delay))
    return Reply(204)


HANDLERS: dict[str, Callable[[Call], Reply]] = {
    "token_create": create_token,
    "token_renew": renew_token,
    "token_delete": delete_token,
    "space_list": space_list,
    "space_size": space_size,
    "usage_spaces": usage_spaces,
    "usage_library": usage_library,
    "bin_list": bin_list,
    "empty_bin": empty_bin,
}


def handle(call: Call) -> Reply:
    """Run the route's handler; unknown routes answer 404 ``RouteNotFound``."""
    handler = HANDLERS.get(call.match.route)
    if handler is None:
        raise SMHError(404, "RouteNotFound", "route not found")
    return handler(call)
