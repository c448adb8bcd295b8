"""What the store's readers get back: incidents, steps and actions as values, not rows.

Every role of the store (the daemon's log, the review queue, training labels) hands out
these frozen dataclasses, built from rows by the functions below, so that no session or
ORM object leaves ``healer.audit``.

Decisions:

- ``Incident`` (``healer.types``) is the incident as the daemon holds it, rebuilt from
  its steps (``rebuild``); ``IncidentSummary`` and ``IncidentDetail`` are the incident
  as people list and read it, straight from the summary columns and the timeline.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import select, type_coerce
from sqlalchemy.orm import Session
from sqlalchemy.types import NullType

from healer.audit import serialize
from healer.audit.tables import (
    ActionRow,
    AlertRow,
    FeedbackRow,
    IncidentRow,
    ReleaseRow,
    SilenceRow,
    StepKind,
    StepRow,
)
from healer.errors import StoreError, UnknownRecord
from healer.types import (
    ActionKind,
    ActionStatus,
    Alert,
    AlertDisposition,
    Cause,
    Feedback,
    Incident,
    IncidentStatus,
    JsonObject,
    OutcomeKind,
    Release,
    ReleaseSource,
    Silence,
    Verdict,
    WorkloadRef,
)


@dataclass(frozen=True)
class IncidentSummary:
    """One incident as listed: what people filter and sort on."""

    id: int
    workload: WorkloadRef
    status: IncidentStatus
    opened: datetime
    closed: datetime | None
    score: float
    """Peak anomaly score over the incident's findings."""
    cause: Cause | None
    confidence: float | None
    action: ActionKind | None
    """Kind of the latest action recorded."""
    action_status: ActionStatus | None
    outcome: OutcomeKind | None
    last_seen: datetime
    """Time of the latest finding."""
    cluster: str = "default"
    """``cluster.name`` of the healer that recorded it."""


class SummaryRow(NamedTuple):
    """One incident as listed, flat: an ``IncidentSummary`` with its workload's fields
    inline. A page of the incident list is built and encoded from these: a tuple costs
    a fraction of what a frozen dataclass does to make, which showed in every page."""

    id: int
    namespace: str
    kind: str
    name: str
    status: IncidentStatus
    opened: datetime
    closed: datetime | None
    score: float
    cause: Cause | None
    confidence: float | None
    action: ActionKind | None
    action_status: ActionStatus | None
    outcome: OutcomeKind | None
    last_seen: datetime
    cluster: str = "default"


@dataclass(frozen=True)
class TimelineStep:
    kind: StepKind
    at: datetime
    data: JsonObject
    """The recorded value in its JSON form (``healer.audit.serialize.to_json``)."""
    actor: str = ""
    """Who wrote it: the daemon's identity, or the person's token name for reviews."""


@dataclass(frozen=True)
class ActionView:
    """One action as people review it: what it is for, what it asks, how it went."""

    id: int
    incident_id: int
    kind: ActionKind
    workload: WorkloadRef
    status: ActionStatus
    intent: JsonObject
    request: JsonObject
    response: JsonObject | None
    created: datetime
    started: datetime | None
    finished: datetime | None
    error: str | None
    reviewed_by: str | None
    reviewed_at: datetime | None
    review_reason: str | None
    actor: str


@dataclass(frozen=True)
class IncidentDetail:
    summary: IncidentSummary
    timeline: tuple[TimelineStep, ...]
    """Every recorded step, in the order it was recorded."""
    actions: tuple[ActionView, ...] = ()
    """Every action of the incident, oldest first."""
    alerts: tuple[StoredAlert, ...] = ()
    """The Alertmanager alerts joined to it, in the order they arrived."""
    silences: tuple[StoredSilence, ...] = ()
    """The Alertmanager silences healer asked for on it, oldest first."""
    releases: tuple[StoredRelease, ...] = ()
    """Its workload's releases from a while before its onset to its end (``RELEASE_LOOKBACK``)."""


