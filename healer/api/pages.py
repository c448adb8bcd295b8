"""The review page: the overview, incidents and their story, and the buttons to approve,
reject, acknowledge, silence healer on a workload, and label.

Plain HTML from Jinja2 templates shipped in the package, forms that POST and redirect:
no front-end build step, and every page reads in full without JavaScript. One small
inline script (``base.html``) refreshes the ``#live`` part of the overview and of an
incident's page every few seconds by fetching the same page again, so they follow the
daemon without a reload; it leaves the page alone while a person types in one of its
forms. It logs in with the API's tokens: the login form puts
a signed session (never the token: ``auth.Sessions``) in an HttpOnly, SameSite=Strict
cookie, Secure over https, so another site can neither read it nor make the browser send
it with a forged form. Failed logins are throttled per client address (429). Viewers
read; the buttons need an operator, like the API routes they mirror.
"""

from __future__ import annotations

import re
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, TypeVar
from urllib.parse import quote

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from healer.api.attention import OPT_OUT_MAX_S, OPT_OUT_MIN_S, cause_name, require
from healer.api.auth import COOKIE, SESSION_S, Principal, Role, from_cookie
from healer.api.charts import bars, release_steps, story_charts
from healer.api.deps import AttentionDep, ClockDep, ContextDep, StatusDep, StoreDep
from healer.api.hardening import short as _short
from healer.api.kubectl import command as kubectl_command
from healer.api.overview import last_cycle, read_overview
from healer.api.routes import MAX_ID
from healer.audit.tables import StepKind
from healer.audit.views import FeedbackInput, IncidentDetail, IncidentFilter, Tally, TimelineStep
from healer.errors import IllegalTransition, ReviewConflict, UnknownRecord
from healer.types import (
    ActionKind,
    ActionStatus,
    Cause,
    IncidentStatus,
    JsonObject,
    OutcomeKind,
    Verdict,
    WorkloadRef,
)

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
router = APIRouter(include_in_schema=False)

LIVE_EVERY_MS = 2000
"""How often an open page asks for itself again: a 30 s cycle shows within seconds,
and a page left open costs the server one small read every two seconds."""


def _ago(seconds: float | None) -> str:
    """``"12 s"``, ``"4 min"``, ``"3 h"``, ``"2 days"``: an age a person reads at once."""
    if seconds is None:
        return "never"
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size if unit == "days" else seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


templates.env.filters["ago"] = _ago
templates.env.globals["kubectl"] = kubectl_command

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
def overview_page(
    request: Request,
    store: StoreDep,
    attention: AttentionDep,
    status: StatusDep,
    ctx: ContextDep,
    clock: ClockDep,
) -> Response:
    who = _who(request)
    overview = read_overview(store, attention, now=clock(), status=status, cache=ctx.tallies)
    return templates.TemplateResponse(
        request,
        "overview.html",
        {
            "o": overview,
            "who": who,
            "nav": "overview",
            "every_ms": LIVE_EVERY_MS,
            "charts": [_window_charts(label, tally) for label, tally in overview.windows],
            "stale_s": STALE_S,
            "hours": OPT_OUT_HOURS,
        },
    )


OPT_OUT_HOURS = (1, 4, 12, 24, 72)
"""The durations the silence form offers, in hours; the API takes any from a minute to a week."""

_OUTCOME_CSS: dict[OutcomeKind | None, str] = {o: f"b-{o}" for o in OutcomeKind}
_OUTCOME_CSS[None] = "b-open"


def _window_charts(label: str, tally: Tally) -> dict[str, object]:
    """The bars and medians of one window, ready for the template."""
    causes: dict[str, dict[str, int]] = {}
    for (cause, outcome), n in tally.incidents.items():
        row = causes.setdefault(cause_name(cause), {})
        css = _OUTCOME_CSS[outcome]
        row[css] = row.get(css, 0) + n
    order = ["b-healed", "b-not_healed", "b-escalated", "b-open"]
    cause_rows = [(name, [(c, row.get(c, 0)) for c in order]) for name, row in _largest(causes)]
    kinds: dict[str, dict[str, int]] = {}
    for (kind, status), n in tally.actions.items():
        kinds.setdefault(str(kind), {})[f"b-{status}"] = n
    action_rows = [(name, sorted(row.items())) for name, row in _largest(kinds)]
    guard_rows = [(g, [("b-blocked", n)]) for g, n in sorted(tally.blocked.items(), key=_count)]
    medians = sorted({*tally.detect_s, *tally.heal_s}, key=cause_name)
    return {
        "label": label,
        "total": tally.total,
        "causes": bars(cause_rows, label=f"incidents by cause and outcome, {label}"),
        "actions": bars(action_rows, label=f"actions by kind and status, {label}"),
        "blocked": bars(guard_rows, label=f"plans blocked by each guard, {label}"),
        "taken": sum(n for (_, s), n in tally.actions.items() if s is ActionStatus.SUCCEEDED),
        "blocks": sum(tally.blocked.values()),
        "medians": [(cause_name(c), tally.detect_s.get(c), tally.heal_s.get(c)) for c in medians],
        "clusters": _cluster_bars(label, tally),
    }


