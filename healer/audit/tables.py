"""The audit store's tables, as SQLAlchemy 2 declarative classes.

The schema itself is made by the Alembic migrations in ``migrations/versions``; these
classes must describe the same tables (a test compares the two on a fresh database).

- ``incidents``: one row per incident, the columns people filter and sort on; a cache
  of its steps, updated in the same transaction as each step.
- ``incident_steps``: the timeline, one row per recorded value (finding, diagnosis,
  plan, action, review, outcome, feedback) with its JSON form and the identity of the
  daemon or person that wrote it (``actor``).
- ``actions``: every action as its own row (intent, request, response, status, times),
  so that a pending action has an id people can approve or reject.
- ``guard_verdicts``: each guard's verdict on each plan, so blocks can be counted.
- ``feedback``: operators' labels, the training data of the models.
- ``guard_state``: small named JSON values the daemon keeps across restarts (its last
  cycle, the leader's identity), readable by any replica serving the API.
- ``alerts``: Alertmanager's alerts as delivered, one row per firing (fingerprint and
  start), with what the daemon made of each: joined to an incident, or why not.
- ``silences``: the Alertmanager silences healer asked for, per incident: made (with
  Alertmanager's id), expired, or not made and why.
- ``acknowledgements``: who saw an escalated incident, and when.
- ``opt_outs``: people's time-limited "hands off this workload", ended early or not.
- ``releases``: release events from pipelines, forges and GitOps syncs, as received.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Dialect,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    event,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import DeclarativeBase, Mapped, Mapper, mapped_column
from sqlalchemy.types import TypeDecorator

from healer.audit import listed
from healer.types import (
    ActionKind,
    ActionStatus,
    AlertStatus,
    Cause,
    IncidentStatus,
    JsonObject,
    OutcomeKind,
    SilenceState,
    Verdict,
)

ACTOR_LENGTH = 255
"""Room for ``hostname:pid`` or a Lease holder identity (a pod name is at most 253)."""


class StepKind(enum.StrEnum):
    FINDING = "finding"
    DIAGNOSIS = "diagnosis"
    PLAN = "plan"
    ACTION = "action"
    REVIEW = "review"
    """A person approved or rejected a pending action."""
    OUTCOME = "outcome"
    FEEDBACK = "feedback"
    SILENCE = "silence"
    """A silence of the workload's alerts made, expired, or not made (and why)."""
    ACKNOWLEDGED = "acknowledged"
    """A person saw the escalated incident."""
    RELEASE = "release"
    """A release of the workload (``releases``), shown among the steps by its time; the
    releases table holds it, never ``incident_steps``."""
    ROLLOUT = "rollout"
    """The rollout the incident's action started was seen complete (the verifier's
    reading: ready and updated replicas), once per action."""


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend, SQLite included."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()}: healer times are aware")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _enum_type(cls: type[enum.Enum]) -> Enum:
    """Store enum values ("resolved"), not names, as plain strings: readable in SQL."""
    return Enum(cls, native_enum=False, length=32, values_callable=lambda e: [m.value for m in e])


class Base(DeclarativeBase):
    type_annotation_map = {  # noqa: RUF012 (SQLAlchemy reads this class attribute)
        datetime: UtcDateTime(),
        IncidentStatus: _enum_type(IncidentStatus),
        Cause: _enum_type(Cause),
        ActionKind: _enum_type(ActionKind),
        ActionStatus: _enum_type(ActionStatus),
        OutcomeKind: _enum_type(OutcomeKind),
        StepKind: _enum_type(StepKind),
        Verdict: _enum_type(Verdict),
        AlertStatus: _enum_type(AlertStatus),
        SilenceState: _enum_type(SilenceState),
    }


DEFAULT_CLUSTER = "default"
"""The cluster of rows recorded before there were several (0009)."""


