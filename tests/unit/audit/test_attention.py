"""Acknowledgements, opt-outs and the overview's tallies in the audit store (migration 0007)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from healer.audit import AuditStore, StepKind, migrate
from healer.errors import ReviewConflict, UnknownRecord
from healer.types import (
    ActionKind,
    ActionRecord,
    ActionStatus,
    Cause,
    Diagnosis,
    Direction,
    Finding,
    GuardResult,
    Mode,
    Outcome,
    OutcomeKind,
    Plan,
    Signal,
    SignalDeviation,
    WorkloadRef,
)

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
CART = WorkloadRef("shop", "Deployment", "cart")
SEARCH = WorkloadRef("shop", "Deployment", "search")


def incident(
    store: AuditStore,
    workload: WorkloadRef = CART,
    *,
    onset: datetime = T0,
    found_after_s: float = 60.0,
    cause: Cause = Cause.MEMORY_LEAK,
    outcome: OutcomeKind | None = None,
    closed_after_s: float = 600.0,
) -> int:
    memory = SignalDeviation(Signal.MEMORY, 0.9, 0.5, 7.0, Direction.UP)
    at = onset + timedelta(seconds=found_after_s)
    iid = store.open_incident(Finding(workload, at, 0.98, (memory,), onset, "m/1"))
    store.record_diagnosis(iid, Diagnosis(workload, cause, 0.8, "memory climbs"), at=at)
    if outcome is not None:
        closed = onset + timedelta(seconds=closed_after_s)
        store.record_outcome(iid, Outcome(outcome, "evidence", closed))
    return iid


def test_an_escalated_incident_waits_until_acknowledged(store: AuditStore) -> None:
    healed = incident(store, outcome=OutcomeKind.HEALED)
    escalated = incident(store, SEARCH, outcome=OutcomeKind.ESCALATED)
    waiting, count = store.unacknowledged()
    assert ([i.id for i in waiting], count) == ([escalated], 1)

    ack = store.acknowledge(escalated, by="olga", at=T0 + timedelta(hours=1), note="on it")
    assert (ack.by, ack.note) == ("olga", "on it")
    assert store.unacknowledged() == ([], 0)
    assert store.acknowledgement(escalated) == ack
    detail = store.get_incident(escalated)
    assert detail is not None
    last = detail.timeline[-1]
    assert (last.kind, last.actor, last.data["note"]) == (StepKind.ACKNOWLEDGED, "olga", "on it")

    with pytest.raises(ReviewConflict, match="acknowledged by olga"):
        store.acknowledge(escalated, by="ivan", at=T0 + timedelta(hours=2))
    with pytest.raises(ReviewConflict, match="healed, not escalated"):
        store.acknowledge(healed, by="olga", at=T0)
    with pytest.raises(UnknownRecord):
        store.acknowledge(999, by="olga", at=T0)


def test_an_opt_out_holds_for_its_time_or_until_ended(store: AuditStore) -> None:
    until = T0 + timedelta(hours=2)
    made = store.opt_out(CART, by="olga", reason="deploying by hand", at=T0, until=until)
    assert store.opted_out(CART, now=T0 + timedelta(minutes=5)) == made
    assert store.opted_out(SEARCH, now=T0 + timedelta(minutes=5)) is None
    assert store.opted_out(CART, now=until) is None, "over at its end"
    assert [o.id for o in store.opt_outs(now=T0)] == [made.id]
    assert made.detail() == (
        "healer silenced on shop/cart by olga until 2026-03-02 14:00 UTC: deploying by hand"
    )

    ended = store.end_opt_out(made.id, by="ivan", at=T0 + timedelta(minutes=10))
    assert (ended.ended_by, ended.active(T0 + timedelta(minutes=11))) == ("ivan", False)
    assert store.opted_out(CART, now=T0 + timedelta(minutes=11)) is None
    with pytest.raises(ReviewConflict, match="already ended"):
        store.end_opt_out(made.id, by="ivan", at=T0 + timedelta(minutes=12))
    with pytest.raises(UnknownRecord):
        store.end_opt_out(999, by="ivan", at=T0)
    with pytest.raises(ValueError, match="not after"):
        store.opt_out(CART, by="olga", reason="", at=T0, until=T0)


def test_the_tally_counts_a_window_and_takes_medians_by_cause(store: AuditStore) -> None:
    incident(store, onset=T0 - timedelta(days=2), outcome=OutcomeKind.HEALED)  # outside
    incident(store, found_after_s=60, outcome=OutcomeKind.HEALED, closed_after_s=300)
    incident(store, found_after_s=120, outcome=OutcomeKind.HEALED, closed_after_s=500)
    incident(store, found_after_s=90, outcome=OutcomeKind.HEALED, closed_after_s=900)
    overload = incident(store, SEARCH, cause=Cause.OVERLOAD, found_after_s=30)
    blocked = GuardResult("cooldown", False, "acted 2 min ago")
    plan = Plan(SEARCH, "scale", ActionKind.SCALE, {}, Mode.AUTO, (blocked,), "overload", 600.0)
    store.record_plan(overload, plan, at=T0 + timedelta(seconds=30))
    store.record_action(
        overload,
        ActionRecord(ActionKind.SCALE, SEARCH, {}, ActionStatus.DRY_RUN, T0, T0),
    )

    tally = store.tally(since=T0 - timedelta(hours=1))
    assert tally.incidents == {
        (Cause.MEMORY_LEAK, OutcomeKind.HEALED): 3,
        (Cause.OVERLOAD, None): 1,
    }
    assert tally.total == 4
    assert tally.detect_s == {Cause.MEMORY_LEAK: 90.0, Cause.OVERLOAD: 30.0}
    assert tally.heal_s == {Cause.MEMORY_LEAK: 500.0}
    assert tally.blocked == {"cooldown": 1}
    assert tally.actions == {(ActionKind.SCALE, ActionStatus.DRY_RUN): 1}
    assert store.tally(since=T0 + timedelta(days=1)).total == 0


def test_migration_0007_adds_its_tables_to_a_store_with_history(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    engine = create_engine(f"sqlite:///{path}")
    migrate.upgrade(engine, "0006")
    with engine.begin() as db:
        db.exec_driver_sql(
            "INSERT INTO incidents VALUES (1, 'shop', 'Deployment', 'cart', 'resolved',"
            " '2024-05-01 12:00:00', '2024-05-01 12:10:00', 0.9, 'overload', 0.8, NULL,"
            " NULL, 'escalated', '2024-05-01 12:01:00')"
        )
    engine.dispose()

    store = AuditStore(f"sqlite:///{path}")
    tables = set(inspect(create_engine(f"sqlite:///{path}")).get_table_names())
    assert {"acknowledgements", "opt_outs"} <= tables
    waiting, count = store.unacknowledged()
    assert ([i.id for i in waiting], count) == ([1], 1)
    since = datetime(2024, 5, 1, tzinfo=UTC)
    tally = store.tally(since=since)
    assert tally.total == 1 and tally.detect_s == {}, "no first-finding time before 0007"
    store.acknowledge(1, by="olga", at=since + timedelta(days=1))
    assert store.unacknowledged() == ([], 0)
    store.close()
