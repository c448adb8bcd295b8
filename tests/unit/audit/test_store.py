"""AuditStore against SQLite files in tmp_path: lifecycle, queries, durability, threads."""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from healer.audit import AuditStore, IncidentFilter, IncidentSummary, StepKind
from healer.audit.serialize import to_json_object
from healer.errors import StoreError
from healer.types import (
    ActionKind,
    ActionRecord,
    ActionStatus,
    Cause,
    Diagnosis,
    Direction,
    Finding,
    GuardResult,
    Incident,
    IncidentStatus,
    JsonObject,
    Mode,
    Outcome,
    OutcomeKind,
    Plan,
    Signal,
    SignalDeviation,
    WorkloadRef,
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
CART = WorkloadRef("shop", "Deployment", "cart")
SEARCH = WorkloadRef("shop", "Deployment", "search")
LEDGER = WorkloadRef("bank", "Deployment", "ledger")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def finding(wl: WorkloadRef = CART, *, t: float = 0.0, score: float = 0.96) -> Finding:
    deviation = SignalDeviation(Signal.MEMORY, 0.91, 0.42, 6.5, Direction.UP)
    return Finding(wl, at(t), score, (deviation,), onset=at(t - 120), model_version="m-1")


def diagnosis(wl: WorkloadRef = CART, cause: Cause = Cause.MEMORY_LEAK) -> Diagnosis:
    return Diagnosis(wl, cause, 0.85, "Memory rose steadily for 40 minutes; CPU flat.")


def plan(wl: WorkloadRef = CART) -> Plan:
    guards = (GuardResult("cooldown", True, "no action in 900 s"),)
    return Plan(
        wl, "restart", ActionKind.RESTART, {"reason": "leak", "grace_s": 30}, Mode.AUTO,
        guards, "memory_leak at 0.85 >= 0.7", verify_within_s=600.0,
    )  # fmt: skip


def action(
    wl: WorkloadRef = CART, *, t: float = 60.0, status: ActionStatus = ActionStatus.SUCCEEDED
) -> ActionRecord:
    request: JsonObject = {"verb": "PATCH", "path": f"/apis/apps/v1/namespaces/{wl.namespace}"}
    return ActionRecord(ActionKind.RESTART, wl, request, status, at(t), at(t + 1.5))


def outcome(t: float = 600.0) -> Outcome:
    return Outcome(OutcomeKind.HEALED, "memory back to baseline for 120 s", at(t))


def test_full_lifecycle_round_trip(store: AuditStore) -> None:
    first, peak = finding(score=0.96), finding(t=30, score=0.99)
    iid = store.open_incident(first)
    store.record_finding(iid, peak)
    store.record_diagnosis(iid, diagnosis())
    store.record_plan(iid, plan(), at=at(45))
    store.record_action(iid, action())
    store.record_outcome(iid, outcome())

    detail = store.get_incident(iid)
    assert detail is not None
    assert detail.summary == IncidentSummary(
        id=iid, workload=CART, status=IncidentStatus.RESOLVED, opened=at(-120), closed=at(600),
        score=0.99, cause=Cause.MEMORY_LEAK, confidence=0.85, action=ActionKind.RESTART,
        action_status=ActionStatus.SUCCEEDED, outcome=OutcomeKind.HEALED, last_seen=at(30),
    )  # fmt: skip
    values = [first, peak, diagnosis(), plan(), action(), outcome()]
    assert [s.data for s in detail.timeline] == [to_json_object(v) for v in values]
    assert [s.kind for s in detail.timeline] == [
        StepKind.FINDING, StepKind.FINDING, StepKind.DIAGNOSIS,
        StepKind.PLAN, StepKind.ACTION, StepKind.OUTCOME,
    ]  # fmt: skip
    # A diagnosis has no time of its own: it takes the latest finding's.
    assert [s.at for s in detail.timeline] == [at(0), at(30), at(30), at(45), at(60), at(600)]


def test_times_come_back_utc_aware(store: AuditStore) -> None:
    paris = timezone(timedelta(hours=2))
    iid = store.open_incident(replace(finding(), at=T0.astimezone(paris)))
    detail = store.get_incident(iid)
    assert detail is not None
    assert detail.summary.last_seen == T0
    assert detail.summary.last_seen.tzinfo is UTC
    assert detail.timeline[0].data["at"] == "2024-05-01T12:00:00Z"


def test_naive_datetime_is_refused(store: AuditStore) -> None:
    with pytest.raises(ValueError, match="naive"):
        store.open_incident(replace(finding(), at=datetime(2024, 5, 1, 12)))


def test_later_findings_append_a_step_only_on_a_new_peak(store: AuditStore) -> None:
    iid = store.open_incident(finding(score=0.96))
    for t, score in [(30, 0.95), (60, 0.98), (90, 0.97), (120, 0.98)]:
        store.record_finding(iid, finding(t=t, score=score))
    detail = store.get_incident(iid)
    assert detail is not None
    assert [s.at for s in detail.timeline] == [at(0), at(60)]
    assert (detail.summary.score, detail.summary.last_seen) == (0.98, at(120))


@pytest.mark.parametrize(
    ("action_status", "incident_status"),
    [
        (ActionStatus.SUCCEEDED, IncidentStatus.VERIFYING),
        (ActionStatus.DRY_RUN, IncidentStatus.VERIFYING),
        (ActionStatus.PENDING_APPROVAL, IncidentStatus.PENDING_APPROVAL),
        (ActionStatus.FAILED, IncidentStatus.OPEN),
        (ActionStatus.BLOCKED, IncidentStatus.OPEN),
    ],
)
def test_action_status_moves_the_incident(
    store: AuditStore, action_status: ActionStatus, incident_status: IncidentStatus
) -> None:
    iid = store.open_incident(finding())
    store.record_action(iid, action(status=action_status))
    detail = store.get_incident(iid)
    assert detail is not None
    assert detail.summary.status is incident_status
    assert detail.summary.action_status is action_status


@pytest.mark.parametrize(
    "record",
    [
        lambda s: s.record_finding(99, finding()),
        lambda s: s.record_diagnosis(99, diagnosis()),
        lambda s: s.record_plan(99, plan()),
        lambda s: s.record_action(99, action()),
        lambda s: s.record_outcome(99, outcome()),
    ],
)
def test_recording_on_an_unknown_incident_raises(store: AuditStore, record: object) -> None:
    assert callable(record)
    with pytest.raises(StoreError, match="incident 99 not found"):
        record(store)


def test_unknown_incident_reads_as_none(store: AuditStore) -> None:
    assert store.get_incident(99) is None


def _populate(store: AuditStore) -> dict[str, int]:
    ids = {
        "cart": store.open_incident(finding(CART)),
        "search": store.open_incident(finding(SEARCH, t=10)),
        "ledger": store.open_incident(finding(LEDGER, t=20)),
        "cart2": store.open_incident(finding(CART, t=30)),
    }
    store.record_diagnosis(ids["search"], diagnosis(SEARCH, Cause.OVERLOAD))
    store.record_diagnosis(ids["ledger"], diagnosis(LEDGER, Cause.BAD_RELEASE))
    store.record_outcome(ids["cart"], outcome())
    return ids


def test_list_is_newest_first(store: AuditStore) -> None:
    ids = _populate(store)
    listed = [s.id for s in store.list_incidents()]
    assert listed == sorted(ids.values(), reverse=True)


def test_list_filters(store: AuditStore) -> None:
    ids = _populate(store)

    def listed(**filters: object) -> set[int]:
        return {s.id for s in store.list_incidents(IncidentFilter(**filters))}  # type: ignore[arg-type]

    assert listed(status=IncidentStatus.RESOLVED) == {ids["cart"]}
    assert listed(status=IncidentStatus.OPEN) == {ids["search"], ids["ledger"], ids["cart2"]}
    assert listed(namespace="bank") == {ids["ledger"]}
    assert listed(workload="cart") == {ids["cart"], ids["cart2"]}
    assert listed(cause=Cause.OVERLOAD) == {ids["search"]}
    assert listed(namespace="shop", status=IncidentStatus.OPEN) == {ids["search"], ids["cart2"]}
    assert listed(namespace="nowhere") == set()


def test_cursor_pagination_walks_every_incident_once(store: AuditStore) -> None:
    ids = [store.open_incident(finding(t=i)) for i in range(7)]
    seen: list[int] = []
    cursor: int | None = None
    while page := store.list_incidents(IncidentFilter(before_id=cursor), limit=3):
        seen += [s.id for s in page]
        cursor = page[-1].id
    assert seen == ids[::-1]


def test_unresolved_rebuilds_equal_incidents(store: AuditStore) -> None:
    ids = _populate(store)
    store.record_finding(ids["cart2"], finding(CART, t=40, score=0.99))
    store.record_diagnosis(ids["cart2"], diagnosis())
    store.record_plan(ids["cart2"], plan())
    store.record_action(ids["cart2"], action(t=50))

    by_id = {i.id: i for i in store.unresolved()}
    assert list(by_id) == [ids["search"], ids["ledger"], ids["cart2"]]
    assert by_id[ids["cart2"]] == Incident(
        id=ids["cart2"], workload=CART, status=IncidentStatus.VERIFYING, opened=at(-90),
        finding=finding(CART, t=40, score=0.99), diagnosis=diagnosis(), plan=plan(),
        action=action(t=50),
    )  # fmt: skip
    assert by_id[ids["search"]] == Incident(
        id=ids["search"], workload=SEARCH, status=IncidentStatus.OPEN, opened=at(-110),
        finding=finding(SEARCH, t=10), diagnosis=diagnosis(SEARCH, Cause.OVERLOAD),
    )  # fmt: skip


def test_latest_resolved_reads_each_workloads_newest_resolved_incident(
    store: AuditStore,
) -> None:
    held = Outcome(OutcomeKind.ESCALATED, "held by anomaly_brake: 9 of 12", at(0))
    old_cart = store.open_incident(finding(CART, t=0))
    store.record_outcome(old_cart, held)
    new_cart = store.open_incident(finding(CART, t=900))
    store.record_outcome(new_cart, outcome(t=1000))
    search = store.open_incident(finding(SEARCH, t=900))
    store.record_finding(search, finding(SEARCH, t=1200, score=0.5))
    store.record_outcome(search, replace(held, at=at(1200)))
    ledger = store.open_incident(finding(LEDGER, t=100))
    store.record_outcome(ledger, replace(held, at=at(100)))
    store.open_incident(finding(LEDGER, t=1100))  # open: not among the resolved

    newest = store.latest_resolved(since=at(-1000))
    assert [i.id for i in newest] == [ledger, search, new_cart]
    assert newest[1].outcome == replace(held, at=at(1200))
    assert newest[1].finding == finding(SEARCH, t=900)
    escalated = store.latest_resolved(since=at(-1000), outcome=OutcomeKind.ESCALATED)
    assert [i.id for i in escalated] == [ledger, search]  # cart's newest one healed
    assert [i.id for i in store.latest_resolved(since=at(900))] == [search, new_cart]
    assert store.latest_resolved(since=at(1201)) == []


def test_action_history(store: AuditStore) -> None:
    cart, search, ledger = (store.open_incident(finding(wl)) for wl in (CART, SEARCH, LEDGER))
    store.record_action(cart, action(CART, t=-7200))  # outside the window
    store.record_action(cart, action(CART, t=-600, status=ActionStatus.FAILED))
    store.record_action(search, action(SEARCH, t=-300))
    store.record_action(search, action(SEARCH, t=-60, status=ActionStatus.BLOCKED))
    pending = store.record_action(
        ledger, action(LEDGER, t=-30, status=ActionStatus.PENDING_APPROVAL)
    )
    store.approve_action(pending, by="ana", reason="go", at=at(-20))
    store.record_action(ledger, action(LEDGER, t=120))  # after now: not yet in the window
    closed = store.open_incident(finding(SEARCH))
    store.record_action(closed, action(SEARCH, t=-7000))
    store.record_outcome(closed, outcome(t=-6000))

    history = store.action_history(now=at(0), window_s=3600)

    assert dict(history.last_action_at) == {CART: at(-600), SEARCH: at(-300), LEDGER: at(120)}
    assert history.recent_action_times == (at(-300),)
    # All three are VERIFYING: a failed or blocked action leaves the status as it was.
    assert history.in_flight == 3


def test_action_history_of_an_empty_store(store: AuditStore) -> None:
    history = store.action_history(now=T0, window_s=3600)
    assert (dict(history.last_action_at), history.recent_action_times) == ({}, ())
    assert history.in_flight == 0


def test_data_survives_reopening_the_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    first = AuditStore(url)
    iid = first.open_incident(finding())
    first.record_action(iid, action())
    before = first.get_incident(iid)
    first.close()

    second = AuditStore(url)
    try:
        assert second.get_incident(iid) == before
        assert [i.id for i in second.unresolved()] == [iid]
        assert second.open_incident(finding(SEARCH)) == iid + 1
    finally:
        second.close()


def test_reads_from_another_thread_while_writing(store: AuditStore) -> None:
    iid = store.open_incident(finding())
    errors: list[BaseException] = []
    done = threading.Event()

    def read() -> None:
        try:
            while not done.is_set():
                detail = store.get_incident(iid)
                assert detail is not None
                assert len(detail.timeline) >= 1
                store.list_incidents(limit=5)
        except BaseException as exc:  # reported to the main thread below
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for thread in readers:
        thread.start()
    try:
        for i in range(1, 41):
            store.record_finding(iid, finding(t=i, score=0.96 + i / 1000))
            store.open_incident(finding(SEARCH, t=i))
    finally:
        done.set()
        for thread in readers:
            thread.join(timeout=10)
    assert errors == []
    detail = store.get_incident(iid)
    assert detail is not None
    assert len(detail.timeline) == 41  # every finding was a new peak
    assert len(store.list_incidents(limit=500)) == 41


def test_in_memory_database_is_shared_between_threads() -> None:
    store = AuditStore("sqlite://")
    try:
        iid = store.open_incident(finding())
        found: list[int] = []
        thread = threading.Thread(target=lambda: found.extend(s.id for s in store.list_incidents()))
        thread.start()
        thread.join(timeout=10)
        assert found == [iid]
    finally:
        store.close()


def test_database_errors_become_store_errors(tmp_path: Path, store: AuditStore) -> None:
    iid = store.open_incident(finding())
    with sqlite3.connect(tmp_path / "audit.db") as raw:
        raw.execute("DROP TABLE incident_steps")
    raw.close()
    with pytest.raises(StoreError, match=f"cannot read incident {iid}") as info:
        store.get_incident(iid)
    assert info.value.__cause__ is not None


def test_unopenable_store_raises_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot open audit store"):
        AuditStore(f"sqlite:///{tmp_path / 'missing-dir' / 'audit.db'}")
