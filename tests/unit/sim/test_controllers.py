"""The simulator's parts, each a controller of one shape run in a fixed order per tick;
some on their own, over a ``ClusterState`` without a ``Cluster`` around it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from healer.sim import controllers, deployments, nodes
from healer.sim.clock import VirtualClock
from healer.sim.cluster import Cluster
from healer.sim.controllers import kubelet
from healer.sim.controllers.autoscaling import AutoscalerController
from healer.sim.controllers.budgets import DisruptionController
from healer.sim.controllers.daemonset import DaemonSetController
from healer.sim.controllers.deployment import DeploymentController, DeploymentStatus
from healer.sim.controllers.faults import FaultInjector
from healer.sim.controllers.garbage import GarbageCollector
from healer.sim.controllers.gitsync import GitSync
from healer.sim.controllers.nodelifecycle import CordonTaint, NodeLifecycle
from healer.sim.controllers.replicaset import ReplicaSetController
from healer.sim.controllers.runtime import ContainerRuntime
from healer.sim.controllers.sampler import SIGNALS, Sampler
from healer.sim.controllers.scheduler import Scheduler
from healer.sim.controllers.statefulset import StatefulSetController
from healer.sim.objects import K8s
from healer.sim.scenario import Event, Scenario, Traffic, WorkloadSpec
from healer.sim.state import REVISION, ClusterState, Now

NS, NAME = "shop", "web"
STEP_S = 15.0


def scenario(*events: Event, replicas: int = 3) -> Scenario:
    return Scenario(
        name="unit",
        description="one workload",
        start=datetime(2026, 3, 2, 11, 0, tzinfo=UTC),
        step_s=STEP_S,
        seed=5,
        workloads=[
            WorkloadSpec(
                name=NAME,
                namespace=NS,
                replicas=replicas,
                image="registry.local/shop/web:1.0",
                traffic=Traffic(base_rps=40.0, bursts_per_h=0),
            )
        ],
        events=list(events),
    )


def bare_state(replicas: int = 3) -> ClusterState:
    """A state holding the scenario's Deployment as written, nothing reconciled yet."""
    chosen = scenario(replicas=replicas)
    state = ClusterState(chosen, VirtualClock(chosen.start))
    body = deployments.manifest(chosen.workloads[0])
    deployments.default(body)
    body["status"] = {"observedGeneration": 0}
    state.store.create("deployments", body, now=state.clock.now())
    nodes.register(state)
    return state


def control_plane() -> tuple[controllers.Controller, ...]:
    return (
        GarbageCollector(),
        DeploymentController(),
        ReplicaSetController(),
        kubelet.Kubelet(),
        DeploymentStatus(),
    )


def names(resource: str, state: ClusterState) -> list[str]:
    return sorted(o["metadata"]["name"] for o in state.store.list(resource))


