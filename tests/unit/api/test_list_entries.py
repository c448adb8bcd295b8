"""Each incident's stored list entry (``incidents.listed``) is what the model writes, through
its whole life, on rows written before it existed, and read day by day for time windows."""

from __future__ import annotations

import random
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import create_engine, text

from healer.api.schemas import IncidentItem, IncidentPage
from healer.audit import AuditStore, IncidentFilter, migrate
from healer.audit import listed as entries
from healer.audit.review import DAY_ARMS_MAX, EVERY_INCIDENT, _arms, _days, _listing_values
from healer.types import (
    ActionKind,
    ActionRecord,
    ActionStatus,
    Cause,
    Diagnosis,
    Direction,
    Finding,
    GuardResult,
    IncidentStatus,
    Mode,
    Outcome,
    OutcomeKind,
    Plan,
    Signal,
    SignalDeviation,
    WorkloadRef,
)

T0 = datetime(2025, 3, 1, 21, 30, tzinfo=UTC)
MIDNIGHT = T0.replace(hour=0, minute=0)
CART = WorkloadRef("shop", "Deployment", "cart")


def finding(ref: WorkloadRef, at: datetime, onset: datetime, score: float = 0.96) -> Finding:
    deviation = SignalDeviation(Signal.MEMORY, 0.91, 0.42, 6.5, Direction.UP)
    return Finding(ref, at, score, (deviation,), onset=onset, model_version="m-1")


def by_model(store: AuditStore, where: IncidentFilter = EVERY_INCIDENT) -> bytes:
    items = [IncidentItem.from_summary(s) for s in store.list_incidents(where, limit=500)]
    return IncidentPage(items=items, next_cursor=None).model_dump_json().encode()


def by_entries(store: AuditStore, where: IncidentFilter = EVERY_INCIDENT) -> bytes:
    return entries.page_json([e for _, e in store.list_incident_entries(where, limit=500)], None)


@pytest.fixture
def store(tmp_path: Path) -> AuditStore:
    s = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    yield s  # type: ignore[misc] # a generator fixture
    s.close()


def test_an_incident_keeps_the_entry_the_model_writes_through_its_life(
    store: AuditStore,
) -> None:
    moment = T0.replace(microsecond=123_456)
    iid = store.open_incident(finding(CART, moment, moment - timedelta(minutes=2), 0.1 + 0.2))
    assert by_entries(store) == by_model(store)
    store.record_finding(iid, finding(CART, moment + timedelta(minutes=1), moment, 0.97))
    store.record_diagnosis(iid, Diagnosis(CART, Cause.MEMORY_LEAK, 1e-7, "Memory climbs."))
    assert by_entries(store) == by_model(store)
    guards = (GuardResult("cooldown", True, "none"),)
    plan = Plan(CART, "restart", ActionKind.RESTART, {}, Mode.APPROVAL, guards, "leak", 600.0)
    store.record_plan(iid, plan, at=moment)
    status = ActionStatus.PENDING_APPROVAL
    store.record_action(iid, ActionRecord(ActionKind.RESTART, CART, {}, status, moment, moment))
    assert by_entries(store) == by_model(store)
    store.record_outcome(iid, Outcome(OutcomeKind.ESCALATED, "no approval", moment))
    assert b'"outcome":"escalated"' in by_entries(store)
    assert by_entries(store) == by_model(store)


def test_rows_without_their_entry_are_listed_from_their_columns(
    store: AuditStore, tmp_path: Path
) -> None:
    """Rows inserted past the ORM (or left without one by the migration) are listed
    alike, read at once or on a thread."""
    for i in range(6):
        opened = T0 + timedelta(hours=i)
        store.open_incident(finding(CART, opened + timedelta(minutes=1), opened))
    before = by_entries(store)
    with sqlite3.connect(tmp_path / "audit.db") as raw:
        raw.execute("UPDATE incidents SET listed = NULL WHERE id % 2 = 0")
    raw.close()
    assert by_entries(store) == before == by_model(store)
    now = store.list_incident_entries_now(limit=500, max_steps=1_000_000)
    assert now is not None and entries.page_json([e for _, e in now], None) == before


