"""The audit store: the record of truth for every incident, step by step.

Two tables. ``incidents`` holds one row per incident with the columns people filter and
sort on (workload, status, peak score, cause, last action, outcome); ``incident_steps``
holds the timeline, one row per recorded value with its JSON form (``serialize.py``).
The summary columns are a cache of the steps, updated in the same transaction.

Decisions:

- Every ``record_*`` commits before it returns, so a crash loses nothing and a restarted
  daemon, reading ``unresolved()``, never repeats an action it already took.
- One short session per method call, from a sessionmaker: the daemon thread writes while
  API threads read. On SQLite, WAL lets readers run beside the writer; pysqlite's own
  transaction handling is switched off so that reads see one snapshot and writes begin
  with ``BEGIN IMMEDIATE`` (take the write lock first, wait up to ``busy_timeout``)
  instead of failing with "database is locked" when upgrading a read lock.
- Datetimes are stored in UTC. SQLite drops the offset, so values read back are made
  UTC-aware again; a naive datetime is refused.
- Findings arrive every cycle; only a new peak score appends a step, so a long incident
  does not become one row per cycle. ``last_seen`` follows every finding.
- No clock here: every time comes from the values recorded.
- Tables are created with ``metadata.create_all``; migrations come later.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Dialect,
    Enum,
    Float,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import TypeDecorator

from healer.audit import serialize
from healer.errors import StoreError
from healer.types import (
    ActionHistory,
    ActionKind,
    ActionRecord,
    ActionStatus,
    Cause,
    Diagnosis,
    Finding,
    Incident,
    IncidentStatus,
    JsonObject,
    Outcome,
    OutcomeKind,
    Plan,
    WorkloadRef,
)

SQLITE_BUSY_TIMEOUT_MS = 5000
"""How long a SQLite writer waits for another writer's lock. Writes are single short
transactions (milliseconds), so five seconds means something is stuck, not busy."""

_BEGIN_OPTION = "healer_sqlite_begin"
"""Execution option read by the SQLite ``begin`` hook: the statement that opens a transaction."""

_ATTEMPTED = (ActionStatus.SUCCEEDED, ActionStatus.FAILED, ActionStatus.DRY_RUN)
"""Action statuses that count for a workload's cooldown: the action was made, tried or
simulated. An intent counts once its outcome is recorded: a daemon that died before
sending it must be free to send it after checking the cluster.
Blocked and pending actions changed nothing, so they start no cooldown."""


class StepKind(enum.StrEnum):
    FINDING = "finding"
    DIAGNOSIS = "diagnosis"
    PLAN = "plan"
    ACTION = "action"
    OUTCOME = "outcome"


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


@dataclass(frozen=True)
class TimelineStep:
    kind: StepKind
    at: datetime
    data: JsonObject
    """The recorded value in its JSON form (``healer.audit.serialize.to_json``)."""


@dataclass(frozen=True)
class IncidentDetail:
    summary: IncidentSummary
    timeline: tuple[TimelineStep, ...]
    """Every recorded step, in the order it was recorded."""


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
    }


class IncidentRow(Base):
    __tablename__ = "incidents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Kubernetes limits: namespace 63, kind 63, object name 253 characters.
    namespace: Mapped[str] = mapped_column(String(63), index=True)
    kind: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(253), index=True)
    status: Mapped[IncidentStatus] = mapped_column(index=True)
    opened: Mapped[datetime]
    closed: Mapped[datetime | None]
    score: Mapped[float] = mapped_column(Float)
    cause: Mapped[Cause | None]
    confidence: Mapped[float | None] = mapped_column(Float)
    action: Mapped[ActionKind | None]
    action_status: Mapped[ActionStatus | None]
    outcome: Mapped[OutcomeKind | None]
    last_seen: Mapped[datetime]


class StepRow(Base):
    __tablename__ = "incident_steps"
    __table_args__ = (UniqueConstraint("incident_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    seq: Mapped[int]
    kind: Mapped[StepKind] = mapped_column(index=True)
    at: Mapped[datetime]
    data: Mapped[JsonObject] = mapped_column(JSON)


class AuditStore:
    """Incidents and their timelines in a SQL database (SQLite by default).

    Thread-safe: each method opens and closes its own session.
    """

    def __init__(self, url: str) -> None:
        try:
            self._engine = _create_engine(url)
            Base.metadata.create_all(self._engine)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot open audit store: {_brief(exc)}") from exc
        self._reader = sessionmaker(self._engine, expire_on_commit=False)
        writer_bind = self._engine.execution_options(**{_BEGIN_OPTION: "BEGIN IMMEDIATE"})
        self._writer = sessionmaker(writer_bind, expire_on_commit=False)

    def close(self) -> None:
        self._engine.dispose()

    # -- writing ---------------------------------------------------------------------

    def open_incident(self, finding: Finding) -> int:
        """Start an incident for ``finding``'s workload; returns its id."""
        data = serialize.to_json_object(finding)
        with self._write("open incident") as session:
            wl = finding.workload
            row = IncidentRow(
                namespace=wl.namespace,
                kind=wl.kind,
                name=wl.name,
                status=IncidentStatus.OPEN,
                opened=finding.onset,
                score=finding.score,
                last_seen=finding.at,
            )
            session.add(row)
            session.flush()
            _append(session, row.id, StepKind.FINDING, finding.at, data)
            return row.id

    def record_finding(self, incident_id: int, finding: Finding) -> None:
        """Note a later finding: ``last_seen`` always, a step only on a new peak score."""
        data = serialize.to_json_object(finding)
        with self._write(f"record finding of incident {incident_id}") as session:
            row = _incident(session, incident_id)
            row.last_seen = max(row.last_seen, finding.at)
            if finding.score > row.score:
                row.score = finding.score
                _append(session, incident_id, StepKind.FINDING, finding.at, data)

    def record_diagnosis(
        self, incident_id: int, diagnosis: Diagnosis, *, at: datetime | None = None
    ) -> None:
        """``at`` defaults to the incident's latest finding: a diagnosis carries no time."""
        data = serialize.to_json_object(diagnosis)
        with self._write(f"record diagnosis of incident {incident_id}") as session:
            row = _incident(session, incident_id)
            row.cause, row.confidence = diagnosis.cause, diagnosis.confidence
            _append(session, incident_id, StepKind.DIAGNOSIS, at or row.last_seen, data)

    def record_plan(self, incident_id: int, plan: Plan, *, at: datetime | None = None) -> None:
        """``at`` defaults to the incident's latest finding: a plan carries no time."""
        data = serialize.to_json_object(plan)
        with self._write(f"record plan of incident {incident_id}") as session:
            row = _incident(session, incident_id)
            _append(session, incident_id, StepKind.PLAN, at or row.last_seen, data)

    def record_action(self, incident_id: int, action: ActionRecord) -> None:
        """Record an action; taken or dry-run -> VERIFYING, awaiting approval -> PENDING_APPROVAL.

        Failed and blocked actions leave the status alone: the daemon decides what next.
        """
        data = serialize.to_json_object(action)
        with self._write(f"record action of incident {incident_id}") as session:
            row = _incident(session, incident_id)
            row.action, row.action_status = action.kind, action.status
            if action.status in (ActionStatus.SUCCEEDED, ActionStatus.DRY_RUN):
                row.status = IncidentStatus.VERIFYING
            elif action.status is ActionStatus.PENDING_APPROVAL:
                row.status = IncidentStatus.PENDING_APPROVAL
            _append(session, incident_id, StepKind.ACTION, action.started, data)

    def record_outcome(self, incident_id: int, outcome: Outcome) -> None:
        """Close the incident: status RESOLVED, ``closed`` = the outcome's time."""
        data = serialize.to_json_object(outcome)
        with self._write(f"record outcome of incident {incident_id}") as session:
            row = _incident(session, incident_id)
            row.outcome, row.status, row.closed = outcome.kind, IncidentStatus.RESOLVED, outcome.at
            _append(session, incident_id, StepKind.OUTCOME, outcome.at, data)

    # -- reading ---------------------------------------------------------------------

    def list_incidents(
        self,
        *,
        status: IncidentStatus | None = None,
        namespace: str | None = None,
        workload: str | None = None,
        cause: Cause | None = None,
        limit: int = 50,
        before_id: int | None = None,
    ) -> list[IncidentSummary]:
        """Newest first. ``before_id`` is a keyset cursor: pass the last id of a page."""
        query = select(IncidentRow).order_by(IncidentRow.id.desc()).limit(limit)
        for column, value in (
            (IncidentRow.status, status),
            (IncidentRow.namespace, namespace),
            (IncidentRow.name, workload),
            (IncidentRow.cause, cause),
        ):
            if value is not None:
                query = query.where(column == value)
        if before_id is not None:
            query = query.where(IncidentRow.id < before_id)
        with self._read("list incidents") as session:
            return [_summary(row) for row in session.scalars(query)]

    def get_incident(self, incident_id: int) -> IncidentDetail | None:
        with self._read(f"read incident {incident_id}") as session:
            row = session.get(IncidentRow, incident_id)
            if row is None:
                return None
            steps = _steps(session, incident_id)
            timeline = tuple(TimelineStep(kind=s.kind, at=s.at, data=s.data) for s in steps)
            return IncidentDetail(summary=_summary(row), timeline=timeline)

    def unresolved(self) -> list[Incident]:
        """Incidents not yet RESOLVED, oldest first, rebuilt for a restarted daemon.

        ``finding`` is the peak finding; the other fields are the latest of their kind.
        """
        query = select(IncidentRow).where(IncidentRow.status != IncidentStatus.RESOLVED)
        with self._read("read unresolved incidents") as session:
            rows = session.scalars(query.order_by(IncidentRow.id)).all()
            return [_rebuild(row, _steps(session, row.id)) for row in rows]

    def action_history(self, *, now: datetime, window_s: float) -> ActionHistory:
        """What the guards need: last attempt per workload, actions taken in the window
        ``(now - window_s, now]``, and incidents waiting for verification."""
        status = StepRow.data["status"].as_string()
        last = (
            select(IncidentRow.namespace, IncidentRow.kind, IncidentRow.name, func.max(StepRow.at))
            .join(StepRow, StepRow.incident_id == IncidentRow.id)
            .where(StepRow.kind == StepKind.ACTION, status.in_([s.value for s in _ATTEMPTED]))
            .group_by(IncidentRow.namespace, IncidentRow.kind, IncidentRow.name)
        )
        recent = (
            select(StepRow.at)
            .where(StepRow.kind == StepKind.ACTION, status == ActionStatus.SUCCEEDED.value)
            .where(StepRow.at > now - timedelta(seconds=window_s), StepRow.at <= now)
            .order_by(StepRow.at)
        )
        rollbacks = (
            select(IncidentRow.namespace, IncidentRow.kind, IncidentRow.name, func.max(StepRow.at))
            .join(StepRow, StepRow.incident_id == IncidentRow.id)
            .where(StepRow.kind == StepKind.ACTION, status == ActionStatus.SUCCEEDED.value)
            .where(StepRow.data["kind"].as_string() == ActionKind.ROLLBACK.value)
            .group_by(IncidentRow.namespace, IncidentRow.kind, IncidentRow.name)
        )
        in_flight = (
            select(func.count())
            .select_from(IncidentRow)
            .where(IncidentRow.status == IncidentStatus.VERIFYING)
        )
        with self._read("read action history") as session:
            return ActionHistory(
                last_action_at={
                    WorkloadRef(ns, k, n): at for ns, k, n, at in session.execute(last)
                },
                recent_action_times=tuple(session.scalars(recent)),
                in_flight=session.scalar(in_flight) or 0,
                last_rollback_at={
                    WorkloadRef(ns, k, n): at for ns, k, n, at in session.execute(rollbacks)
                },
            )

    # -- sessions --------------------------------------------------------------------

    @contextmanager
    def _write(self, what: str) -> Iterator[Session]:
        """A session that commits on success; database errors become StoreError."""
        try:
            with self._writer.begin() as session:
                yield session
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot {what}: {_brief(exc)}") from exc

    @contextmanager
    def _read(self, what: str) -> Iterator[Session]:
        try:
            with self._reader() as session, session.begin():
                yield session
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot {what}: {_brief(exc)}") from exc


