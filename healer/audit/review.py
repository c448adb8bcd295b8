"""The review queue: what people read, approve, reject and label, through the API.

Incidents listed and read with their timelines, actions awaiting a person, the reviews
themselves, operators' labels, and the counts ``/metrics`` and the status page show.
``ReviewQueue`` (``roles.py``) is this role as the API sees it.

Decisions:

- Approving marks a pending action ``approved``; the daemon's next cycle finds it
  (``approved_actions``), runs it through the guards again and records the result,
  which completes that same row. Rejecting closes the incident as escalated.
- A review's status change goes through ``status.move``, the same as the daemon's: an
  action of an incident already resolved is refused (IllegalTransition), changing nothing.
- Steps a person writes carry the person's token name as ``actor``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Select,
    bindparam,
    func,
    literal_column,
    select,
    union_all,
)

from healer.audit import listed, serialize, status, views
from healer.audit.database import Database
from healer.audit.status import Move
from healer.audit.tables import ActionRow, FeedbackRow, GuardVerdictRow, IncidentRow, StepKind
from healer.audit.views import (
    EVERY_INCIDENT,
    ActionView,
    FeedbackInput,
    IncidentDetail,
    IncidentFilter,
    IncidentSummary,
    SummaryRow,
)
from healer.errors import ReviewConflict, UnknownRecord
from healer.types import (
    ActionKind,
    ActionStatus,
    Feedback,
    JsonObject,
    Outcome,
    OutcomeKind,
)

_CONDITIONS: dict[str, ColumnElement[bool]] = {
    "status": IncidentRow.status == bindparam("status"),
    "namespace": IncidentRow.namespace == bindparam("namespace"),
    "workload": IncidentRow.name == bindparam("workload"),
    "cause": IncidentRow.cause == bindparam("cause"),
    "since": IncidentRow.opened >= bindparam("since"),
    "until": IncidentRow.opened < bindparam("until"),
    "before_id": IncidentRow.id < bindparam("before_id"),
    "cluster": IncidentRow.cluster == bindparam("cluster"),
}
"""The incident list's filters, by the ``IncidentFilter`` field each compares with."""


OPENED_DAY = func.substr(IncidentRow.opened, literal_column("1"), literal_column("10"))
"""The UTC day an incident opened on SQLite, which stores times as ISO text: the
expression of the index ``ix_incidents_opened_day`` (migration 0011), written alike so
that SQLite uses it (constants, not bound values)."""

_TIMES = frozenset({"since", "until"})

DAY_ARMS_MAX = 32
"""Most days a time window may span to be read day by day (``_listing``): a month's
window, however it falls on the days. A longer one is read as any other filter, its
ids sorted (a 31-day window alone at 100,000 incidents: 5 to 7 ms, against 0.3 to
0.45 ms read by day, within ``listing.MAX_STEPS_NOW``)."""


_OWN_INDEXES = (  # filters whose own index serves a window better (``_read_by_day``)
    frozenset({"workload"}),
    frozenset({"namespace", "status"}),
    frozenset({"namespace", "cause"}),
)


def _read_by_day(filters: frozenset[str]) -> bool:
    """Whether a window with ``filters`` is read a day at a time: unless a workload is
    named, or a namespace with a status or a cause, whose own indexes (a workload's,
    ``ix_incidents_namespace_status``, ``..._namespace_cause``) find their few incidents
    at once. Read by day, each day's incidents were looked up one by one to find those
    (a workload's week at 100,000 incidents: 3.3 to 3.7 ms, against 0.1 ms from its
    index). One of a status, a cause or a namespace matches a large share of the
    incidents, and its window by day costs 0.15 to 1 ms wherever it falls, against
    up to 5.4 ms when a window far back is reached through the newer incidents in id
    order."""
    return not any(own <= filters for own in _OWN_INDEXES)


