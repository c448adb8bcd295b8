"""The node watch in the cycle: wired when the source reads nodes and the actuator
lists their pods, resumed from the store, and never a reason for the cycle to stop."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from healer.audit.store import AuditStore
from healer.config import Settings, load_settings
from healer.daemon import Healer
from healer.decide import load_playbooks
from healer.errors import PrometheusUnavailable
from healer.types import ActionKind, Cause, NodePod, NodeState, OutcomeKind, Plan, node_ref
from tests.unit.test_daemon import (
    REPO,
    SEARCH,
    STRANGE,
    T0,
    FakeActuator,
    FakeSource,
    ScriptedDetector,
)

POD = NodePod("shop", "search-1", "ReplicaSet/search-7f", True)
OTHER = NodePod("shop", "search-2", "ReplicaSet/search-7f", True)


class NodeSource(FakeSource):
    def __init__(self) -> None:
        super().__init__()
        self.bad = False
        self.nodes_down = False
        self.odd = False

    def nodes(self, *, until: datetime) -> tuple[NodeState, ...]:
        if self.nodes_down:
            raise PrometheusUnavailable("kube-state-metrics is gone")
        if self.odd:
            raise KeyError("node")
        sick = NodePod("shop", "search-1", "ReplicaSet/search-7f", not self.bad)
        return (
            NodeState("a", not self.bad, (), False, (sick,)),
            NodeState("b", True, (), False, (OTHER,)),
            NodeState("c", True, (), False, ()),
        )


@dataclass
class NodeActuator(FakeActuator):
    on_node: dict[str, tuple[NodePod, ...]] = field(default_factory=lambda: {"a": (POD,)})

    def pods_on_node(self, node: str) -> tuple[NodePod, ...]:
        return self.on_node.get(node, ())


@dataclass
class Run:
    healer: Healer
    source: NodeSource
    actuator: NodeActuator
    store: AuditStore
    now: datetime = T0

    def cycles(self, count: int) -> None:
        for _ in range(count):
            self.now += timedelta(seconds=30)
            self.healer.cycle(self.now)

    def node_plans(self) -> list[tuple[ActionKind, str]]:
        return [
            (p.action, p.workload.name) for p in self.actuator.applied if p.workload.kind == "Node"
        ]


def build(
    store: AuditStore, settings: Settings, source: NodeSource, actuator: NodeActuator
) -> Healer:
    healer = Healer(
        source=source,
        detector=ScriptedDetector(),
        actuator=actuator,
        store=store,
        playbooks=load_playbooks(REPO / "playbooks"),
        settings=settings,
    )
    healer.resume()
    return healer


SETTINGS = load_settings(None, guards={"mode": "auto"}, nodes={"grace_s": 60})


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Run]:
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    source, actuator = NodeSource(), NodeActuator()
    yield Run(build(store, SETTINGS, source, actuator), source, actuator, store)
    store.close()


def test_a_bad_node_is_cordoned_then_drained_by_the_cycle(run: Run) -> None:
    run.source.bad = True
    run.cycles(4)

    assert run.node_plans() == [(ActionKind.CORDON, "a"), (ActionKind.DRAIN, "a")]
    drain: Plan = run.actuator.applied[-1]
    assert dict(drain.params) == {"namespace": "shop", "pod": "search-1"}
    [incident] = run.store.list_incidents()
    assert incident.workload == node_ref("a")


def test_a_restarted_daemon_leaves_the_node_incident_to_the_node_watch(run: Run) -> None:
    run.source.bad = True
    run.cycles(3)
    again = build(run.store, SETTINGS, run.source, run.actuator)

    assert again.tracked == {}
    assert again.nodes is not None and "a" in again.nodes.cases
    run.healer = again
    run.cycles(3)
    assert run.node_plans().count((ActionKind.CORDON, "a")) == 1


def test_node_healing_can_be_turned_off(tmp_path: Path) -> None:
    store = AuditStore(f"sqlite:///{tmp_path / 'off.db'}")
    source, actuator = NodeSource(), NodeActuator()
    settings = load_settings(None, guards={"mode": "auto"}, nodes={"enabled": False})
    run = Run(build(store, settings, source, actuator), source, actuator, store)
    source.bad = True
    run.cycles(10)
    assert run.healer.nodes is None and run.node_plans() == []
    store.close()


def test_missing_node_metrics_or_a_bug_never_stop_the_cycle(run: Run) -> None:
    run.source.bad = True
    run.source.nodes_down = True
    run.cycles(5)
    assert run.node_plans() == [] and run.healer.vitals.incident_errors == 0
    run.source.nodes_down, run.source.odd = False, True
    run.cycles(2)
    assert run.healer.vitals.incident_errors == 2
    run.source.odd = False
    run.cycles(3)
    assert run.node_plans()[0] == (ActionKind.CORDON, "a")


def test_a_workload_failing_on_a_bad_node_is_left_to_the_nodes_incident(run: Run) -> None:
    run.source.bad = True
    run.cycles(1)
    run.healer.detector.anomalous = {SEARCH: STRANGE}  # type: ignore[attr-defined]
    run.cycles(4)

    assert {p.workload.kind for p in run.actuator.applied} == {"Node"}  # none on search
    rows = {r.workload: r for r in run.store.list_incidents()}
    assert rows[SEARCH].cause == Cause.NODE_NOT_READY
    assert rows[SEARCH].outcome == OutcomeKind.ESCALATED and rows[SEARCH].action is None
    diagnosis = run.store.incident(rows[SEARCH].id).diagnosis
    assert diagnosis is not None
    assert diagnosis.explanation.startswith("its pods fail on a bad node: node a is NotReady")
