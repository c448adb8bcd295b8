"""``/api/v1`` routes of the overview: what waits for a person, acknowledging an
escalation, and silencing healer on a workload for a while.

``GET /overview`` is the review page's overview as JSON. ``POST
/incidents/{id}/acknowledge`` records who saw an escalation (409 when it is not
escalated or already acknowledged). ``/opt-outs`` lists, makes and ends people's
time-limited opt-outs: while one runs the daemon plans nothing for the workload and
records the plan blocked by the ``opt_out`` guard. Reads need a viewer token, changes an
operator token, as for the other routes. A store that keeps no acknowledgements or
opt-outs answers 503 naming what it lacks.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException
from fastapi import Path as PathParam
from pydantic import Field

from healer.api.auth import Operator, Viewer
from healer.api.deps import AttentionDep, ClockDep, ContextDep, StatusDep, StoreDep
from healer.api.overview import Overview, read_overview
from healer.api.routes import _AUTH_ERRORS as AUTH_ERRORS
from healer.api.routes import MAX_ID
from healer.api.schemas import ActionOut, IncidentItem, Text, Workload, _In, _Out
from healer.audit.roles import Attention
from healer.audit.views import Acknowledgement, OptOut, Tally
from healer.types import WorkloadRef

Id = Annotated[int, PathParam(ge=1, le=MAX_ID)]

OPT_OUT_MIN_S = 60
"""The shortest opt-out: a minute, a cycle or two."""
OPT_OUT_MAX_S = 7 * 24 * 3600
"""The longest: a week. An opt-out always ends, so a forgotten one heals again."""

_ERRORS: dict[int | str, dict[str, Any]] = {
    **AUTH_ERRORS,
    503: {"description": "the audit store keeps no acknowledgements or opt-outs, or is down"},
}
router = APIRouter(prefix="/api/v1", tags=["api"], responses=_ERRORS)


class TallyRow(_Out):
    name: str
    """A cause (``undiagnosed`` when none), an action kind, or a guard."""
    counts: dict[str, int]
    """By outcome (``open`` while not over) or by action status."""


class TallyOut(_Out):
    window: str
    since: datetime
    incidents: int
    by_cause: list[TallyRow]
    actions: list[TallyRow]
    blocked_by_guard: dict[str, int]
    median_detect_s: dict[str, float]
    """Median seconds from the anomaly's onset to the finding, by cause."""
    median_heal_s: dict[str, float]
    """Median seconds from the onset to the healed outcome, by cause."""
    by_cluster: list[TallyRow] = Field(default_factory=list)
    """Incidents by cluster and outcome, for a store shared by several clusters."""

    @classmethod
    def of(cls, window: str, tally: Tally) -> TallyOut:
        return cls(
            window=window,
            since=tally.since,
            incidents=tally.total,
            by_cause=_rows(tally.incidents, none_key="undiagnosed", none_value="open"),
            actions=_rows(tally.actions),
            blocked_by_guard=dict(tally.blocked),
            median_detect_s={cause_name(c): s for c, s in tally.detect_s.items()},
            median_heal_s={cause_name(c): s for c, s in tally.heal_s.items()},
            by_cluster=_rows(
                {(c, o): n for c, row in tally.clusters.items() for o, n in row.items()},
                none_value="open",
            ),
        )


def cause_name(cause: object) -> str:
    return "undiagnosed" if cause is None else str(cause)


def _rows(counts: Any, *, none_key: str = "none", none_value: str = "none") -> list[TallyRow]:
    """``{(name, column): n}`` as one row per name, largest total first."""
    grouped: dict[str, dict[str, int]] = {}
    for (name, column), n in counts.items():
        row = grouped.setdefault(none_key if name is None else str(name), {})
        key = none_value if column is None else str(column)
        row[key] = row.get(key, 0) + n
    ordered = sorted(grouped.items(), key=lambda item: (-sum(item[1].values()), item[0]))
    return [TallyRow(name=name, counts=row) for name, row in ordered]


class OptOutOut(_Out):
    id: int
    workload: Workload
    by: str
    reason: str
    created: datetime
    until: datetime
    ended: datetime | None
    ended_by: str | None

    @classmethod
    def of(cls, opt_out: OptOut) -> OptOutOut:
        return cls.model_validate(opt_out)


class AcknowledgementOut(_Out):
    incident_id: int
    by: str
    at: datetime
    note: str

    @classmethod
    def of(cls, ack: Acknowledgement) -> AcknowledgementOut:
        return cls.model_validate(ack)


