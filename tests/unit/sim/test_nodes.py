"""Nodes in the simulated cluster, in virtual time: the pool a scenario gets, the
scheduler's placement, and the lifecycle of a node that stops reporting, runs out of
memory or is drained by a person."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from healer.sim.cluster import Cluster
from healer.sim.exposition import render_metrics
from healer.sim.nodes import condition_status
from healer.sim.objects import K8s
from healer.sim.scenario import Event, NodePool, Scenario, Traffic, WorkloadSpec, load_scenario
from healer.sim.state import pod_ready

STEP_S = 15.0
STRATEGIC = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"


def scenario(*events: Event, nodes: NodePool | None = None, replicas: int = 4) -> Scenario:
    return Scenario(
        name="nodes",
        description="three workloads on four nodes",
        start=datetime(2026, 3, 3, 10, 0, tzinfo=UTC),
        step_s=STEP_S,
        seed=3,
        nodes=nodes or NodePool(count=4),
        workloads=[
            WorkloadSpec(
                name=name,
                namespace="shop",
                replicas=replicas,
                image=f"registry.local/shop/{name}:1.0",
                traffic=Traffic(base_rps=60.0, bursts_per_h=0),
            )
            for name in ("cart", "search", "checkout")
        ],
        events=list(events),
    )


def on_node(cluster: Cluster, node: str) -> list[K8s]:
    return cluster.list_objects("pods", None, field_selector=f"spec.nodeName={node}")


def node(cluster: Cluster, name: str) -> K8s:
    return cluster.get_object("nodes", "", name)


def taints(cluster: Cluster, name: str) -> list[tuple[str, str]]:
    return [(t["key"], t["effect"]) for t in node(cluster, name)["spec"].get("taints") or []]


# ---- the pool -------------------------------------------------------------------------


def test_the_default_pool_has_room_for_four_times_the_pods_and_three_nodes_at_least() -> None:
    pool = NodePool()
    small = scenario(nodes=pool).expanded()
    assert pool.size_for(small) == 3
    big = [w.model_copy(update={"replicas": 100}) for w in small]  # 1,200 pods at most
    assert pool.size_for(big) == 11  # 1,200 / 110 pods per node
    heavy = [
        w.model_copy(update={"resources": w.resources.model_copy(update={"cpu_request_cores": 8})})
        for w in small
    ]
    assert pool.size_for(heavy) == 12  # 4 x 12 pods x 8 cores over 32-core nodes
    assert NodePool(count=120).names(small)[:2] == ["node-000", "node-001"]


def test_a_node_event_must_name_a_node_of_the_scenario_and_no_workload() -> None:
    with pytest.raises(ValidationError, match="no node 'node-09'"):
        scenario(Event(at_s=60, kind="node_notready", node="node-09", expect="drain"))
    with pytest.raises(ValidationError, match="needs a node or a node_selector"):
        Event(at_s=60, kind="node_drain", expect="none")
    with pytest.raises(ValidationError, match="names a node, not a workload"):
        Event(at_s=60, kind="node_drain", node="node-01", workload="shop/cart", expect="none")
    with pytest.raises(ValidationError, match="names a workload, not a node"):
        Event(
            at_s=60, kind="cpu_hog", workload="shop/cart", cores=1, node="node-01", expect="restart"
        )


def test_the_node_scenarios_load_with_their_ground_truth() -> None:
    notready = load_scenario("node-notready").events[0]
    assert (notready.kind, notready.node, notready.expect) == ("node_notready", "node-01", "drain")
    pressure = load_scenario("node-memory-pressure").events[0]
    assert (pressure.kind, pressure.expect) == ("node_memory_pressure", "drain")
    maintenance = load_scenario("node-maintenance").events[0]
    assert (maintenance.kind, maintenance.expect) == ("node_drain", "none")


def test_nodes_are_spread_over_zones_and_pods_over_nodes() -> None:
    cluster = Cluster(scenario())
    zones = [
        n["metadata"]["labels"]["topology.kubernetes.io/zone"]
        for n in cluster.list_objects("nodes", None)
    ]
    assert zones == ["zone-a", "zone-b", "zone-c", "zone-a"]
    assert [len(on_node(cluster, f"node-0{i}")) for i in range(4)] == [3, 3, 3, 3]


# ---- the scheduler --------------------------------------------------------------------


def test_a_pod_goes_only_where_its_selector_taints_and_requests_allow() -> None:
    cluster = Cluster(scenario(replicas=1))
    cluster.patch_object(
        "nodes",
        "",
        "node-00",
        {"spec": {"taints": [{"key": "gpu", "effect": "NoSchedule"}]}},
        MERGE,
        dry_run=False,
    )
    cluster.patch_object(
        "nodes", "", "node-02", {"metadata": {"labels": {"disk": "ssd"}}}, MERGE, dry_run=False
    )
    cluster.patch_object(
        "nodes", "", "node-03", {"metadata": {"labels": {"disk": "ssd"}}}, MERGE, dry_run=False
    )
    cluster.write_status(
        "nodes", "", "node-03", {"status": {"allocatable": {"cpu": "100m"}}}, patch_type=MERGE
    )
    template = {"spec": {"template": {"spec": {"nodeSelector": {"disk": "ssd"}}}}}
    cluster.patch_deployment("shop", "cart", template, STRATEGIC)
    cluster.advance(3 * STEP_S)
    [pod] = cluster.pods_of("shop", "cart")
    assert pod["spec"]["nodeName"] == "node-02"  # ssd, and room for 250m of CPU


def test_an_unschedulable_pod_says_why_per_node_and_is_placed_once_room_appears() -> None:
    cluster = Cluster(scenario(replicas=1))
    for name in ("node-00", "node-01"):
        cluster.patch_object(
            "nodes", "", name, {"spec": {"unschedulable": True}}, STRATEGIC, dry_run=False
        )
    cluster.write_status(
        "nodes", "", "node-02", {"status": {"allocatable": {"pods": "1"}}}, patch_type=MERGE
    )
    cluster.write_status(
        "nodes", "", "node-03", {"status": {"allocatable": {"memory": "1Mi"}}}, patch_type=MERGE
    )
    cluster.patch_scale("shop", "cart", {"spec": {"replicas": 3}}, MERGE)
    pending = [p for p in cluster.pods_of("shop", "cart") if not p["spec"].get("nodeName")]
    assert len(pending) == 2
    [condition] = pending[0]["status"]["conditions"]
    assert (pending[0]["status"]["phase"], condition["reason"]) == ("Pending", "Unschedulable")
    assert condition["message"] == (
        "0/4 nodes are available: 1 Insufficient memory, 1 Too many pods, "
        "2 node(s) were unschedulable."
    )
    cluster.advance(STEP_S)
    assert not any(cluster.state.running(p) for p in pending)  # no container while waiting
    cluster.patch_object(
        "nodes", "", "node-00", {"spec": {"unschedulable": False}}, STRATEGIC, dry_run=False
    )
    cluster.advance(2 * STEP_S)
    pods = cluster.pods_of("shop", "cart")
    assert sorted(p["spec"].get("nodeName", "") for p in pods).count("node-00") >= 2
    assert all(pod_ready(p) for p in pods)


def test_a_cordoned_node_gets_the_unschedulable_taint_at_once_and_loses_it_when_uncordoned() -> (
    None
):
    cluster = Cluster(scenario())
    cluster.patch_object(
        "nodes", "", "node-01", {"spec": {"unschedulable": True}}, STRATEGIC, dry_run=False
    )
    assert taints(cluster, "node-01") == [("node.kubernetes.io/unschedulable", "NoSchedule")]
    cluster.patch_object(
        "nodes", "", "node-01", {"spec": {"unschedulable": None}}, STRATEGIC, dry_run=False
    )
    assert taints(cluster, "node-01") == []


# ---- the lifecycle --------------------------------------------------------------------


def test_an_unreachable_node_turns_unknown_after_the_grace_and_its_pods_leave_after_300_s() -> None:
    event = Event(
        at_s=60,
        kind="node_notready",
        node="node-01",
        unreachable=True,
        duration_s=1800,
        expect="drain",
    )
    cluster = Cluster(scenario(event))
    first = {p["metadata"]["name"] for p in on_node(cluster, "node-01")}
    cluster.advance(60 + STEP_S)  # the kubelet has stopped, the grace period runs
    assert condition_status(node(cluster, "node-01"), "Ready") == "True"
    cluster.advance(3 * STEP_S)
    assert [condition_status(node(cluster, "node-01"), k) for k in ("Ready", "MemoryPressure")] == [
        "Unknown",
        "Unknown",
    ]
    assert taints(cluster, "node-01") == [
        ("node.kubernetes.io/unreachable", "NoSchedule"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
    ]
    pods = on_node(cluster, "node-01")
    assert {p["metadata"]["name"] for p in pods} == first
    assert not any(pod_ready(p) for p in pods)  # out of their Services' endpoints
    cluster.advance(240)
    assert on_node(cluster, "node-01")  # 300 s of toleration not over yet
    cluster.advance(60)
    assert on_node(cluster, "node-01") == []
    cluster.advance(2 * STEP_S)
    for name in ("cart", "search", "checkout"):
        pods = cluster.pods_of("shop", name)
        assert len(pods) == 4 and all(p["spec"]["nodeName"] != "node-01" for p in pods)
    cluster.advance(1800)
    assert condition_status(node(cluster, "node-01"), "Ready") == "True"
    assert taints(cluster, "node-01") == []


def test_a_node_reporting_notready_is_tainted_not_ready_at_once() -> None:
    event = Event(at_s=60, kind="node_notready", node="node-02", expect="drain")
    cluster = Cluster(scenario(event))
    cluster.advance(60 + STEP_S)
    ready = next(
        c for c in node(cluster, "node-02")["status"]["conditions"] if c["type"] == "Ready"
    )
    assert (ready["status"], ready["reason"]) == ("False", "KubeletNotReady")
    assert ("node.kubernetes.io/not-ready", "NoExecute") in taints(cluster, "node-02")


def test_memory_pressure_slows_the_nodes_pods_and_the_kubelet_evicts_the_largest_first() -> None:
    event = Event(
        at_s=60,
        kind="node_memory_pressure",
        node="node-03",
        bytes_per_s=2**20,
        duration_s=600,
        expect="drain",
    )
    cluster = Cluster(scenario(event))
    evicted: list[tuple[str, str, str, str]] = []

    def note(change: str, resource: str, obj: Any) -> None:
        if resource == "pods" and change == "MODIFIED" and obj["status"].get("reason") == "Evicted":
            there = [
                p for p in cluster.store.list("pods") if p["spec"].get("nodeName") == "node-03"
            ]
            largest = max(there, key=lambda p: cluster.container(p).memory_bytes)
            evicted.append(
                (
                    obj["metadata"]["name"],
                    obj["status"]["phase"],
                    obj["status"]["message"],
                    largest["metadata"]["name"],
                )
            )

    cluster.store.listeners.append(note)
    cluster.advance(60 + STEP_S)
    assert condition_status(node(cluster, "node-03"), "MemoryPressure") == "True"
    assert ("node.kubernetes.io/memory-pressure", "NoSchedule") in taints(cluster, "node-03")
    name, phase, _, largest = evicted[0]
    assert (name, phase) == (largest, "Failed")
    assert evicted[0][2].startswith("The node was low on resource: memory.")
    events = cluster.list_objects("events", "shop", field_selector="reason=Evicted")
    assert [e["involvedObject"]["name"] for e in events] == [name]
    slow = [
        cluster.state.table.f["node_slowdown"][cluster.state.slots[p["metadata"]["uid"]]]
        for p in on_node(cluster, "node-03")
    ]
    assert slow and set(slow) == {3.0}
    cluster.advance(600)
    assert len(evicted) >= 2
    cluster.advance(300)
    assert condition_status(node(cluster, "node-03"), "MemoryPressure") == "False"
    assert taints(cluster, "node-03") == []


def test_a_maintenance_drain_evicts_within_budgets_and_uncordons_later() -> None:
    event = Event(at_s=60, kind="node_drain", node="node-00", duration_s=900, expect="none")
    cluster = Cluster(scenario(event))
    [held] = [p for p in on_node(cluster, "node-00") if p["metadata"]["labels"]["app"] == "cart"]
    cluster.create_object(
        "poddisruptionbudgets",
        "shop",
        {
            "metadata": {"name": "cart"},
            "spec": {"maxUnavailable": 0, "selector": {"matchLabels": {"app": "cart"}}},
        },
        dry_run=False,
    )
    cluster.advance(60 + STEP_S)
    assert node(cluster, "node-00")["spec"]["unschedulable"] is True
    assert [p["metadata"]["name"] for p in on_node(cluster, "node-00")] == [
        held["metadata"]["name"]
    ]
    cluster.delete_object("poddisruptionbudgets", "shop", "cart")
    cluster.advance(STEP_S)
    assert on_node(cluster, "node-00") == []
    assert all(len(cluster.pods_of("shop", n)) == 4 for n in ("cart", "search", "checkout"))
    cluster.advance(900)
    assert not node(cluster, "node-00")["spec"].get("unschedulable")


# ---- the series -----------------------------------------------------------------------


def series(cluster: Cluster) -> dict[str, float]:
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in render_metrics(cluster).splitlines()
        if not line.startswith("#")
    }


def test_node_series_follow_memory_pressure_and_cpu_counters_never_go_back() -> None:
    event = Event(
        at_s=60,
        kind="node_memory_pressure",
        node="node-03",
        bytes_per_s=2**20,
        duration_s=600,
        expect="drain",
    )
    cluster = Cluster(scenario(event))
    cluster.advance(45)
    before = series(cluster)
    where = 'instance="10.0.0.5:9100",node="node-03"'
    user = f'node_cpu_seconds_total{{cpu="0",mode="user",{where}}}'
    assert before[f"node_memory_MemTotal_bytes{{{where}}}"] == 128 * 2**30
    assert before[f"node_memory_MemAvailable_bytes{{{where}}}"] > 100 * 2**30
    pressure = 'kube_node_status_condition{node="node-03",condition="MemoryPressure",status="%s"}'
    assert (before[pressure % "true"], before[pressure % "false"]) == (0.0, 1.0)
    cluster.advance(120)
    during = series(cluster)
    assert during[f"node_memory_MemAvailable_bytes{{{where}}}"] < 2**30  # all but taken
    assert (during[pressure % "true"], during[pressure % "false"]) == (1.0, 0.0)
    taint = (
        'kube_node_spec_taint{node="node-03",key="node.kubernetes.io/memory-pressure",'
        'value="",effect="NoSchedule"}'
    )
    assert during[taint] == 1.0
    assert during[user] > before[user] > 0  # pods evicted meanwhile: the counter still grows
    assert (
        during['kube_node_status_allocatable{node="node-03",resource="pods",unit="integer"}'] == 110
    )


def test_kube_pod_info_names_each_pods_node_and_a_waiting_pod_none() -> None:
    cluster = Cluster(scenario(replicas=1))
    for name in ("node-00", "node-01", "node-02", "node-03"):
        cluster.patch_object(
            "nodes", "", name, {"spec": {"unschedulable": True}}, STRATEGIC, dry_run=False
        )
    cluster.patch_scale("shop", "cart", {"spec": {"replicas": 2}}, MERGE)
    info = [k for k in series(cluster) if k.startswith("kube_pod_info{") and 'pod="cart-' in k]
    nodes = sorted(k.split('node="')[1].split('"')[0] for k in info)
    assert len(nodes) == 2 and nodes[0] == "" and nodes[1].startswith("node-0")
    assert series(cluster)['kube_node_spec_unschedulable{node="node-02"}'] == 1.0


def test_required_node_affinity_places_a_pod_on_the_node_it_names() -> None:
    cluster = Cluster(scenario(replicas=1))
    term = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-03"]}]}
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}
        }
    }
    patch = {"spec": {"template": {"spec": {"affinity": affinity}}}}
    for name in ("cart", "search"):
        cluster.patch_deployment("shop", name, patch, STRATEGIC)
    cluster.advance(3 * STEP_S)
    assert [
        p["spec"]["nodeName"] for n in ("cart", "search") for p in cluster.pods_of("shop", n)
    ] == [
        "node-03",
        "node-03",
    ]
    zone = {
        "matchExpressions": [
            {"key": "topology.kubernetes.io/zone", "operator": "NotIn", "values": ["zone-a"]}
        ]
    }
    affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ] = [zone]
    cluster.patch_deployment("shop", "checkout", patch, STRATEGIC)
    cluster.advance(3 * STEP_S)
    [pod] = cluster.pods_of("shop", "checkout")
    assert pod["spec"]["nodeName"] in ("node-01", "node-02")  # not node-00 nor node-03 (zone-a)