def _cluster_bars(label: str, tally: Tally) -> str:
    """Incidents by cluster and outcome, when the store holds more than one cluster."""
    if len(tally.clusters) < 2:
        return ""
    order: list[OutcomeKind | None] = [*OutcomeKind, None]
    rows = [
        (cluster, [(_OUTCOME_CSS[o], counts.get(o, 0)) for o in order])
        for cluster, counts in sorted(tally.clusters.items())
    ]
    return bars(rows, label=f"incidents by cluster and outcome, {label}")


def _largest(rows: dict[str, dict[str, int]]) -> list[tuple[str, dict[str, int]]]:
    return sorted(rows.items(), key=lambda item: (-sum(item[1].values()), item[0]))


def _count(item: tuple[str, int]) -> tuple[int, str]:
    return (-item[1], item[0])


STALE_S = 90.0
"""Age of the daemon's last cycle past which the page says it looks stopped: three
cycles at the default 30 s interval, as ``/readyz`` counts."""


@router.get("/incidents", response_class=HTMLResponse)
def incident_list(
    request: Request,
    store: StoreDep,
    status: IncidentStatus | None = None,
    namespace: Annotated[str | None, Query(max_length=63)] = None,
    workload: Annotated[str | None, Query(max_length=253)] = None,
    cause: Cause | None = None,
    since: str | None = None,
    until: str | None = None,
    cluster: Annotated[str | None, Query(max_length=30)] = None,
) -> Response:
    who = _who(request)
    where = IncidentFilter(
        cluster=cluster or None,
        status=status,
        namespace=namespace or None,
        workload=workload or None,
        cause=cause,
        since=_parse_time(since),
        until=_parse_time(until),
    )
    incidents = store.list_incidents(where, limit=PAGE_ROWS)
    pending = store.actions(status=ActionStatus.PENDING_APPROVAL)
    return templates.TemplateResponse(
        request,
        "incidents.html",
        {
            "incidents": incidents,
            "pending": pending,
            "filters": {k: ("" if v is None else v) for k, v in asdict(where).items()},
            "raw": {"since": since or "", "until": until or ""},
            "statuses": list(IncidentStatus),
            "causes": list(Cause),
            "who": who,
            "nav": "incidents",
        },
    )


@router.get("/incidents/{incident_id}", response_class=HTMLResponse)
def incident_page(
    request: Request,
    store: StoreDep,
    attention: AttentionDep,
    status: StatusDep,
    clock: ClockDep,
    incident_id: int,
) -> Response:
    who = _who(request)
    detail = store.get_incident(incident_id) if 0 < incident_id <= MAX_ID else None
    if detail is None:
        raise HTTPException(status_code=404, detail=f"incident {incident_id} not found")
    now = clock()
    workload = detail.summary.workload
    return templates.TemplateResponse(
        request,
        "incident.html",
        {
            "incident": detail,
            "story": _story(detail),
            "timeline": _timeline(detail),
            "charts": story_charts(detail),
            "commands": {a.id: kubectl_command(a.request) for a in detail.actions},
            "acknowledged": attention.acknowledgement(incident_id) if attention else None,
            "opted_out": attention.opted_out(workload, now=now) if attention else None,
            "can_silence": attention is not None,
            "hours": OPT_OUT_HOURS,
            "now": now,
            "last_cycle": last_cycle(status),
            "live": detail.summary.status is not IncidentStatus.RESOLVED,
            "every_ms": LIVE_EVERY_MS,
            "who": who,
            "verdicts": list(Verdict),
            "causes": list(Cause),
            "kinds": list(ActionKind),
        },
    )


def _timeline(detail: IncidentDetail) -> list[tuple[TimelineStep | None, list[TimelineStep]]]:
    """The steps to show, each later finding (a new peak score, one a cycle while a
    fault grows) folded with the ones next to it: ``(step, [])`` or ``(None, peaks)``."""
    shown: list[tuple[TimelineStep | None, list[TimelineStep]]] = []
    first = True
    for step in release_steps(detail):
        if step.kind != StepKind.FINDING or first:
            first = first and step.kind != StepKind.FINDING
            shown.append((step, []))
        elif shown and shown[-1][0] is None:
            shown[-1][1].append(step)
        else:
            shown.append((None, [step]))
    return shown


def _story(detail: IncidentDetail) -> dict[str, JsonObject | None]:
    """The latest diagnosis and the outcome, which the page says first, in words."""
    latest: dict[str, JsonObject | None] = {"diagnosis": None, "outcome": None}
    for step in detail.timeline:
        if step.kind in (StepKind.DIAGNOSIS, StepKind.OUTCOME):
            latest[str(step.kind)] = step.data
    return latest


