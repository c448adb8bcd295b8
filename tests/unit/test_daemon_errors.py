"""Nothing one workload brings stops the loop: a bug while handling one incident escalates
that incident and the cycle goes on; a failing cycle is counted and the next one runs;
escalations leave the cycle through a bounded queue, so a hanging webhook holds nothing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from structlog.testing import capture_logs
from test_daemon import OTHERS, OVERLOAD, SEARCH, Loop, RecordingNotifier, make_loop
from test_run_forever import T0, VirtualStop

from healer.api import create_app
from healer.config import load_settings
from healer.daemon import cycle_once, run_forever
from healer.decide.escalation import Escalation, EscalationQueue
from healer.errors import StoreError
from healer.lifecycle import verification
from healer.lifecycle.stages import Verifying, Watching
from healer.types import ActionRecord, ActionStatus, OutcomeKind, Plan


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[Loop]:
    # No brake: two anomalous workloads of five are both acted on.
    settings = load_settings(None, guards={"mode": "auto", "anomaly_brake_share": 0.9})
    yield from make_loop(tmp_path, settings)


@dataclass
class BuggyActuator:
    """Applies like the fake, but raises a bug's exception for one workload."""

    inner: object
    broken: object
    applied: list[Plan] = field(default_factory=list)

    def read_state(self, workload: object) -> object:
        return self.inner.read_state(workload)  # type: ignore[attr-defined]  # the fake

    def apply(self, plan: Plan, *, now: datetime) -> ActionRecord:
        if plan.workload == self.broken:
            raise KeyError("pod")
        self.applied.append(plan)
        return self.inner.apply(plan, now=now)  # type: ignore[attr-defined, no-any-return]

    def already_applied(self, intent: ActionRecord) -> bool:
        raise IndexError("list index out of range")


def test_a_bug_while_acting_escalates_that_incident_and_the_cycle_goes_on(loop: Loop) -> None:
    notifier = RecordingNotifier()
    loop.healer.notifier = notifier
    loop.healer.actuator = BuggyActuator(loop.actuator, SEARCH)  # type: ignore[assignment]
    loop.detector.anomalous = {SEARCH: OVERLOAD, OTHERS[0]: OVERLOAD}

    with capture_logs() as logs:
        loop.run()

    by_workload = {i.workload: i for i in loop.store.list_incidents()}
    assert by_workload[SEARCH].outcome == OutcomeKind.ESCALATED
    assert by_workload[OTHERS[0]].outcome is None  # acted on, being verified
    assert [p.workload for p in loop.actuator.applied] == [OTHERS[0]]
    detail = loop.store.get_incident(by_workload[SEARCH].id)
    assert detail is not None
    action = detail.actions[-1]
    assert action.status == ActionStatus.FAILED and "KeyError" in str(action.error)
    evidence = str(detail.timeline[-1].data["evidence"])
    assert evidence == "internal error while handling the incident: KeyError: 'pod'"
    [sent] = notifier.sent
    assert sent.workload == SEARCH and "KeyError" in sent.reason
    assert loop.healer.vitals.incident_errors == 1
    crashed = [e for e in logs if e["event"] == "workload_step_crashed"]
    assert len(crashed) == 1 and crashed[0]["exc_info"] is True
    loop.run(cycles=3)  # the next cycles run; the escalated incident is not acted on again
    assert loop.healer.vitals.cycles == 4
    assert [p.workload for p in loop.actuator.applied] == [OTHERS[0]]


def test_a_restart_after_the_bug_has_nothing_to_reconcile(tmp_path: Path) -> None:
    settings = load_settings(None, guards={"mode": "auto"})
    for loop in make_loop(tmp_path, settings):
        loop.healer.actuator = BuggyActuator(loop.actuator, SEARCH)  # type: ignore[assignment]
        loop.detector.anomalous = {SEARCH: OVERLOAD}
        loop.run()
        loop.healer.tracked.clear()

        assert loop.healer.resume() == 0  # the incident is resolved: escalated


def test_an_intent_that_cannot_be_reconciled_is_escalated_not_fatal(loop: Loop) -> None:
    """An intent left by a run that died mid-action, which ``already_applied`` cannot
    read back (the delete_pod case): escalated at the first cycle, then left alone."""
    loop.detector.anomalous = {SEARCH: OVERLOAD}
    loop.run()
    [incident] = loop.store.list_incidents()
    plan = loop.actuator.applied[0]
    intent = ActionRecord(plan.action, SEARCH, {}, ActionStatus.INTENDED, loop.now, loop.now)
    loop.store.record_action(incident.id, intent)  # as if the run stopped after its intent
    loop.healer.tracked.clear()
    loop.healer.actuator = BuggyActuator(loop.actuator, None)  # type: ignore[assignment]

    assert loop.healer.resume() == 1
    loop.run(cycles=2)

    assert loop.outcomes() == [OutcomeKind.ESCALATED]
    assert loop.healer.vitals.incident_errors == 1
    loop.healer.tracked.clear()
    assert loop.healer.resume() == 0  # resolved: the next start does not meet it again


