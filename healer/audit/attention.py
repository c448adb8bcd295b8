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
- The tallies read the window's rows by their time index and count them in Python,
  medians included (SQLite has no percentile function): a week's rows are few next to
  the store's, and a GROUP BY makes SQLite scan the whole table by the grouped column's
  index instead. The durations are computed by the database.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, case, exists, func, select, type_coerce
from sqlalchemy.types import NullType

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
from healer.types import ActionKind, ActionStatus, Cause, JsonObject, OutcomeKind, WorkloadRef

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
        with self._read_rows(f"tally since {since.isoformat()}") as connection:
            by_outcome, detect_s, heal_s, clusters = _incidents(connection, since)
            return Tally(
                clusters=clusters,
                since=since,
                incidents=by_outcome,
                actions=_actions(connection, since),
                blocked=_blocked(connection, since),
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


def _actions(connection: Connection, since: datetime) -> dict[tuple[ActionKind, ActionStatus], int]:
    # Counted here, not by GROUP BY: grouped, SQLite prefers scanning a whole table in
    # the order of the grouped column's index to reading the window by its time index.
    query = select(_raw(ActionRow.kind), _raw(ActionRow.status)).where(ActionRow.created >= since)
    counts = Counter(tuple(row) for row in connection.execute(query))
    return {(ActionKind(k), ActionStatus(s)): n for (k, s), n in counts.items()}


def _blocked(connection: Connection, since: datetime) -> dict[str, int]:
    query = select(GuardVerdictRow.guard).where(
        GuardVerdictRow.at >= since, GuardVerdictRow.passed.is_(False)
    )
    return dict(Counter(connection.scalars(query)))


def _raw(column: Any) -> Any:
    """The column as the driver gives it: SQLAlchemy's enum conversion of every row of a
    week costs more than the query; the counts convert each distinct value once."""
    return type_coerce(column, NullType)


def _incidents(
    connection: Connection, since: datetime
) -> tuple[
    dict[tuple[Cause | None, OutcomeKind | None], int],
    dict[Cause | None, float],
    dict[Cause | None, float],
    dict[str, dict[OutcomeKind | None, int]],
]:
    """Of the incidents opened since ``since``: counts by cause and outcome, and the
    median seconds to detect and to heal by cause; one read of the window by its index."""
    dialect = connection.dialect.name
    healed = IncidentRow.outcome == OutcomeKind.HEALED
    rows = connection.execute(
        select(
            _raw(IncidentRow.cause),
            _raw(IncidentRow.outcome),
            _seconds(IncidentRow.opened, IncidentRow.detected, dialect),
            case((healed, _seconds(IncidentRow.opened, IncidentRow.closed, dialect))),
            IncidentRow.cluster,
        ).where(IncidentRow.opened >= since)
    )
    counts: Counter[tuple[str | None, str | None]] = Counter()
    detect: dict[str | None, list[float]] = defaultdict(list)
    heal: dict[str | None, list[float]] = defaultdict(list)
    clusters: Counter[tuple[str, str | None]] = Counter()
    for cause, outcome, detect_s, heal_s, cluster in rows:
        counts[cause, outcome] += 1
        clusters[cluster, outcome] += 1
        if detect_s is not None:
            detect[cause].append(round(float(detect_s), 3))  # julianday: ~10 µs of noise
        if heal_s is not None:
            heal[cause].append(round(float(heal_s), 3))
    by_outcome = {(_cause(c), _outcome(o)): n for (c, o), n in counts.items()}
    by_cluster: dict[str, dict[OutcomeKind | None, int]] = {}
    for (cluster, outcome), n in sorted(clusters.items(), key=lambda item: item[0][0]):
        by_cluster.setdefault(cluster, {})[_outcome(outcome)] = n
    return by_outcome, _median_of(detect.items()), _median_of(heal.items()), by_cluster


def _cause(value: str | None) -> Cause | None:
    return None if value is None else Cause(value)


def _outcome(value: str | None) -> OutcomeKind | None:
    return None if value is None else OutcomeKind(value)


def _seconds(start: Any, end: Any, dialect: str) -> Any:
    """``end - start`` in seconds, computed by the database: reading both times back as
    datetimes costs far more than the query over a week of incidents."""
    if dialect == "sqlite":
        return (func.julianday(end) - func.julianday(start)) * 86400.0
    return func.extract("epoch", end - start)


def _median_of(groups: Iterable[tuple[str | None, Sequence[float]]]) -> dict[Cause | None, float]:
    return {_cause(cause): statistics.median(values) for cause, values in groups if values}