@router.post("/actions/{action_id}/approve")
def approve(
    request: Request,
    store: StoreDep,
    clock: ClockDep,
    action_id: int,
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    who = _who(request, operator=True)
    try:
        view = store.approve_action(_id(action_id), by=who.name, reason=reason, at=clock())
    except (ReviewConflict, IllegalTransition, UnknownRecord) as exc:
        return _refused(request, who, f"Action #{action_id} was not approved", exc)
    return RedirectResponse(_back(request, f"/incidents/{view.incident_id}"), status_code=303)


@router.post("/actions/{action_id}/reject")
def reject(
    request: Request,
    store: StoreDep,
    clock: ClockDep,
    action_id: int,
    reason: Annotated[str, Form(min_length=1, max_length=2000)],
) -> Response:
    who = _who(request, operator=True)
    try:
        view = store.reject_action(_id(action_id), by=who.name, reason=reason, at=clock())
    except (ReviewConflict, IllegalTransition, UnknownRecord) as exc:
        return _refused(request, who, f"Action #{action_id} was not rejected", exc)
    return RedirectResponse(_back(request, f"/incidents/{view.incident_id}"), status_code=303)


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


def _back(request: Request, default: str) -> str:
    """Where a form sends the person after it: the page it was on (``back`` in the
    form, a path on this site only), else ``default``."""
    back = request.query_params.get("back", "")
    return back if back.startswith("/") and not back.startswith("//") else default


def _refused(request: Request, who: Principal, title: str, exc: Exception) -> Response:
    """A page that says what was refused and why, and that nothing was done: a stale
    page's button on an action that expired, was reviewed by someone else, or whose
    incident is over."""
    status_code = 404 if isinstance(exc, UnknownRecord) else 409
    return templates.TemplateResponse(
        request,
        "refused.html",
        {"who": who, "title": title, "why": str(exc), "back": _back(request, "/")},
        status_code=status_code,
    )


@router.post("/incidents/{incident_id}/acknowledge")
def acknowledge(
    request: Request,
    attention: AttentionDep,
    clock: ClockDep,
    incident_id: int,
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    who = _who(request, operator=True)
    keeper = require(attention, "acknowledgements")
    try:
        keeper.acknowledge(_id(incident_id), by=who.name, at=clock(), note=note)
    except (ReviewConflict, UnknownRecord) as exc:
        return _refused(request, who, f"Incident #{incident_id} was not acknowledged", exc)
    return RedirectResponse(_back(request, f"/incidents/{incident_id}"), status_code=303)


_K8S_NAME = re.compile(r"^[a-z0-9]([-.a-z0-9]*[a-z0-9])?$")
_K8S_KIND = re.compile(r"^[A-Z][A-Za-z0-9]*$")


@router.post("/opt-outs")
def silence(
    request: Request,
    attention: AttentionDep,
    clock: ClockDep,
    namespace: Annotated[str, Form(min_length=1, max_length=63)],
    name: Annotated[str, Form(min_length=1, max_length=253)],
    hours: Annotated[float, Form(gt=0)],
    kind: Annotated[str, Form(max_length=63)] = "Deployment",
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Silence healer on a workload for ``hours``: a minute to a week."""
    who = _who(request, operator=True)
    for field, value, shape in (("namespace", namespace, _K8S_NAME), ("name", name, _K8S_NAME)):
        if not shape.match(value):
            raise HTTPException(422, detail=f"{field}: not a Kubernetes name: {_short(value)!r}")
    if not _K8S_KIND.match(kind):
        raise HTTPException(422, detail=f"kind: not a Kubernetes kind: {_short(kind)!r}")
    seconds = hours * 3600
    if not OPT_OUT_MIN_S <= seconds <= OPT_OUT_MAX_S:
        raise HTTPException(422, detail=f"hours: {hours:g} is not between a minute and a week")
    now = clock()
    require(attention, "opt-outs").opt_out(
        WorkloadRef(namespace, kind, name),
        by=who.name,
        reason=reason,
        at=now,
        until=now + timedelta(seconds=seconds),
    )
    return RedirectResponse(_back(request, "/"), status_code=303)


@router.post("/opt-outs/{opt_out_id}/end")
def end_silence(
    request: Request, attention: AttentionDep, clock: ClockDep, opt_out_id: int
) -> Response:
    who = _who(request, operator=True)
    try:
        require(attention, "opt-outs").end_opt_out(_id(opt_out_id), by=who.name, at=clock())
    except (ReviewConflict, UnknownRecord) as exc:
        return _refused(request, who, f"Opt-out #{opt_out_id} was not ended", exc)
    return RedirectResponse(_back(request, "/"), status_code=303)
