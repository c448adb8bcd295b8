"""Incident status: the moves its lifecycle allows, the ones refused, and how the store
applies both (nothing written when a move is refused)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from healer.audit import AuditStore, status
from healer.audit.status import ALLOWED, Move
from healer.audit.tables import IncidentRow
from healer.errors import IllegalTransition, ReviewConflict
from healer.types import (
    ActionKind,
    ActionRecord,
    ActionStatus,
    Direction,
    Finding,
    IncidentStatus,
    Outcome,
    OutcomeKind,
    Signal,
    SignalDeviation,
    WorkloadRef,
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
CART = WorkloadRef("shop", "Deployment", "cart")
OPEN, VERIFYING = IncidentStatus.OPEN, IncidentStatus.VERIFYING
PENDING, RESOLVED = IncidentStatus.PENDING_APPROVAL, IncidentStatus.RESOLVED


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def finding() -> Finding:
    deviation = SignalDeviation(Signal.MEMORY, 0.91, 0.42, 6.5, Direction.UP)
    return Finding(CART, at(0), 0.96, (deviation,), onset=at(-120), model_version="m-1")


def action(status: ActionStatus = ActionStatus.SUCCEEDED, t: float = 30) -> ActionRecord:
    return ActionRecord(ActionKind.RESTART, CART, {"verb": "PATCH"}, status, at(t), at(t + 1))


def escalated(t: float = 600) -> Outcome:
    return Outcome(OutcomeKind.ESCALATED, "a person must look", at(t))


# ---- the table ---------------------------------------------------------------------------

LEGAL = {
    (OPEN, Move.TAKEN),
    (VERIFYING, Move.TAKEN),  # the next step of an on_failure chain
    (OPEN, Move.AWAITS_APPROVAL),
    (VERIFYING, Move.AWAITS_APPROVAL),  # a chain step in approval mode
    (PENDING, Move.APPROVED),
    (OPEN, Move.CLOSED),
    (VERIFYING, Move.CLOSED),
    (PENDING, Move.CLOSED),  # rejected, expired or escalated
}


@pytest.mark.parametrize("current", list(IncidentStatus))
@pytest.mark.parametrize("change", list(Move))
def test_each_move_is_allowed_from_the_lifecycle_statuses_only(
    current: IncidentStatus, change: Move
) -> None:
    assert status.allowed(current, change) is ((current, change) in LEGAL)


def test_each_move_names_the_status_it_leads_to() -> None:
    assert {m: m.to for m in Move} == {
        Move.TAKEN: VERIFYING,
        Move.AWAITS_APPROVAL: PENDING,
        Move.APPROVED: OPEN,
        Move.CLOSED: RESOLVED,
    }


def test_nothing_leaves_resolved() -> None:
    assert not any(RESOLVED in starts for starts in ALLOWED.values())


def test_a_refused_move_names_the_incident_and_both_statuses_and_changes_nothing() -> None:
    row = IncidentRow(id=42, status=RESOLVED)
    with pytest.raises(IllegalTransition) as caught:
        status.move(row, Move.TAKEN)
    assert str(caught.value) == (
        "incident 42 is resolved: an action taken cannot move it to verifying "
        "(only from open, verifying)"
    )
    assert row.status is RESOLVED


def test_a_move_sets_the_status() -> None:
    row = IncidentRow(id=7, status=PENDING)
    status.move(row, Move.APPROVED)
    assert row.status is OPEN


# ---- through the store -------------------------------------------------------------------


def test_an_outcome_is_never_overwritten(store: AuditStore) -> None:
    iid = store.open_incident(finding())
    store.record_outcome(iid, Outcome(OutcomeKind.HEALED, "back at baseline", at(300)))
    before = store.get_incident(iid)

    with pytest.raises(IllegalTransition, match=f"incident {iid} is resolved: an outcome"):
        store.record_outcome(iid, escalated())

    assert store.get_incident(iid) == before


def test_an_action_is_not_taken_on_a_resolved_incident(store: AuditStore) -> None:
    iid = store.open_incident(finding())
    store.record_outcome(iid, escalated(t=10))
    before = store.get_incident(iid)

    with pytest.raises(IllegalTransition, match="is resolved: an action taken cannot move"):
        store.record_action(iid, action())

    assert store.get_incident(iid) == before
    assert store.actions() == []


def test_an_action_awaiting_approval_is_not_taken_before_it_is_approved(
    store: AuditStore,
) -> None:
    iid = store.open_incident(finding())
    store.record_action(iid, action(ActionStatus.PENDING_APPROVAL, t=10))

    with pytest.raises(IllegalTransition, match="is pending_approval: an action taken"):
        store.record_action(iid, action())

    assert store.incident(iid).status is PENDING
    [pending] = store.actions()
    assert pending.status is ActionStatus.PENDING_APPROVAL


def test_failed_blocked_and_intended_actions_leave_the_status_alone(store: AuditStore) -> None:
    iid = store.open_incident(finding())
    store.record_outcome(iid, escalated(t=10))
    for kept in (ActionStatus.INTENDED, ActionStatus.FAILED, ActionStatus.BLOCKED):
        store.record_action(iid, action(kept))
        assert store.incident(iid).status is RESOLVED


def test_the_daemon_and_a_person_walk_the_whole_lifecycle(store: AuditStore) -> None:
    iid = store.open_incident(finding())
    seen = [store.incident(iid).status]
    pending = store.record_action(iid, action(ActionStatus.PENDING_APPROVAL, t=10))
    seen.append(store.incident(iid).status)
    store.approve_action(pending, by="olga", reason="go", at=at(20))
    seen.append(store.incident(iid).status)
    store.record_action(iid, action(t=30))
    seen.append(store.incident(iid).status)
    store.record_action(iid, action(t=400))  # the next step of a chain
    seen.append(store.incident(iid).status)
    store.record_outcome(iid, Outcome(OutcomeKind.HEALED, "back at baseline", at(900)))
    seen.append(store.incident(iid).status)
    assert seen == [OPEN, PENDING, OPEN, VERIFYING, VERIFYING, RESOLVED]


def test_closing_an_incident_withdraws_its_action_awaiting_approval(store: AuditStore) -> None:
    iid = store.open_incident(finding())
    pending = store.record_action(iid, action(ActionStatus.PENDING_APPROVAL, t=10))

    store.record_outcome(iid, escalated())

    view = store.get_action(pending)
    assert view is not None and view.status is ActionStatus.EXPIRED
    assert store.list_incidents()[0].action_status is ActionStatus.EXPIRED
    with pytest.raises(ReviewConflict, match=f"action {pending} is expired"):
        store.approve_action(pending, by="olga", reason="go", at=at(700))


def test_closing_an_incident_withdraws_its_approved_action_not_yet_taken(
    store: AuditStore,
) -> None:
    iid = store.open_incident(finding())
    pending = store.record_action(iid, action(ActionStatus.PENDING_APPROVAL, t=10))
    store.approve_action(pending, by="olga", reason="go", at=at(20))

    store.record_outcome(iid, escalated())

    assert store.approved_actions() == []
    view = store.get_action(pending)
    assert view is not None and view.status is ActionStatus.EXPIRED


def test_a_review_of_an_action_of_a_resolved_incident_is_refused(tmp_path: Path) -> None:
    """A database written before closing withdrew pending actions can hold one."""
    url = tmp_path / "audit.db"
    store = AuditStore(f"sqlite:///{url}")
    try:
        iid = store.open_incident(finding())
        pending = store.record_action(iid, action(ActionStatus.PENDING_APPROVAL, t=10))
        store.record_outcome(iid, escalated())
        with sqlite3.connect(url) as db:  # the action as an earlier version left it
            db.execute("UPDATE actions SET status = 'pending_approval' WHERE id = ?", (pending,))
        before = store.get_incident(iid)

        for review in (store.approve_action, store.reject_action):
            with pytest.raises(IllegalTransition, match=f"incident {iid} is resolved"):
                review(pending, by="olga", reason="late", at=at(700))

        assert store.get_incident(iid) == before
    finally:
        store.close()