class OverviewOut(_Out):
    now: datetime
    pending: list[ActionOut]
    escalations: list[IncidentItem]
    """The newest escalated incidents nobody acknowledged."""
    escalations_total: int
    open: list[IncidentItem]
    opt_outs: list[OptOutOut]
    windows: list[TallyOut]
    last_cycle: datetime | None
    """When the daemon was last seen cycling; null when never (or not in this process)."""

    @classmethod
    def of(cls, overview: Overview) -> OverviewOut:
        return cls(
            now=overview.now,
            pending=[ActionOut.from_view(a) for a in overview.pending],
            escalations=[IncidentItem.from_summary(i) for i in overview.escalations],
            escalations_total=overview.escalations_total,
            open=[IncidentItem.from_summary(i) for i in overview.open],
            opt_outs=[OptOutOut.of(o) for o in overview.opt_outs],
            windows=[TallyOut.of(label, t) for label, t in overview.windows],
            last_cycle=overview.last_cycle,
        )


class AcknowledgeIn(_In):
    note: Text = ""


Namespace = Annotated[
    str, Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
]
ObjectName = Annotated[
    str, Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-.a-z0-9]*[a-z0-9])?$")
]
KindName = Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[A-Z][A-Za-z0-9]*$")]


class OptOutIn(_In):
    namespace: Namespace
    name: ObjectName
    kind: KindName = "Deployment"
    for_s: Annotated[int, Field(ge=OPT_OUT_MIN_S, le=OPT_OUT_MAX_S)]
    """How long healer keeps its hands off, in seconds: a minute to a week."""
    reason: Text = ""


def require(attention: Attention | None, what: str) -> Attention:
    """The store's ``Attention`` role; 503 naming ``what`` when it keeps none."""
    if attention is None:
        raise HTTPException(503, detail=f"this audit store keeps no {what}")
    return attention


@router.get("/overview")
def get_overview(
    _: Viewer,
    store: StoreDep,
    attention: AttentionDep,
    status: StatusDep,
    ctx: ContextDep,
    clock: ClockDep,
) -> OverviewOut:
    """What waits for a person, what is open, the last day and week, the daemon's pulse."""
    overview = read_overview(store, attention, now=clock(), status=status, cache=ctx.tallies)
    return OverviewOut.of(overview)


@router.post(
    "/incidents/{incident_id}/acknowledge",
    responses={
        404: {"description": "no such incident"},
        409: {"description": "not escalated, or already acknowledged"},
    },
)
def acknowledge(
    who: Operator,
    attention: AttentionDep,
    clock: ClockDep,
    incident_id: Id,
    body: AcknowledgeIn,
) -> AcknowledgementOut:
    """Say that a person saw this escalated incident; it leaves the overview's list."""
    ack = require(attention, "acknowledgements").acknowledge(
        incident_id, by=who.name, at=clock(), note=body.note
    )
    return AcknowledgementOut.of(ack)


@router.get("/opt-outs")
def list_opt_outs(_: Viewer, attention: AttentionDep, clock: ClockDep) -> list[OptOutOut]:
    """The opt-outs running now, the soonest to end first."""
    return [OptOutOut.of(o) for o in require(attention, "opt-outs").opt_outs(now=clock())]


@router.post("/opt-outs", status_code=201)
def make_opt_out(
    who: Operator, attention: AttentionDep, clock: ClockDep, body: OptOutIn
) -> OptOutOut:
    """Silence healer on a workload for ``for_s`` seconds: its plans are blocked by the
    ``opt_out`` guard, recorded with who asked and why, and nobody is paged for them."""
    now = clock()
    workload = WorkloadRef(body.namespace, body.kind, body.name)
    made = require(attention, "opt-outs").opt_out(
        workload, by=who.name, reason=body.reason, at=now, until=now + timedelta(seconds=body.for_s)
    )
    return OptOutOut.of(made)


@router.delete(
    "/opt-outs/{opt_out_id}",
    responses={404: {"description": "no such opt-out"}, 409: {"description": "already ended"}},
)
def end_opt_out(
    who: Operator, attention: AttentionDep, clock: ClockDep, opt_out_id: Id
) -> OptOutOut:
    """End an opt-out before its time: healer acts on the workload again."""
    ended = require(attention, "opt-outs").end_opt_out(opt_out_id, by=who.name, at=clock())
    return OptOutOut.of(ended)
