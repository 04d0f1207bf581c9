"""Token routes (mint, renew, delete) and the access checks every other route goes through."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from smh_async.testing._model import (
    Library,
    SMHError,
    Space,
    Token,
    clamp_period,
)
from smh_async.testing._routes import RouteMatch

if TYPE_CHECKING:
    from smh_async.testing._fake import FakeSMH


@dataclass(frozen=True, slots=True)
class Call:
    """One request as the route handlers see it (no aiohttp types)."""

    fake: FakeSMH
    method: str
    match: RouteMatch
    query: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Reply:
    """A successful answer: status plus a JSON-serialisable body (``None`` = no body)."""

    status: int
    body: object | None = None


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated request: its library, token and the user it acts as."""

    library: Library
    token: Token
    user_id: str

    def has_any(self, grants: frozenset[str]) -> bool:
        """Whether the token carries at least one of ``grants``."""
        return not self.token.grants.isdisjoint(grants)


def _token_reply(call: Call, token_value: str, token: Token) -> Reply:
    return Reply(200, {"accessToken": token_value, "expiresIn": token.period})


def create_token(call: Call) -> Reply:
    """``GET|POST /api/v1/token``: check the library id/secret and mint a token."""
    query = call.query
    library_id = query.get("library_id", "")
    secret = query.get("library_secret", "")
    if not library_id or not secret:
        raise SMHError(400, "EmptyLibraryIdOrSecret", "library_id and library_secret are required")
    library = call.fake.libraries.get(library_id)
    if library is None or library.secret != secret:
        raise SMHError(404, "WrongLibraryIdOrSecret", "wrong library id or secret")
    raw_spaces = query.get("space_id", "")
    space_ids = [part for part in raw_spaces.split(",") if part] if raw_spaces else None
    value = call.fake.issue_token(
        library_id,
        grant=query.get("grant", ""),
        period=clamp_period(query.get("period")),
        user_id=query.get("user_id", ""),
        space_ids=space_ids,
    )
    call.fake.tokens_minted += 1
    return _token_reply(call, value, call.fake.tokens[value])


def _path_token(call: Call) -> tuple[str, Token]:
    library_id = call.match.library_id or ""
    value = call.match.path_token or ""
    if library_id not in call.fake.libraries:
        raise SMHError(404, "LibraryNotFound", "library not found")
    token = call.fake.tokens.get(value)
    if token is None or not token.alive(time.monotonic()):
        raise SMHError(403, "InvalidAccessToken", "access token is invalid or expired")
    if token.library_id != library_id:
        raise SMHError(403, "AccessTokenNotMatchLibrary", "access token belongs to another library")
    return value, token


def renew_token(call: Call) -> Reply:
    """``POST /api/v1/token/{lib}/{token}``: extend by the original period."""
    value, token = _path_token(call)
    token.renew(time.monotonic())
    return _token_reply(call, value, token)


def delete_token(call: Call) -> Reply:
    """``DELETE /api/v1/token/{lib}/{token}``: revoke; 204 with no body."""
    value, _ = _path_token(call)
    del call.fake.tokens[value]
    return Reply(204)


def authenticate(call: Call) -> Caller:
    """Validate ``access_token`` (and ``user_id``) for the path's library; counts one use."""
    value = call.query.get("access_token", "")
    if not value:
        raise SMHError(400, "EmptyAccessToken", "access_token is required")
    now = time.monotonic()
    token = call.fake.tokens.get(value)
    if token is None or not token.alive(now):
        raise SMHError(403, "InvalidAccessToken", "access token is invalid or expired")
    token.use(now)
    library = call.fake.libraries.get(call.match.library_id or "")
    if library is None:
        raise SMHError(404, "LibraryNotFound", "library not found")
    if token.library_id != library.library_id:
        raise SMHError(403, "AccessTokenNotMatchLibrary", "access token belongs to another library")
    user_id = call.query.get("user_id", "")
    if user_id and user_id != token.user_id:
        # Only an admin token minted without a user may act as another user.
        if "admin" not in token.grants or token.user_id:
            raise SMHError(403, "NoPermission", "this token may not act as another user")
        return Caller(library, token, user_id)
    return Caller(library, token, token.user_id)


def resolve_space(call: Call, caller: Caller, space_id: str) -> Space:
    """Find a space the caller's token covers (scope is checked before existence)."""
    token = caller.token
    if token.space_ids is not None and caller.library.multi_tenant:
        if space_id not in token.space_ids:
            raise SMHError(
                403, "AccessTokenNotMatchSpace", "access token does not cover this space"
            )
    elif (
        call.fake.require_space_scope
        and caller.library.multi_tenant
        and "admin" not in token.grants
    ):
        raise SMHError(403, "AccessTokenNotMatchSpace", "token has no space scope")
    space = caller.library.spaces.get(space_id)
    if space is None:
        raise SMHError(404, "SpaceNotFound", f"space {space_id} not found")
    return space
