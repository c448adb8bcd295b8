"""The review page: incidents, their story, and the buttons to approve, reject and label.

Plain HTML from Jinja2 templates shipped in the package, forms that POST and redirect:
no front-end build step, no JavaScript. It logs in with the API's tokens: the login form puts
a signed session (never the token: ``auth.Sessions``) in an HttpOnly, SameSite=Strict
cookie, Secure over https, so another site can neither read it nor make the browser send
it with a forged form. Failed logins are throttled per client address (429). Viewers
read; the buttons need an operator, like the API routes they mirror.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, TypeVar
from urllib.parse import quote

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from healer.api.auth import COOKIE, SESSION_S, Principal, Role, from_cookie
from healer.api.charts import signal_charts
from healer.api.deps import ClockDep, StoreDep
from healer.api.hardening import short as _short
from healer.api.routes import MAX_ID
from healer.audit.tables import StepKind
from healer.audit.views import FeedbackInput
from healer.types import ActionKind, ActionStatus, Cause, IncidentStatus, Verdict

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
router = APIRouter(include_in_schema=False)

PAGE_ROWS = 200
"""Incidents on the list page; the API pages further."""


def _who(request: Request, *, operator: bool = False) -> Principal:
    principal = from_cookie(request)
    if principal is None:
        raise HTTPException(
            303, headers={"Location": f"/login?next={quote(request.url.path, safe='/')}"}
        )
    if operator and principal.role is not Role.OPERATOR:
        raise HTTPException(403, detail=f"{principal.name} is a viewer; this needs an operator")
    return principal


def _safe_next(target: str) -> str:
    """Only a path on this site: never redirect a login elsewhere."""
    return target if target.startswith("/") and not target.startswith("//") else "/"


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/", error: str = "") -> Response:
    return templates.TemplateResponse(
        request, "login.html", {"next": _safe_next(next), "error": error, "who": None}
    )


@router.post("/login")
def login(
    request: Request,
    token: Annotated[str, Form(max_length=1000)],
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    # The token is judged first: people behind one proxy share an address, and a wrong
    # guess from one of them must not lock the others out. Only failures are throttled.
    session = request.app.state.sessions.issue(token)
    if session is None:
        throttle = request.app.state.login_throttle
        client = request.client.host if request.client else "unknown"
        wait_s = throttle.retry_after_s(client)
        if wait_s is not None:
            raise HTTPException(
                429,
                detail=f"too many failed logins from {client}; try again in {wait_s} s",
                headers={"Retry-After": str(wait_s)},
            )
        throttle.failed(client)
        return templates.TemplateResponse(
            request,
            "login.html",
            {"next": _safe_next(next), "error": "unknown token", "who": None},
            status_code=401,
        )
    response = RedirectResponse(_safe_next(next), status_code=303)
    secure = _https(request)
    response.set_cookie(
        COOKIE, session, max_age=SESSION_S, httponly=True, samesite="strict", secure=secure
    )
    return response


def _https(request: Request) -> bool:
    """Served over TLS, or behind a proxy that says the client came over https."""
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


@router.post("/logout")
def logout() -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE)
    return response


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise HTTPException(422, detail=f"not an ISO 8601 time: {_short(value)!r}") from exc
    try:
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError as exc:
        raise HTTPException(422, detail=f"time out of range: {_short(value)!r}") from exc


@router.get("/", response_class=HTMLResponse)
def incident_list(
    request: Request,
    store: StoreDep,
    status: IncidentStatus | None = None,
    namespace: Annotated[str | None, Query(max_length=63)] = None,
    workload: Annotated[str | None, Query(max_length=253)] = None,
    cause: Cause | None = None,
    since: str | None = None,
    until: str | None = None,
) -> Response:
    who = _who(request)
    filters = {
        "status": status,
        "namespace": namespace or None,
        "workload": workload or None,
        "cause": cause,
        "since": _parse_time(since),
        "until": _parse_time(until),
    }
    incidents = store.list_incidents(**filters, limit=PAGE_ROWS)  # type: ignore[arg-type] # keys match
    pending = store.actions(status=ActionStatus.PENDING_APPROVAL)
    return templates.TemplateResponse(
        request,
        "incidents.html",
        {
            "incidents": incidents,
            "pending": pending,
            "filters": {k: ("" if v is None else v) for k, v in filters.items()},
            "raw": {"since": since or "", "until": until or ""},
            "statuses": list(IncidentStatus),
            "causes": list(Cause),
            "who": who,
        },
    )


@router.get("/incidents/{incident_id}", response_class=HTMLResponse)
def incident_page(request: Request, store: StoreDep, incident_id: int) -> Response:
    who = _who(request)
    detail = store.get_incident(incident_id) if 0 < incident_id <= MAX_ID else None
    if detail is None:
        raise HTTPException(status_code=404, detail=f"incident {incident_id} not found")
    findings = [s for s in detail.timeline if s.kind == StepKind.FINDING]
    charts = signal_charts(findings[0].data) if findings else []
    return templates.TemplateResponse(
        request,
        "incident.html",
        {
            "incident": detail,
            "charts": charts,
            "who": who,
            "verdicts": list(Verdict),
            "causes": list(Cause),
            "kinds": list(ActionKind),
        },
    )


@router.post("/actions/{action_id}/approve")
def approve(
    request: Request,
    store: StoreDep,
    clock: ClockDep,
    action_id: int,
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    who = _who(request, operator=True)
    view = store.approve_action(_id(action_id), by=who.name, reason=reason, at=clock())
    return RedirectResponse(f"/incidents/{view.incident_id}", status_code=303)


@router.post("/actions/{action_id}/reject")
def reject(
    request: Request,
    store: StoreDep,
    clock: ClockDep,
    action_id: int,
    reason: Annotated[str, Form(min_length=1, max_length=2000)],
) -> Response:
    who = _who(request, operator=True)
    view = store.reject_action(_id(action_id), by=who.name, reason=reason, at=clock())
    return RedirectResponse(f"/incidents/{view.incident_id}", status_code=303)


@router.post("/incidents/{incident_id}/feedback")
def feedback(
    request: Request,
    store: StoreDep,
    clock: ClockDep,
    incident_id: int,
    verdict: Annotated[Verdict, Form()],
    cause: Annotated[str, Form()] = "",
    right_action: Annotated[str, Form()] = "",
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    who = _who(request, operator=True)
    label = FeedbackInput(
        verdict=verdict,
        cause=_choice(Cause, cause, "cause"),
        right_action=_choice(ActionKind, right_action, "right_action"),
        by=who.name,
        at=clock(),
        note=note,
    )
    store.record_feedback(_id(incident_id), label)
    return RedirectResponse(f"/incidents/{incident_id}", status_code=303)


def _id(value: int) -> int:
    if not 0 < value <= MAX_ID:
        raise HTTPException(404, detail=f"{value} is not an id")
    return value


E = TypeVar("E", Cause, ActionKind)


def _choice(kind: type[E], value: str, field: str) -> E | None:
    if not value:
        return None
    try:
        return kind(value)
    except ValueError as exc:
        raise HTTPException(422, detail=f"{field}: unknown value {_short(value)!r}") from exc