def _arms(days: int) -> int:
    """The arms of a statement that reads ``days`` days (1 to ``DAY_ARMS_MAX``): the
    next power of two, the arms past the window's days bound to no day (NULL), which
    SQLite skips before reading anything (their ``day IS NOT NULL``, a term of bound
    values only, is tested once). So a set of filters has at most six such statements
    (1, 2, ..., 32 arms) rather than one per day count: a statement of 32 arms takes
    8 ms to build, compile and prepare, once per process, on the event loop."""
    return 1 << (days - 1).bit_length()


@functools.cache
def _listing(filters: frozenset[str], *, entries: bool, days: int = 0) -> Select[*tuple[Any, ...]]:
    """The incident list's query with ``filters``, values bound when it runs: of the
    summary columns, or of each incident's id and list entry (``entries``).

    - Without a time filter: one pass, newest first, through the index of the filters
      (or the table), each row read as it comes.
    - With one: the page's ids first, then their rows; sorting whole rows of a long
      window by id cost ten times more than sorting ids.
    - With ``days`` (a time window on SQLite, values ``day0``, ``day1``, ..., some
      NULL: ``_arms``), the ids are read one UTC day at a time from an index whose
      entries are in id order within each day (``OPENED_DAY``), the days' newest
      merged until the page is full. Read from the index on the opening time, a
      window's incidents come in time order and were all sorted by id to find the
      page's fifty: a one-day window at 100,000 incidents (1,440 of them) spent 0.35
      to 0.6 ms sorting, against 0.06 to 0.2 ms read by day.

    Built once per set of filters and kept: building a statement costs more than
    SQLite takes to answer it. There are 2**8 sets of filters, of which 20 are read by
    day (``_read_by_day``) in six sizes of ``_arms``, each for entries and for
    columns: 752 statements, about 11 MB, should a client ask for every combination.
    Columns, not ORM entities: a page is read-only.
    """
    newest = IncidentRow.id.desc()
    conditions = [_CONDITIONS[name] for name in sorted(filters)]
    columns = views.ENTRY_COLUMNS if entries else views.SUMMARY_COLUMNS
    if filters.isdisjoint(_TIMES):
        # Read in id order from an index (or the table): each row once, as it comes.
        return select(*columns).where(*conditions).order_by(newest).limit(bindparam("limit"))
    # The page's ids first, sorted if they must be, then their rows: sorting whole rows
    # of a long window cost ten times more.
    ids: Select[Any] | CompoundSelect[Any]
    if days:
        arms = [
            select(IncidentRow.id).where(
                bindparam(f"day{i}").is_not(None), bindparam(f"day{i}") == OPENED_DAY, *conditions
            )
            for i in range(days)
        ]
        merged = union_all(*arms)
        ids = merged.order_by(merged.selected_columns.id.desc()).limit(bindparam("limit"))
    else:
        ids = select(IncidentRow.id).where(*conditions).order_by(newest).limit(bindparam("limit"))
    return select(*columns).where(IncidentRow.id.in_(ids)).order_by(newest)


def _listing_values(
    where: IncidentFilter, limit: int, *, entries: bool = False, by_day: bool = False
) -> tuple[Select[*tuple[Any, ...]], dict[str, object]]:
    """The incident list's query for the filters ``where`` sets, and the values to bind;
    a time window read day by day when ``by_day`` (SQLite), it spans few days and the
    other filters are not better served by their own index (``_read_by_day``)."""
    given = where.given()
    filters = frozenset(given)
    values: dict[str, object] = {**given, "limit": limit}
    days = _days(where) if by_day and _read_by_day(filters) else []
    if not 0 < len(days) <= DAY_ARMS_MAX:
        return _listing(filters, entries=entries), values
    arms = _arms(len(days))
    values.update({f"day{i}": days[i] if i < len(days) else None for i in range(arms)})
    return _listing(filters, entries=entries, days=arms), values