class IncidentRow(Base):
    __tablename__ = "incidents"
    # The list filtered by workload (namespace and name), by cluster, or by namespace
    # with a status or a cause, read newest first (migrations 0003, 0009 and 0010).
    __table_args__ = (
        Index("ix_incidents_namespace_name", "namespace", "name"),
        Index("ix_incidents_cluster_id", "cluster", "id"),
        Index("ix_incidents_namespace_status", "namespace", "status"),
        Index("ix_incidents_namespace_cause", "namespace", "cause"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Kubernetes limits: namespace 63, kind 63, object name 253 characters.
    namespace: Mapped[str] = mapped_column(String(63), index=True)
    kind: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(253), index=True)
    status: Mapped[IncidentStatus] = mapped_column(index=True)
    opened: Mapped[datetime] = mapped_column(index=True)
    closed: Mapped[datetime | None]
    score: Mapped[float] = mapped_column(Float)
    cause: Mapped[Cause | None] = mapped_column(index=True)
    confidence: Mapped[float | None] = mapped_column(Float)
    action: Mapped[ActionKind | None]
    action_status: Mapped[ActionStatus | None]
    outcome: Mapped[OutcomeKind | None] = mapped_column(index=True)
    last_seen: Mapped[datetime]
    detected: Mapped[datetime | None]
    """Time of the first finding (``opened`` is the anomaly's onset); None before 0007."""
    cluster: Mapped[str] = mapped_column(String(63), server_default=DEFAULT_CLUSTER)
    """``cluster.name`` of the healer that recorded it (0009): one store, many clusters."""
    listed: Mapped[str | None] = mapped_column(Text)
    """Its entry in the incident list as JSON (``listed.entry_json``, 0011): made from the
    columns above on every write through the ORM (``_list_new``, ``_list_changed``);
    None on a row inserted past the ORM, which is listed from its columns."""


@event.listens_for(IncidentRow, "before_insert")
def _default_cluster(mapper: Mapper[IncidentRow], connection: Connection, row: IncidentRow) -> None:
    if row.cluster is None:  # the server's default, which the INSERT would have given
        row.cluster = DEFAULT_CLUSTER


@event.listens_for(IncidentRow, "after_insert")
def _list_new(mapper: Mapper[IncidentRow], connection: Connection, row: IncidentRow) -> None:
    """A new incident's entry, once the database gave it its id: same transaction."""
    entry = listed.entry_json(row)
    connection.execute(update(IncidentRow).where(IncidentRow.id == row.id).values(listed=entry))


@event.listens_for(IncidentRow, "before_update")
def _list_changed(mapper: Mapper[IncidentRow], connection: Connection, row: IncidentRow) -> None:
    """Keep ``row.listed`` in step with the columns it is made of, in the same statement."""
    row.listed = listed.entry_json(row)


class StepRow(Base):
    __tablename__ = "incident_steps"
    __table_args__ = (UniqueConstraint("incident_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    seq: Mapped[int]
    kind: Mapped[StepKind] = mapped_column(index=True)
    at: Mapped[datetime]
    data: Mapped[JsonObject] = mapped_column(JSON)
    actor: Mapped[str] = mapped_column(String(ACTOR_LENGTH), server_default="")


class ActionRow(Base):
    __tablename__ = "actions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[ActionKind]
    namespace: Mapped[str] = mapped_column(String(63))
    workload_kind: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(253))
    status: Mapped[ActionStatus] = mapped_column(index=True)
    intent: Mapped[JsonObject] = mapped_column(JSON)
    """The plan the action carries out: playbook, action, params, mode, guard verdicts."""
    request: Mapped[JsonObject] = mapped_column(JSON)
    """The Kubernetes request made or to be made: verb, path, content type, body."""
    response: Mapped[JsonObject | None] = mapped_column(JSON)
    """How the API server answered: the status and the error, if any."""
    created: Mapped[datetime] = mapped_column(index=True)
    started: Mapped[datetime | None]
    finished: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    reviewed_by: Mapped[str | None] = mapped_column(String(ACTOR_LENGTH))
    reviewed_at: Mapped[datetime | None]
    review_reason: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(ACTOR_LENGTH))
    cluster: Mapped[str] = mapped_column(String(63), server_default="default")
    """Its incident's cluster (0009)."""


class GuardVerdictRow(Base):
    __tablename__ = "guard_verdicts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    step_id: Mapped[int] = mapped_column(ForeignKey("incident_steps.id", ondelete="CASCADE"))
    incident_id: Mapped[int] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), index=True
    )
    guard: Mapped[str] = mapped_column(String(63), index=True)
    passed: Mapped[bool] = mapped_column(Boolean)
    detail: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(index=True)


class FeedbackRow(Base):
    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), index=True
    )
    verdict: Mapped[Verdict]
    cause: Mapped[Cause | None]
    right_action: Mapped[ActionKind | None]
    note: Mapped[str] = mapped_column(Text)
    by: Mapped[str] = mapped_column(String(ACTOR_LENGTH))
    at: Mapped[datetime] = mapped_column(index=True)
    window_start: Mapped[datetime]
    window_end: Mapped[datetime]


class GuardStateRow(Base):
    __tablename__ = "guard_state"

    key: Mapped[str] = mapped_column(String(63), primary_key=True)
    value: Mapped[JsonObject] = mapped_column(JSON)
    updated: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(ACTOR_LENGTH))


