"""Map ``(method, raw path)`` to an emulated SMH route, before any auth or fault handling.

Routing is done by hand rather than with aiohttp's router so that one dispatcher sees every
request (faults, latency, recording apply uniformly) and unknown paths get SMH's JSON
``RouteNotFound`` instead of aiohttp's HTML 404/405.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

TOKEN_ROUTES = frozenset({"token_create", "token_renew", "token_delete"})
ROUTE_NAMES = (
    "token_create",
    "token_renew",
    "token_delete",
    "space_list",
    "space_size",
    "usage_spaces",
    "usage_library",
    "bin_list",
    "empty_bin",
    "unknown",
)
_PREFIX = ("", "api", "v1")


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """The route a request addresses and the path parameters it carries."""

    route: str
    library_id: str | None = None
    space_id: str | None = None
    path_token: str | None = None
    recorded_path: str = ""


def _unknown(raw_path: str) -> RouteMatch:
    return RouteMatch("unknown", recorded_path=raw_path)


def match_route(method: str, raw_path: str) -> RouteMatch:
    """Resolve a request to a route; the recorded path never contains a token."""
    parts = raw_path.split("/")
    if tuple(parts[:3]) != _PREFIX or len(parts) < 4:
        return _unknown(raw_path)
    segments = [unquote(part) for part in parts[4:]]
    if any(not segment for segment in segments):
        return _unknown(raw_path)
    resource = parts[3]
    if resource == "token":
        return _token_route(method, raw_path, parts, segments)
    if not segments:
        return _unknown(raw_path)
    library_id = segments[0]
    name = _resource_route(method, resource, segments)
    if name is None:
        return _unknown(raw_path)
    space_id = segments[1] if len(segments) > 1 and name != "space_list" else None
    return RouteMatch(name, library_id, space_id, recorded_path=raw_path)


def _token_route(method: str, raw_path: str, parts: list[str], segments: list[str]) -> RouteMatch:
    if not segments and method in ("GET", "POST"):
        return RouteMatch("token_create", recorded_path=raw_path)
    if len(segments) == 2 and method in ("POST", "DELETE"):
        name = "token_renew" if method == "POST" else "token_delete"
        redacted = "/".join([*parts[:5], "{token}"])
        return RouteMatch(name, segments[0], path_token=segments[1], recorded_path=redacted)
    if segments:
        # Never keep what may be a token in the record, even for an unknown token route.
        return _unknown("/".join([*parts[:5], "{redacted}"] if len(parts) > 5 else parts[:5]))
    return _unknown(raw_path)


def _resource_route(method: str, resource: str, segments: list[str]) -> str | None:
    count = len(segments)
    if method == "GET":
        if resource == "space" and count == 2 and segments[1] == "list":
            return "space_list"
        if resource == "space" and count == 3 and segments[2] == "size":
            return "space_size"
        if resource == "usage" and count in (1, 2):
            return "usage_library" if count == 1 else "usage_spaces"
        if resource == "recycled" and count == 2:
            return "bin_list"
    if method == "DELETE" and resource == "recycled" and count == 2:
        return "empty_bin"
    return None
