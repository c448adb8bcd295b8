"""The ``/api/v1`` routes: incidents, actions and their review, feedback, playbooks,
models, status.

Thin: parse and check the request (FastAPI answers 422 naming a bad field), call the
store, shape the answer with ``schemas``. Reads need a viewer token, changes an operator
token. A write either changes what it says or nothing: the store checks and writes in
one transaction, and a refused request (unknown id 404, not pending 409) leaves every
record as it was.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi import Path as PathParam
from pydantic import JsonValue

from healer.api.auth import Operator, Viewer
from healer.api.cursor import BadCursor
from healer.api.deps import ClockDep, ContextDep, StatusDep, StoreDep
from healer.api.listing import (
    MAX_PAGE,
    Cluster,
    Cursor,
    Limit,
    ListQuery,
    Name,
    Namespace,
    Since,
    Until,
    load_page,
    query_key,
)
from healer.api.schemas import (
    ActionList,
    ActionOut,
    ApproveIn,
    DaemonStatus,
    FeedbackIn,
    FeedbackOut,
    GuardState,
    IncidentDetailOut,
    IncidentPage,
    ModelCard,
    ModelList,
    PlaybookList,
    RejectIn,
)
from healer.audit.roles import ReviewQueue
from healer.audit.views import FeedbackInput
from healer.config import GuardSettings
from healer.types import ActionStatus, Cause, IncidentStatus, JsonObject

MAX_ID = 2**63 - 1
"""Ids are 64-bit integers in every backend; a larger one cannot name a record."""

_AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "a body that cannot be parsed, or a cursor this server did not issue"},
    401: {"description": "missing or invalid bearer token"},
    403: {"description": "the token's role may not do this"},
}
router = APIRouter(prefix="/api/v1", tags=["api"], responses=_AUTH_ERRORS)


Id = Annotated[int, PathParam(ge=1, le=MAX_ID)]


@router.get("/incidents", response_model=IncidentPage)
async def list_incidents(
    _: Viewer,
    request: Request,
    store: StoreDep,
    ctx: ContextDep,
    status: IncidentStatus | None = None,
    namespace: Namespace = None,
    workload: Name = None,
    cause: Cause | None = None,
    since: Since = None,
    until: Until = None,
    limit: Limit = 50,
    cursor: Cursor = None,
    cluster: Cluster = None,
) -> Response:
    """Incidents newest first, filtered, one page at a time (keyset pagination on id)."""
    # Most requests are answered by listing.ListAnswers before this route runs: those
    # whose page is kept or whose query is plainly valid (listing.py). The same
    # parameters (ListQuery), the same page; async, so that only a page not kept goes
    # to the thread pool.
    query = ListQuery.model_construct(
        status=status,
        namespace=namespace,
        workload=workload,
        cause=cause,
        since=since,
        until=until,
        limit=limit,
        cursor=cursor,
        cluster=cluster,
    )
    try:
        body = await load_page(
            query,
            query_key(request.scope),
            store=store,
            cursors=ctx.cursors,
            pages=ctx.pages,
            readers=ctx.readers,
        )
    except BadCursor as exc:
        raise HTTPException(400, detail=f"cursor: {exc}") from exc
    return Response(body, media_type="application/json")


@router.get("/incidents/{incident_id}", responses={404: {"description": "no such incident"}})
def get_incident(_: Viewer, store: StoreDep, incident_id: Id) -> IncidentDetailOut:
    """The incident and its whole timeline: findings, diagnosis, plan with each guard's
    verdict, actions with their requests, reviews, outcome, feedback."""
    detail = store.get_incident(incident_id)
    if detail is None:
        raise HTTPException(status_code=404, detail=f"incident {incident_id} not found")
    return IncidentDetailOut.from_detail(detail)


@router.post(
    "/incidents/{incident_id}/feedback",
    status_code=201,
    responses={404: {"description": "no such incident"}},
)
def post_feedback(
    who: Operator, store: StoreDep, clock: ClockDep, incident_id: Id, body: FeedbackIn
) -> FeedbackOut:
    """Label an incident true or false positive, with the cause and the action that would
    have been right: training data for the models."""
    label = FeedbackInput(
        verdict=body.verdict,
        cause=body.cause,
        right_action=body.right_action,
        by=who.name,
        at=clock(),
        note=body.note,
    )
    return FeedbackOut.from_feedback(store.record_feedback(incident_id, label))


@router.get("/actions")
def list_actions(
    _: Viewer,
    store: StoreDep,
    status: ActionStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> ActionList:
    """Actions newest first; ``status=pending_approval`` lists those waiting for a person."""
    return ActionList(
        items=[ActionOut.from_view(a) for a in store.actions(status=status, limit=limit)]
    )


_REVIEW_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "no such action"},
    409: {"description": "the action is not pending approval, or its incident is resolved"},
}


@router.post("/actions/{action_id}/approve", responses=_REVIEW_ERRORS)
def approve(
    who: Operator, store: StoreDep, clock: ClockDep, action_id: Id, body: ApproveIn
) -> ActionOut:
    """Approve a pending action. The daemon's next cycle checks it against the guards
    again (cooldown, rate limit, brake, ...) and takes it, or blocks and escalates it."""
    view = store.approve_action(action_id, by=who.name, reason=body.reason, at=clock())
    return ActionOut.from_view(view)


@router.post("/actions/{action_id}/reject", responses=_REVIEW_ERRORS)
def reject(
    who: Operator, store: StoreDep, clock: ClockDep, action_id: Id, body: RejectIn
) -> ActionOut:
    """Reject a pending action: it is never taken, and its incident closes as escalated."""
    view = store.reject_action(action_id, by=who.name, reason=body.reason, at=clock())
    return ActionOut.from_view(view)


@router.get("/playbooks")
def list_playbooks(_: Viewer, ctx: ContextDep) -> PlaybookList:
    """The playbooks loaded at start-up, in matching order."""
    return PlaybookList(items=[p.model_dump(mode="json") for p in ctx.playbooks])


@router.get("/models")
def list_models(_: Viewer, ctx: ContextDep) -> ModelList:
    """Model cards in the models directory (empty when there are none)."""
    return ModelList(items=_model_cards(ctx.models_dir))


@router.get("/status")
def get_status(
    _: Viewer, store: StoreDep, status: StatusDep, ctx: ContextDep, clock: ClockDep
) -> DaemonStatus:
    """The daemon: leader, mode, last cycle and its duration, and the guards' state."""
    daemon: JsonObject = dict(status()) if status is not None else {}
    if status is not None and "leader" not in daemon:  # no election: this daemon acts
        daemon.update(leader=store.identity, is_leader=True)
    daemon.setdefault("leader", None)
    daemon.setdefault("mode", str(ctx.guards.mode))
    daemon.setdefault("cycles", 0)
    daemon.setdefault("last_cycle", None)
    daemon.setdefault("last_cycle_seconds", None)
    guards = _guard_state(store, ctx.guards, clock())
    return DaemonStatus.model_validate({**daemon, "guards": guards})


def _guard_state(store: ReviewQueue, guards: GuardSettings, now: datetime) -> GuardState:
    history = store.action_history(now=now, window_s=guards.rate_limit_window_s)
    cooldown = timedelta(seconds=guards.cooldown_s)
    cooling = sorted(str(w) for w, at in history.last_action_at.items() if now - at < cooldown)
    return GuardState(
        in_flight=history.in_flight,
        max_in_flight=guards.max_in_flight,
        actions_in_window=len(history.recent_action_times),
        max_actions_per_window=guards.max_actions_per_window,
        window_s=guards.rate_limit_window_s,
        cooling_down=cooling,
        pending_approval=sum(
            n for (_, s), n in store.action_counts().items() if s is ActionStatus.PENDING_APPROVAL
        ),
        approved_waiting=len(store.approved_actions()),
    )


def _model_cards(directory: Path | None) -> list[ModelCard]:
    if directory is None or not directory.is_dir():
        return []
    cards = []
    for path in sorted(directory.glob("*.json")):
        try:
            card: JsonValue = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # a card being written or damaged is not listed
        if isinstance(card, dict):
            cards.append(ModelCard(name=path.stem, card=card))
    return cards