class AlertRow(Base):
    __tablename__ = "alerts"
    # One row per firing: a repeated delivery finds it; the daemon reads the unsettled.
    __table_args__ = (
        UniqueConstraint("fingerprint", "starts_at", name="uq_alerts_fingerprint_starts_at"),
        Index("ix_alerts_status_disposition", "status", "disposition"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    starts_at: Mapped[datetime]
    name: Mapped[str] = mapped_column(String(253))
    status: Mapped[AlertStatus]
    ends_at: Mapped[datetime | None]
    labels: Mapped[JsonObject] = mapped_column(JSON)
    annotations: Mapped[JsonObject] = mapped_column(JSON)
    generator_url: Mapped[str] = mapped_column(Text)
    receiver: Mapped[str] = mapped_column(String(255))
    received: Mapped[datetime]
    """When the first delivery of this firing arrived."""
    updated: Mapped[datetime]
    """When a delivery last changed the row (its resolution)."""
    incident_id: Mapped[int | None] = mapped_column(
        ForeignKey("incidents.id", ondelete="SET NULL"), index=True
    )
    disposition: Mapped[str | None] = mapped_column(String(32))
    """What the daemon made of it (``AlertDisposition``); None until it has looked."""
    detail: Mapped[str | None] = mapped_column(Text)
    cluster: Mapped[str] = mapped_column(String(63), server_default="default")
    """The cluster whose healer received it (0009); that healer's daemon settles it."""


class SilenceRow(Base):
    __tablename__ = "silences"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), index=True
    )
    silence_id: Mapped[str | None] = mapped_column(String(64))
    """Alertmanager's id (a UUID); None when the silence could not be made."""
    matchers: Mapped[JsonObject] = mapped_column(JSON)
    regex: Mapped[JsonObject | None] = mapped_column(JSON)
    """Label name to the regular expression it must match; None: none."""
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    state: Mapped[SilenceState]
    error: Mapped[str | None] = mapped_column(Text)
    """Why it could not be made, or the last expiry that failed."""
    created: Mapped[datetime]
    updated: Mapped[datetime]


class AcknowledgementRow(Base):
    __tablename__ = "acknowledgements"
    __table_args__ = (UniqueConstraint("incident_id", name="uq_acknowledgements_incident_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    by: Mapped[str] = mapped_column(String(ACTOR_LENGTH))
    at: Mapped[datetime]
    note: Mapped[str] = mapped_column(Text)


class OptOutRow(Base):
    __tablename__ = "opt_outs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    namespace: Mapped[str] = mapped_column(String(63))
    kind: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(253))
    by: Mapped[str] = mapped_column(String(ACTOR_LENGTH))
    reason: Mapped[str] = mapped_column(Text)
    created: Mapped[datetime]
    until: Mapped[datetime] = mapped_column(index=True)
    ended: Mapped[datetime | None]
    """When a person ended it before ``until``; None: it runs to ``until``."""
    ended_by: Mapped[str | None] = mapped_column(String(ACTOR_LENGTH))


class ReleaseRow(Base):
    """One release event as received (``healer.types.Release``), with whether healer
    watched its workload when it arrived."""

    __tablename__ = "releases"
    __table_args__ = (Index("ix_releases_workload_at", "namespace", "kind", "name", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    namespace: Mapped[str] = mapped_column(String(63))
    kind: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(253))
    at: Mapped[datetime]
    source: Mapped[str] = mapped_column(String(16))
    revision: Mapped[str] = mapped_column(String(255))
    image: Mapped[str] = mapped_column(Text)
    commit: Mapped[str] = mapped_column(String(255))
    author: Mapped[str] = mapped_column(String(255))
    pipeline: Mapped[str] = mapped_column(String(255))
    pipeline_url: Mapped[str] = mapped_column(Text)
    environment: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(63))
    report_url: Mapped[str] = mapped_column(Text)
    """Where a rollback of it is reported (``Release.report_url``); empty: nowhere."""
    known: Mapped[bool | None] = mapped_column(Boolean)
    """Whether healer watched the workload when the release arrived; None: it could
    not tell (an API without a daemon beside it)."""
    received: Mapped[datetime]
    sender: Mapped[str] = mapped_column(String(ACTOR_LENGTH))
    """The token's name, or the forge whose secret it carried."""
    cluster: Mapped[str] = mapped_column(String(63), server_default="default")
    """The cluster whose healer received it (0009)."""
