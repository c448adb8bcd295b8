"""The daemon's log: what each cycle writes, and what it reads back to decide.

Findings, diagnoses, plans, actions and outcomes, each committed before the next step
starts, so a crash loses nothing and a restarted daemon never repeats an action it
already took. ``DaemonLog`` (``roles.py``) is this role as the daemon sees it.

Decisions:

- Findings arrive every cycle; only a new peak score appends a step, so a long incident
  does not become one row per cycle. ``last_seen`` follows every finding.
- No clock here: every time comes from the values recorded.
- An action is also a row of ``actions``, with an id people approve or reject by. When
  the incident has an approved action waiting, or one recorded as intended, the next
  record of an action is its execution and completes that same row.
- Status changes go through ``status.move``. Closing an incident withdraws its action
  still awaiting review or taking (EXPIRED), so nothing of a closed incident is
  approved or taken later.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from healer.audit import serialize, status, views
from healer.audit.database import Database
from healer.audit.status import Move
from healer.audit.tables import ActionRow, GuardVerdictRow, IncidentRow, StepKind, StepRow
from healer.audit.views import ActionView
from healer.errors import UnknownRecord
from healer.types import (
    ActionHistory,
    ActionKind,
    ActionRecord,
    ActionStatus,
    Diagnosis,
    Finding,
    Frame,
    Incident,
    IncidentStatus,
    JsonObject,
    Outcome,
    Plan,
    WorkloadRef,
)

_ATTEMPTED = (ActionStatus.SUCCEEDED, ActionStatus.FAILED, ActionStatus.DRY_RUN)
"""Action statuses that count for a workload's cooldown: the action was made, tried or
simulated. An intent counts once its outcome is recorded: a daemon that died before
sending it must be free to send it after checking the cluster.
Blocked and pending actions changed nothing, so they start no cooldown."""

_MOVES = {
    ActionStatus.SUCCEEDED: Move.TAKEN,
    ActionStatus.DRY_RUN: Move.TAKEN,
    ActionStatus.PENDING_APPROVAL: Move.AWAITS_APPROVAL,
}
"""The action records that move their incident's status; failed, blocked and intended
actions leave it alone: the daemon decides what next."""

_WAITING = (ActionStatus.PENDING_APPROVAL, ActionStatus.APPROVED)
"""Actions not yet taken that wait on a person or on the daemon's next cycle."""


