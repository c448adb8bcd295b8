"""What waits for a person, and what healer did lately: the review page's overview.

Escalated incidents stay on the overview until a person acknowledges them (who and
when, a step of the incident's timeline too). A person may also silence healer on a
workload for a while (``OptOut``): the daemon reads the active one before it plans and
records the plan blocked by the ``opt_out`` guard, with who silenced it and why. The
overview's tallies count incidents, actions and guard blocks over a window.

Decisions:

- One acknowledgement per incident (a unique constraint): a second is a conflict that
  names who acknowledged it first, never a silent overwrite of who saw it.
- An opt-out always ends: ``until`` is required and bounded by the API, so a workload
  forgotten on a Friday is healed again on Monday. Ending one early keeps its row
  (``ended``, ``ended_by``), so the record says who lifted it.
- The tallies are grouped in SQL over the window's rows; the medians are taken in Python
  over one column pair per incident of the window, since SQLite has no percentile
  function and the window's incidents are few next to the store's.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from healer.audit import views
from healer.audit.database import Database
from healer.audit.tables import (
    AcknowledgementRow,
    ActionRow,
    GuardVerdictRow,
    IncidentRow,
    OptOutRow,
    StepKind,
)
from healer.audit.views import Acknowledgement, IncidentSummary, OptOut, Tally
from healer.errors import ReviewConflict, UnknownRecord
from healer.types import Cause, JsonObject, OutcomeKind, WorkloadRef

WAITING_ROWS = 50
"""Escalations listed as waiting; the count says how many more there are."""


class SqlAttention(Database):
    """Acknowledgements, opt-outs and the overview's tallies on the shared database."""

    def acknowledge(
        self, incident_id: int, *, by: str, at: datetime, note: str = ""
    ) -> Acknowledgement:
        """Record that ``by`` saw the escalated incident. Raises UnknownRecord for an
        unknown id, ReviewConflict when it is not escalated or already acknowledged."""
        with self._write(f"acknowledge incident {incident_id}") as session:
            row = views.locked_incident(session, incident_id)
            if row.outcome is not OutcomeKind.ESCALATED:
                now = row.outcome or row.status
                raise ReviewConflict(
                    f"incident {incident_id} is {now}, not escalated: "
                    "only an escalated incident is acknowledged"
                )
            earlier = session.scalar(
                select(AcknowledgementRow).where(AcknowledgementRow.incident_id == incident_id)
            )
            if earlier is not None:
                raise ReviewConflict(
                    f"incident {incident_id} was acknowledged by {earlier.by} "
                    f"at {earlier.at:%Y-%m-%d %H:%M:%S} UTC"
                )
            session.add(AcknowledgementRow(incident_id=incident_id, by=by, at=at, note=note))
            data: JsonObject = {"by": by, "note": note}
            self._append(session, incident_id, StepKind.ACKNOWLEDGED, at, data, actor=by)
            return Acknowledgement(incident_id, by, at, note)

    def acknowledgement(self, incident_id: int) -> Acknowledgement | None:
        query = select(AcknowledgementRow).where(AcknowledgementRow.incident_id == incident_id)
        with self._read(f"read acknowledgement of incident {incident_id}") as session:
            row = session.scalar(query)
            return (
                None if row is None else Acknowledgement(row.incident_id, row.by, row.at, row.note)
            )

    def unacknowledged(self, *, limit: int = WAITING_ROWS) -> tuple[list[IncidentSummary], int]:
        """The newest escalated incidents nobody acknowledged, and how many there are."""
        waiting = (IncidentRow.outcome == OutcomeKind.ESCALATED) & ~exists().where(
            AcknowledgementRow.incident_id == IncidentRow.id
        )
        with self._read_rows("read unacknowledged escalations") as connection:
            rows = connection.execute(
                select(*views.SUMMARY_COLUMNS)
                .where(waiting)
                .order_by(IncidentRow.id.desc())
                .limit(limit)
            )
            listed = views.summaries(views.summary_rows(rows))
            count = connection.scalar(select(func.count()).select_from(IncidentRow).where(waiting))
        return listed, int(count or 0)

    # ---- opt-outs ----------------------------------------------------------------------------

    def opt_out(
        self, workload: WorkloadRef, *, by: str, reason: str, at: datetime, until: datetime
    ) -> OptOut:
        """Silence healer on ``workload`` from ``at`` until ``until``; ValueError when
        ``until`` is not after ``at``."""
        if until <= at:
            raise ValueError(f"until {until.isoformat()} is not after {at.isoformat()}")
        with self._write(f"silence healer on {workload}") as session:
            row = OptOutRow(
                namespace=workload.namespace,
                kind=workload.kind,
                name=workload.name,
                by=by,
                reason=reason,
                created=at,
                until=until,
            )
            session.add(row)
            session.flush()
            return _opt_out(row)

    def end_opt_out(self, opt_out_id: int, *, by: str, at: datetime) -> OptOut:
        """End an opt-out before its time. UnknownRecord for an unknown id,
        ReviewConflict when it has already ended."""
        with self._write(f"end opt-out {opt_out_id}") as session:
            row = session.get(OptOutRow, opt_out_id, with_for_update=True)
            if row is None:
                raise UnknownRecord(f"opt-out {opt_out_id} not found")
            if row.ended is not None or row.until <= at:
                ended = row.ended or row.until
                raise ReviewConflict(
                    f"opt-out {opt_out_id} already ended at {ended:%Y-%m-%d %H:%M:%S} UTC"
                )
            row.ended, row.ended_by = at, by
            return _opt_out(row)

    def opt_outs(self, *, now: datetime) -> list[OptOut]:
        """The opt-outs active at ``now``, the soonest to end first."""
        with self._read("read opt-outs") as session:
            return [_opt_out(r) for r in session.scalars(_active(now).order_by(OptOutRow.until))]

    def opted_out(self, workload: WorkloadRef, *, now: datetime) -> OptOut | None:
        """The active opt-out of ``workload`` that ends last, if any."""
        query = (
            _active(now)
            .where(
                OptOutRow.namespace == workload.namespace,
                OptOutRow.kind == workload.kind,
                OptOutRow.name == workload.name,
            )
            .order_by(OptOutRow.until.desc())
            .limit(1)
        )
        with self._read(f"read opt-out of {workload}") as session:
            row = session.scalar(query)
            return None if row is None else _opt_out(row)

    # ---- tallies -----------------------------------------------------------------------------

    def tally(self, *, since: datetime) -> Tally:
        """Incidents opened since ``since`` by cause and outcome, with median times to
        detect and heal; actions and guard blocks recorded since then."""
        with self._read(f"tally since {since.isoformat()}") as session:
            incidents = session.execute(
                select(IncidentRow.cause, IncidentRow.outcome, func.count())
                .where(IncidentRow.opened >= since)
                .group_by(IncidentRow.cause, IncidentRow.outcome)
            )
            by_outcome = {(c, o): n for c, o, n in incidents}
            detect_s, heal_s = _medians(session, since)
            return Tally(
                since=since,
                incidents=by_outcome,
                actions=_actions(session, since),
                blocked=_blocked(session, since),
                detect_s=detect_s,
                heal_s=heal_s,
            )