def _days(where: IncidentFilter) -> list[str]:
    """The UTC days (``YYYY-MM-DD``) the window ``where`` sets spans, up to one more than
    ``DAY_ARMS_MAX``; none without a window (both ends), or an empty one."""
    if where.since is None or where.until is None or where.since >= where.until:
        return []
    first = where.since.astimezone(UTC).date()
    last = (where.until.astimezone(UTC) - timedelta(microseconds=1)).date()
    count = min((last - first).days + 1, DAY_ARMS_MAX + 1)
    return [(first + timedelta(days=i)).isoformat() for i in range(count)]


def _complete(rows: Sequence[Sequence[Any]]) -> list[tuple[int, str]] | None:
    """Rows of ``ENTRY_COLUMNS`` (the driver's tuples, as they are), or None if one of
    them has no entry."""
    if None in [entry for _, entry in rows]:
        return None
    return rows  # type: ignore[return-value]  # (int, str) tuples, as the check says


def _entries_of(rows: Sequence[SummaryRow]) -> list[tuple[int, str]]:
    """Entries made from the summary columns, for rows that do not keep theirs."""
    return [(row.id, listed.entry_json(row)) for row in rows]


class SqlReviewQueue(Database):
    """The review queue on the shared database (``AuditStore`` is one)."""

    @property
    def _by_day(self) -> bool:
        """Whether time windows are read day by day (``_listing``): on SQLite, whose
        schema has the index for it."""
        return self._engine.dialect.name == "sqlite"

    def list_incidents(
        self, where: IncidentFilter = EVERY_INCIDENT, *, limit: int = 50
    ) -> list[IncidentSummary]:
        """Newest first, at most ``limit``; page on with ``where.before_id``."""
        return views.summaries(self.list_incident_rows(where, limit=limit))

    def list_incident_rows(
        self, where: IncidentFilter = EVERY_INCIDENT, *, limit: int = 50
    ) -> list[SummaryRow]:
        """``list_incidents`` as flat rows: what a page of the API's list is encoded
        from, at a fraction of the cost of building each ``IncidentSummary``."""
        query, values = _listing_values(where, limit, by_day=self._by_day)
        return views.summary_rows(self._fetch_all("list incidents", query, values))

    def list_incident_rows_now(
        self, where: IncidentFilter = EVERY_INCIDENT, *, limit: int = 50, max_steps: int
    ) -> list[SummaryRow] | None:
        """``list_incident_rows`` on the calling thread, or None when that could hold
        it up: the database is not a local SQLite file, or the read needs more than
        ``max_steps`` of SQLite's instructions (``Database._fetch_now``)."""
        query, values = _listing_values(where, limit, by_day=self._by_day)
        rows = self._fetch_now("list incidents", query, values, max_steps=max_steps)
        return None if rows is None else views.summary_rows(rows)

    def list_incident_entries(
        self, where: IncidentFilter = EVERY_INCIDENT, *, limit: int = 50
    ) -> list[tuple[int, str]]:
        """``list_incidents`` as each incident's id and list entry (``listed``): what a
        page of the API's list is joined from, without a value made per column."""
        query, values = _listing_values(where, limit, entries=True, by_day=self._by_day)
        entries = _complete(self._fetch_all("list incidents", query, values))
        if entries is None:
            return _entries_of(self.list_incident_rows(where, limit=limit))
        return entries

    def list_incident_entries_now(
        self, where: IncidentFilter = EVERY_INCIDENT, *, limit: int = 50, max_steps: int
    ) -> list[tuple[int, str]] | None:
        """``list_incident_entries`` on the calling thread, or None when that could hold
        it up (as ``list_incident_rows_now``)."""
        query, values = _listing_values(where, limit, entries=True, by_day=self._by_day)
        rows = self._fetch_now("list incidents", query, values, max_steps=max_steps)
        if rows is None:
            return None
        entries = _complete(rows)
        if entries is None:
            summary = self.list_incident_rows_now(where, limit=limit, max_steps=max_steps)
            return None if summary is None else _entries_of(summary)
        return entries

    def get_incident(self, incident_id: int) -> IncidentDetail | None:
        with self._read(f"read incident {incident_id}") as session:
            row = session.get(IncidentRow, incident_id)
            return views.detail(session, row) if row is not None else None

    def actions(self, *, status: ActionStatus | None = None, limit: int = 500) -> list[ActionView]:
        """Actions newest first, optionally only those with ``status``."""
        query = select(ActionRow).order_by(ActionRow.id.desc()).limit(limit)
        if status is not None:
            query = query.where(ActionRow.status == status)
        with self._read("list actions") as session:
            return [views.action_view(a) for a in session.scalars(query)]

    def get_action(self, action_id: int) -> ActionView | None:
        with self._read(f"read action {action_id}") as session:
            row = session.get(ActionRow, action_id)
            return views.action_view(row) if row is not None else None

    def approved_actions(self) -> list[ActionView]:
        """Approved actions not yet taken, oldest first: the daemon's work from people."""
        query = select(ActionRow).where(
            ActionRow.status == ActionStatus.APPROVED, ActionRow.cluster == self.cluster
        )
        with self._read("read approved actions") as session:
            return [views.action_view(a) for a in session.scalars(query.order_by(ActionRow.id))]

    def approve_action(self, action_id: int, *, by: str, reason: str, at: datetime) -> ActionView:
        """Mark a pending action approved; the daemon takes it on its next cycle.

        Raises UnknownRecord for an unknown id, ReviewConflict when it is not pending,
        IllegalTransition when its incident is resolved. Changes nothing when it raises.
        """
        return self._review(action_id, ActionStatus.APPROVED, by=by, reason=reason, at=at)

    def reject_action(self, action_id: int, *, by: str, reason: str, at: datetime) -> ActionView:
        """Mark a pending action rejected and close its incident as escalated."""
        return self._review(action_id, ActionStatus.REJECTED, by=by, reason=reason, at=at)

    def _review(
        self, action_id: int, decision: ActionStatus, *, by: str, reason: str, at: datetime
    ) -> ActionView:
        verb = "approve" if decision is ActionStatus.APPROVED else "reject"
        with self._write(f"{verb} action {action_id}") as session:
            action = session.get(ActionRow, action_id, with_for_update=True)
            if action is None:
                raise UnknownRecord(f"action {action_id} not found")
            if action.status is not ActionStatus.PENDING_APPROVAL:
                raise ReviewConflict(
                    f"action {action_id} is {action.status}, not pending_approval: "
                    f"only a pending action can be {verb}d"
                )
            action.status, action.reviewed_by = decision, by
            action.reviewed_at, action.review_reason = at, reason
            row = views.locked_incident(session, action.incident_id)
            row.action_status = decision
            review: JsonObject = {
                "action_id": action_id,
                "decision": str(decision),
                "reason": reason,
            }
            self._append(session, row.id, StepKind.REVIEW, at, review, actor=by)
            if decision is ActionStatus.APPROVED:
                status.move(row, Move.APPROVED)
            else:
                evidence = f"{action.kind} rejected by {by}: {reason}"
                outcome = Outcome(OutcomeKind.ESCALATED, evidence, at)
                status.close(row, outcome)
                data = serialize.to_json_object(outcome)
                self._append(session, row.id, StepKind.OUTCOME, at, data, actor=by)
            return views.action_view(action)

    def record_feedback(self, incident_id: int, label: FeedbackInput) -> Feedback:
        """Label an incident. The window runs from the finding's onset to the incident's
        close, or to the label's time while it is open. Later labels add to earlier ones;
        ``feedback()`` gives all of them and training takes the latest per incident."""
        with self._write(f"record feedback on incident {incident_id}") as session:
            row = views.locked_incident(session, incident_id)
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
            feedback = views.feedback(feedback_row, row)
            data = serialize.to_json_object(feedback)
            self._append(session, incident_id, StepKind.FEEDBACK, label.at, data, actor=label.by)
            return feedback

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