def _brief(exc: Exception) -> str:
    """The database's own message, on one line (SQLAlchemy appends a help link)."""
    original = getattr(exc, "orig", None) or exc
    return str(original).strip().splitlines()[0] if str(original).strip() else repr(exc)


def _create_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True)
    in_memory = parsed.database in (None, "", ":memory:")
    # An in-memory database lives in one connection: share it between threads.
    extra: dict[str, Any] = (
        {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}} if in_memory else {}
    )
    engine = create_engine(parsed, **extra)
    event.listen(engine, "connect", _on_sqlite_connect)
    event.listen(engine, "begin", _on_sqlite_begin)
    return engine


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Any: the DB-API connection is untyped (sqlite3.Connection behind SQLAlchemy's proxy).
    dbapi_connection.isolation_level = None  # we emit BEGIN ourselves, see _on_sqlite_begin
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def _on_sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql(conn.get_execution_options().get(_BEGIN_OPTION, "BEGIN"))


def _incident(session: Session, incident_id: int) -> IncidentRow:
    row = session.get(IncidentRow, incident_id, with_for_update=True)
    if row is None:
        raise StoreError(f"incident {incident_id} not found")
    return row


def _append(
    session: Session, incident_id: int, kind: StepKind, at: datetime, data: JsonObject
) -> None:
    last = session.scalar(select(func.max(StepRow.seq)).where(StepRow.incident_id == incident_id))
    session.add(StepRow(incident_id=incident_id, seq=(last or 0) + 1, kind=kind, at=at, data=data))


def _steps(session: Session, incident_id: int) -> list[StepRow]:
    query = select(StepRow).where(StepRow.incident_id == incident_id).order_by(StepRow.seq)
    return list(session.scalars(query))


def _summary(row: IncidentRow) -> IncidentSummary:
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
    )


def _rebuild(row: IncidentRow, steps: list[StepRow]) -> Incident:
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
