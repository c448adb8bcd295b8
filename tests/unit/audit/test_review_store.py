"""The store's migrations, actors, reviews, feedback and counters, on SQLite files."""

from __future__ import annotations

import itertools
import sqlite3
import warnings
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

from healer.audit import (
    AuditStore,
    FeedbackInput,
    IncidentFilter,
    IncidentSummary,
    StepKind,
    migrate,
    views,
)
from healer.audit.tables import Base
from healer.errors import ReviewConflict, StoreError, UnknownRecord
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
    OutcomeKind,
    Plan,
    Signal,
    SignalDeviation,
    Verdict,
    WorkloadRef,
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
CART = WorkloadRef("shop", "Deployment", "cart")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def finding(t: float = 0.0) -> Finding:
    deviation = SignalDeviation(Signal.MEMORY, 0.91, 0.42, 6.5, Direction.UP)
    return Finding(CART, at(t), 0.96, (deviation,), onset=at(t - 120), model_version="m-1")


def pending(store: AuditStore) -> tuple[int, int]:
    """An incident whose restart waits for approval: (incident id, action id)."""
    iid = store.open_incident(finding())
    store.record_diagnosis(iid, Diagnosis(CART, Cause.MEMORY_LEAK, 0.8, "Memory climbs."))
    guards = (GuardResult("cooldown", True, "none"), GuardResult("rate_limit", True, "0/10"))
    plan = Plan(CART, "restart", ActionKind.RESTART, {}, Mode.APPROVAL, guards, "leak", 600.0)
    store.record_plan(iid, plan, at=at(10))
    record = ActionRecord(
        ActionKind.RESTART, CART, {"verb": "PATCH"}, ActionStatus.PENDING_APPROVAL, at(10), at(10)
    )
    return iid, store.record_action(iid, record)


def snapshot(path: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as db:
        rows = [
            row
            for table in ("incidents", "incident_steps", "actions", "feedback", "guard_verdicts")
            for row in db.execute(f"SELECT * FROM {table} ORDER BY 1")
        ]
    db.close()
    return rows


def test_migrations_make_exactly_the_tables_the_code_describes(tmp_path: Path) -> None:
    AuditStore(f"sqlite:///{tmp_path / 'a.db'}").close()
    engine = create_engine(f"sqlite:///{tmp_path / 'a.db'}")
    with engine.connect() as connection, warnings.catch_warnings():
        # SQLAlchemy does not reflect an index on an expression: it is checked below.
        warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based")
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert diff == []
    with sqlite3.connect(tmp_path / "a.db") as raw:
        [[sql]] = raw.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'ix_incidents_opened_day'"
        ).fetchall()
    raw.close()
    assert sql.endswith("ON incidents (substr(opened, 1, 10), id, opened)")  # review.OPENED_DAY
    assert migrate.current(create_engine(f"sqlite:///{tmp_path / 'a.db'}")) == migrate.head()


def test_a_database_from_before_migrations_is_stamped_and_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    engine = create_engine(f"sqlite:///{path}")
    migrate.upgrade(engine, "0001")  # the schema create_all used to make
    with engine.begin() as db:
        db.exec_driver_sql("DROP TABLE alembic_version")
        db.exec_driver_sql(
            "INSERT INTO incidents VALUES (1, 'shop', 'Deployment', 'cart', 'verifying',"
            " '2024-05-01 12:00:00', NULL, 0.9, NULL, NULL, 'restart', 'succeeded', NULL,"
            " '2024-05-01 12:00:00')"
        )
        db.exec_driver_sql(
            "INSERT INTO incident_steps VALUES (1, 1, 1, 'action', '2024-05-01 12:00:00',"
            """ '{"kind": "restart", "status": "succeeded", "target": {"namespace": "shop","""
            """ "kind": "Deployment", "name": "cart"}, "request": {"verb": "PATCH"}}')"""
        )
    engine.dispose()
    store = AuditStore(f"sqlite:///{path}")
    [action] = store.actions()
    assert (action.incident_id, action.kind, action.status) == (
        1,
        ActionKind.RESTART,
        ActionStatus.SUCCEEDED,
    )
    assert action.request == {"verb": "PATCH"}
    detail = store.get_incident(1)
    assert detail is not None and detail.timeline[0].actor == ""
    store.close()


