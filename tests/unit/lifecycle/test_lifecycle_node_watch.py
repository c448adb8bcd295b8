"""The node watch over a real audit store and a fake cluster, cycle by cycle.

A NotReady node failing its pods is cordoned after the grace, drained one Eviction per
pod, healed once its workloads serve elsewhere and uncordoned after it stayed healthy;
the cap escalates a second bad node; a PodDisruptionBudget makes the drain wait and
then escalate; a person's cordon is left alone; a restart forgets nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from healer.audit.store import AuditStore
from healer.config import Settings, load_settings
from healer.decide.paging import Escalation, Resolution
from healer.lifecycle.node_watch import NodeDeps, NodeWatch
from healer.types import (
    ActionKind,
    ActionRecord,
    ActionStatus,
    Cause,
    Mode,
    NodePod,
    NodeState,
    OutcomeKind,
    Plan,
    node_ref,
)

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
STEP = timedelta(seconds=30)


def pod(name: str, owner: str = "ReplicaSet/cart-7f", *, ready: bool = True) -> NodePod:
    return NodePod("shop", name, owner, ready)


@dataclass
class FakeCluster:
    """Pods per node; evictions move a pod's replica to ``refuge``, unless blocked."""

    pods: dict[str, list[NodePod]]
    refuge: str = "c"
    blocked: set[str] = field(default_factory=set)
    plans: list[Plan] = field(default_factory=list)

    def apply(self, plan: Plan, *, now: datetime) -> ActionRecord:
        self.plans.append(plan)
        request = {"verb": "POST", "body": {"metadata": dict(plan.params)}}
        status, error = ActionStatus.SUCCEEDED, None
        if plan.mode is Mode.DRY_RUN:
            status = ActionStatus.DRY_RUN
        elif plan.action is ActionKind.DRAIN:
            name = str(plan.params["pod"])
            if name in self.blocked:
                status, error = ActionStatus.FAILED, "429 Too Many Requests: disruption budget"
            else:
                moved = next(p for p in self.pods[plan.workload.name] if p.name == name)
                self.pods[plan.workload.name].remove(moved)
                self.pods[self.refuge].append(replace(moved, name=name + "-new", ready=True))
        return ActionRecord(plan.action, plan.workload, request, status, now, now, error)

    def pods_on_node(self, node: str) -> tuple[NodePod, ...]:
        return tuple(self.pods[node])

    def kinds(self) -> list[tuple[str, str]]:
        return [(p.action.value, p.workload.name) for p in self.plans]


@dataclass
class World:
    store: AuditStore
    cluster: FakeCluster
    settings: Settings
    watch: NodeWatch = field(default_factory=NodeWatch)
    ready: dict[str, bool] = field(default_factory=lambda: {"a": True, "b": True, "c": True})
    cordoned: set[str] = field(default_factory=set)
    escalations: list[Escalation] = field(default_factory=list)
    resolutions: list[Resolution] = field(default_factory=list)
    now: datetime = T0

    def nodes(self) -> list[NodeState]:
        for plan in self.cluster.plans:
            if plan.mode is Mode.AUTO and plan.action is ActionKind.CORDON:
                self.cordoned.add(plan.workload.name)
            if plan.mode is Mode.AUTO and plan.action is ActionKind.UNCORDON:
                self.cordoned.discard(plan.workload.name)
        return [
            NodeState(
                name,
                up,
                (),
                name in self.cordoned,
                tuple(p if up else replace(p, ready=False) for p in self.cluster.pods[name]),
            )
            for name, up in self.ready.items()
        ]

    def deps(self) -> NodeDeps:
        return NodeDeps(
            store=self.store,
            cluster=self.cluster,
            settings=self.settings,
            say=lambda *_: None,
            escalate=self.escalations.append,
            resolve=self.resolutions.append,
        )

    def run(self, seconds: float) -> None:
        end = self.now + timedelta(seconds=seconds)
        while self.now < end:
            self.now += STEP
            self.watch.step(self.nodes(), self.now, deps=self.deps())


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    cluster = FakeCluster(
        {
            "a": [pod("cart-1"), pod("web-1", "ReplicaSet/web-5")],
            "b": [pod("cart-2")],
            "c": [pod("cart-3")],
        }
    )
    settings = load_settings(
        None,
        guards={"mode": "auto"},
        nodes={
            "grace_s": 60,
            "uncordon_after_s": 600,
            "drain_within_s": 300,
            "min_healthy_share": 0.5,
        },
    )
    yield World(store, cluster, settings)
    store.close()


