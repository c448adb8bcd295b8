"""A read's budget of SQLite instructions holds for every execution of a statement.

SQLite places its progress handler's calls by the instructions a prepared statement ran
over its executions, and the driver keeps prepared statements: a budget given as the
handler's period stopped every other read of a one-day window that needed three
quarters of it (SQLite 3.40).
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert

from healer.audit import AuditStore
from healer.audit.database import PROGRESS_EVERY
from healer.audit.tables import IncidentRow
from healer.audit.views import IncidentFilter
from healer.errors import StoreError

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


def test_reads_at_once_keep_a_connection_of_their_thread_until_the_store_closes(
    tmp_path: Path,
) -> None:
    """The event loop's reads use one connection of its own, outside the pool (taking
    one from the pool and back cost a third of a page's read): the same one each time,
    another for another thread, a new one after a failure, all closed with the store."""
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    fill(store, 10)
    assert store.list_incident_rows_now(limit=5, max_steps=100_000) is not None
    mine = store._owned.connection
    assert store.list_incident_entries_now(limit=5, max_steps=100_000) is not None
    assert store._owned.connection is mine
    theirs: list[object] = []

    def read() -> None:
        store.list_incident_rows_now(limit=5, max_steps=100_000)
        theirs.append(store._owned.connection)

    thread = threading.Thread(target=read)
    thread.start()
    thread.join()
    assert theirs[0] is not mine and theirs[0] is not None
    with sqlite3.connect(tmp_path / "audit.db") as raw:
        raw.execute("ALTER TABLE incidents RENAME TO gone")
    raw.close()
    with pytest.raises(StoreError, match="list incidents"):
        store.list_incident_rows_now(limit=5, max_steps=100_000)
    assert store._owned.connection is None  # dropped: the next read opens another
    with sqlite3.connect(tmp_path / "audit.db") as raw:
        raw.execute("ALTER TABLE gone RENAME TO incidents")
    raw.close()
    assert len(store.list_incident_rows_now(limit=5, max_steps=100_000) or []) == 5
    drivers = [store._owned.connection.dbapi_connection, theirs[0].dbapi_connection]  # type: ignore[attr-defined]
    store.close()
    for driver in drivers:
        with pytest.raises(sqlite3.ProgrammingError):  # closed
            driver.execute("SELECT 1")


def test_a_store_closed_and_read_again_opens_its_connection_again(tmp_path: Path) -> None:
    """As the pool does after ``close``: the event loop's connection is opened again,
    not used closed (which failed every later read)."""
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    fill(store, 10)
    assert len(store.list_incident_entries_now(limit=5, max_steps=100_000) or []) == 5
    store.close()
    try:
        assert len(store.list_incident_entries_now(limit=5, max_steps=100_000) or []) == 5
    finally:
        store.close()
