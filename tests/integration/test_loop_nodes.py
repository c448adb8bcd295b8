"""The loop heals bad nodes, in virtual time, through the official client over HTTP.

A NotReady node is cordoned and drained, its workloads serve on the other nodes, and it
is uncordoned once healthy for ``nodes.uncordon_after_s``; a node under memory pressure
is cordoned, then drained as its pods keep failing; when two nodes go bad and the cap
allows one, the second is escalated and never cordoned; a drain a PodDisruptionBudget
blocks waits within its deadline and is escalated, with nothing but Evictions sent; a
person's maintenance drain is left alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from healer.audit.store import AuditStore
from healer.config import load_settings
from healer.daemon import Step
from healer.decide.paging import Escalation
from healer.harness import SimHarness
from healer.sim.scenario import Event, Scenario, load_scenario
from healer.types import ActionKind, ActionStatus, Cause, OutcomeKind, node_ref

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


class Pager:
    def __init__(self) -> None:
        self.escalations: list[Escalation] = []

    def notify(self, escalation: Escalation) -> list[str]:
        self.escalations.append(escalation)
        return ["test"]


@dataclass
class Run:
    harness: SimHarness
    store: AuditStore
    steps: list[Step]
    pager: Pager

    @property
    def start(self) -> datetime:
        return self.harness.cluster.scenario.start

    def node_actions(self) -> list[tuple[ActionKind, str, ActionStatus]]:
        found = []
        for summary in self.store.list_incidents(limit=100):
            detail = self.store.get_incident(summary.id)
            assert detail is not None
            found += [
                (a.kind, a.workload.name, a.status)
                for a in detail.actions
                if a.workload.kind == "Node"
            ]
        return found

    def node(self, name: str) -> dict[str, Any]:
        return self.harness.cluster.get_object("nodes", "", name)

    def pods_on(self, name: str) -> list[dict[str, Any]]:
        pods = self.harness.cluster.list_objects("pods", None)
        return [p for p in pods if p["spec"].get("nodeName") == name]


def start(scenario: Scenario, folder: Path, **nodes: Any) -> Run:
    settings = load_settings(
        None, guards={"mode": "auto"}, playbooks_dir=str(REPO / "playbooks"), nodes=nodes
    )
    store = AuditStore(f"sqlite:///{folder / 'audit.db'}")
    steps: list[Step] = []
    harness = SimHarness.start(
        scenario, settings=settings, store=store, workdir=folder, report=steps.append
    )
    pager = Pager()
    harness.healer.notifier = pager
    return Run(harness, store, steps, pager)


@pytest.fixture
def finish() -> Iterator[list[Run]]:
    runs: list[Run] = []
    yield runs
    for run in runs:
        run.harness.close()
        run.store.close()


def test_a_notready_node_is_cordoned_drained_and_uncordoned_once_healthy(
    tmp_path: Path, finish: list[Run]
) -> None:
    run = start(load_scenario("node-notready"), tmp_path, uncordon_after_s=600)
    finish.append(run)
    run.harness.run_for(1800 + 900)  # the kubelet stops at 1800 s

    actions = run.node_actions()
    assert actions[0] == (ActionKind.CORDON, "node-01", ActionStatus.SUCCEEDED)
    assert {a for a, _, _ in actions[1:]} == {ActionKind.DRAIN}
    assert all(s is ActionStatus.SUCCEEDED for _, _, s in actions)
    assert run.node("node-01")["spec"]["unschedulable"] is True
    assert run.pods_on("node-01") == []  # the workloads run on the other nodes, all Ready
    for workload in ("checkout", "search", "cart"):
        pods = run.harness.cluster.list_objects("pods", "shop", f"app={workload}")
        assert len(pods) == 4
        assert all(
            c["status"] == "True"
            for p in pods
            for c in p["status"]["conditions"]
            if c["type"] == "Ready"
        )
    [node_incident] = [
        s for s in run.store.list_incidents(limit=50) if s.workload == node_ref("node-01")
    ]
    assert node_incident.cause == Cause.NODE_NOT_READY and node_incident.outcome is None
    cordoned = next(s.at for s in run.steps if s.text == "cordon succeeded")
    assert cordoned - (run.start + timedelta(seconds=1800)) < timedelta(minutes=3)
    assert all(s.workload.kind == "Node" for s in run.steps if s.kind == "action")
    assert run.pager.escalations == []  # the workloads it hurt page nobody

    run.harness.run_for(9000 - 2700 + 900)  # the kubelet is back at 9000 s
    uncordon = [a for a in run.node_actions() if a[0] is ActionKind.UNCORDON]
    assert uncordon == [(ActionKind.UNCORDON, "node-01", ActionStatus.SUCCEEDED)]
    assert not run.node("node-01")["spec"].get("unschedulable")
    when = next(s.at for s in run.steps if s.text == "uncordon succeeded")
    back = run.start + timedelta(seconds=9000)
    assert timedelta(seconds=600) <= when - back < timedelta(seconds=600 + 120)
    [healed] = [s for s in run.store.list_incidents(limit=50) if s.workload == node_ref("node-01")]
    assert healed.outcome == OutcomeKind.HEALED


def test_a_node_under_memory_pressure_is_cordoned_then_drained_as_its_pods_keep_failing(
    tmp_path: Path, finish: list[Run]
) -> None:
    run = start(load_scenario("node-memory-pressure"), tmp_path, drain_after_s=120)
    finish.append(run)
    run.harness.run_for(1800 + 900)

    actions = run.node_actions()
    assert actions[0] == (ActionKind.CORDON, "node-02", ActionStatus.SUCCEEDED)
    assert ActionKind.DRAIN in {a for a, _, _ in actions}
    cordon = next(s.at for s in run.steps if s.text == "cordon succeeded")
    drain = next(s.at for s in run.steps if s.text.startswith("drain succeeded"))
    assert drain - cordon >= timedelta(seconds=120)
    assert [p for p in run.pods_on("node-02") if not p["metadata"].get("deletionTimestamp")] == []
    [incident] = [
        s for s in run.store.list_incidents(limit=50) if s.workload == node_ref("node-02")
    ]
    assert incident.cause == Cause.NODE_PRESSURE
    assert run.pager.escalations == []


def two_bad_nodes() -> Scenario:
    scenario = load_scenario("node-notready")
    second = Event(
        at_s=1800,
        kind="node_notready",
        node="node-02",
        unreachable=True,
        duration_s=7200,
        expect="drain",
    )
    return scenario.model_copy(update={"events": [*scenario.events, second]})


def test_two_bad_nodes_when_the_cap_allows_one_the_second_is_escalated(
    tmp_path: Path, finish: list[Run]
) -> None:
    run = start(two_bad_nodes(), tmp_path, min_healthy_share=0.6)
    finish.append(run)
    run.harness.run_for(1800 + 900)

    cordons = [(a, n) for a, n, _ in run.node_actions() if a is ActionKind.CORDON]
    assert cordons == [(ActionKind.CORDON, "node-01")]
    assert not run.node("node-02")["spec"].get("unschedulable")
    [escalation] = [e for e in run.pager.escalations if e.workload.kind == "Node"]
    assert escalation.workload == node_ref("node-02")
    assert (
        "would leave 2 of 4 nodes schedulable (50%), under nodes.min_healthy_share 60%"
        in escalation.reason
    )
    schedulable = [
        n
        for n in run.harness.cluster.list_objects("nodes", None)
        if not n["spec"].get("unschedulable")
    ]
    assert len(schedulable) / 4 >= 0.6


def test_a_drain_a_budget_blocks_waits_within_its_deadline_then_escalates(
    tmp_path: Path, finish: list[Run]
) -> None:
    run = start(load_scenario("node-notready"), tmp_path, drain_within_s=120)
    finish.append(run)
    budget = {
        "metadata": {"name": "cart"},
        "spec": {"selector": {"matchLabels": {"app": "cart"}}, "maxUnavailable": 0},
    }
    run.harness.cluster.create_object("poddisruptionbudgets", "shop", budget, dry_run=False)
    [blocked] = [
        p["metadata"]["name"]
        for p in run.pods_on("node-01")
        if p["metadata"]["name"].startswith("cart-")
    ]
    run.harness.run_for(1800 + 330)  # before Kubernetes' own eviction, 300 s after the taint

    [escalation] = [e for e in run.pager.escalations if e.workload.kind == "Node"]
    assert "did not finish within 120s" in escalation.reason
    assert f"shop/{blocked}" in escalation.reason and "never deletes" in escalation.reason
    drains = [(a, s) for a, _, s in run.node_actions() if a is ActionKind.DRAIN]
    assert (ActionKind.DRAIN, ActionStatus.FAILED) in drains
    [summary] = [s for s in run.store.list_incidents(limit=50) if s.workload == node_ref("node-01")]
    detail = run.store.get_incident(summary.id)
    assert detail is not None
    assert {(a.request["verb"], a.kind) for a in detail.actions} <= {
        ("PATCH", ActionKind.CORDON),
        ("POST", ActionKind.DRAIN),
    }
    failed = [a for a in detail.actions if a.status is ActionStatus.FAILED]
    assert len(failed) == 1 and (failed[0].error or "").startswith("429")
    assert failed[0].request["path"] == f"/api/v1/namespaces/shop/pods/{blocked}/eviction"
    pod = run.harness.cluster.get_object("pods", "shop", blocked)  # still there: not deleted
    assert pod["metadata"].get("deletionTimestamp") is None
    assert summary.outcome == OutcomeKind.ESCALATED


def test_a_persons_maintenance_drain_gets_no_action(tmp_path: Path, finish: list[Run]) -> None:
    run = start(load_scenario("node-maintenance"), tmp_path)
    finish.append(run)
    run.harness.run_for(1800 + 3600 + 1800)

    assert run.node_actions() == []
    assert [s for s in run.store.list_incidents(limit=50) if s.workload.kind == "Node"] == []
    assert [s for s in run.steps if s.kind == "action"] == []
