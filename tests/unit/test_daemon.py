"""The cycle's incident handling, with fakes at both I/O ends and a real audit store."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from healer.audit.store import AuditStore
from healer.config import Settings, load_settings
from healer.daemon import Healer, Step
from healer.decide import load_playbooks
from healer.decide.escalation import Escalation
from healer.detect.streaming import Detection
from healer.errors import PrometheusUnavailable, ReviewConflict, TransientActionError
from healer.types import (
    POD_SIGNALS,
    ActionKind,
    ActionRecord,
    ActionStatus,
    Cause,
    Diagnosis,
    Direction,
    Finding,
    Frame,
    Mode,
    OutcomeKind,
    Plan,
    PodFrame,
    PodState,
    Revision,
    Signal,
    SignalDeviation,
    WorkloadRef,
    WorkloadState,
)

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
SEARCH = WorkloadRef("shop", "Deployment", "search")
OTHERS = tuple(WorkloadRef("shop", "Deployment", f"w{i}") for i in range(4))
SIGNALS = tuple(Signal)

OVERLOAD = (
    SignalDeviation(Signal.LATENCY_P99, 0.4, 0.1, 40.0, Direction.UP),
    SignalDeviation(Signal.CPU, 1.5, 0.6, 30.0, Direction.UP),
    SignalDeviation(Signal.REQUEST_RATE, 400.0, 150.0, 25.0, Direction.UP),
)
STRANGE = (SignalDeviation(Signal.READY_RATIO, 0.5, 1.0, -10.0, Direction.DOWN),)


class FakeSource:
    def __init__(self) -> None:
        self.down = False

    def fetch(self, *, until: datetime, window_s: float) -> Frame:
        if self.down:
            raise PrometheusUnavailable("connection refused")
        workloads = (SEARCH, *OTHERS)
        return Frame(
            np.array([until.timestamp()]),
            workloads,
            SIGNALS,
            np.zeros((len(workloads), len(SIGNALS), 1)),
        )


class ScriptedDetector:
    """Says which workloads are anomalous, cycle by cycle."""

    def __init__(self) -> None:
        self.anomalous: dict[WorkloadRef, tuple[SignalDeviation, ...]] = {}
        self.rising: set[WorkloadRef] = set()
        """Anomalous for less than the persistence: a score over the threshold, no finding."""

    def update(self, frame: Frame) -> Detection:
        at = datetime.fromtimestamp(float(frame.timestamps[-1]), UTC)
        findings = tuple(
            Finding(w, at, 0.99, s, at - timedelta(minutes=1), "scripted")
            for w, s in self.anomalous.items()
        )
        hot = self.anomalous.keys() | self.rising
        scores = np.array([0.99 if w in hot else 0.1 for w in frame.workloads])
        shape = (len(frame.workloads), len(frame.signals))
        fresh = np.ones(len(frame.workloads), dtype=bool)
        return Detection(
            at,
            frame.workloads,
            frame.signals,
            scores,
            np.zeros(shape),
            np.zeros(shape),
            np.zeros(shape),
            findings,
            fresh,
        )


@dataclass
class FakeActuator:
    applied: list[Plan] = field(default_factory=list)
    status: ActionStatus = ActionStatus.SUCCEEDED
    unreachable: bool = False
    odd: bool = False
    """Reading a workload meets a bug (an object of a shape nobody expected)."""

    def read_state(self, workload: WorkloadRef) -> WorkloadState:
        if self.unreachable:
            raise TransientActionError("Kubernetes API unreachable")
        if self.odd:
            raise KeyError("spec")
        rev = Revision(1, f"{workload.name}-abc", T0 - timedelta(days=3), ("img:1",))
        return WorkloadState(workload, 3, 3, 3, 3, 1, 1, False, (rev,))

    def apply(self, plan: Plan, *, now: datetime) -> ActionRecord:
        self.applied.append(plan)
        status = ActionStatus.PENDING_APPROVAL if plan.mode == Mode.APPROVAL else self.status
        if plan.mode == Mode.DRY_RUN:
            status = ActionStatus.DRY_RUN
        return ActionRecord(plan.action, plan.workload, {"verb": "PATCH"}, status, now, now)


@dataclass
class Loop:
    healer: Healer
    source: FakeSource
    detector: ScriptedDetector
    actuator: FakeActuator
    store: AuditStore
    steps: list[Step]
    now: datetime = T0

    def run(self, cycles: int = 1) -> None:
        for _ in range(cycles):
            self.now += timedelta(seconds=30)
            self.healer.cycle(self.now)

    def outcomes(self) -> list[OutcomeKind | None]:
        return [s.outcome for s in self.store.list_incidents()]


def make_loop(tmp_path: Path, settings: Settings) -> Iterator[Loop]:
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    source, detector, actuator, steps = FakeSource(), ScriptedDetector(), FakeActuator(), []
    healer = Healer(
        source=source,
        detector=detector,
        actuator=actuator,
        store=store,
        playbooks=load_playbooks(REPO / "playbooks"),
        settings=settings,
        report=steps.append,
    )
    yield Loop(healer, source, detector, actuator, store, steps)
    store.close()


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[Loop]:
    yield from make_loop(tmp_path, load_settings(None, guards={"mode": "auto"}))


def test_an_anomaly_is_acted_on_once_while_it_lasts(loop: Loop) -> None:
    loop.detector.anomalous = {SEARCH: OVERLOAD}
    loop.run(cycles=5)
    assert [p.action for p in loop.actuator.applied] == [ActionKind.SCALE]
    assert len(loop.store.list_incidents()) == 1
    assert loop.actuator.applied[0].params["replicas"] > 3


def test_healed_once_quiet_for_the_stable_time(loop: Loop) -> None:
    loop.detector.anomalous = {SEARCH: OVERLOAD}
    loop.run()
    loop.detector.anomalous = {}
    loop.run(cycles=4)  # quiet since the first of these, 90 s later: not yet stable
    assert loop.outcomes() == [None]
    loop.run()
    assert loop.outcomes() == [OutcomeKind.HEALED]


def test_not_healed_follows_the_chain_then_ends(loop: Loop) -> None:
    loop.detector.anomalous = {SEARCH: OVERLOAD}
    loop.run(cycles=12)  # 360 s, past scale-up-on-overload's 300 s window
    assert [p.playbook for p in loop.actuator.applied] == [
        "scale-up-on-overload",
        "scale-up-again",
    ]
    assert loop.outcomes() == [None]
    loop.run(cycles=21)  # past scale-up-again's 600 s window; it escalates on failure
    assert loop.outcomes() == [OutcomeKind.NOT_HEALED]
    loop.run(cycles=20)
    assert len(loop.actuator.applied) == 2, "no further action while the episode lasts"


def test_a_new_incident_opens_only_after_the_workload_was_quiet(loop: Loop) -> None:
    loop.detector.anomalous = {SEARCH: STRANGE}
    loop.run(cycles=3)
    loop.detector.anomalous = {}
    loop.run(cycles=6)
    loop.detector.anomalous = {SEARCH: STRANGE}
    loop.run()
    assert len(loop.store.list_incidents()) == 2


def test_an_unknown_cause_is_escalated_without_action(loop: Loop) -> None:
    loop.detector.anomalous = {SEARCH: STRANGE}
    loop.run(cycles=3)
    assert loop.actuator.applied == []
    [incident] = loop.store.list_incidents()
    assert incident.cause == Cause.UNKNOWN
    assert incident.outcome == OutcomeKind.ESCALATED


@dataclass
class RecordingNotifier:
    sent: list[Escalation] = field(default_factory=list)

    def notify(self, escalation: Escalation) -> list[str]:
        self.sent.append(escalation)
        return []


def test_escalations_are_sent_and_healed_incidents_are_not(loop: Loop) -> None:
    notifier = RecordingNotifier()
    loop.healer.notifier = notifier
    loop.detector.anomalous = {SEARCH: STRANGE}
    loop.run(cycles=2)
    [sent] = notifier.sent
    assert sent.workload == SEARCH and sent.cause == "unknown"
    assert sent.reason.startswith("escalated: no playbook handles unknown")
    loop.detector.anomalous = {}
    loop.run(cycles=8)  # quiet: the incident is done being watched
    loop.detector.anomalous = {SEARCH: OVERLOAD}
    loop.run()
    loop.detector.anomalous = {}
    loop.run(cycles=6)
    assert loop.outcomes()[0] == OutcomeKind.HEALED
    assert len(notifier.sent) == 1


def test_no_metrics_means_no_action(loop: Loop) -> None:
    loop.detector.anomalous = {SEARCH: OVERLOAD}
    loop.source.down = True
    loop.run(cycles=3)
    assert loop.actuator.applied == []
    assert loop.store.list_incidents() == []
    assert loop.healer.vitals.cycles == 0


def test_a_guard_block_is_recorded_and_escalated(tmp_path: Path) -> None:
    settings = load_settings(None, guards={"mode": "auto", "denied_namespaces": ["shop"]})
    for loop in make_loop(tmp_path, settings):
        loop.detector.anomalous = {SEARCH: OVERLOAD}
        loop.run()
        assert loop.actuator.applied == []
        [incident] = loop.store.list_incidents()
        assert incident.outcome == OutcomeKind.ESCALATED
        detail = loop.store.get_incident(incident.id)
        assert detail is not None
        plan = next(s.data for s in detail.timeline if s.kind == "plan")
        blocked = [g["guard"] for g in plan["guard_results"] if not g["passed"]]  # type: ignore[index, union-attr, call-overload]
        assert blocked == ["namespace"]


def test_the_anomaly_brake_holds_when_many_workloads_are_anomalous(loop: Loop) -> None:
    notifier = RecordingNotifier()
    loop.healer.notifier = notifier
    loop.detector.anomalous = {SEARCH: OVERLOAD, **{w: OVERLOAD for w in OTHERS[:3]}}
    loop.run()
    assert loop.actuator.applied == []
    assert set(loop.outcomes()) == {OutcomeKind.ESCALATED}
    [sent] = notifier.sent  # one escalation for the braked cycle, not one per workload
    assert "anomaly_brake" in sent.reason


def test_three_of_five_turning_anomalous_together_is_over_the_default_brake(loop: Loop) -> None:
    loop.detector.anomalous = {SEARCH: OVERLOAD, OTHERS[0]: OVERLOAD, OTHERS[1]: OVERLOAD}
    loop.run()
    assert loop.actuator.applied == []
    loop.detector.anomalous = {}
    loop.run(cycles=8)
    loop.detector.anomalous = {SEARCH: OVERLOAD}  # 20%: acted on
    loop.run()
    assert [p.action for p in loop.actuator.applied] == [ActionKind.SCALE]


def test_two_faults_at_once_are_both_handled(loop: Loop) -> None:
    """40% of five workloads, but two: two incidents to handle, not a mass fault."""
    loop.detector.anomalous = {SEARCH: OVERLOAD, OTHERS[0]: OVERLOAD}
    loop.run()
    assert {p.workload for p in loop.actuator.applied} == {SEARCH, OTHERS[0]}


def test_a_workload_acted_on_counts_toward_its_own_event_only(loop: Loop) -> None:
    """A mass event arriving in waves is held at the wave that makes it one; the
    workloads acted on count for their own event, not for a fault long after."""
    notifier = RecordingNotifier()
    loop.healer.notifier = notifier
    loop.detector.anomalous = {SEARCH: OVERLOAD, OTHERS[0]: OVERLOAD}
    loop.run()
    loop.detector.anomalous |= {OTHERS[1]: OVERLOAD}  # the first two are still verifying
    loop.run()
    assert {p.workload for p in loop.actuator.applied} == {SEARCH, OTHERS[0]}
    [sent] = notifier.sent
    assert "anomaly_brake" in sent.reason


def test_workloads_acted_on_long_before_do_not_hold_a_later_fault(loop: Loop) -> None:
    loop.detector.anomalous = {SEARCH: OVERLOAD, OTHERS[0]: OVERLOAD}
    loop.run()
    loop.run(cycles=31)  # 16 minutes on, both still anomalous and tracked
    loop.detector.anomalous |= {OTHERS[1]: OVERLOAD}
    loop.run()
    assert OTHERS[1] in {p.workload for p in loop.actuator.applied}


def test_the_brake_holds_an_event_once_and_not_a_later_fault(loop: Loop) -> None:
    """A mass event is held with one escalation, its stragglers too; the workloads it
    held stay anomalous, yet a fault that begins long after is acted on."""
    notifier = RecordingNotifier()
    loop.healer.notifier = notifier
    loop.detector.anomalous = {w: OVERLOAD for w in OTHERS[:3]}
    loop.run()
    loop.detector.anomalous[OTHERS[3]] = OVERLOAD  # a straggler of the same event
    loop.run(cycles=2)
    assert loop.actuator.applied == []
    assert len(loop.store.list_incidents()) == 4
    [sent] = notifier.sent
    assert "anomaly_brake" in sent.reason
    loop.run(cycles=40)  # 20 minutes on, the held workloads still anomalous
    loop.detector.anomalous[SEARCH] = OVERLOAD
    loop.run()
    assert [p.workload for p in loop.actuator.applied] == [SEARCH]
    assert len(notifier.sent) == 1


def test_a_chain_step_is_held_by_a_mass_event_that_began_since(tmp_path: Path) -> None:
    settings = load_settings(None, guards={"mode": "auto", "anomaly_brake_window_s": 60})
    for loop in make_loop(tmp_path, settings):
        notifier = RecordingNotifier()
        loop.healer.notifier = notifier
        loop.detector.anomalous = {SEARCH: OVERLOAD}
        loop.run(cycles=10)  # scaled up, not healed yet
        loop.detector.anomalous |= {w: STRANGE for w in OTHERS[:3]}  # a mass event begins
        loop.run(cycles=2)  # past scale-up-on-overload's 300 s: the chain's next step
        assert [p.playbook for p in loop.actuator.applied] == ["scale-up-on-overload"]
        [search] = [i for i in loop.store.list_incidents() if i.workload == SEARCH]
        assert search.outcome == OutcomeKind.ESCALATED
        [sent] = notifier.sent  # the event's one escalation
        assert "anomaly_brake" in sent.reason


def test_a_mass_event_no_playbook_handles_is_escalated_once(loop: Loop) -> None:
    notifier = RecordingNotifier()
    loop.healer.notifier = notifier
    loop.detector.anomalous = {w: STRANGE for w in OTHERS[:3]}
    loop.run(cycles=3)
    assert set(loop.outcomes()) == {OutcomeKind.ESCALATED}
    [sent] = notifier.sent
    assert sent.reason.startswith("escalated: held by anomaly_brake: 3 of 5")


def test_the_first_finding_of_a_mass_event_sees_the_workloads_still_rising(loop: Loop) -> None:
    """A shared cause makes some workloads findings a cycle before the others."""
    notifier = RecordingNotifier()
    loop.healer.notifier = notifier
    loop.detector.anomalous = {SEARCH: OVERLOAD}
    loop.detector.rising = {OTHERS[0], OTHERS[1]}
    loop.run()
    loop.detector.anomalous |= {OTHERS[0]: OVERLOAD, OTHERS[1]: STRANGE}
    loop.run(cycles=2)
    assert loop.actuator.applied == []
    assert len(notifier.sent) == 1


def test_dry_run_mode_changes_nothing_and_escalates(tmp_path: Path) -> None:
    for loop in make_loop(tmp_path, load_settings(None)):  # the default mode is dry_run
        loop.detector.anomalous = {SEARCH: OVERLOAD}
        loop.run()
        [plan] = loop.actuator.applied
        assert plan.mode == Mode.DRY_RUN
        assert loop.outcomes() == [OutcomeKind.ESCALATED]


def test_a_failed_action_is_escalated(loop: Loop) -> None:
    loop.actuator.status = ActionStatus.FAILED
    loop.detector.anomalous = {SEARCH: OVERLOAD}
    loop.run()
    assert loop.outcomes() == [OutcomeKind.ESCALATED]


def test_an_unreachable_cluster_is_retried_then_acted_on(loop: Loop) -> None:
    loop.actuator.unreachable = True
    loop.detector.anomalous = {SEARCH: OVERLOAD}
    loop.run(cycles=2)
    assert loop.actuator.applied == []
    loop.actuator.unreachable = False
    loop.run()
    assert [p.action for p in loop.actuator.applied] == [ActionKind.SCALE]
    assert len(loop.store.list_incidents()) == 1


def test_an_anomaly_that_passes_while_the_cluster_is_unreachable_is_escalated(
    loop: Loop,
) -> None:
    loop.actuator.unreachable = True
    loop.detector.anomalous = {SEARCH: OVERLOAD}
    loop.run()
    loop.detector.anomalous = {}
    loop.run(cycles=6)
    [incident] = loop.store.list_incidents()
    assert incident.outcome == OutcomeKind.ESCALATED
    detail = loop.store.get_incident(incident.id)
    assert detail is not None
    assert "unreachable" in str(detail.timeline[-1].data["evidence"])


def test_every_step_is_reported_in_order(loop: Loop) -> None:
    loop.detector.anomalous = {SEARCH: OVERLOAD}
    loop.run()
    loop.detector.anomalous = {}
    loop.run(cycles=6)
    kinds = ["finding", "diagnosis", "plan", "action", "rollout", "outcome"]
    assert [s.kind for s in loop.steps] == kinds
    assert {s.workload for s in loop.steps} == {SEARCH}
    [incident] = loop.store.list_incidents()
    detail = loop.store.get_incident(incident.id)
    assert detail is not None  # the action's intent and its result are two steps
    assert [s.kind for s in detail.timeline] == [*kinds[:4], "action", *kinds[4:]]
    rollout = detail.timeline[-2]
    assert rollout.data == {"at": rollout.at.isoformat(), "detail": "rollout complete (3/3 ready)"}


def test_a_restarted_daemon_verifies_instead_of_acting_again(tmp_path: Path) -> None:
    settings = load_settings(None, guards={"mode": "auto"})
    for first in make_loop(tmp_path, settings):
        first.detector.anomalous = {SEARCH: OVERLOAD}
        first.run()
        assert len(first.actuator.applied) == 1
    for second in make_loop(tmp_path, settings):  # the same audit store file
        assert second.healer.resume() == 1
        second.now = T0 + timedelta(minutes=1)
        second.detector.anomalous = {SEARCH: OVERLOAD}
        second.run(cycles=3)
        assert second.actuator.applied == []
        second.detector.anomalous = {}
        second.run(cycles=6)
        assert second.outcomes() == [OutcomeKind.HEALED]


def test_a_restarted_daemon_still_holds_the_event_it_held(tmp_path: Path) -> None:
    """The held workloads are held again, at their event's onset: a straggler of the
    event is held too, with no second escalation."""
    settings = load_settings(None, guards={"mode": "auto"})
    for first in make_loop(tmp_path, settings):
        first.healer.notifier = RecordingNotifier()
        first.detector.anomalous = {w: OVERLOAD for w in OTHERS[:3]}
        first.run(cycles=2)
        assert first.actuator.applied == []
    for second in make_loop(tmp_path, settings):  # the same audit store file
        notifier = RecordingNotifier()
        second.healer.notifier = notifier
        assert second.healer.resume() == 3
        second.now = T0 + timedelta(minutes=1)
        second.detector.anomalous = {w: OVERLOAD for w in OTHERS[:3]}
        second.run()
        second.detector.anomalous[SEARCH] = OVERLOAD  # a straggler of the same event
        second.run(cycles=2)
        assert second.actuator.applied == []
        assert len(second.store.list_incidents()) == 4
        assert notifier.sent == []


def test_readiness_says_why_the_loop_is_not_doing_its_job(loop: Loop) -> None:
    assert loop.healer.readiness(loop.now) == ["no cycle with metrics yet"]
    loop.run()
    assert loop.healer.readiness(loop.now) == []
    loop.source.down = True
    loop.run()
    assert loop.healer.readiness(loop.now)[0] == "metrics unavailable: connection refused"
    loop.source.down = False
    loop.run()
    assert loop.healer.readiness(loop.now + timedelta(minutes=5)) == [
        "last cycle with metrics 300s ago (more than 90s)"
    ]


def approval_loop(tmp_path: Path, **guards: object) -> Iterator[Loop]:
    return make_loop(tmp_path, load_settings(None, guards={"mode": "approval", **guards}))


def pending(loop: Loop) -> int:
    loop.detector.anomalous = {SEARCH: OVERLOAD}
    loop.run()
    [action] = loop.store.actions(status=ActionStatus.PENDING_APPROVAL)
    assert [p.mode for p in loop.actuator.applied] == [Mode.APPROVAL]
    return action.id


def test_an_approved_action_is_taken_on_the_next_cycle_through_the_guards(
    tmp_path: Path,
) -> None:
    for loop in approval_loop(tmp_path):
        action_id = pending(loop)
        loop.run(cycles=2)
        assert len(loop.actuator.applied) == 1, "nothing happens until a person approves"
        loop.store.approve_action(action_id, by="olga", reason="go", at=loop.now)
        loop.run()
        taken = loop.actuator.applied[1]
        assert (taken.action, taken.mode) == (ActionKind.SCALE, Mode.AUTO)
        assert {g.guard for g in taken.guard_results} >= {"cooldown", "rate_limit"}
        done = loop.store.get_action(action_id)
        assert done is not None and done.status == ActionStatus.SUCCEEDED
        assert done.reviewed_by == "olga"
        assert loop.store.actions() == [done], "the approved row is completed, not duplicated"
        loop.run(cycles=3)
        assert len(loop.actuator.applied) == 2, "taken once"
        [incident] = loop.store.list_incidents()
        assert incident.status.value == "verifying"


def test_an_unreviewed_action_expires_once_the_workload_settles_on_its_own(
    tmp_path: Path,
) -> None:
    for loop in approval_loop(tmp_path):
        action_id = pending(loop)
        loop.run(cycles=2)
        still = loop.store.get_action(action_id)
        assert still is not None and still.status == ActionStatus.PENDING_APPROVAL
        loop.detector.anomalous = {}
        loop.run(cycles=6)  # quiet for longer than verify_stable_s (120 s)
        expired = loop.store.get_action(action_id)
        assert expired is not None and expired.status == ActionStatus.EXPIRED
        [incident] = loop.store.list_incidents()
        assert incident.status.value == "resolved"
        assert incident.outcome == OutcomeKind.ESCALATED
        with pytest.raises(ReviewConflict, match="expired, not pending_approval"):
            loop.store.approve_action(action_id, by="olga", reason="late", at=loop.now)
        loop.run(cycles=3)
        assert len(loop.actuator.applied) == 1, "the expired action is never taken"


def test_an_action_approved_before_the_workload_settles_does_not_expire(
    tmp_path: Path,
) -> None:
    for loop in approval_loop(tmp_path):
        action_id = pending(loop)
        loop.store.approve_action(action_id, by="olga", reason="go", at=loop.now)
        loop.detector.anomalous = {}
        loop.run(cycles=6)
        taken = loop.store.get_action(action_id)
        assert taken is not None and taken.status != ActionStatus.EXPIRED


def test_an_approved_action_a_guard_now_blocks_is_not_taken(tmp_path: Path) -> None:
    for loop in approval_loop(tmp_path):
        action_id = pending(loop)
        loop.store.approve_action(action_id, by="olga", reason="go", at=loop.now)
        # Meanwhile most workloads turn anomalous: the anomaly brake must hold.
        loop.detector.anomalous = {SEARCH: OVERLOAD, **{w: STRANGE for w in OTHERS}}
        loop.run()
        assert len(loop.actuator.applied) == 1
        blocked = loop.store.get_action(action_id)
        assert blocked is not None and blocked.status == ActionStatus.BLOCKED
        assert blocked.error is not None and "anomaly_brake" in blocked.error
        detail = loop.store.get_incident(blocked.incident_id)
        assert detail is not None and detail.summary.outcome == OutcomeKind.ESCALATED


def test_an_action_approved_during_a_later_mass_event_is_not_taken(tmp_path: Path) -> None:
    for loop in approval_loop(tmp_path, anomaly_brake_window_s=60):
        action_id = pending(loop)
        loop.run(cycles=4)  # two minutes on, still awaiting approval
        loop.detector.anomalous |= {w: STRANGE for w in OTHERS[:3]}  # a mass event begins
        loop.run()
        loop.store.approve_action(action_id, by="olga", reason="go", at=loop.now)
        loop.run()
        assert len(loop.actuator.applied) == 1
        blocked = loop.store.get_action(action_id)
        assert blocked is not None and blocked.status == ActionStatus.BLOCKED
        assert blocked.error is not None and "anomaly_brake" in blocked.error


def test_an_approved_chain_step_is_taken_as_the_chain_planned_it(tmp_path: Path) -> None:
    for loop in approval_loop(tmp_path):
        first = pending(loop)
        loop.store.approve_action(first, by="olga", reason="go", at=loop.now)
        loop.run(cycles=12)  # taken, then not healed past its 300 s: the chain asks again
        [second] = loop.store.actions(status=ActionStatus.PENDING_APPROVAL)
        loop.store.approve_action(second.id, by="olga", reason="again", at=loop.now)
        loop.run()
        assert [(p.playbook, p.mode) for p in loop.actuator.applied] == [
            ("scale-up-on-overload", Mode.APPROVAL),
            ("scale-up-on-overload", Mode.AUTO),
            ("scale-up-again", Mode.APPROVAL),
            ("scale-up-again", Mode.AUTO),
        ]
        done = loop.store.get_action(second.id)
        assert done is not None and done.status == ActionStatus.SUCCEEDED, done


def test_an_approved_action_whose_taking_crashes_is_blocked_for_good(tmp_path: Path) -> None:
    for loop in approval_loop(tmp_path):
        action_id = pending(loop)
        loop.store.approve_action(action_id, by="olga", reason="go", at=loop.now)
        loop.actuator.odd = True
        loop.run()
        blocked = loop.store.get_action(action_id)
        assert blocked is not None and blocked.status == ActionStatus.BLOCKED
        assert blocked.error is not None and blocked.error.startswith("internal error: KeyError")
        assert loop.outcomes() == [OutcomeKind.ESCALATED]
        assert loop.healer.vitals.incident_errors == 1
        loop.actuator.odd = False
        loop.run(cycles=3)
        assert len(loop.actuator.applied) == 1, "never taken after the crash"
        assert loop.store.approved_actions() == []


def test_a_rejected_action_is_never_taken(tmp_path: Path) -> None:
    for loop in approval_loop(tmp_path):
        action_id = pending(loop)
        loop.store.reject_action(action_id, by="olga", reason="peak hour", at=loop.now)
        loop.run(cycles=3)
        assert len(loop.actuator.applied) == 1
        assert loop.outcomes() == [OutcomeKind.ESCALATED]


def test_status_counts_findings_and_times_cycles(loop: Loop) -> None:
    loop.detector.anomalous = {SEARCH: STRANGE}
    loop.run(cycles=3)
    status = loop.healer.status()
    assert (status["cycles"], status["findings"]) == (3, 3)
    assert isinstance(status["cycle_seconds_sum"], float) and status["cycle_seconds_sum"] > 0


def test_operator_feedback_on_recorded_diagnoses_retrains_the_diagnoser(tmp_path: Path) -> None:
    """The daemon keeps each diagnosis's feature row; an operator's confirmed cause on
    those incidents becomes training data that overrides what the rules would say."""
    from healer.audit.store import FeedbackInput
    from healer.diagnose.features import FEATURES
    from healer.diagnose.learned import Example, LearnedDiagnoser, diagnoser
    from healer.groundtruth import examples_from_store
    from healer.types import Verdict

    settings = load_settings(None, guards={"mode": "dry_run"})
    examples: list[Example] = []
    for i in range(6):
        (tmp_path / f"run{i}").mkdir()
        for loop in make_loop(tmp_path / f"run{i}", settings):
            loop.detector.anomalous = {SEARCH: OVERLOAD}
            loop.run(cycles=2)
            (incident,) = loop.store.list_incidents()
            assert incident.cause is Cause.OVERLOAD  # what the rules said at the time
            label = FeedbackInput(Verdict.TRUE_POSITIVE, Cause.CPU_HOG, None, "ann", loop.now)
            loop.store.record_feedback(incident.id, label)
            examples += examples_from_store(loop.store)
    assert [(e.cause, e.source) for e in examples] == [(Cause.CPU_HOG, "feedback:1")] * 6
    latency = FEATURES.index(f"deviation_{Signal.LATENCY_P99.value}")
    assert examples[0].row[latency] == 40.0  # the row kept at diagnosis, not a default

    strange = np.zeros(len(FEATURES))
    strange[FEATURES.index(f"deviation_{Signal.READY_RATIO.value}")] = -10.0
    unknown = [Example(strange, Cause.UNKNOWN, "sim:test") for _ in range(6)]
    model = LearnedDiagnoser().fit([*unknown, *examples])
    (tmp_path / "retrained").mkdir()
    for loop in make_loop(tmp_path / "retrained", settings):
        loop.healer.diagnose = diagnoser(model)
        loop.detector.anomalous = {SEARCH: OVERLOAD}
        loop.run(cycles=2)
        assert [i.cause for i in loop.store.list_incidents()] == [Cause.CPU_HOG]


def test_a_store_without_feature_rows_gives_no_feedback_examples(loop: Loop) -> None:
    from healer.audit.store import FeedbackInput
    from healer.groundtruth import examples_from_store
    from healer.types import Verdict

    loop.detector.anomalous = {SEARCH: OVERLOAD}
    loop.run(cycles=2)
    (incident,) = loop.store.list_incidents()
    diagnosis = Diagnosis(SEARCH, Cause.OVERLOAD, 0.9, "recorded before rows were kept")
    loop.store.record_diagnosis(incident.id, diagnosis, at=loop.now)
    label = FeedbackInput(Verdict.TRUE_POSITIVE, Cause.CPU_HOG, None, "ann", loop.now)
    loop.store.record_feedback(incident.id, label)
    assert examples_from_store(loop.store) == []


# ---- the per-pod view ----------------------------------------------------------------

LATENCY_UP = (SignalDeviation(Signal.LATENCY_P99, 0.2, 0.08, 30.0, Direction.UP),)


class PodsOfSearch(FakeSource):
    """A source with the per-pod view: search's pod search-b is five times slower."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[set[WorkloadRef]] = []
        self.broken = False
        self.buggy = False

    def fetch_pods(self, *, until: datetime, workloads: Collection[WorkloadRef]) -> PodFrame:
        self.asked.append(set(workloads))
        if self.broken:
            raise PrometheusUnavailable("pods: connection refused")
        if self.buggy:
            raise KeyError("pod")
        names = ("search-a", "search-b", "search-c")
        values = np.tile([0.5, 0.4, 0.0, 0.002, 0.08], (3, 1))
        values[1, POD_SIGNALS.index(Signal.LATENCY_P99)] = 0.4
        return PodFrame(
            until.timestamp(),
            (SEARCH,),
            np.zeros(3, dtype=np.int64),
            names,
            np.ones(3, dtype=bool),
            POD_SIGNALS,
            values,
            np.zeros(3),
        )