def test_a_notready_node_is_cordoned_drained_healed_and_uncordoned_once_healthy(
    world: World,
) -> None:
    world.ready["a"] = False
    world.run(60)
    assert world.cluster.plans == []  # within the grace
    world.run(60)
    assert world.cluster.kinds() == [("cordon", "a"), ("drain", "a"), ("drain", "a")]
    world.run(60)

    [summary] = world.store.list_incidents(limit=10)
    assert summary.workload == node_ref("a")
    assert summary.cause == Cause.NODE_NOT_READY
    assert summary.outcome is None  # verifying until the node is back in service
    assert [p.name for p in world.cluster.pods["a"]] == []
    assert all(p.ready for p in world.cluster.pods["c"])  # the workloads serve there
    assert "a" in world.cordoned  # still: the node is NotReady
    assert world.watch.cases["a"].served_at is not None

    world.ready["a"] = True
    world.run(570)
    assert "a" in world.cordoned
    world.run(60)
    assert world.cluster.kinds()[-1] == ("uncordon", "a")
    assert not world.nodes()[0].unschedulable
    [summary] = world.store.list_incidents(limit=10)
    assert summary.outcome == OutcomeKind.HEALED
    [resolution] = world.resolutions
    assert resolution.workload == node_ref("a")
    assert "its workloads serve on other nodes since" in resolution.evidence
    assert resolution.evidence.endswith("node a healthy again and uncordoned")
    detail = world.store.get_incident(summary.id)
    assert detail is not None
    assert [a.kind for a in detail.actions] == [
        ActionKind.CORDON,
        ActionKind.DRAIN,
        ActionKind.DRAIN,
        ActionKind.UNCORDON,
    ]
    assert world.watch.cases == {}
    world.run(3600)
    assert len(world.cluster.plans) == 4  # nothing more


def test_two_bad_nodes_when_the_cap_allows_one_the_second_is_escalated(world: World) -> None:
    world.ready["a"] = False
    world.run(30)
    world.ready["b"] = False
    world.run(300)

    assert [k for k in world.cluster.kinds() if k[0] == "cordon"] == [("cordon", "a")]
    [escalation] = world.escalations
    assert escalation.workload == node_ref("b")
    assert "would leave 1 of 3 nodes schedulable (33%)" in escalation.reason
    rows = {s.workload.name: s for s in world.store.list_incidents(limit=10)}
    assert rows["b"].outcome == OutcomeKind.ESCALATED and rows["b"].action is None
    assert "b" not in world.cordoned


def test_a_drain_a_budget_blocks_waits_within_its_deadline_then_escalates(world: World) -> None:
    world.cluster.blocked = {"cart-1"}
    world.ready["a"] = False
    world.run(120)
    assert world.escalations == []
    world.run(300)

    [escalation] = world.escalations
    assert "did not finish within 300s" in escalation.reason
    assert "shop/cart-1" in escalation.reason and "never deletes" in escalation.reason
    drains = [p for p in world.cluster.plans if p.action is ActionKind.DRAIN]
    assert len([p for p in drains if p.params["pod"] == "cart-1"]) > 5  # asked every cycle
    assert all(p.action in (ActionKind.CORDON, ActionKind.DRAIN) for p in world.cluster.plans)
    [summary] = world.store.list_incidents(limit=10)
    detail = world.store.get_incident(summary.id)
    assert detail is not None
    failed = [a for a in detail.actions if a.status == ActionStatus.FAILED]
    assert len(failed) == 1 and "429" in (failed[0].error or "")  # recorded once
    assert [p.name for p in world.cluster.pods["a"]] == ["cart-1"]
    world.ready["a"] = True
    world.run(1800)
    assert len(world.escalations) == 1
    assert "a" in world.cordoned  # a person's now: never uncordoned behind their back
    assert world.watch.cases == {}


def test_a_persons_maintenance_cordon_of_a_healthy_node_is_left_alone(world: World) -> None:
    world.cordoned.add("b")
    world.cluster.pods["b"] = []  # drained by its owner
    world.run(3600)

    assert world.cluster.plans == [] and world.store.list_incidents(limit=10) == []


def test_a_restarted_watch_picks_up_the_node_it_cordoned(world: World) -> None:
    world.ready["a"] = False
    world.run(180)
    world.watch = NodeWatch.load(world.store)
    world.ready["a"] = True
    world.run(660)

    assert world.cluster.kinds().count(("cordon", "a")) == 1
    assert world.cluster.kinds()[-1] == ("uncordon", "a")
    assert len(world.store.list_incidents(limit=10)) == 1


def test_in_dry_run_the_cordon_is_recorded_and_nothing_follows(world: World) -> None:
    world.settings = load_settings(None, guards={"mode": "dry_run"}, nodes={"grace_s": 60})
    world.ready["a"] = False
    world.run(900)

    assert [(p.action, p.mode) for p in world.cluster.plans] == [(ActionKind.CORDON, Mode.DRY_RUN)]
    assert world.cordoned == set()


def test_a_node_that_leaves_the_cluster_ends_its_incident(world: World) -> None:
    world.ready["a"] = False
    world.run(180)
    del world.ready["a"]
    world.run(60)

    [summary] = world.store.list_incidents(limit=10)
    assert summary.outcome == OutcomeKind.HEALED  # drained, its workloads served on c
    assert world.watch.cases == {} and world.escalations == []


def test_the_watch_writes_its_memory_only_when_it_changed(world: World) -> None:
    writes: list[str] = []
    save = world.store.save_state

    def counting(key: str, value: object, *, at: datetime) -> None:
        writes.append(key)
        save(key, value, at=at)  # type: ignore[arg-type]  # passed through unchanged

    world.store.save_state = counting  # type: ignore[method-assign]  # a spy on the real store
    world.run(600)
    assert len(writes) == 1  # the first cycle's healthy_since; nothing since