@dataclass(frozen=True)
class AlertsRecorded:
    """What one delivery changed: alerts new to the store, alerts it resolved, and
    alerts it repeated (changing nothing)."""

    new: int
    resolved: int
    unchanged: int


@dataclass(frozen=True)
class StoredAlert:
    """An alert as stored: as delivered, and what the daemon made of it."""

    id: int
    alert: Alert
    received: datetime
    disposition: AlertDisposition | None
    """None until the daemon has looked at it."""
    detail: str | None
    incident_id: int | None


@dataclass(frozen=True)
class StoredSilence:
    """A silence healer asked for, as stored: on which incident, and since when."""

    id: int
    incident_id: int
    silence: Silence
    created: datetime
    updated: datetime


@dataclass(frozen=True)
class FeedbackInput:
    """An operator's label as given; the store fills in the workload and the window."""

    verdict: Verdict
    cause: Cause | None
    right_action: ActionKind | None
    by: str
    at: datetime
    note: str = ""


@dataclass(frozen=True, kw_only=True)
class IncidentFilter:
    """Which incidents a list shows: each field given narrows it, None leaves it open.

    One value for every reader of the list (the API's pages, the review page, the
    overview, tests), so a new filter is one field here and one condition in
    ``review._CONDITIONS``, not a parameter added to each method that passes it on.
    ``since``/``until`` bound the time the incident opened (inclusive, exclusive);
    ``before_id`` is a keyset cursor: the last id of the previous page.
    """

    status: IncidentStatus | None = None
    namespace: str | None = None
    workload: str | None = None
    cause: Cause | None = None
    since: datetime | None = None
    until: datetime | None = None
    before_id: int | None = None
    cluster: str | None = None

    def given(self) -> dict[str, object]:
        """The filters set, by field name: the values the list's query binds."""
        values = {name: getattr(self, name) for name in _FILTER_NAMES}
        return {name: value for name, value in values.items() if value is not None}


_FILTER_NAMES = tuple(f.name for f in fields(IncidentFilter))


EVERY_INCIDENT = IncidentFilter()
"""No filter: the whole list, newest first."""


SUMMARY_COLUMNS = tuple(
    type_coerce(column, NullType)
    for column in (
        IncidentRow.id,
        IncidentRow.namespace,
        IncidentRow.kind,
        IncidentRow.name,
        IncidentRow.status,
        IncidentRow.opened,
        IncidentRow.closed,
        IncidentRow.score,
        IncidentRow.cause,
        IncidentRow.confidence,
        IncidentRow.action,
        IncidentRow.action_status,
        IncidentRow.outcome,
        IncidentRow.last_seen,
        IncidentRow.cluster,
    )
)
"""The columns of an ``IncidentSummary``, in its order: a listing selects these, not
whole rows, and reads them with ``summary_rows``. Each comes as the driver gives it, not
converted by SQLAlchemy: its conversion of a row's times and enums costs more than
SQLite takes to find the row, so ``summary_rows`` converts them itself."""


ENTRY_COLUMNS = (type_coerce(IncidentRow.id, NullType), type_coerce(IncidentRow.listed, NullType))
"""Each incident's id and list entry (``listed``): what a page of the API's list reads."""


_E = TypeVar("_E", bound=enum.Enum)


def _members(kind: type[_E]) -> dict[object, _E]:
    return {member.value: member for member in kind}


_STATUSES = _members(IncidentStatus)
_CAUSES = _members(Cause)
_ACTIONS = _members(ActionKind)
_ACTION_STATUSES = _members(ActionStatus)
_OUTCOMES = _members(OutcomeKind)