class BrokenStore:
    """Stands in for the store's first read of a cycle: the database restarted."""

    def approved_actions(self) -> list[object]:
        raise StoreError("connection to server lost")


def test_a_failing_cycle_is_counted_on_metrics_and_the_next_one_runs(loop: Loop) -> None:
    store = loop.healer.store
    loop.healer.store = BrokenStore()  # type: ignore[assignment]
    assert cycle_once(loop.healer, T0) is False
    loop.healer.store = store
    assert cycle_once(loop.healer, T0) is True

    with TestClient(create_app(store=store, status=loop.healer.status)) as client:
        text = client.get("/metrics").text
    assert "healer_cycle_failures_total 1.0" in text
    assert "healer_incident_errors_total 0.0" in text


def test_a_bug_out_of_a_cycle_never_ends_run_forever(loop: Loop) -> None:
    clock = [T0]
    stop = VirtualStop(clock, after=3)
    loop.healer.detector = None  # type: ignore[assignment]  # every cycle: AttributeError

    with capture_logs() as logs:
        run_forever(loop.healer, interval_s=30, stop=stop, now=lambda: clock[0])

    assert loop.healer.vitals.cycle_failures == 3
    assert [e["event"] for e in logs].count("cycle_crashed") == 3


def test_a_take_over_that_fails_is_retried_not_fatal(loop: Loop) -> None:
    clock = [T0]
    stop = VirtualStop(clock, after=4)
    calls: list[datetime] = []

    class Leads:
        def leading_term(self, now: datetime) -> int | None:
            return 1

    def on_lead() -> None:
        calls.append(clock[0])
        if len(calls) == 1:
            raise StoreError("connection refused")

    run_forever(
        loop.healer,
        interval_s=30,
        stop=stop,
        now=lambda: clock[0],
        leadership=Leads(),
        on_lead=on_lead,
        poll_s=1.0,
    )
    assert len(calls) == 2 and loop.healer.vitals.cycle_failures == 1
    assert loop.healer.vitals.cycles >= 1


def test_once_ends_after_a_failed_take_over(loop: Loop) -> None:
    clock = [T0]
    stop = VirtualStop(clock, after=100)

    class Leads:
        def leading_term(self, now: datetime) -> int | None:
            return 1

    def on_lead() -> None:
        raise StoreError("connection refused")

    run_forever(
        loop.healer,
        interval_s=30,
        stop=stop,
        now=lambda: clock[0],
        cycles=1,
        leadership=Leads(),
        on_lead=on_lead,
    )
    assert loop.healer.vitals.cycle_failures == 1 and loop.healer.vitals.cycles == 0


@dataclass
class HangingNotifier:
    """A receiver that does not answer until released."""

    entered: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    delivered: list[Escalation] = field(default_factory=list)

    def notify(self, escalation: Escalation) -> list[str]:
        self.entered.set()
        assert self.release.wait(30), "the test never released the receiver"
        self.delivered.append(escalation)
        return []


def test_a_hanging_webhook_never_holds_the_cycle_and_overflow_is_counted(loop: Loop) -> None:
    hanging = HangingNotifier()
    queue = EscalationQueue(hanging, capacity=1)
    loop.healer.notifier = queue
    loop.healer.actuator.status = ActionStatus.FAILED  # type: ignore[union-attr]  # the fake
    loop.detector.anomalous = {SEARCH: OVERLOAD}
    loop.run()  # escalated; delivery starts in the background and hangs
    assert hanging.entered.wait(30)
    loop.detector.anomalous = {SEARCH: OVERLOAD, OTHERS[0]: OVERLOAD, OTHERS[1]: OVERLOAD}

    with capture_logs() as logs:
        loop.run()  # two more escalations while the first hangs: one queued, one dropped

    assert loop.outcomes().count(OutcomeKind.ESCALATED) == 3
    assert queue.dropped == 1
    assert [e["event"] for e in logs].count("escalation_dropped") == 1
    with TestClient(create_app(store=loop.store, status=loop.healer.status)) as client:
        assert "healer_escalations_dropped_total 1.0" in client.get("/metrics").text
    hanging.release.set()
    queue.close()
    assert len(hanging.delivered) == 2


def test_a_bug_after_the_outcome_never_overwrites_it(
    loop: Loop, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop.detector.anomalous = {SEARCH: OVERLOAD}
    loop.run()
    loop.detector.anomalous = {}
    loop.run(cycles=5)
    assert loop.outcomes() == [OutcomeKind.HEALED]  # healed, still watched until quiet

    def broken(*args: object) -> bool:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(verification, "at_baseline", broken)  # a bug in verifying
    watching = loop.healer.tracked[SEARCH]
    assert isinstance(watching, Watching) and watching.plan is not None
    loop.healer.tracked[SEARCH] = Verifying(  # as if the action were still being verified
        watching.incident_id, SEARCH, watching.plan, loop.now, watching.story
    )
    loop.run()

    assert loop.healer.vitals.incident_errors == 1
    assert loop.outcomes() == [OutcomeKind.HEALED]
