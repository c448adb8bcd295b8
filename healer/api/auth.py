"""Bearer tokens with roles: viewer reads; operator also approves, rejects and labels.

Tokens are configured in settings as the SHA-256 of the token (``ApiToken``), so a leaked
settings file does not leak access. A token is random and long (``new_token``: 256 bits),
so a plain hash is as safe as a slow password hash would be, and costs microseconds per
request. Comparison is constant-time.

The API reads ``Authorization: Bearer <token>``; the review page logs in with the same
tokens through a form (a browser cannot add the header to a link or a form) and keeps a
session in a cookie: never the token itself, but which token (a prefix of its hash), an
expiry and an HMAC of both (``Sessions``). A stolen cookie expires, a token removed from
the settings ends its sessions, and replicas sharing ``api.cursor_secret`` accept each
other's sessions.
No token or an unknown one: 401 with ``WWW-Authenticate: Bearer``; a viewer asking for an
operator's route: 403. ``viewer`` and ``operator`` are ``async def``, as they never
block: FastAPI would run a plain ``def`` dependency in its thread pool.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from healer.config import ApiToken

COOKIE = "healer_session"
"""The review page's session cookie (HttpOnly, SameSite=Strict, Secure over https)."""

SESSION_S = 12 * 3600
"""A review page session lasts a working day; then the form asks for the token again."""

_TOKEN_ID_HEX = 16
"""Hex digits of a token's SHA-256 that name it in a session: 64 bits tell the configured
tokens apart, and say nothing usable about the token."""


class Role(enum.StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role


def new_token() -> str:
    """A fresh random token: 32 bytes, URL-safe base64."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenTable:
    """The configured tokens, looked up by the hash of what a client sends."""

    def __init__(self, tokens: Sequence[ApiToken]) -> None:
        self._tokens = tuple(tokens)

    def find(self, token: str | None) -> Principal | None:
        if not token:
            return None
        digest = hash_token(token)
        found = None
        for entry in self._tokens:  # no early exit: time does not depend on the match
            if hmac.compare_digest(entry.sha256, digest):
                found = Principal(entry.name, Role(entry.role))
        return found


class Sessions:
    """Signed review page sessions: ``<token id>.<expiry, unix s>.<HMAC-SHA256>``.

    ``key`` signs them (derived from the API's secret, for this use alone); ``wall``
    is the wall clock in seconds, also in the demo, whose simulated clock runs fast.
    """

    def __init__(
        self,
        tokens: Sequence[ApiToken],
        *,
        key: bytes,
        ttl_s: float = SESSION_S,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._by_id = {t.sha256[:_TOKEN_ID_HEX]: t for t in tokens}
        self._key = hmac.new(key, b"healer review page session", hashlib.sha256).digest()
        self._ttl_s, self._wall = ttl_s, wall

    def issue(self, token: str) -> str | None:
        """A session for ``token``, or None when it is not a configured token."""
        digest = hash_token(token)
        entry = self._by_id.get(digest[:_TOKEN_ID_HEX])
        if entry is None or not hmac.compare_digest(entry.sha256, digest):
            return None
        body = f"{digest[:_TOKEN_ID_HEX]}.{int(self._wall() + self._ttl_s)}"
        return f"{body}.{self._sign(body)}"

    def find(self, cookie: str | None) -> Principal | None:
        """The session's principal; None when unsigned, expired or its token is gone."""
        body, _, mac = (cookie or "").rpartition(".")
        token_id, _, expires = body.partition(".")
        if not mac or not (cookie or "").isascii():  # compare_digest refuses non-ASCII str
            return None
        if not hmac.compare_digest(mac, self._sign(body)):
            return None
        entry = self._by_id.get(token_id)
        if entry is None or not expires.isdigit() or int(expires) < self._wall():
            return None
        return Principal(entry.name, Role(entry.role))

    def _sign(self, body: str) -> str:
        return hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()


_bearer = HTTPBearer(auto_error=False, description="A token from api.tokens in the settings.")


def _table(request: Request) -> TokenTable:
    table = request.app.state.tokens
    if not isinstance(table, TokenTable):  # app.state is untyped: check once here
        raise RuntimeError("app.state.tokens is not a TokenTable")
    return table


async def viewer(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """Any valid token; 401 otherwise."""
    token = credentials.credentials if credentials else None
    principal = _table(request).find(token)
    if principal is None:
        detail = "invalid bearer token" if token else "missing bearer token"
        raise HTTPException(401, detail=detail, headers={"WWW-Authenticate": "Bearer"})
    return principal


async def operator(principal: Annotated[Principal, Depends(viewer)]) -> Principal:
    """A valid operator token; 403 for a viewer."""
    if principal.role is not Role.OPERATOR:
        raise HTTPException(403, detail=f"{principal.name} is a viewer; this needs an operator")
    return principal


def from_cookie(request: Request) -> Principal | None:
    """The review page's principal, or None when its cookie holds no valid session."""
    sessions = request.app.state.sessions
    if not isinstance(sessions, Sessions):  # app.state is untyped: check once here
        raise RuntimeError("app.state.sessions is not a Sessions")
    return sessions.find(request.cookies.get(COOKIE))


Viewer = Annotated[Principal, Depends(viewer)]
Operator = Annotated[Principal, Depends(operator)]