class SqlDaemonLog(Database):
    """The daemon's log on the shared database (``AuditStore`` is one)."""

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
                detected=finding.at,
                cluster=self.cluster,
            )
            session.add(row)
            session.flush()
            self._append(session, row.id, StepKind.FINDING, finding.at, data)
            return row.id

    def record_finding(self, incident_id: int, finding: Finding) -> None:
        """Note a later finding: ``last_seen`` always, a step only on a new peak score."""
        data = serialize.to_json_object(finding)
        with self._write(f"record finding of incident {incident_id}") as session:
            row = views.locked_incident(session, incident_id)
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
            row = views.locked_incident(session, incident_id)
            row.cause, row.confidence = diagnosis.cause, diagnosis.confidence
            self._append(session, incident_id, StepKind.DIAGNOSIS, at or row.last_seen, data)

    def record_plan(self, incident_id: int, plan: Plan, *, at: datetime | None = None) -> None:
        """The plan and each guard's verdict. ``at`` defaults to the incident's latest
        finding: a plan carries no time."""
        data = serialize.to_json_object(plan)
        with self._write(f"record plan of incident {incident_id}") as session:
            row = views.locked_incident(session, incident_id)
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
            row = views.locked_incident(session, incident_id)
            row.action, row.action_status = action.kind, action.status
            change = _MOVES.get(action.status)
            if change is not None:
                status.move(row, change)
            self._append(session, incident_id, StepKind.ACTION, action.started, data)
            plan = views.latest_step(session, incident_id, StepKind.PLAN)
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
                cluster=self.cluster,
            )
            _fill_action(target, action, data)
            target.actor = self.identity  # the daemon that took it, not the one that asked
            session.add(target)
            session.flush()
            return target.id

    def record_outcome(
        self, incident_id: int, outcome: Outcome, *, frame: Frame | None = None
    ) -> None:
        """Close the incident: status RESOLVED, ``closed`` = the outcome's time. An action
        of it still awaiting review or taking is withdrawn (EXPIRED).

        With ``frame``, the outcome's step also keeps the signals its first finding kept,
        over the frame: the review page then draws them past the outcome."""
        with self._write(f"record outcome of incident {incident_id}") as session:
            waiting = _waiting(session, incident_id, _WAITING)  # locked before the incident,
            row = views.locked_incident(session, incident_id)  # as a review locks them
            for action in waiting:
                action.status = row.action_status = ActionStatus.EXPIRED
            status.close(row, outcome)
            data = serialize.to_json_object(outcome)
            if frame is not None:
                data["series"] = _outcome_series(session, row, frame)
            self._append(session, incident_id, StepKind.OUTCOME, outcome.at, data)

    def record_rollout(self, incident_id: int, *, at: datetime, detail: str) -> None:
        """Note that the rollout the incident's latest action started completed at
        ``at``: a ``rollout`` step, what the review page marks on its charts.

        Once per action: a rollout step already recorded since the latest action step
        leaves this a no-op, so a daemon restarted while verifying does not note the
        same rollout twice."""
        with self._write(f"record rollout of incident {incident_id}") as session:
            views.locked_incident(session, incident_id)
            kinds = (StepKind.ACTION, StepKind.ROLLOUT)
            latest = session.scalar(
                select(StepRow.kind)
                .where(StepRow.incident_id == incident_id, StepRow.kind.in_(kinds))
                .order_by(StepRow.seq.desc())
                .limit(1)
            )
            if latest is StepKind.ROLLOUT:
                return
            data: JsonObject = {"at": at.isoformat(), "detail": detail}
            self._append(session, incident_id, StepKind.ROLLOUT, at, data)

    def expire_pending(self, incident_id: int, outcome: Outcome) -> ActionView | None:
        """Withdraw the incident's action still awaiting approval and close the incident.

        For a workload that settled on its own before anyone reviewed the action: the
        action becomes EXPIRED (approving it later is a ReviewConflict) and the incident
        is resolved with ``outcome``. Returns None, changing nothing, when no action of
        the incident is pending (a person approved or rejected it meanwhile).
        """
        with self._write(f"expire the pending action of incident {incident_id}") as session:
            pending = _waiting(session, incident_id, (ActionStatus.PENDING_APPROVAL,))
            if not pending:
                return None
            action = pending[0]
            action.status = ActionStatus.EXPIRED
            row = views.locked_incident(session, incident_id)
            row.action_status = ActionStatus.EXPIRED
            status.close(row, outcome)
            data = serialize.to_json_object(outcome)
            self._append(session, incident_id, StepKind.OUTCOME, outcome.at, data)
            return views.action_view(action)

    def incident(self, incident_id: int) -> Incident:
        """The incident rebuilt as the daemon holds it; UnknownRecord if there is none."""
        with self._read(f"read incident {incident_id}") as session:
            row = session.get(IncidentRow, incident_id)
            if row is None:
                raise UnknownRecord(f"incident {incident_id} not found")
            return views.rebuild(row, views.steps_of(session, incident_id))

    def action_history(self, *, now: datetime, window_s: float) -> ActionHistory:
        """What the guards need: last attempt per workload, actions taken in the window
        ``(now - window_s, now]``, and incidents waiting for verification, of this
        store's cluster: every shard replica of the cluster plans on the same budget."""
        status_of = StepRow.data["status"].as_string()
        last = (
            select(IncidentRow.namespace, IncidentRow.kind, IncidentRow.name, func.max(StepRow.at))
            .join(StepRow, StepRow.incident_id == IncidentRow.id)
            .where(IncidentRow.cluster == self.cluster)
            .where(StepRow.kind == StepKind.ACTION, status_of.in_([s.value for s in _ATTEMPTED]))
            .group_by(IncidentRow.namespace, IncidentRow.kind, IncidentRow.name)
        )
        recent = (
            select(StepRow.at)
            .join(IncidentRow, StepRow.incident_id == IncidentRow.id)
            .where(IncidentRow.cluster == self.cluster)
            .where(StepRow.kind == StepKind.ACTION, status_of == ActionStatus.SUCCEEDED.value)
            .where(StepRow.at > now - timedelta(seconds=window_s), StepRow.at <= now)
            .order_by(StepRow.at)
        )
        rollbacks = (
            select(IncidentRow.namespace, IncidentRow.kind, IncidentRow.name, func.max(StepRow.at))
            .join(StepRow, StepRow.incident_id == IncidentRow.id)
            .where(IncidentRow.cluster == self.cluster)
            .where(StepRow.kind == StepKind.ACTION, status_of == ActionStatus.SUCCEEDED.value)
            .where(StepRow.data["kind"].as_string() == ActionKind.ROLLBACK.value)
            .group_by(IncidentRow.namespace, IncidentRow.kind, IncidentRow.name)
        )
        evictions = (
            select(IncidentRow.namespace, IncidentRow.kind, IncidentRow.name, func.max(StepRow.at))
            .join(StepRow, StepRow.incident_id == IncidentRow.id)
            .where(IncidentRow.cluster == self.cluster)
            .where(StepRow.kind == StepKind.ACTION, status_of == ActionStatus.SUCCEEDED.value)
            .where(StepRow.data["kind"].as_string().in_([ActionKind.EVICT.value, "delete_pod"]))
            .group_by(IncidentRow.namespace, IncidentRow.kind, IncidentRow.name)
        )
        in_flight = (
            select(func.count())
            .select_from(IncidentRow)
            .where(IncidentRow.status == IncidentStatus.VERIFYING)
            .where(IncidentRow.cluster == self.cluster)
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
                last_eviction_at={
                    WorkloadRef(ns, k, n): at for ns, k, n, at in session.execute(evictions)
                },
            )


def _waiting(
    session: Session, incident_id: int, statuses: tuple[ActionStatus, ...]
) -> list[ActionRow]:
    query = (
        select(ActionRow)
        .where(ActionRow.incident_id == incident_id, ActionRow.status.in_(statuses))
        .order_by(ActionRow.id)
        .with_for_update()
    )
    return list(session.scalars(query))


def _fill_action(row: ActionRow, action: ActionRecord, data: JsonObject) -> None:
    row.status, row.request, row.error = action.status, action.request, action.error
    row.response = {"status": data["status"], "error": action.error}
    if action.status is not ActionStatus.PENDING_APPROVAL:
        row.started, row.finished = action.started, action.finished


def _outcome_series(session: Session, row: IncidentRow, frame: Frame) -> JsonObject:
    """The signals the incident's first finding kept a series of, over ``frame``."""
    first = session.scalar(
        select(StepRow.data)
        .where(StepRow.incident_id == row.id, StepRow.kind == StepKind.FINDING)
        .order_by(StepRow.seq)
        .limit(1)
    )
    kept = first.get("series") if isinstance(first, dict) else None
    signals = [k for k in kept if k != "t"] if isinstance(kept, dict) else []
    if not signals:
        return {}
    workload = WorkloadRef(row.namespace, row.kind, row.name)
    return serialize.signals_json(frame, workload, signals)