def summary_rows(rows: Iterable[Sequence[Any]]) -> list[SummaryRow]:
    """``SummaryRow`` values from rows of ``SUMMARY_COLUMNS``.

    Unpacked by position, not read by name, and enums found by value in a dict: a page
    of the incident list is dozens of rows, and a named lookup on a SQLAlchemy row or a
    call of the enum class costs as much as building the value. A stored value that is
    not a member raises KeyError, as SQLAlchemy's conversion would raise LookupError.
    """
    return [
        SummaryRow(
            id_,
            namespace,
            kind,
            name,
            _STATUSES[status],
            stored_utc(opened),
            None if closed is None else stored_utc(closed),
            score,
            None if cause is None else _CAUSES[cause],
            confidence,
            None if action is None else _ACTIONS[action],
            None if action_status is None else _ACTION_STATUSES[action_status],
            None if outcome is None else _OUTCOMES[outcome],
            stored_utc(last_seen),
            cluster,
        )
        for (
            id_,
            namespace,
            kind,
            name,
            status,
            opened,
            closed,
            score,
            cause,
            confidence,
            action,
            action_status,
            outcome,
            last_seen,
            cluster,
        ) in rows
    ]


def summaries(rows: Iterable[SummaryRow]) -> list[IncidentSummary]:
    return [
        IncidentSummary(
            id=r.id,
            workload=WorkloadRef(r.namespace, r.kind, r.name),
            status=r.status,
            opened=r.opened,
            closed=r.closed,
            score=r.score,
            cause=r.cause,
            confidence=r.confidence,
            action=r.action,
            action_status=r.action_status,
            outcome=r.outcome,
            last_seen=r.last_seen,
            cluster=r.cluster,
        )
        for r in rows
    ]


def stored_utc(value: str | datetime) -> datetime:
    """A time read without SQLAlchemy's conversion, as an aware UTC datetime.

    SQLite hands back the text ``UtcDateTime`` stored: UTC without an offset, in the
    ISO form ``2025-01-01 00:01:00.000000``. Drivers of other databases hand back a
    datetime. Appending the offset before parsing is several times cheaper than
    ``replace(tzinfo=UTC)`` on the parsed value.
    """
    if isinstance(value, str):
        return datetime.fromisoformat(value + "+00:00")
    return value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)


def locked_incident(session: Session, incident_id: int) -> IncidentRow:
    """The incident's row, locked for the write under way; UnknownRecord if none."""
    row = session.get(IncidentRow, incident_id, with_for_update=True)
    if row is None:
        raise UnknownRecord(f"incident {incident_id} not found")
    return row


def steps_of(session: Session, incident_id: int) -> list[StepRow]:
    query = select(StepRow).where(StepRow.incident_id == incident_id).order_by(StepRow.seq)
    return list(session.scalars(query))


def latest_step(session: Session, incident_id: int, kind: StepKind) -> JsonObject | None:
    query = (
        select(StepRow.data)
        .where(StepRow.incident_id == incident_id, StepRow.kind == kind)
        .order_by(StepRow.seq.desc())
        .limit(1)
    )
    return session.scalar(query)


def summary(row: IncidentRow) -> IncidentSummary:
    return IncidentSummary(
        id=row.id,
        workload=WorkloadRef(row.namespace, row.kind, row.name),
        status=row.status,
        opened=row.opened,
        closed=row.closed,
        score=row.score,
        cause=row.cause,
        confidence=row.confidence,
        action=row.action,
        action_status=row.action_status,
        outcome=row.outcome,
        last_seen=row.last_seen,
        cluster=row.cluster,
    )


def detail(session: Session, row: IncidentRow) -> IncidentDetail:
    """The incident with its whole timeline and every action, as one read."""
    timeline = tuple(
        TimelineStep(kind=s.kind, at=s.at, data=s.data, actor=s.actor)
        for s in steps_of(session, row.id)
    )
    actions = session.scalars(
        select(ActionRow).where(ActionRow.incident_id == row.id).order_by(ActionRow.id)
    )
    return IncidentDetail(
        summary=summary(row),
        timeline=timeline,
        actions=tuple(action_view(a) for a in actions),
        alerts=tuple(alerts_of(session, row.id)),
        silences=tuple(silences_of(session, row.id)),
        releases=tuple(releases_around(session, row)),
    )


