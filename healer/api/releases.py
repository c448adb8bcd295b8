"""``POST /api/v1/releases``: release events from pipelines, forges and Argo CD.

The body (one of the shapes of ``release_events.py``) is authenticated, validated,
turned into a ``Release`` and stored (``ReleaseLog.record_release``) before the answer,
202 with the stored id and whether healer watches the workload. The incident's page and
the diagnosis of a bad release read it from the store.

Who may post, checked in this order:

1. a GitHub delivery (``X-Hub-Signature-256`` present): the signature must be the
   HMAC-SHA256 of the raw body with ``releases.github_secret``; a forged or stale one is
   401 whatever else the request carries;
2. a GitLab delivery (``X-Gitlab-Token`` present): the token must be one of
   ``releases.gitlab_tokens``;
3. anything else: a bearer token of ``releases.tokens`` or an operator's of
   ``api.tokens`` (a viewer's token is 403: it reads, it does not tell).

Decisions:

- A release of a workload healer does not watch is stored and answered 202 with
  ``known: false``, never an error: the pipeline that posts it must not fail because
  healer has not seen the workload yet (a first deploy) or watches another cluster.
  ``known`` is null when this API has no daemon beside it to ask.
- Nothing is stored before authentication and validation pass; every comparison of a
  secret is constant-time (``hmac.compare_digest``).
- The route reads the raw body itself (the signature covers the bytes as sent), so
  the body limit of ``api.max_body_bytes`` applies as to every route.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Collection
from datetime import datetime
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPBearer
from pydantic import BaseModel, ConfigDict, ValidationError

from healer.api.alerts import ReceiverTokens
from healer.api.auth import Role, TokenTable
from healer.api.deps import ClockDep
from healer.api.release_events import WorkloadError, parse, parse_workload
from healer.audit.roles import ReleaseLog
from healer.config import ReleaseSettings
from healer.types import ReleaseSource, WorkloadRef

log = structlog.get_logger("healer.api.releases")

Watched = Callable[[], Collection[WorkloadRef] | None]
"""The workloads the daemon beside the API watches; None until it has cycled once."""


class ReleaseGate:
    """Who may post releases (``releases`` settings and the operators of ``api.tokens``)."""

    def __init__(self, settings: ReleaseSettings, tokens: TokenTable) -> None:
        secret = settings.github_secret
        self._github = secret.get_secret_value().encode() if secret else None
        self._gitlab = ReceiverTokens(settings.gitlab_tokens)
        self._pipelines = ReceiverTokens(settings.tokens)
        self._tokens = tokens

    def sender(self, request: Request, body: bytes) -> str:
        """The sender's name; HTTPException 401 (or 403 for a viewer) otherwise."""
        signature = request.headers.get("x-hub-signature-256")
        if signature is not None:
            return self._github_sender(signature, body)
        gitlab = request.headers.get("x-gitlab-token")
        if gitlab is not None:
            if self._gitlab.find(gitlab) is None:
                raise _unauthorized("invalid X-Gitlab-Token")
            return "gitlab"
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise _unauthorized("missing bearer token, X-Gitlab-Token or X-Hub-Signature-256")
        name = self._pipelines.find(token)
        if name is not None:
            return name
        principal = self._tokens.find(token)
        if principal is None:
            raise _unauthorized("invalid bearer token")
        if principal.role is not Role.OPERATOR:
            raise HTTPException(403, detail=f"{principal.name} is a viewer; posting needs more")
        return principal.name

    def _github_sender(self, signature: str, body: bytes) -> str:
        if self._github is None:
            raise _unauthorized("GitHub deliveries are not accepted: releases.github_secret unset")
        expected = "sha256=" + hmac.new(self._github, body, hashlib.sha256).hexdigest()
        if not signature.isascii() or not hmac.compare_digest(signature, expected):
            raise _unauthorized("X-Hub-Signature-256 does not match the body")
        return "github"


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


class ReleaseAccepted(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: int
    """The stored release's id."""
    workload: str
    """``namespace/Kind/name``"""
    source: ReleaseSource
    known: bool | None
    """Whether healer watches the workload; false: stored all the same; null: cannot tell."""
    at: datetime


def _gate(request: Request) -> ReleaseGate:
    gate = request.app.state.release_gate
    if not isinstance(gate, ReleaseGate):  # app.state is untyped: check once here
        raise RuntimeError("app.state.release_gate is not a ReleaseGate")
    return gate


def _log(request: Request) -> ReleaseLog:
    store = request.app.state.releases
    if not isinstance(store, ReleaseLog):
        raise HTTPException(503, detail="this server's audit store does not keep releases")
    return store


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "a body that is not JSON"},
    401: {"description": "no valid token, GitLab token or GitHub signature: nothing stored"},
    403: {"description": "a viewer's token"},
    413: {"description": "body larger than api.max_body_bytes"},
    422: {"description": "a body of none of the shapes, or no workload named"},
    503: {"description": "audit store unavailable: nothing was stored, send it again"},
}
router = APIRouter(prefix="/api/v1", tags=["releases"], responses=_ERRORS)
_bearer = HTTPBearer(
    auto_error=False,
    description="A token from releases.tokens, or an operator's from api.tokens; forges "
    "sign (X-Hub-Signature-256) or carry their secret (X-Gitlab-Token) instead.",
)
_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "description": "A GitLab deployment event, a GitHub deployment_status "
                    "event, healer's Argo CD notification body or the plain body "
                    "(docs/releases.md); read raw, as the GitHub signature covers the bytes.",
                }
            }
        },
    }
}


@router.post("/releases", status_code=202, dependencies=[Depends(_bearer)], openapi_extra=_BODY)
async def receive_release(
    request: Request,
    clock: ClockDep,
    workload: Annotated[
        str | None,
        Query(description="namespace/name or namespace/Kind/name, for a forge's webhook"),
    ] = None,
) -> ReleaseAccepted:
    """Store one release event, then answer (see the module's doc for the shapes)."""
    raw = await request.body()
    sender = _gate(request).sender(request, raw)
    store = _log(request)
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HTTPException(400, detail=f"the body is not JSON: {exc}") from exc
    received = clock()
    named = _query_workload(workload)
    try:
        body = parse(data, github_event=request.headers.get("x-github-event"))
        release = body.release(named, received)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from exc
    except WorkloadError as exc:
        raise _invalid(("body", "workload"), str(exc)) from exc
    known = _known(request, release.workload)
    stored = await run_in_threadpool(
        store.record_release, release, known=known, sender=sender, at=received
    )
    log.info(
        "release_received",
        sender=sender,
        source=release.source.value,
        workload=str(release.workload),
        known=known,
        revision=release.revision,
    )
    w = release.workload
    return ReleaseAccepted(
        id=stored.id,
        workload=f"{w.namespace}/{w.kind}/{w.name}",
        source=release.source,
        known=known,
        at=release.at,
    )


def _query_workload(text: str | None) -> WorkloadRef | None:
    if text is None:
        return None
    try:
        return parse_workload(text)
    except ValueError as exc:
        raise _invalid(("query", "workload"), str(exc)) from exc


def _invalid(loc: tuple[str, ...], msg: str) -> RequestValidationError:
    return RequestValidationError([{"type": "value_error", "loc": loc, "msg": msg}])


def _known(request: Request, workload: WorkloadRef) -> bool | None:
    watched: Watched | None = request.app.state.watched  # untyped app.state, set by create_app
    seen = watched() if watched is not None else None
    return None if seen is None else workload in seen