class PodsActuator(FakeActuator):
    def read_state(self, workload: WorkloadRef) -> WorkloadState:
        base = super().read_state(workload)
        pods = tuple(PodState(f"search-{c}", True, 0, T0 - timedelta(days=1)) for c in "abc")
        return replace(base, pods=pods)


def pod_loop(tmp_path: Path) -> Iterator[Loop]:
    for loop in make_loop(tmp_path, load_settings(None, guards={"mode": "auto"})):
        source, actuator = PodsOfSearch(), PodsActuator()
        loop.healer.source = loop.source = source
        loop.healer.pods = source
        loop.healer.actuator = loop.actuator = actuator
        yield loop


def test_one_slow_pod_is_evicted_by_name_and_only_diagnosed_workloads_are_read(
    tmp_path: Path,
) -> None:
    for loop in pod_loop(tmp_path):
        assert isinstance(loop.source, PodsOfSearch)
        loop.run()
        assert loop.source.asked == []  # nothing anomalous, nothing read
        loop.detector.anomalous = {SEARCH: LATENCY_UP}
        loop.run(cycles=3)
        assert loop.source.asked == [{SEARCH}]  # diagnosed once, then watched
        [plan] = loop.actuator.applied
        assert (plan.action, plan.params, plan.playbook) == (
            ActionKind.EVICT,
            {"pod": "search-b"},
            "evict-outlier-pod",
        )
        [incident] = loop.store.list_incidents()
        assert incident.cause == Cause.POD_OUTLIER