def silences_of(session: Session, incident_id: int) -> list[StoredSilence]:
    rows = session.scalars(
        select(SilenceRow).where(SilenceRow.incident_id == incident_id).order_by(SilenceRow.id)
    )
    return [stored_silence(r) for r in rows]


def stored_silence(row: SilenceRow) -> StoredSilence:
    silence = Silence(
        matchers={str(k): str(v) for k, v in row.matchers.items()},
        regex={str(k): str(v) for k, v in (row.regex or {}).items()},
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        state=row.state,
        silence_id=row.silence_id,
        error=row.error,
    )
    return StoredSilence(row.id, row.incident_id, silence, row.created, row.updated)


def alerts_of(session: Session, incident_id: int) -> list[StoredAlert]:
    rows = session.scalars(
        select(AlertRow).where(AlertRow.incident_id == incident_id).order_by(AlertRow.id)
    )
    return [stored_alert(r) for r in rows]


def stored_alert(row: AlertRow) -> StoredAlert:
    alert = Alert(
        fingerprint=row.fingerprint,
        name=row.name,
        status=row.status,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        labels={str(k): str(v) for k, v in row.labels.items()},
        annotations={str(k): str(v) for k, v in row.annotations.items()},
        generator_url=row.generator_url,
        receiver=row.receiver,
    )
    disposition = AlertDisposition(row.disposition) if row.disposition else None
    return StoredAlert(row.id, alert, row.received, disposition, row.detail, row.incident_id)


def action_view(row: ActionRow) -> ActionView:
    return ActionView(
        id=row.id,
        incident_id=row.incident_id,
        kind=row.kind,
        workload=WorkloadRef(row.namespace, row.workload_kind, row.name),
        status=row.status,
        intent=row.intent,
        request=row.request,
        response=row.response,
        created=row.created,
        started=row.started,
        finished=row.finished,
        error=row.error,
        reviewed_by=row.reviewed_by,
        reviewed_at=row.reviewed_at,
        review_reason=row.review_reason,
        actor=row.actor,
    )


def feedback(label: FeedbackRow, incident: IncidentRow) -> Feedback:
    return Feedback(
        incident_id=label.incident_id,
        workload=WorkloadRef(incident.namespace, incident.kind, incident.name),
        verdict=label.verdict,
        window_start=label.window_start,
        window_end=label.window_end,
        cause=label.cause,
        right_action=label.right_action,
        by=label.by,
        at=label.at,
        note=label.note,
    )


def rebuild(row: IncidentRow, steps: list[StepRow]) -> Incident:
    """The incident as the daemon holds it: the peak finding (a finding step is written
    only on a new peak) and the latest diagnosis, plan, action and outcome."""
    latest = {step.kind: step.data for step in steps}  # later steps overwrite earlier ones
    if StepKind.FINDING not in latest:
        raise StoreError(f"incident {row.id} has no finding step")
    diagnosis, plan = latest.get(StepKind.DIAGNOSIS), latest.get(StepKind.PLAN)
    action, outcome = latest.get(StepKind.ACTION), latest.get(StepKind.OUTCOME)
    return Incident(
        id=row.id,
        workload=WorkloadRef(row.namespace, row.kind, row.name),
        status=row.status,
        opened=row.opened,
        finding=serialize.finding_from_json(latest[StepKind.FINDING]),
        diagnosis=serialize.diagnosis_from_json(diagnosis) if diagnosis else None,
        plan=serialize.plan_from_json(plan) if plan else None,
        action=serialize.action_from_json(action) if action else None,
        outcome=serialize.outcome_from_json(outcome) if outcome else None,
    )


# ---- what waits for a person, and the overview's tallies (``attention.py``) ---------------


@dataclass(frozen=True)
class Acknowledgement:
    """A person saw an escalated incident: it leaves the overview's waiting list."""

    incident_id: int
    by: str
    at: datetime
    note: str = ""