class Recorder:
    """A controller that notes each reconcile: what a new kind's controller would be."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, int]] = []

    def reconcile(self, state: ClusterState, now: Now) -> None:
        self.seen.append((now.elapsed_s, len(state.store.list("pods"))))


def test_a_tick_runs_the_parts_in_their_fixed_order() -> None:
    cluster = Cluster(scenario())
    kinds = [type(part) for part in cluster.tick]
    assert kinds == [
        FaultInjector,
        GitSync,
        NodeLifecycle,
        GarbageCollector,
        CordonTaint,
        DeploymentController,
        ReplicaSetController,
        StatefulSetController,
        DaemonSetController,
        Scheduler,
        kubelet.Kubelet,
        DeploymentStatus,
        ContainerRuntime,
        AutoscalerController,
        DeploymentStatus,
        StatefulSetController,
        DaemonSetController,
        DisruptionController,
        Sampler,
    ]
    # The status controller is one part run twice, so its queue is drained by both passes.
    assert cluster.tick[11] is cluster.tick[14]
    assert cluster.tick[7] is cluster.tick[15]
    assert cluster.tick[8] is cluster.tick[16]


def test_a_controller_added_to_the_tick_runs_once_per_step_at_the_clock_reading() -> None:
    cluster = Cluster(scenario())
    recorder = Recorder()
    cluster.tick = (*cluster.tick, recorder)
    cluster.advance(3 * STEP_S)
    assert recorder.seen == [(STEP_S, 3), (2 * STEP_S, 3), (3 * STEP_S, 3)]


def test_the_deployment_controller_alone_makes_the_replicaset_and_no_pod() -> None:
    state = bare_state()
    DeploymentController().reconcile(state, state.now())
    (rs,) = state.store.list("replicasets")
    assert rs["metadata"]["annotations"][REVISION] == "1"
    assert rs["spec"]["replicas"] == 3
    assert rs["metadata"]["ownerReferences"][0]["name"] == NAME
    assert state.store.list("pods") == []
    dep = state.store.get("deployments", NS, NAME)
    assert dep["metadata"]["annotations"][REVISION] == "1"


def test_the_replicaset_controller_makes_pods_that_the_kubelet_starts() -> None:
    state = bare_state()
    now = state.now()
    DeploymentController().reconcile(state, now)
    ReplicaSetController().reconcile(state, now)
    pods = state.store.list("pods")
    assert len(pods) == 3
    assert all(p["status"]["phase"] == "Running" for p in pods)
    # Started this instant: not ready until the readiness delay has passed.
    # Bound to a node as they were made: scheduled, and not ready yet.
    assert [[(c["type"], c["status"]) for c in p["status"]["conditions"]] for p in pods] == [
        [("Ready", "False"), ("PodScheduled", "True")]
    ] * 3
    assert all(p["spec"]["nodeName"] for p in pods)
    assert {state.container(p).started_s for p in pods} == {now.unix_s}


def test_the_status_controller_catches_up_on_its_own_pass() -> None:
    state = bare_state()
    for part in control_plane()[:4]:
        part.reconcile(state, state.now())
    dep = state.store.get("deployments", NS, NAME)
    assert dep["status"] == {"observedGeneration": 0}
    DeploymentStatus().reconcile(state, state.now())
    status = state.store.get("deployments", NS, NAME)["status"]
    assert status["observedGeneration"] == 1
    assert (status["replicas"], status["readyReplicas"]) == (3, 0)


def test_the_garbage_collector_deletes_dependents_on_its_pass_only() -> None:
    state = bare_state()
    controllers.run(control_plane(), state, state.now())
    state.delete("deployments", NS, NAME)
    assert len(names("replicasets", state)) == 1
    assert len(names("pods", state)) == 3
    collector = GarbageCollector()
    collector.reconcile(state, state.now())  # the ReplicaSet, whose deletion queues its pods
    assert names("replicasets", state) == []
    collector.reconcile(state, state.now())
    assert names("pods", state) == []
    assert state.table.live().sum() == 0  # the containers' slots are freed


def test_the_kubelet_reports_an_oom_kill_to_its_listeners() -> None:
    leak = Event(
        at_s=60, kind="memory_leak", workload=f"{NS}/{NAME}", bytes_per_s=5e6, expect="restart"
    )
    cluster = Cluster(scenario(leak))
    kills: list[tuple[str, str]] = []

    def killed(pod: K8s, reason: str, now: Now) -> None:
        kills.append((pod["metadata"]["name"], reason))

    cluster.state.kill_listeners.append(killed)
    for _ in range(200):
        cluster.advance(STEP_S)
        if kills:
            break
    assert kills, "the leak never reached the memory limit"
    name, reason = kills[0]
    assert reason == "OOMKilled"
    pod = cluster.get_object("pods", NS, name)
    assert pod["status"]["containerStatuses"][0]["lastState"]["terminated"]["reason"] == reason


def test_the_fault_injector_starts_each_event_once_when_due() -> None:
    surge = Event(at_s=30, kind="overload", workload=f"{NS}/{NAME}", factor=3.0, expect="scale")
    cluster = Cluster(scenario(surge))
    cluster.advance(STEP_S)
    assert cluster.applied_events == []
    assert cluster.state.faults.overloads == {}
    cluster.advance(3 * STEP_S)
    assert [event for _, event in cluster.applied_events] == [surge]
    assert cluster.state.faults.overloads[f"{NS}/{NAME}"].factor == 3.0


@pytest.mark.parametrize("steps", [1, 4])
def test_the_sampler_takes_one_row_per_step(steps: int) -> None:
    cluster = Cluster(scenario())
    cluster.advance(steps * STEP_S)
    assert len(cluster.samples) == len(cluster.timestamps) == steps
    assert all(row.shape == (1, len(SIGNALS)) for row in cluster.samples)


def test_a_pass_with_nothing_queued_writes_nothing() -> None:
    state = bare_state()
    controllers.run(control_plane(), state, state.now())
    controllers.run(control_plane(), state, state.now())
    version = state.store.resource_version
    before: dict[str, Any] = {r: state.store.list(r) for r in ("deployments", "replicasets")}
    controllers.run(control_plane(), state, state.now())
    assert state.store.resource_version == version
    assert {r: state.store.list(r) for r in before} == before