def test_every_step_names_the_daemon_that_wrote_it(tmp_path: Path) -> None:
    store = AuditStore(f"sqlite:///{tmp_path / 'a.db'}", identity="healer-0")
    iid, action_id = pending(store)
    store.approve_action(action_id, by="olga", reason="fine", at=at(20))
    detail = store.get_incident(iid)
    assert detail is not None
    assert [(s.kind, s.actor) for s in detail.timeline] == [
        (StepKind.FINDING, "healer-0"),
        (StepKind.DIAGNOSIS, "healer-0"),
        (StepKind.PLAN, "healer-0"),
        (StepKind.ACTION, "healer-0"),
        (StepKind.REVIEW, "olga"),
    ]
    assert detail.actions[0].actor == "healer-0"
    store.close()


def test_an_approved_action_names_the_daemon_that_took_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    first, second = AuditStore(url, identity="healer-0"), AuditStore(url, identity="healer-1")
    iid, action_id = pending(first)
    first.approve_action(action_id, by="olga", reason="fine", at=at(20))
    for status in (ActionStatus.INTENDED, ActionStatus.SUCCEEDED):
        record = ActionRecord(ActionKind.RESTART, CART, {"verb": "PATCH"}, status, at(30), at(31))
        assert second.record_action(iid, record) == action_id
    view = second.get_action(action_id)
    assert view is not None
    assert (view.status, view.reviewed_by, view.actor) == (
        ActionStatus.SUCCEEDED,
        "olga",
        "healer-1",
    )
    first.close()
    second.close()


def test_the_default_identity_is_host_and_pid(store: AuditStore) -> None:
    import os

    assert store.identity.endswith(f":{os.getpid()}")


def test_approving_marks_the_action_and_reopens_the_incident(store: AuditStore) -> None:
    _iid, action_id = pending(store)
    view = store.approve_action(action_id, by="olga", reason="ok", at=at(30))
    assert (view.status, view.reviewed_by, view.review_reason) == (
        ActionStatus.APPROVED,
        "olga",
        "ok",
    )
    assert view.intent["playbook"] == "restart"
    assert [a.id for a in store.approved_actions()] == [action_id]
    [summary] = store.list_incidents()
    assert summary.status == IncidentStatus.OPEN


def test_rejecting_closes_the_incident_as_escalated(store: AuditStore) -> None:
    _iid, action_id = pending(store)
    store.reject_action(action_id, by="olga", reason="peak hour", at=at(30))
    [summary] = store.list_incidents()
    assert (summary.status, summary.outcome) == (IncidentStatus.RESOLVED, OutcomeKind.ESCALATED)
    assert store.approved_actions() == []


@pytest.mark.parametrize("first", ["approve", "reject"])
def test_a_reviewed_action_cannot_be_reviewed_again_and_nothing_changes(
    tmp_path: Path, first: str
) -> None:
    path = tmp_path / "a.db"
    store = AuditStore(f"sqlite:///{path}")
    _, action_id = pending(store)
    getattr(store, f"{first}_action")(action_id, by="olga", reason="x", at=at(30))
    before = snapshot(path)
    for verb in ("approve", "reject"):
        with pytest.raises(ReviewConflict, match=f"action {action_id} is"):
            getattr(store, f"{verb}_action")(action_id, by="eve", reason="y", at=at(40))
    with pytest.raises(UnknownRecord, match="action 999 not found"):
        store.approve_action(999, by="eve", reason="y", at=at(40))
    assert snapshot(path) == before
    store.close()


def test_feedback_is_training_data_with_its_window(store: AuditStore) -> None:
    iid, _ = pending(store)
    label = FeedbackInput(
        Verdict.FALSE_POSITIVE, Cause.UNKNOWN, None, by="olga", at=at(100), note="batch job"
    )
    given = store.record_feedback(iid, label)
    assert (given.window_start, given.window_end) == (at(-120), at(100))
    assert store.feedback() == [given]
    assert store.feedback(since=at(100)) == [given]
    assert store.feedback(since=at(101)) == []
    with pytest.raises(UnknownRecord, match="incident 77 not found"):
        store.record_feedback(77, label)


