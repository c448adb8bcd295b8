"""Approvals on their own: a fake store and a fake cycle (``Acting``) stand for the rest.

An approved action is planned again and taken in auto mode when the guards pass, blocked
with the reason when they do not or another incident of its workload is open, and
blocked as well when taking it crashes, without stopping the others.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest

from healer.audit.views import ActionView, IncidentDetail
from healer.decide import Playbook
from healer.errors import HealerError
from healer.lifecycle import approvals
from healer.lifecycle.stages import Story, Track, Watching
from healer.lifecycle.transition import Event, Settled, transition
from healer.types import (
    ActionKind,
    ActionRecord,
    ActionStatus,
    Cause,
    Diagnosis,
    Finding,
    GuardResult,
    Incident,
    IncidentStatus,
    Mode,
    Outcome,
    OutcomeKind,
    Plan,
    WorkloadRef,
)

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=20)
CART = WorkloadRef("shop", "Deployment", "cart")
SEARCH = WorkloadRef("shop", "Deployment", "search")


def finding(workload: WorkloadRef) -> Finding:
    return Finding(workload, T0, 0.9, (), T0 - timedelta(minutes=2), "test")


def plan(workload: WorkloadRef, *guards: GuardResult, mode: Mode = Mode.APPROVAL) -> Plan:
    passed = (GuardResult("cooldown", True, "no action in 900 s"),)
    return Plan(workload, "restart", ActionKind.RESTART, {}, mode, guards or passed, "leak", 600.0)


def incident(incident_id: int, workload: WorkloadRef) -> Incident:
    approved = ActionRecord(ActionKind.RESTART, workload, {}, ActionStatus.APPROVED, T0, T0)
    return Incident(
        incident_id, workload, IncidentStatus.PENDING_APPROVAL, T0, finding(workload),
        Diagnosis(workload, Cause.MEMORY_LEAK, 0.9, "memory rose"), plan(workload),
        approved,
    )  # fmt: skip


def view(action_id: int, incident_id: int, workload: WorkloadRef) -> ActionView:
    return ActionView(
        action_id, incident_id, ActionKind.RESTART, workload, ActionStatus.APPROVED, {}, {},
        None, T0, None, None, None, "ops", T0, "go ahead", "healer-0",
    )  # fmt: skip


@dataclass
class FakeStore:
    """The store as approvals use it: literal incidents, what is recorded kept in lists."""

    incidents: dict[int, Incident]
    approved: list[ActionView]
    actions: list[tuple[int, ActionRecord]] = field(default_factory=list)
    plans: list[tuple[int, Plan]] = field(default_factory=list)

    def approved_actions(self) -> list[ActionView]:
        return list(self.approved)

    def incident(self, incident_id: int) -> Incident:
        return self.incidents[incident_id]

    def get_incident(self, incident_id: int) -> IncidentDetail | None:
        return None  # no action of it taken yet: not a chain step

    def get_action(self, action_id: int) -> ActionView | None:
        return next((a for a in self.approved if a.id == action_id), None)

    def record_action(self, incident_id: int, action: ActionRecord) -> int:
        self.actions.append((incident_id, action))
        return len(self.actions)

    def record_plan(self, incident_id: int, plan: Plan, *, at: datetime | None = None) -> None:
        self.plans.append((incident_id, plan))


@dataclass
class FakeCycle:
    """The cycle: moves stages with the real ``transition``, plans what it is told."""

    planned: Plan | None = None
    fail: Exception | None = None
    tracked: dict[WorkloadRef, Track] = field(default_factory=dict)
    moves: list[tuple[Track, Event]] = field(default_factory=list)
    taken: list[tuple[Track, Plan]] = field(default_factory=list)

    def watched(self, workload: WorkloadRef) -> Track | None:
        return self.tracked.get(workload)

    def watch(self, track: Track) -> None:
        self.tracked[track.workload] = track

    def move(self, track: Track, event: Event) -> Track:
        self.moves.append((track, event))
        after = transition(track, event).to or track
        if track.workload in self.tracked and self.tracked[track.workload] == track:
            self.tracked[track.workload] = after
        return after

    def replan(
        self, diagnosis: Diagnosis, finding: Finding, chain_to: Playbook | None
    ) -> Plan | None:
        if self.fail is not None:
            raise self.fail
        return self.planned

    def act(self, track: Track, plan: Plan) -> None:
        self.taken.append((track, plan))

    def exclusive(self) -> AbstractContextManager[object]:
        return nullcontext()


def take(store: FakeStore, cycle: FakeCycle) -> int:
    return approvals.take_approved(store=store, playbooks=(), cycle=cycle, now=NOW)  # type: ignore[arg-type]  # a fake with the methods approvals call


def test_an_approved_action_the_guards_pass_is_taken_in_auto_mode() -> None:
    store = FakeStore({1: incident(1, CART)}, [view(10, 1, CART)])
    cycle = FakeCycle(planned=plan(CART))
    assert take(store, cycle) == 0
    [(track, taken)] = cycle.taken
    assert taken == plan(CART, mode=Mode.AUTO)
    assert store.plans == [(1, taken)]
    assert track.incident_id == 1 and track.story.diagnosis is not None
    assert cycle.tracked[CART] == track
    assert store.actions == []  # the cycle records what it takes


def test_an_approved_action_the_guards_block_is_blocked_and_escalated() -> None:
    store = FakeStore({1: incident(1, CART)}, [view(10, 1, CART)])
    cycle = FakeCycle(planned=plan(CART, GuardResult("cooldown", False, "restarted 60 s ago")))
    assert take(store, cycle) == 0
    assert cycle.taken == []
    [(incident_id, blocked)] = store.actions
    assert (incident_id, blocked.status, blocked.error) == (
        1,
        ActionStatus.BLOCKED,
        "blocked by cooldown",
    )
    _, settled = cycle.moves[-1]
    assert isinstance(settled, Settled)
    assert settled.outcome.kind is OutcomeKind.ESCALATED
    assert settled.outcome.evidence == "approved, then blocked by cooldown"


def test_no_playbook_matching_any_more_blocks_the_action() -> None:
    store = FakeStore({1: incident(1, CART)}, [view(10, 1, CART)])
    cycle = FakeCycle(planned=None)
    take(store, cycle)
    assert [a.error for _, a in store.actions] == ["blocked by no playbook matches any more"]
    assert store.plans == [] and cycle.taken == []


def test_a_newer_incident_of_the_workload_blocks_the_older_approval() -> None:
    store = FakeStore({1: incident(1, CART)}, [view(10, 1, CART)])
    newer = Watching(7, CART, Story(finding(CART)))
    cycle = FakeCycle(planned=plan(CART), tracked={CART: newer})
    take(store, cycle)
    assert [a.error for _, a in store.actions] == ["incident 7 is now open for shop/cart"]
    [(stand_in, event)] = cycle.moves
    assert stand_in == Watching(1, CART) and isinstance(event, Settled)
    assert cycle.tracked == {CART: newer} and cycle.taken == []


def test_a_crash_blocks_that_action_and_the_others_are_still_taken() -> None:
    store = FakeStore(
        {1: incident(1, CART), 2: incident(2, SEARCH)}, [view(10, 1, CART), view(20, 2, SEARCH)]
    )
    cycle = FakeCycle(fail=ValueError("odd object"))
    assert take(store, cycle) == 2
    assert [(i, a.status, a.error) for i, a in store.actions] == [
        (1, ActionStatus.BLOCKED, "internal error: ValueError: odd object"),
        (2, ActionStatus.BLOCKED, "internal error: ValueError: odd object"),
    ]
    outcomes = [e.outcome.kind for _, e in cycle.moves if isinstance(e, Settled)]
    assert outcomes == [OutcomeKind.ESCALATED, OutcomeKind.ESCALATED]


def test_a_healer_error_leaves_the_approval_for_the_next_cycle() -> None:
    store = FakeStore({1: incident(1, CART)}, [view(10, 1, CART)])
    cycle = FakeCycle(fail=HealerError("cluster unreadable"))
    assert take(store, cycle) == 0
    assert store.actions == [] and store.plans == []
    assert not any(isinstance(e, Settled) for _, e in cycle.moves)


def test_an_approval_without_a_diagnosis_is_refused_naming_the_incident() -> None:
    bare = replace(incident(3, CART), diagnosis=None)
    store = FakeStore({3: bare}, [])
    with pytest.raises(HealerError, match="incident 3 has no diagnosis"):
        approvals.take_one(3, NOW, store=store, playbooks=(), cycle=FakeCycle())  # type: ignore[arg-type]  # a fake with the methods approvals call


@dataclass
class PendingStore:
    """The store as expiring asks it: whether an action of the incident was pending."""

    pending: set[int]
    expired: list[tuple[int, str]] = field(default_factory=list)

    def expire_pending(self, incident_id: int, outcome: Outcome) -> ActionView | None:
        if incident_id not in self.pending:
            return None
        self.expired.append((incident_id, outcome.evidence))
        return view(10, incident_id, CART)


def test_an_action_awaiting_approval_expires_once_the_workload_is_quiet() -> None:
    store = PendingStore({1})
    outcome = approvals.expire(1, NOW, 1800, store=store)  # type: ignore[arg-type]  # a fake with the one method expire calls
    assert outcome is not None and outcome.kind is OutcomeKind.ESCALATED and outcome.at == NOW
    assert store.expired == [(1, outcome.evidence)]
    assert "quiet for 1800 s before anyone reviewed" in outcome.evidence
    assert approvals.expire(2, NOW, 1800, store=store) is None  # type: ignore[arg-type]  # as above