def test_pods_that_cannot_be_read_leave_the_diagnosis_to_the_workload(tmp_path: Path) -> None:
    for loop in pod_loop(tmp_path):
        assert isinstance(loop.source, PodsOfSearch)
        loop.source.broken = True
        loop.detector.anomalous = {SEARCH: LATENCY_UP}
        loop.run()
        [incident] = loop.store.list_incidents()
        assert incident.cause == Cause.UNKNOWN
        assert loop.actuator.applied == []


def test_a_bug_in_the_pod_view_costs_the_cycle_nothing_but_the_view(tmp_path: Path) -> None:
    for loop in pod_loop(tmp_path):
        assert isinstance(loop.source, PodsOfSearch)
        loop.source.buggy = True
        loop.detector.anomalous = {SEARCH: LATENCY_UP}
        loop.run()
        [incident] = loop.store.list_incidents()
        assert incident.cause == Cause.UNKNOWN  # diagnosed from the workload's signals
        assert loop.healer.vitals.incident_errors == 1
        assert loop.healer.vitals.cycle_failures == 0


def test_a_workload_people_silenced_healer_on_is_skipped_with_the_reason(loop: Loop) -> None:
    notifier = RecordingNotifier()
    loop.healer.notifier = notifier
    until = T0 + timedelta(hours=1)
    loop.store.opt_out(SEARCH, by="olga", reason="load test", at=T0, until=until)
    loop.detector.anomalous = {SEARCH: OVERLOAD}
    loop.run(cycles=3)
    assert loop.actuator.applied == [], "healer kept its hands off"
    assert notifier.sent == [], "the person who silenced it needs no page"
    [incident] = loop.store.list_incidents()
    detail = loop.store.get_incident(incident.id)
    assert detail is not None and incident.outcome == OutcomeKind.ESCALATED
    plan = next(s.data for s in detail.timeline if s.kind == "plan")
    [blocked] = [g for g in plan["guard_results"] if not g["passed"]]  # type: ignore[union-attr]
    assert blocked["guard"] == "opt_out"  # type: ignore[index, call-overload]
    assert "silenced on shop/search by olga" in blocked["detail"]  # type: ignore[index, call-overload, operator]
    assert "load test" in blocked["detail"]  # type: ignore[index, call-overload, operator]

    loop.detector.anomalous = {}
    loop.run(cycles=8)
    loop.now = until  # the opt-out is over: the next fault is healed again
    loop.detector.anomalous = {SEARCH: OVERLOAD}
    loop.run()
    assert [p.action for p in loop.actuator.applied] == [ActionKind.SCALE]


@dataclass
class ForgeActuator(FakeActuator):
    """An actuator whose forge says, on a given cycle, that the pull request was merged:
    it approves the pending action in the store, as ``GitOpsActuator.watch_merges``."""

    store: AuditStore | None = None
    merged_at_call: int = 2
    calls: int = 0

    def watch_merges(self, now: datetime) -> int:
        self.calls += 1
        if self.store is None or self.calls != self.merged_at_call:
            return 0
        [action] = self.store.actions(status=ActionStatus.PENDING_APPROVAL)
        self.store.approve_action(action.id, by="forge", reason="merged", at=now)
        return 1


def test_an_approval_given_in_the_forge_is_taken_in_the_same_cycle(tmp_path: Path) -> None:
    for loop in approval_loop(tmp_path):
        forge = ForgeActuator(store=loop.store)
        loop.healer.actuator = forge
        loop.actuator = forge
        action_id = pending(loop)
        loop.run()  # the forge reports the merge: approved, then taken at once
        assert forge.calls == 2
        assert [p.mode for p in forge.applied] == [Mode.APPROVAL, Mode.AUTO]
        done = loop.store.get_action(action_id)
        assert done is not None and done.status == ActionStatus.SUCCEEDED
        assert done.reviewed_by == "forge"