def test_counters_for_metrics(store: AuditStore) -> None:
    iid, _ = pending(store)
    blocked = Plan(
        CART, "restart", ActionKind.RESTART, {}, Mode.AUTO,
        (GuardResult("cooldown", False, "acted 3 min ago"),), "leak", 600.0,
    )  # fmt: skip
    store.record_plan(iid, blocked, at=at(50))
    assert store.action_counts() == {(ActionKind.RESTART, ActionStatus.PENDING_APPROVAL): 1}
    assert store.guard_block_counts() == {"cooldown": 1}


def test_state_is_kept_by_key(store: AuditStore) -> None:
    assert store.load_state("daemon") is None
    store.save_state("daemon", {"last_cycle": "x"}, at=T0)
    store.save_state("daemon", {"last_cycle": "y"}, at=at(1))
    assert store.load_state("daemon") == {"last_cycle": "y"}


def test_since_and_until_bound_the_opening_time(store: AuditStore) -> None:
    ids = [store.open_incident(finding(t=600 * i)) for i in range(3)]
    opened = [at(600 * i - 120) for i in range(3)]
    assert [s.id for s in store.list_incidents(IncidentFilter(since=opened[1]))] == ids[:0:-1]
    assert [s.id for s in store.list_incidents(IncidentFilter(until=opened[1]))] == ids[:1]


def test_a_listed_incident_reads_back_as_it_was_recorded(store: AuditStore) -> None:
    """The list converts the stored columns itself (``views.summaries``): enums are
    members, times aware UTC to the microsecond, an open incident has no close time."""
    moment = T0.replace(microsecond=123_456)
    first = Finding(CART, moment, 0.96, (), onset=moment, model_version="m-1")
    iid = store.open_incident(first)
    store.record_diagnosis(iid, Diagnosis(CART, Cause.MEMORY_LEAK, 0.8, "Memory climbs."))
    [listed] = store.list_incidents()
    assert listed == store.get_incident(iid).summary  # type: ignore[union-attr] # it exists
    assert listed.status is IncidentStatus.OPEN and listed.cause is Cause.MEMORY_LEAK
    assert listed.opened == moment and listed.opened.tzinfo is UTC
    assert listed.closed is None and listed.action is None


@pytest.mark.parametrize(
    "stored",
    [
        "2025-01-01 10:40:00.000005",  # SQLite: the text UtcDateTime wrote, UTC
        datetime(2025, 1, 1, 11, 40, 0, 5, tzinfo=timezone(timedelta(hours=1))),  # psycopg
    ],
)
def test_a_time_read_as_the_driver_gives_it_is_aware_utc(stored: str | datetime) -> None:
    value = views.stored_utc(stored)
    assert value == datetime(2025, 1, 1, 10, 40, 0, 5, tzinfo=UTC) and value.tzinfo is UTC


def test_every_filter_combination_lists_what_it_should(store: AuditStore) -> None:
    """Each set of filters has its own prepared query (``review._listing``): all of them
    agree with filtering the whole list by hand."""
    other = WorkloadRef("web", "Deployment", "cart")
    for i, ref in enumerate([CART, other, CART, other, CART]):
        iid = store.open_incident(replace(finding(t=600 * i), workload=ref))
        if i % 2 == 0:
            store.record_diagnosis(iid, Diagnosis(ref, Cause.OVERLOAD, 0.7, "Busy."))
    everything = store.list_incidents(limit=100)
    filters = {
        "namespace": "shop",
        "workload": "cart",
        "cause": Cause.OVERLOAD,
        "status": IncidentStatus.OPEN,
        "since": at(600),
        "until": at(600 * 4),
        "before_id": everything[0].id,
        "cluster": "default",
    }
    assert set(filters) == {f.name for f in fields(IncidentFilter)}, "a filter untested"
    for size in range(len(filters) + 1):
        for names in itertools.combinations(filters, size):
            chosen = {name: filters[name] for name in names}
            expected = [s for s in everything if _matches(s, chosen)]
            where = IncidentFilter(**chosen)  # type: ignore[arg-type] # keys match
            assert store.list_incidents(where, limit=100) == expected, chosen
            now = store.list_incident_rows_now(where, limit=100, max_steps=100_000)
            assert now == store.list_incident_rows(where, limit=100), chosen