@dataclass(frozen=True)
class OptOut:
    """A person's "hands off this workload until then": while active, the daemon plans
    nothing for it and records why."""

    id: int
    workload: WorkloadRef
    by: str
    reason: str
    created: datetime
    until: datetime
    ended: datetime | None = None
    """When a person ended it early; None: it runs until ``until``."""
    ended_by: str | None = None

    def active(self, now: datetime) -> bool:
        return self.ended is None and self.created <= now < self.until

    def detail(self) -> str:
        """The guard's words when it holds the daemon back."""
        why = f": {self.reason}" if self.reason else ""
        until = f"{self.until:%Y-%m-%d %H:%M} UTC"
        return f"healer silenced on {self.workload} by {self.by} until {until}{why}"


@dataclass(frozen=True)
class Tally:
    """What healer did over one window: incidents opened since ``since``, and the actions
    and guard blocks recorded since then."""

    since: datetime
    incidents: Mapping[tuple[Cause | None, OutcomeKind | None], int]
    """Incidents by diagnosed cause and outcome (None: not diagnosed, or not over)."""
    actions: Mapping[tuple[ActionKind, ActionStatus], int]
    blocked: Mapping[str, int]
    """Plans each guard blocked."""
    detect_s: Mapping[Cause | None, float]
    """Median seconds from the anomaly's onset to the finding, by cause."""
    heal_s: Mapping[Cause | None, float]
    """Median seconds from the onset to the healed outcome, by cause."""
    clusters: Mapping[str, Mapping[OutcomeKind | None, int]] = field(default_factory=dict)
    """Incidents by cluster and outcome (None: not over), for a store shared by the
    healers of several clusters."""

    @property
    def total(self) -> int:
        return sum(self.incidents.values())


# --- Releases -------------------------------------------------------------------------

RELEASE_LOOKBACK = timedelta(hours=1)
"""How long before an incident's onset a release of its workload still shows on its page:
a bad release shows within minutes (the diagnoser's window is 20), a slow leak it brought
in within the hour; older releases are history, not this incident's story."""


@dataclass(frozen=True)
class StoredRelease:
    """A release as stored: as reported, by whom, and whether healer watched its workload."""

    id: int
    release: Release
    received: datetime
    sender: str
    known: bool | None
    """Whether healer watched the workload when it arrived; None: it could not tell."""


def stored_release(row: ReleaseRow) -> StoredRelease:
    release = Release(
        workload=WorkloadRef(row.namespace, row.kind, row.name),
        at=row.at,
        source=ReleaseSource(row.source),
        revision=row.revision,
        image=row.image,
        commit=row.commit,
        author=row.author,
        pipeline=row.pipeline,
        pipeline_url=row.pipeline_url,
        environment=row.environment,
        status=row.status,
        report_url=row.report_url,
    )
    return StoredRelease(row.id, release, row.received, row.sender, row.known)


def releases_between(
    session: Session,
    workload: WorkloadRef,
    *,
    since: datetime,
    until: datetime,
    cluster: str,
) -> list[StoredRelease]:
    """The workload's releases in ``cluster`` from ``since`` to ``until`` (inclusive),
    oldest first: a namespace and name may mean another workload in another cluster."""
    rows = session.scalars(
        select(ReleaseRow)
        .where(
            ReleaseRow.cluster == cluster,
            ReleaseRow.namespace == workload.namespace,
            ReleaseRow.kind == workload.kind,
            ReleaseRow.name == workload.name,
            ReleaseRow.at >= since,
            ReleaseRow.at <= until,
        )
        .order_by(ReleaseRow.at, ReleaseRow.id)
    )
    return [stored_release(r) for r in rows]


def releases_around(session: Session, row: IncidentRow) -> list[StoredRelease]:
    """The releases an incident's page shows (``IncidentDetail.releases``)."""
    workload = WorkloadRef(row.namespace, row.kind, row.name)
    until = row.closed or row.last_seen
    return releases_between(
        session,
        workload,
        since=row.opened - RELEASE_LOOKBACK,
        until=until,
        cluster=row.cluster,
    )
