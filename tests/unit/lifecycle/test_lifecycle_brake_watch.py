"""The anomaly brake's watch on literals: what makes up an event, what it holds, and
one escalation per event."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from healer.config import load_settings
from healer.lifecycle.brake_watch import BrakeWatch
from healer.types import Finding, WorkloadRef

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
