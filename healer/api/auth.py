"""Bearer tokens with roles: viewer reads; operator also approves, rejects and labels.

Tokens are configured in settings as the SHA-256 of the token (``ApiToken``), so a leaked
settings file does not leak access. A token is random and long (``new_token``: 256 bits),
so a plain hash is as safe as a slow password hash would be, and costs microseconds per
request. Comparison is constant-time.

The API reads ``Authorization: Bearer <token>``; the review page reads the same token
from a cookie set by its login form (a browser cannot add the header to a link or a form).
No token or an unknown one: 401 with ``WWW-Authenticate: Bearer``; a viewer asking for an
operator's route: 403. ``viewer`` and ``operator`` are ``async def``, as they never
block: FastAPI would run a plain ``def`` dependency in its thread pool.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from healer.config import ApiToken

COOKIE = "healer_token"
"""The review page's cookie holding the token (HttpOnly, SameSite=Strict)."""


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
    """The review page's principal, or None when its cookie holds no valid token."""
    return _table(request).find(request.cookies.get(COOKIE))


Viewer = Annotated[Principal, Depends(viewer)]
Operator = Annotated[Principal, Depends(operator)]