def test_an_update_past_the_store_leaves_the_row_listed_from_its_columns(
    store: AuditStore, tmp_path: Path
) -> None:
    """A writer that does not keep the entry (the version before, still running while
    another process migrated the store, or SQL by hand) changes the columns only: the
    database then clears the entry, and the list says what the row says."""
    iid = store.open_incident(finding(CART, T0, T0 - timedelta(minutes=2)))
    other = store.open_incident(finding(CART, T0, T0 - timedelta(minutes=1)))
    with sqlite3.connect(tmp_path / "audit.db") as raw:
        raw.execute("UPDATE incidents SET status = 'resolved' WHERE id = ?", (iid,))
        kept = dict(raw.execute("SELECT id, listed FROM incidents").fetchall())
    raw.close()
    assert kept[iid] is None and kept[other] is not None
    assert b'"status":"resolved"' in by_entries(store)
    assert by_entries(store) == by_model(store)
    store.record_diagnosis(iid, Diagnosis(CART, Cause.OVERLOAD, 0.7, "Busy."))  # ours again
    with sqlite3.connect(tmp_path / "audit.db") as raw:
        [[entry]] = raw.execute("SELECT listed FROM incidents WHERE id = ?", (iid,)).fetchall()
    raw.close()
    assert entry is not None and '"cause":"overload"' in entry