def _matches(s: IncidentSummary, chosen: dict[str, object]) -> bool:
    checks = {
        "namespace": lambda v: s.workload.namespace == v,
        "workload": lambda v: s.workload.name == v,
        "cause": lambda v: s.cause == v,
        "status": lambda v: s.status == v,
        "since": lambda v: s.opened >= v,
        "until": lambda v: s.opened < v,
        "before_id": lambda v: s.id < v,
        "cluster": lambda v: s.cluster == v,
    }
    return all(checks[name](value) for name, value in chosen.items())


def test_a_read_beyond_its_budget_is_given_up_and_the_connection_stays_usable(
    store: AuditStore,
) -> None:
    """``list_incident_rows_now`` stops a read that runs past ``max_steps`` (the caller
    then reads on a thread); the pooled connection it used reads in full afterwards."""
    ids = [store.open_incident(finding(t=600 * i)) for i in range(30)]
    assert store.list_incident_rows_now(max_steps=1, limit=50) is None
    rows = store.list_incident_rows_now(max_steps=1_000_000, limit=50)
    assert rows is not None and [r.id for r in rows] == ids[::-1]
    for _ in range(10):  # every connection of the pool, none left with a budget
        assert [r.id for r in store.list_incident_rows(limit=50)] == ids[::-1]


def test_an_in_memory_store_is_never_read_on_the_callers_thread() -> None:
    """Its one connection is shared by every thread: a budget set on it for one read
    would stop another thread's. Such a store always says "read it on a thread"."""
    store = AuditStore("sqlite://")
    try:
        store.open_incident(finding())
        assert store.list_incident_rows_now(max_steps=1_000_000) is None
        assert len(store.list_incident_rows()) == 1
    finally:
        store.close()


def test_a_store_that_fails_names_the_read(tmp_path: Path) -> None:
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    with sqlite3.connect(tmp_path / "audit.db") as raw:
        raw.execute("DROP TABLE incidents")
    raw.close()
    try:
        shop = IncidentFilter(namespace="shop")
        for read in (
            lambda: store.list_incident_rows(shop),
            lambda: store.list_incident_rows_now(shop, max_steps=1_000_000),
        ):
            with pytest.raises(StoreError, match="cannot list incidents: no such table"):
                read()
    finally:
        store.close()


def test_a_rollout_is_recorded_once_per_action(store: AuditStore) -> None:
    """A daemon restarted while verifying reads the rollout complete again: the step is
    not repeated; the rollout of a next action is a step of its own."""
    iid = store.open_incident(finding())
    restart = ActionRecord(ActionKind.RESTART, CART, {}, ActionStatus.SUCCEEDED, at(10), at(11))
    store.record_action(iid, restart)
    store.record_rollout(iid, at=at(40), detail="rollout complete (3/3 ready)")
    store.record_rollout(iid, at=at(70), detail="rollout complete (3/3 ready)")
    store.record_action(iid, replace(restart, started=at(100), finished=at(101)))
    store.record_rollout(iid, at=at(130), detail="rollout complete (4/4 ready)")
    detail = store.get_incident(iid)
    assert detail is not None
    rollouts = [s for s in detail.timeline if s.kind == StepKind.ROLLOUT]
    assert [(s.at, s.data["detail"]) for s in rollouts] == [
        (at(40), "rollout complete (3/3 ready)"),
        (at(130), "rollout complete (4/4 ready)"),
    ]
    with pytest.raises(UnknownRecord):
        store.record_rollout(iid + 1, at=at(40), detail="rollout complete")