def _active(now: datetime) -> Any:
    """Opt-outs started, not ended, not yet past: a select to narrow further."""
    return select(OptOutRow).where(
        OptOutRow.ended.is_(None), OptOutRow.created <= now, OptOutRow.until > now
    )


def _opt_out(row: OptOutRow) -> OptOut:
    return OptOut(
        id=row.id,
        workload=WorkloadRef(row.namespace, row.kind, row.name),
        by=row.by,
        reason=row.reason,
        created=row.created,
        until=row.until,
        ended=row.ended,
        ended_by=row.ended_by,
    )


def _actions(session: Session, since: datetime) -> dict[Any, int]:
    query = (
        select(ActionRow.kind, ActionRow.status, func.count())
        .where(ActionRow.created >= since)
        .group_by(ActionRow.kind, ActionRow.status)
    )
    return {(k, s): n for k, s, n in session.execute(query)}


def _blocked(session: Session, since: datetime) -> dict[str, int]:
    query = (
        select(GuardVerdictRow.guard, func.count())
        .where(GuardVerdictRow.passed.is_(False), GuardVerdictRow.at >= since)
        .group_by(GuardVerdictRow.guard)
    )
    return {g: n for g, n in session.execute(query)}


def _medians(
    session: Session, since: datetime
) -> tuple[dict[Cause | None, float], dict[Cause | None, float]]:
    rows = session.execute(
        select(
            IncidentRow.cause,
            IncidentRow.opened,
            IncidentRow.detected,
            IncidentRow.closed,
            IncidentRow.outcome,
        ).where(IncidentRow.opened >= since)
    )
    detect: dict[Cause | None, list[float]] = defaultdict(list)
    heal: dict[Cause | None, list[float]] = defaultdict(list)
    for cause, opened, detected, closed, outcome in rows:
        if detected is not None:
            detect[cause].append((detected - opened).total_seconds())
        if outcome is OutcomeKind.HEALED and closed is not None:
            heal[cause].append((closed - opened).total_seconds())
    return _median_of(detect.items()), _median_of(heal.items())


def _median_of(
    groups: Iterable[tuple[Cause | None, Sequence[float]]],
) -> dict[Cause | None, float]:
    return {cause: statistics.median(values) for cause, values in groups if values}