def test_the_migration_makes_the_entry_of_every_incident_already_stored(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    migrate.upgrade(engine, "0010")
    columns = "namespace, kind, name, status, opened, closed, score, cause, confidence, last_seen"
    with engine.begin() as db:
        for i, status in enumerate(["resolved", "open", "sleeping", "verifying", "verifying"]):
            db.execute(
                text(
                    f"INSERT INTO incidents (id, {columns}) VALUES (:id, 'shop', 'Deployment',"
                    " 'cart', :status, :opened, NULL, 0.5, 'overload', 0.75, :opened)"
                ),
                {"id": i + 1, "status": status, "opened": f"2025-03-0{i + 1} 10:00:00.000000"},
            )
        db.execute(text("UPDATE incidents SET opened = 0 WHERE id = 5"))  # not a time at all
    engine.dispose()
    store = AuditStore(url)  # migrates to the head
    try:
        with sqlite3.connect(tmp_path / "old.db") as raw:
            kept = dict(raw.execute("SELECT id, listed FROM incidents").fetchall())
        raw.close()
        assert kept[3] is None  # an unknown status: listed (and refused) from its columns
        assert kept[5] is None  # a number for a time: the same
        assert all(kept[i] is not None for i in (1, 2, 4))
        valid = IncidentFilter(status=IncidentStatus.OPEN)
        assert by_entries(store, valid) == by_model(store, valid)
        assert b'"opened":"2025-03-02T10:00:00Z"' in by_entries(store, valid)
        with pytest.raises((KeyError, AttributeError)):  # the damaged rows, as before
            store.list_incident_entries()
    finally:
        store.close()


def test_a_window_spans_the_days_it_touches_in_utc() -> None:
    day = datetime(2025, 3, 1, tzinfo=UTC)
    cet = day.astimezone(ZoneInfo("Europe/Paris"))
    assert _days(IncidentFilter(since=day, until=day + timedelta(days=1))) == ["2025-03-01"]
    assert _days(IncidentFilter(since=cet, until=day + timedelta(hours=25))) == [
        "2025-03-01",
        "2025-03-02",
    ]
    assert _days(IncidentFilter(since=day, until=day)) == []
    assert _days(IncidentFilter(since=day)) == []
    month = _days(IncidentFilter(since=cet - timedelta(hours=1), until=day + timedelta(days=31)))
    assert (len(month), month[0], month[-1]) == (32, "2025-02-28", "2025-03-31")
    many = _days(IncidentFilter(since=day, until=day + timedelta(days=40)))
    assert len(many) == DAY_ARMS_MAX + 1  # read as any other filter


def test_a_window_of_some_days_is_read_by_the_next_power_of_two_arms() -> None:
    assert [_arms(n) for n in (1, 2, 3, 4, 5, 8, 9, 17, 31, 32)] == [
        *(1, 2, 4, 4, 8, 8, 16, 32, 32, 32)
    ]
    statements = set()
    for n in range(1, DAY_ARMS_MAX + 2):
        window = IncidentFilter(since=MIDNIGHT, until=MIDNIGHT + timedelta(days=n))
        statement, values = _listing_values(window, 51, by_day=True)
        days = [values[k] for k in values if k.startswith("day")]
        if n > DAY_ARMS_MAX:
            assert days == []  # read as any other filter
            continue
        assert len(days) == _arms(n), n
        assert days[:n] == _days(window) and days[n:] == [None] * (len(days) - n), n
        statements.add(statement)
    assert len(statements) == 6


def test_a_window_of_few_incidents_is_read_from_their_own_index() -> None:
    """A workload's incidents are few, and so are a namespace's of one status or cause:
    read by day, every incident of each day was looked up to find them."""
    week = {"since": T0, "until": T0 + timedelta(days=7)}
    by_day = [
        {"namespace": "web"},
        {"status": IncidentStatus.OPEN},
        {"cause": Cause.OVERLOAD, "status": IncidentStatus.OPEN},  # no index of the two
    ]
    own_index = [
        {"workload": "api"},
        {"namespace": "web", "status": IncidentStatus.OPEN},
        {"namespace": "web", "cause": Cause.OVERLOAD},
    ]
    for given in by_day:
        _, values = _listing_values(IncidentFilter(**week, **given), 51, by_day=True)
        assert "day0" in values, given
    for given in own_index:
        _, values = _listing_values(IncidentFilter(**week, **given), 51, by_day=True)
        assert "day0" not in values, given


def test_windows_read_day_by_day_list_what_they_should(store: AuditStore) -> None:
    """Incidents over twelve days whose onsets do not follow their ids (a slow leak
    found late opens before incidents found earlier), listed through windows of an
    hour to a month, alone or with another filter, page by page: the same as
    filtering the whole list by hand."""
    rng = random.Random(7)
    other = WorkloadRef("web", "Deployment", "api")
    for i in range(240):
        found = T0 + timedelta(hours=1.2 * i)
        onset = found - timedelta(hours=rng.choice([0.1, 0.5, 3, 30]))
        store.open_incident(finding(CART if i % 3 else other, found, onset))
    everything = store.list_incidents(limit=500)
    windows = [  # and the UTC days each spans
        (T0, T0 + timedelta(hours=1), 1),
        (T0 - timedelta(hours=2), T0 + timedelta(hours=3), 2),  # across midnight
        (T0, T0 + timedelta(days=1), 2),
        (T0 + timedelta(days=2, minutes=7), T0 + timedelta(days=5), 4),
        (T0, T0 + timedelta(days=7), 8),
        (T0 + timedelta(days=1), T0 + timedelta(days=10), 10),  # 16 arms, 6 of no day
        (T0 - timedelta(hours=5), T0 + timedelta(days=11, hours=3), 13),
        (MIDNIGHT - timedelta(days=5), MIDNIGHT + timedelta(days=12), 17),  # 15 of no day
        (MIDNIGHT - timedelta(days=18), MIDNIGHT + timedelta(days=13), 31),
        (T0 - timedelta(days=20), T0 + timedelta(days=11), 32),  # 32 arms, all days
        (MIDNIGHT - timedelta(days=19), MIDNIGHT + timedelta(days=14), 33),  # not by day
        (T0 - timedelta(days=3), T0 + timedelta(days=30), 34),
    ]
    open_ = IncidentStatus.OPEN
    for since, until, days in windows:
        assert len(_days(IncidentFilter(since=since, until=until))) == min(days, DAY_ARMS_MAX + 1)
        # Read by day, or from the filters' own index (review._read_by_day).
        for namespace, workload, status in (
            *((None, None, None), ("web", None, None), (None, None, open_)),
            *(("web", "api", None), (None, "api", None), ("web", None, open_)),
        ):
            expected = [
                s.id
                for s in everything
                if since <= s.opened < until
                and namespace in (None, s.workload.namespace)
                and workload in (None, s.workload.name)
                and status in (None, s.status)
            ]
            got: list[int] = []
            before: int | None = None
            while True:
                where = IncidentFilter(
                    since=since,
                    until=until,
                    namespace=namespace,
                    workload=workload,
                    status=status,
                    before_id=before,
                )
                page = store.list_incident_entries(where, limit=7)
                now = store.list_incident_entries_now(where, limit=7, max_steps=1_000_000)
                assert now == page
                got += [id_ for id_, _ in page]
                if len(page) < 7:
                    break
                before = page[-1][0]
            assert got == expected, (since, until, namespace, workload, status)
