"""The anomaly brake's watch on literals: what makes up an event, what it holds, one
escalation per event, and what a restart holds again."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from healer.config import load_settings
from healer.lifecycle.brake_watch import BrakeWatch
from healer.types import Finding, Incident, IncidentStatus, Outcome, OutcomeKind, WorkloadRef

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
SETTINGS = load_settings(None, guards={"anomaly_brake_window_s": 60})
A, B, C, D = (WorkloadRef("shop", "Deployment", name) for name in "abcd")


def finding(workload: WorkloadRef, onset: datetime) -> Finding:
    return Finding(workload, T0 + timedelta(minutes=30), 0.9, (), onset, "test")


def test_an_event_counts_the_workloads_that_began_within_the_window() -> None:
    watch = BrakeWatch(onsets={A: T0, B: T0 + timedelta(seconds=30), C: T0 + timedelta(hours=1)})
    assert watch.event(finding(A, T0), SETTINGS) == (2, T0)
    assert watch.event(finding(D, T0 + timedelta(seconds=50)), SETTINGS)[0] == 3


def test_a_decided_action_is_judged_by_the_largest_event_under_way() -> None:
    late = T0 + timedelta(hours=1)
    watch = BrakeWatch(onsets={B: late, C: late, D: late})
    assert watch.event(finding(A, T0), SETTINGS) == (1, T0)
    assert watch.event(finding(A, T0), SETTINGS, live=True) == (4, late)


def test_holding_an_event_holds_its_workloads_and_escalates_it_once() -> None:
    watch = BrakeWatch(onsets={A: T0, B: T0, C: T0 + timedelta(hours=1)})
    assert watch.hold(A, T0, SETTINGS) is True
    assert watch.held == {A: T0, B: T0}  # not C: a later event
    assert watch.hold(B, T0 + timedelta(seconds=10), SETTINGS) is False  # the same event
    assert watch.hold(C, T0 + timedelta(hours=1), SETTINGS) is True  # a new one


def test_held_again_after_a_restart_the_event_is_not_escalated_twice() -> None:
    watch = BrakeWatch()
    watch.rehold(A, T0)
    assert watch.held == {A: T0}
    assert watch.hold(B, T0 + timedelta(seconds=5), SETTINGS) is False


@dataclass
class KeptState:
    """The store as a restarted brake watch reads it: the latest step, and each
    workload's newest resolved incident (filtered as the store filters them)."""

    latest: datetime | None
    resolved: list[Incident]
    asked: list[tuple[datetime, OutcomeKind | None]] = field(default_factory=list)

    def latest_at(self) -> datetime | None:
        return self.latest

    def latest_resolved(
        self, *, since: datetime, outcome: OutcomeKind | None = None
    ) -> list[Incident]:
        self.asked.append((since, outcome))
        return [
            i for i in self.resolved if outcome is None or (i.outcome and i.outcome.kind == outcome)
        ]


def resolved(incident_id: int, workload: WorkloadRef, evidence: str) -> Incident:
    outcome = Outcome(OutcomeKind.ESCALATED, evidence, T0 + timedelta(minutes=31))
    found = finding(workload, T0)
    return Incident(incident_id, workload, IncidentStatus.RESOLVED, T0, found, outcome=outcome)


def test_a_restart_holds_again_what_the_brake_held_and_still_watched() -> None:
    state = KeptState(
        T0 + timedelta(hours=1),
        [
            resolved(4, A, "held by anomaly_brake: 9 of 12 workloads"),
            resolved(3, B, "restart blocked by anomaly_brake, cooldown: ..."),
            resolved(2, C, "no playbook handles unknown; a person must look"),
            resolved(1, D, "held by anomaly_brake: 9 of 12 workloads"),
        ],
    )
    watch = BrakeWatch()
    tracks = watch.resume(state, {D}, stable_s=1800)  # type: ignore[arg-type]  # a fake with the two methods resume reads
    assert state.asked == [(T0 + timedelta(minutes=30), OutcomeKind.ESCALATED)]
    assert [(t.incident_id, t.workload) for t in tracks] == [(4, A), (3, B)]
    assert all(t.story.finding == finding(t.workload, T0) for t in tracks)
    assert watch.held == {A: T0, B: T0}
    assert watch.hold(C, T0 + timedelta(seconds=5), SETTINGS) is False  # escalated already


def test_a_restart_on_an_empty_store_holds_nothing() -> None:
    watch = BrakeWatch()
    assert watch.resume(KeptState(None, []), set(), stable_s=1800) == []  # type: ignore[arg-type]  # a fake with the two methods resume reads
    assert watch.held == {}
