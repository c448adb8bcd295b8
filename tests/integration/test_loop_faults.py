"""The loop over the simulated cluster keeps running through what would have stopped it:
the audit store restarting under the demo's loop, a playbook of ``kind: delete_pod`` (once
a crash of the daemon: no step chose the pod), and an earlier run's intent that no read
of the cluster can settle."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from healer.audit.store import AuditStore
from healer.config import Settings, load_settings
from healer.decide import load_playbooks
from healer.errors import StoreError
from healer.harness import SimHarness
from healer.sim.scenario import load_scenario
from healer.types import ActionKind, ActionRecord, ActionStatus, Cause, OutcomeKind

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

DELETE_POD = """\
name: delete-leaking-pod
description: Delete the leaking pod; its ReplicaSet starts a fresh one.
match:
  causes: [memory_leak]
  min_confidence: 0.5
action:
  kind: delete_pod
mode: auto
verify:
  within_s: 600
  signals: [memory]
on_failure: escalate
"""


def failing_for(calls: int, method: Callable[[], list[object]]) -> Callable[[], list[object]]:
    """``method``, raising StoreError for its first ``calls`` calls (a database restart)."""
    left = [calls]

    def flaky() -> list[object]:
        if left[0] > 0:
            left[0] -= 1
            raise StoreError("connection to server lost")
        return method()

    return flaky


def test_the_demo_loop_survives_an_audit_store_restart(tmp_path: Path) -> None:
    settings = load_settings(None, guards={"mode": "auto"}, playbooks_dir=str(REPO / "playbooks"))
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    harness = SimHarness.start(
        load_scenario("memory-leak"), settings=settings, store=store, workdir=tmp_path
    )
    store.approved_actions = failing_for(3, store.approved_actions)  # type: ignore[method-assign]
    try:
        with capture_logs() as logs:
            harness.run_for(10 * settings.daemon.interval_s)
    finally:
        harness.close()
        store.close()
    assert harness.healer.vitals.cycle_failures == 3
    assert harness.cluster.elapsed_s >= 10 * settings.daemon.interval_s  # ran to the end
    assert harness.healer.vitals.last_cycle == harness.cluster.clock.now()  # the last cycle ran
    assert [e["event"] for e in logs].count("cycle_failed") == 3


def delete_pod_settings(tmp_path: Path) -> Settings:
    books = tmp_path / "playbooks"
    books.mkdir()
    (books / "delete-pod.yaml").write_text(DELETE_POD)
    assert [b.action.kind for b in load_playbooks(books)] == [ActionKind.EVICT]
    return load_settings(None, guards={"mode": "auto"}, playbooks_dir=str(books))


def test_a_delete_pod_playbook_evicts_and_a_restart_does_not_fail(tmp_path: Path) -> None:
    settings = delete_pod_settings(tmp_path)
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    scenario = load_scenario("memory-leak")
    store = AuditStore(url)
    harness = SimHarness.start(scenario, settings=settings, store=store, workdir=tmp_path)
    try:
        harness.run_for(2.5 * 3600)  # the leak begins at 30 min; found well before 2.5 h
    finally:
        harness.close()

    assert harness.healer.vitals.incident_errors == 0
    assert harness.cluster.elapsed_s >= 2.5 * 3600  # the loop ran to the end
    leaks = [i for i in store.list_incidents(limit=100) if i.cause == Cause.MEMORY_LEAK]
    assert leaks, "the leak was found and diagnosed"
    detail = store.get_incident(leaks[0].id)
    assert detail is not None and detail.summary.outcome is not None
    [action] = detail.actions
    # delete_pod reads as evict: one chosen pod, through the Eviction API.
    assert action.kind is ActionKind.EVICT and action.status is ActionStatus.SUCCEEDED
    assert str(action.request["path"]).endswith("/eviction")

    # A store left by a run that died between intent and request, with an intent whose
    # parameters do not fit its kind (an older schema): nothing can tell whether it
    # landed. The next start escalates that incident, says why, and goes on cycling.
    old = store.incident(leaks[0].id)
    assert old.diagnosis is not None and old.plan is not None
    iid = store.open_incident(old.finding)
    store.record_diagnosis(iid, old.diagnosis, at=old.finding.at)
    store.record_plan(iid, old.plan, at=old.finding.at)
    intent = {"action": "delete_pod", "params": {"pod": ["orders-0", "orders-1"]}}
    store.record_action(
        iid,
        ActionRecord(
            ActionKind.EVICT,
            old.workload,
            intent,
            ActionStatus.INTENDED,
            old.finding.at,
            old.finding.at,
        ),
    )
    again = SimHarness.start(scenario, settings=settings, store=store, workdir=tmp_path)
    try:
        again.run_for(3 * settings.daemon.interval_s)
    finally:
        again.close()
    assert again.healer.vitals.cycles == 3
    reopened = store.get_incident(iid)
    store.close()
    assert reopened is not None and reopened.summary.outcome is OutcomeKind.ESCALATED
    [outcome] = [s.data for s in reopened.timeline if s.kind == "outcome"]
    assert "cannot tell whether the evict of an earlier run landed" in str(outcome["evidence"])


def store_outcome(url: str, incident_id: int) -> OutcomeKind | None:
    store = AuditStore(url)
    try:
        outcome = store.incident(incident_id).outcome
        return outcome.kind if outcome is not None else None
    finally:
        store.close()
