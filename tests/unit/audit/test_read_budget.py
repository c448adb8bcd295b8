"""A read's budget of SQLite instructions holds for every execution of a statement.

SQLite places its progress handler's calls by the instructions a prepared statement ran
over its executions, and the driver keeps prepared statements: a budget given as the
handler's period stopped every other read of a one-day window that needed three
quarters of it (SQLite 3.40).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import insert

from healer.audit import AuditStore
from healer.audit.database import PROGRESS_EVERY
from healer.audit.tables import IncidentRow
from healer.audit.views import IncidentFilter

T0 = datetime(2025, 2, 1, tzinfo=UTC)
WINDOW = IncidentFilter(since=T0 + timedelta(minutes=500), until=T0 + timedelta(minutes=2500))
"""2,000 incidents, sorted by id for the page: a read of thousands of instructions."""


def fill(store: AuditStore, count: int) -> None:
    rows = [
        {
            "id": i,
            "namespace": "shop",
            "kind": "Deployment",
            "name": f"svc{i % 50}",
            "status": "open",
            "opened": T0 + timedelta(minutes=i),
            "score": 0.9,
            "last_seen": T0 + timedelta(minutes=i),
        }
        for i in range(1, count + 1)
    ]
    with store._engine.begin() as db:  # in bulk: the store's API records one at a time
        db.execute(insert(IncidentRow), rows)


def smallest_budget(store: AuditStore, where: IncidentFilter) -> int:
    """The fewest instructions, in steps of PROGRESS_EVERY, that the page needs."""
    for budget in range(PROGRESS_EVERY, 1_000_000, PROGRESS_EVERY):
        if store.list_incident_rows_now(where, limit=51, max_steps=budget) is not None:
            return budget
    raise AssertionError("the page needs a million instructions or more")


def test_a_read_needing_most_of_its_budget_is_never_stopped(store: AuditStore) -> None:
    fill(store, 3_000)
    budget = smallest_budget(store, WINDOW) + 2 * PROGRESS_EVERY
    pages = [store.list_incident_rows_now(WINDOW, limit=51, max_steps=budget) for _ in range(20)]
    assert all(page is not None and len(page) == 51 for page in pages)


def test_a_read_over_its_budget_is_stopped_every_time(store: AuditStore) -> None:
    fill(store, 3_000)
    too_few = smallest_budget(store, WINDOW) // 2
    assert all(
        store.list_incident_rows_now(WINDOW, limit=51, max_steps=too_few) is None for _ in range(20)
    )
