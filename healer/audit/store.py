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
- The schema comes from the Alembic migrations, run when the store opens
  (``migrate.py``); the table classes live in ``tables.py``.
- Every step row carries ``actor``: the identity of the daemon that wrote it (by default
  ``hostname:pid``; under leader election, the Lease holder identity) or, for reviews
  and feedback, the person's token name.
- An action is also a row of ``actions``, with an id people approve or reject by.
  Approving marks it ``approved``; the daemon's next cycle finds it
  (``approved_actions``), runs it through the guards again and records the result,
  which completes that same row.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import create_engine, event, func, select
from sqlalchemy.engine import Connection, Engine, Row, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from healer.audit import migrate, serialize
from healer.audit.tables import (
    ActionRow,
    FeedbackRow,
    GuardStateRow,
    GuardVerdictRow,
    IncidentRow,
    StepKind,
    StepRow,
)
from healer.errors import ReviewConflict, StoreError, UnknownRecord
from healer.types import (
    ActionHistory,
    ActionKind,
    ActionRecord,
    ActionStatus,
    Cause,
    Diagnosis,
    Feedback,
    Finding,
    Frame,
    Incident,
    IncidentStatus,
    JsonObject,
    Outcome,
    OutcomeKind,
    Plan,
    Verdict,
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

__all__ = ["AuditStore", "StepKind"]


def default_identity() -> str:
    """``hostname:pid``: tells apart two daemons on one host and two hosts."""
    return f"{socket.gethostname()}:{os.getpid()}"


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


@dataclass(frozen=True)
class FeedbackInput:
    """An operator's label as given; the store fills in the workload and the window."""

    verdict: Verdict
    cause: Cause | None
    right_action: ActionKind | None
    by: str
    at: datetime
    note: str = ""


class AuditStore:
    """Incidents and their timelines in a SQL database (SQLite by default).

    Thread-safe: each method opens and closes its own session. ``identity`` is written as
    the ``actor`` of every step this store records for the daemon.
    """

    def __init__(self, url: str, *, identity: str | None = None) -> None:
        self.identity = identity or default_identity()
        try:
            self._engine = _create_engine(url)
            # Take SQLite's write lock first: two processes opening one new file at once
            # then migrate one after the other instead of failing on a lock upgrade.
            migrate.upgrade(self._engine.execution_options(**{_BEGIN_OPTION: "BEGIN IMMEDIATE"}))
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot open audit store: {_brief(exc)}") from exc
        self._reader = sessionmaker(self._engine, expire_on_commit=False)
        writer_bind = self._engine.execution_options(**{_BEGIN_OPTION: "BEGIN IMMEDIATE"})
        self._writer = sessionmaker(writer_bind, expire_on_commit=False)
        self._writes = 0
        self._count_lock = threading.Lock()

    @property
    def write_count(self) -> int:
        """How many writes this store has committed: a reader that saw the same count
        before and after reading saw no write of this process in between. Caches of
        what was read key on it (``healer.api.listing``); writes by other processes
        sharing the database do not count."""
        return self._writes

    def close(self) -> None:
        self._engine.dispose()

    # -- writing: the daemon ---------------------------------------------------------

    def open_incident(self, finding: Finding, *, frame: Frame | None = None) -> int:
        """Start an incident for ``finding``'s workload; returns its id.

        With ``frame``, the finding's step also keeps its deviating signals over the
        frame (``serialize.series_json``), for the review page's charts."""
        data = serialize.to_json_object(finding)
        if frame is not None:
            data["series"] = serialize.series_json(frame, finding)
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
            self._append(session, row.id, StepKind.FINDING, finding.at, data)
            return row.id

    def record_finding(self, incident_id: int, finding: Finding) -> None:
        """Note a later finding: ``last_seen`` always, a step only on a new peak score."""
        data = serialize.to_json_object(finding)
        with self._write(f"record finding of incident {incident_id}") as session:
            row = _incident(session, incident_id)
            row.last_seen = max(row.last_seen, finding.at)
            if finding.score > row.score:
                row.score = finding.score
                self._append(session, incident_id, StepKind.FINDING, finding.at, data)

    def record_diagnosis(
        self,
        incident_id: int,
        diagnosis: Diagnosis,
        *,
        at: datetime | None = None,
        features: Mapping[str, float] | None = None,
    ) -> None:
        """``at`` defaults to the incident's latest finding: a diagnosis carries no time.

        ``features``, the diagnoser's row by column name, is kept in the step's payload
        so that operators' feedback on the incident can train the diagnoser later
        (``diagnosis_features``)."""
        data = serialize.to_json_object(diagnosis)
        if features is not None:
            data["features"] = {name: float(value) for name, value in features.items()}
        with self._write(f"record diagnosis of incident {incident_id}") as session:
            row = _incident(session, incident_id)
            row.cause, row.confidence = diagnosis.cause, diagnosis.confidence
            self._append(session, incident_id, StepKind.DIAGNOSIS, at or row.last_seen, data)

    def record_plan(self, incident_id: int, plan: Plan, *, at: datetime | None = None) -> None:
        """The plan and each guard's verdict. ``at`` defaults to the incident's latest
        finding: a plan carries no time."""
        data = serialize.to_json_object(plan)
        with self._write(f"record plan of incident {incident_id}") as session:
            row = _incident(session, incident_id)
            when = at or row.last_seen
            step = self._append(session, incident_id, StepKind.PLAN, when, data)
            session.flush()
            session.add_all(
                GuardVerdictRow(
                    step_id=step.id,
                    incident_id=incident_id,
                    guard=g.guard,
                    passed=g.passed,
                    detail=g.detail,
                    at=when,
                )
                for g in plan.guard_results
            )

    def record_action(self, incident_id: int, action: ActionRecord) -> int:
        """Record an action; returns its id in ``actions``.

        Taken or dry-run -> VERIFYING, awaiting approval -> PENDING_APPROVAL; failed and
        blocked actions leave the status alone: the daemon decides what next. When the
        incident has an approved action waiting, or one recorded as intended, this record
        is its execution and completes that row instead of adding one.
        """
        data = serialize.to_json_object(action)
        with self._write(f"record action of incident {incident_id}") as session:
            row = _incident(session, incident_id)
            row.action, row.action_status = action.kind, action.status
            if action.status in (ActionStatus.SUCCEEDED, ActionStatus.DRY_RUN):
                row.status = IncidentStatus.VERIFYING
            elif action.status is ActionStatus.PENDING_APPROVAL:
                row.status = IncidentStatus.PENDING_APPROVAL
            self._append(session, incident_id, StepKind.ACTION, action.started, data)
            plan = _latest(session, incident_id, StepKind.PLAN)
            # An approved action, or one recorded as intended, is completed by this record.
            approved = session.scalars(
                select(ActionRow)
                .where(ActionRow.incident_id == incident_id)
                .where(ActionRow.status.in_([ActionStatus.APPROVED, ActionStatus.INTENDED]))
                .order_by(ActionRow.id.desc())
                .with_for_update()
            ).first()
            target = approved or ActionRow(
                incident_id=incident_id,
                kind=action.kind,
                namespace=action.target.namespace,
                workload_kind=action.target.kind,
                name=action.target.name,
                intent=plan or {},
                created=action.started,
                actor=self.identity,
            )
            _fill_action(target, action, data)
            target.actor = self.identity  # the daemon that took it, not the one that asked
            session.add(target)
            session.flush()
            return target.id

    def record_outcome(self, incident_id: int, outcome: Outcome) -> None:
        """Close the incident: status RESOLVED, ``closed`` = the outcome's time."""
        data = serialize.to_json_object(outcome)
        with self._write(f"record outcome of incident {incident_id}") as session:
            row = _incident(session, incident_id)
            row.outcome, row.status, row.closed = outcome.kind, IncidentStatus.RESOLVED, outcome.at
            self._append(session, incident_id, StepKind.OUTCOME, outcome.at, data)

    def expire_pending(self, incident_id: int, outcome: Outcome) -> ActionView | None:
        """Withdraw the incident's action still awaiting approval and close the incident.

        For a workload that settled on its own before anyone reviewed the action: the
        action becomes EXPIRED (approving it later is a ReviewConflict) and the incident
        is resolved with ``outcome``. Returns None, changing nothing, when no action of
        the incident is pending (a person approved or rejected it meanwhile).
        """
        with self._write(f"expire the pending action of incident {incident_id}") as session:
            query = (
                select(ActionRow)
                .where(
                    ActionRow.incident_id == incident_id,
                    ActionRow.status == ActionStatus.PENDING_APPROVAL,
                )
                .with_for_update()
            )
            action = session.scalars(query).first()
            if action is None:
                return None
            action.status = ActionStatus.EXPIRED
            row = _incident(session, incident_id)
            row.action_status = ActionStatus.EXPIRED
            row.outcome, row.status, row.closed = outcome.kind, IncidentStatus.RESOLVED, outcome.at
            data = serialize.to_json_object(outcome)
            self._append(session, incident_id, StepKind.OUTCOME, outcome.at, data)
            return _action_view(action)

    def save_state(self, key: str, value: JsonObject, *, at: datetime) -> None:
        """Keep a named value across restarts (last cycle, leader); replaces the old one."""
        with self._write(f"save state {key}") as session:
            row = session.get(GuardStateRow, key, with_for_update=True)
            if row is None:
                session.add(GuardStateRow(key=key, value=value, updated=at, actor=self.identity))
            else:
                row.value, row.updated, row.actor = value, at, self.identity

    # -- writing: people -------------------------------------------------------------

    def approve_action(self, action_id: int, *, by: str, reason: str, at: datetime) -> ActionView:
        """Mark a pending action approved; the daemon takes it on its next cycle.

        Raises UnknownRecord for an unknown id, ReviewConflict when it is not pending.
        Changes nothing when it raises.
        """
        return self._review(action_id, ActionStatus.APPROVED, by=by, reason=reason, at=at)

    def reject_action(self, action_id: int, *, by: str, reason: str, at: datetime) -> ActionView:
        """Mark a pending action rejected and close its incident as escalated."""
        return self._review(action_id, ActionStatus.REJECTED, by=by, reason=reason, at=at)

    def _review(
        self, action_id: int, status: ActionStatus, *, by: str, reason: str, at: datetime
    ) -> ActionView:
        verb = "approve" if status is ActionStatus.APPROVED else "reject"
        with self._write(f"{verb} action {action_id}") as session:
            action = session.get(ActionRow, action_id, with_for_update=True)
            if action is None:
                raise UnknownRecord(f"action {action_id} not found")
            if action.status is not ActionStatus.PENDING_APPROVAL:
                raise ReviewConflict(
                    f"action {action_id} is {action.status}, not pending_approval: "
                    f"only a pending action can be {verb}d"
                )
            action.status, action.reviewed_by = status, by
            action.reviewed_at, action.review_reason = at, reason
            row = _incident(session, action.incident_id)
            row.action_status = status
            review: JsonObject = {"action_id": action_id, "decision": str(status), "reason": reason}
            self._append(session, row.id, StepKind.REVIEW, at, review, actor=by)
            if status is ActionStatus.APPROVED:
                row.status = IncidentStatus.OPEN
            else:
                evidence = f"{action.kind} rejected by {by}: {reason}"
                outcome = Outcome(OutcomeKind.ESCALATED, evidence, at)
                row.outcome, row.status, row.closed = outcome.kind, IncidentStatus.RESOLVED, at
                data = serialize.to_json_object(outcome)
                self._append(session, row.id, StepKind.OUTCOME, at, data, actor=by)
            return _action_view(action)

    def record_feedback(self, incident_id: int, label: FeedbackInput) -> Feedback:
        """Label an incident. The window runs from the finding's onset to the incident's
        close, or to the label's time while it is open. Later labels add to earlier ones;
        ``feedback()`` gives all of them and training takes the latest per incident."""
        with self._write(f"record feedback on incident {incident_id}") as session:
            row = _incident(session, incident_id)
            end = row.closed or max(label.at, row.opened)
            feedback_row = FeedbackRow(
                incident_id=incident_id,
                verdict=label.verdict,
                cause=label.cause,
                right_action=label.right_action,
                note=label.note,
                by=label.by,
                at=label.at,
                window_start=row.opened,
                window_end=end,
            )
            session.add(feedback_row)
            session.flush()
            feedback = _feedback(feedback_row, row)
            data = serialize.to_json_object(feedback)
            self._append(session, incident_id, StepKind.FEEDBACK, label.at, data, actor=label.by)
            return feedback

    # -- reading ---------------------------------------------------------------------

    def list_incidents(
        self,
        *,
        status: IncidentStatus | None = None,
        namespace: str | None = None,
        workload: str | None = None,
        cause: Cause | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        before_id: int | None = None,
    ) -> list[IncidentSummary]:
        """Newest first. ``before_id`` is a keyset cursor: pass the last id of a page.
        ``since``/``until`` bound the time the incident opened (inclusive, exclusive)."""
        # Columns, not ORM entities: a page is read-only, and skipping the identity map
        # makes listing several times cheaper (bench/api_incidents.py).
        query = select(*_SUMMARY_COLUMNS).order_by(IncidentRow.id.desc()).limit(limit)
        for column, value in (
            (IncidentRow.status, status),
            (IncidentRow.namespace, namespace),
            (IncidentRow.name, workload),
            (IncidentRow.cause, cause),
        ):
            if value is not None:
                query = query.where(column == value)
        if since is not None:
            query = query.where(IncidentRow.opened >= since)
        if until is not None:
            query = query.where(IncidentRow.opened < until)
        if before_id is not None:
            query = query.where(IncidentRow.id < before_id)
        with self._read("list incidents") as session:
            return [_summary(row) for row in session.execute(query)]

    def get_incident(self, incident_id: int) -> IncidentDetail | None:
        with self._read(f"read incident {incident_id}") as session:
            row = session.get(IncidentRow, incident_id)
            if row is None:
                return None
            steps = _steps(session, incident_id)
            timeline = tuple(
                TimelineStep(kind=s.kind, at=s.at, data=s.data, actor=s.actor) for s in steps
            )
            actions = session.scalars(
                select(ActionRow).where(ActionRow.incident_id == incident_id).order_by(ActionRow.id)
            )
            return IncidentDetail(
                summary=_summary(row),
                timeline=timeline,
                actions=tuple(_action_view(a) for a in actions),
            )

    def incident(self, incident_id: int) -> Incident:
        """The incident rebuilt as the daemon holds it; UnknownRecord if there is none."""
        with self._read(f"read incident {incident_id}") as session:
            row = session.get(IncidentRow, incident_id)
            if row is None:
                raise UnknownRecord(f"incident {incident_id} not found")
            return _rebuild(row, _steps(session, incident_id))

    def actions(self, *, status: ActionStatus | None = None, limit: int = 500) -> list[ActionView]:
        """Actions newest first, optionally only those with ``status``."""
        query = select(ActionRow).order_by(ActionRow.id.desc()).limit(limit)
        if status is not None:
            query = query.where(ActionRow.status == status)
        with self._read("list actions") as session:
            return [_action_view(a) for a in session.scalars(query)]

    def get_action(self, action_id: int) -> ActionView | None:
        with self._read(f"read action {action_id}") as session:
            row = session.get(ActionRow, action_id)
            return _action_view(row) if row is not None else None

    def approved_actions(self) -> list[ActionView]:
        """Approved actions not yet taken, oldest first: the daemon's work from people."""
        query = select(ActionRow).where(ActionRow.status == ActionStatus.APPROVED)
        with self._read("read approved actions") as session:
            return [_action_view(a) for a in session.scalars(query.order_by(ActionRow.id))]

    def feedback(self, since: datetime | None = None) -> list[Feedback]:
        """Every label given at or after ``since``, oldest first: training data."""
        query = (
            select(FeedbackRow, IncidentRow)
            .join(IncidentRow, IncidentRow.id == FeedbackRow.incident_id)
            .order_by(FeedbackRow.at, FeedbackRow.id)
        )
        if since is not None:
            query = query.where(FeedbackRow.at >= since)
        with self._read("read feedback") as session:
            return [_feedback(label, row) for label, row in session.execute(query)]

    def diagnosis_features(self) -> dict[int, dict[str, float]]:
        """The diagnoser's feature row (column name to value) kept with each incident's
        latest diagnosis, by incident id: to pair with ``feedback()``."""
        query = (
            select(StepRow.incident_id, StepRow.data)
            .where(StepRow.kind == StepKind.DIAGNOSIS)
            .order_by(StepRow.incident_id, StepRow.seq)
        )
        rows: dict[int, dict[str, float]] = {}
        with self._read("read diagnosis features") as session:
            for incident_id, data in session.execute(query):
                kept = data.get("features") if isinstance(data, dict) else None
                if isinstance(kept, dict):
                    rows[incident_id] = {
                        str(k): float(v) for k, v in kept.items() if isinstance(v, int | float)
                    }
                else:  # the latest diagnosis kept none: an earlier row no longer holds
                    rows.pop(incident_id, None)
        return rows

    def load_state(self, key: str) -> JsonObject | None:
        with self._read(f"read state {key}") as session:
            row = session.get(GuardStateRow, key)
            return dict(row.value) if row is not None else None

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

    def latest_at(self) -> datetime | None:
        """When the newest step of any incident happened; None for an empty store. A
        simulated clock resumes after it (``healer demo`` on an earlier ``--db``)."""
        with self._read("read the time of the latest step") as session:
            latest: datetime | None = session.scalar(select(func.max(StepRow.at)))
            return latest

    def action_counts(self) -> dict[tuple[ActionKind, ActionStatus], int]:
        """Actions recorded, by kind and status: ``healer_actions_total``."""
        query = select(ActionRow.kind, ActionRow.status, func.count()).group_by(
            ActionRow.kind, ActionRow.status
        )
        with self._read("count actions") as session:
            return {(k, s): n for k, s, n in session.execute(query)}

    def guard_block_counts(self) -> dict[str, int]:
        """Plans each guard blocked: ``healer_guard_blocks_total``."""
        query = (
            select(GuardVerdictRow.guard, func.count())
            .where(GuardVerdictRow.passed.is_(False))
            .group_by(GuardVerdictRow.guard)
        )
        with self._read("count guard blocks") as session:
            return {g: n for g, n in session.execute(query)}

    # -- sessions --------------------------------------------------------------------

    def _append(
        self,
        session: Session,
        incident_id: int,
        kind: StepKind,
        at: datetime,
        data: JsonObject,
        *,
        actor: str | None = None,
    ) -> StepRow:
        last = session.scalar(
            select(func.max(StepRow.seq)).where(StepRow.incident_id == incident_id)
        )
        step = StepRow(
            incident_id=incident_id,
            seq=(last or 0) + 1,
            kind=kind,
            at=at,
            data=data,
            actor=actor or self.identity,
        )
        session.add(step)
        return step

    @contextmanager
    def _write(self, what: str) -> Iterator[Session]:
        """A session that commits on success; database errors become StoreError."""
        try:
            with self._writer.begin() as session:
                yield session
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot {what}: {_brief(exc)}") from exc
        finally:
            # Counted after the commit (or a rollback, which is harmless to count): a
            # reader reads the count before its query, so a page it caches under the old
            # count is never served after the write became visible.
            with self._count_lock:
                self._writes += 1

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
        raise UnknownRecord(f"incident {incident_id} not found")
    return row


def _latest(session: Session, incident_id: int, kind: StepKind) -> JsonObject | None:
    query = (
        select(StepRow.data)
        .where(StepRow.incident_id == incident_id, StepRow.kind == kind)
        .order_by(StepRow.seq.desc())
        .limit(1)
    )
    return session.scalar(query)


def _fill_action(row: ActionRow, action: ActionRecord, data: JsonObject) -> None:
    row.status, row.request, row.error = action.status, action.request, action.error
    row.response = {"status": data["status"], "error": action.error}
    if action.status is not ActionStatus.PENDING_APPROVAL:
        row.started, row.finished = action.started, action.finished


def _steps(session: Session, incident_id: int) -> list[StepRow]:
    query = select(StepRow).where(StepRow.incident_id == incident_id).order_by(StepRow.seq)
    return list(session.scalars(query))


_SUMMARY_COLUMNS = (
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
)


def _summary(row: IncidentRow | Row[Any, *tuple[Any, ...]]) -> IncidentSummary:
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


def _action_view(row: ActionRow) -> ActionView:
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


def _feedback(label: FeedbackRow, incident: IncidentRow) -> Feedback:
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
