"""DaemonSets in the simulated cluster: one pod per eligible node, the automatic
tolerations, rolling updates by maxUnavailable and maxSurge, OnDelete, ControllerRevisions
and the status kubectl reads."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from healer.sim import nodes
from healer.sim.cluster import Cluster
from healer.sim.controllers.daemonset import GENERATION_LABEL, REVISION_LABEL
from healer.sim.daemonsets import TEMPLATE_GENERATION
from healer.sim.objects import STRATEGIC_MERGE_PATCH, ApiError, K8s
from healer.sim.scenario import Event, NodePool, Scenario, Traffic, WorkloadSpec
from healer.sim.state import pod_ready

NS = "infra"
STEP_S = 15.0


def cluster(*workloads: WorkloadSpec, nodes: int = 3) -> Cluster:
    return Cluster(
        Scenario(
            name="ds",
            description="daemonsets",
            start=datetime(2026, 3, 2, 11, 0, tzinfo=UTC),
            step_s=STEP_S,
            seed=3,
            images={"agent:bad": {"crash_on_start": True}},
            workloads=list(workloads)
            or [WorkloadSpec(name="web", image="web:1", traffic=Traffic(base_rps=10))],
            events=[],
            nodes=NodePool(count=nodes),
        )
    )


def put_node(c: Cluster, name: str, labels: dict[str, str] | None = None, *taints: K8s) -> None:
    """Register a new Node as its kubelet does, or relabel and retaint one through the
    API (a merge patch, as ``kubectl label`` and ``kubectl taint`` send)."""
    if c.store.find("nodes", "", name) is None:
        with c.lock:
            node = nodes.manifest(c.scenario.nodes, name, 99, c.clock.now())
            node["metadata"]["labels"].update(labels or {})
            c.store.create("nodes", node, now=c.clock.now())
        return
    patch = {"metadata": {"labels": labels or {}}, "spec": {"taints": list(taints)}}
    c.patch_object("nodes", "", name, patch, "application/merge-patch+json", dry_run=False)


def with_nodes(count: int = 3) -> Cluster:
    return cluster(nodes=count)


def body(name: str = "agent", **spec: Any) -> K8s:
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "agent", "image": "agent:1"}]},
            },
            **spec,
        },
    }


def pods(c: Cluster, name: str = "agent") -> list[K8s]:
    return c.pods_of(NS, name)


def by_node(c: Cluster, name: str = "agent") -> dict[str, list[K8s]]:
    found: dict[str, list[K8s]] = {}
    for pod in pods(c, name):
        found.setdefault(pod["spec"]["nodeName"], []).append(pod)
    return found


def status(c: Cluster, name: str = "agent") -> K8s:
    found: K8s = c.get_object("daemonsets", NS, name)["status"]
    return found


def set_image(c: Cluster, image: str, name: str = "agent") -> None:
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "agent", "image": image}]}}}}
    c.patch_workload("daemonsets", NS, name, patch, STRATEGIC_MERGE_PATCH)


def images(c: Cluster) -> dict[str, str]:
    return {
        node: on[0]["spec"]["containers"][0]["image"] for node, on in sorted(by_node(c).items())
    }


def test_one_pod_lands_on_each_node_bound_to_it_as_the_controller_binds() -> None:
    c = with_nodes(3)
    c.create_workload("daemonsets", NS, body())
    placed = by_node(c)
    assert sorted(placed) == ["node-00", "node-01", "node-02"]
    for node, on in placed.items():
        (pod,) = on
        terms = pod["spec"]["affinity"]["nodeAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"
        ]["nodeSelectorTerms"]
        assert terms == [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
        ]
        keys = {t["key"] for t in pod["spec"]["tolerations"]}
        assert "node.kubernetes.io/unschedulable" in keys
        assert "node.kubernetes.io/not-ready" in keys
        assert "node.kubernetes.io/memory-pressure" in keys
        assert pod["metadata"]["labels"][GENERATION_LABEL] == "1"
        assert pod["metadata"]["ownerReferences"][0]["kind"] == "DaemonSet"


def test_the_status_counts_nodes_and_pods_once_they_are_ready() -> None:
    c = with_nodes(3)
    c.create_workload("daemonsets", NS, body())
    assert status(c)["numberReady"] == 0
    c.advance(2 * STEP_S)
    assert status(c) == {
        "currentNumberScheduled": 3,
        "numberMisscheduled": 0,
        "desiredNumberScheduled": 3,
        "numberReady": 3,
        "observedGeneration": 1,
        "updatedNumberScheduled": 3,
        "numberAvailable": 3,
        "numberUnavailable": 0,
    }


def test_a_new_node_gets_a_pod_and_a_node_gone_takes_its_pod_with_it() -> None:
    c = with_nodes(2)
    c.create_workload("daemonsets", NS, body())
    put_node(c, "node-09")
    c.advance(STEP_S)
    assert sorted(by_node(c)) == ["node-00", "node-01", "node-09"]
    c.delete_object("nodes", "", "node-00")
    assert sorted(by_node(c)) == ["node-01", "node-09"]
    assert status(c)["desiredNumberScheduled"] == 2


def test_a_node_selector_picks_the_nodes_and_a_relabel_moves_the_pod() -> None:
    c = with_nodes(2)
    put_node(c, "node-00", {"pool": "edge"})
    put_node(c, "node-01", {"pool": "core"})
    spec = body()
    spec["spec"]["template"]["spec"]["nodeSelector"] = {"pool": "edge"}
    c.create_workload("daemonsets", NS, spec)
    assert sorted(by_node(c)) == ["node-00"]
    put_node(c, "node-00", {"pool": "core"})
    put_node(c, "node-01", {"pool": "edge"})
    assert sorted(by_node(c)) == ["node-01"]  # at once: the controller reacts to the write


def test_a_cordoned_node_keeps_its_pod_and_still_counts_as_desired() -> None:
    c = with_nodes(2)
    c.create_workload("daemonsets", NS, body())
    c.advance(2 * STEP_S)
    before = {n: on[0]["metadata"]["name"] for n, on in by_node(c).items()}
    c.patch_object(
        "nodes",
        "",
        "node-00",
        {"spec": {"unschedulable": True}},
        STRATEGIC_MERGE_PATCH,
        dry_run=False,
    )
    put_node(
        c, "node-00", None, {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}
    )
    c.advance(STEP_S)
    assert {n: on[0]["metadata"]["name"] for n, on in by_node(c).items()} == before
    assert status(c)["desiredNumberScheduled"] == 2


def test_a_not_ready_node_keeps_its_pod_where_a_foreign_no_execute_taint_evicts_it() -> None:
    c = with_nodes(2)
    c.create_workload("daemonsets", NS, body())
    put_node(c, "node-00", None, {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"})
    put_node(c, "node-01", None, {"key": "maintenance", "effect": "NoExecute"})
    c.advance(STEP_S)
    assert sorted(by_node(c)) == ["node-00"]
    assert status(c)["desiredNumberScheduled"] == 1


def test_a_no_schedule_taint_after_the_fact_leaves_the_pod_counted_misscheduled() -> None:
    c = with_nodes(2)
    c.create_workload("daemonsets", NS, body())
    put_node(c, "node-01", None, {"key": "gpu", "effect": "NoSchedule"})
    c.advance(STEP_S)
    assert sorted(by_node(c)) == ["node-00", "node-01"]
    assert status(c)["numberMisscheduled"] == 1
    assert status(c)["desiredNumberScheduled"] == 1


def test_a_rolling_update_keeps_no_more_than_max_unavailable_nodes_without_a_ready_pod() -> None:
    c = with_nodes(4)
    c.create_workload("daemonsets", NS, body())
    c.advance(2 * STEP_S)
    set_image(c, "agent:2")
    seen_available = []
    for _ in range(12):
        seen_available.append(status(c)["numberAvailable"])
        c.advance(STEP_S)
    assert min(seen_available) == 3  # maxUnavailable 1 of 4
    assert set(images(c).values()) == {"agent:2"}
    final = status(c)
    assert final["updatedNumberScheduled"] == final["numberAvailable"] == 4
    for pod in pods(c):
        assert pod["metadata"]["labels"][GENERATION_LABEL] == "2"


def test_a_percentage_max_unavailable_rounds_up() -> None:
    c = with_nodes(4)
    c.create_workload(
        "daemonsets",
        NS,
        body(updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "30%"}}),
    )
    c.advance(2 * STEP_S)
    set_image(c, "agent:2")
    assert status(c)["updatedNumberScheduled"] == 2  # 30% of 4 is 1.2, so 2 at once


def test_a_surge_starts_the_new_pod_beside_the_old_and_never_loses_a_ready_node() -> None:
    c = with_nodes(3)
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    c.create_workload("daemonsets", NS, body(updateStrategy=strategy))
    c.advance(2 * STEP_S)
    set_image(c, "agent:2")
    doubled = False
    for _ in range(12):
        placed = by_node(c)
        doubled |= any(len(on) == 2 for on in placed.values())
        assert sum(1 for on in placed.values() if any(pod_ready(p) for p in on)) == 3
        c.advance(STEP_S)
    assert doubled
    assert all(len(on) == 1 for on in by_node(c).values())
    assert set(images(c).values()) == {"agent:2"}


def test_a_crash_looping_release_stops_after_max_unavailable_nodes() -> None:
    c = cluster(
        WorkloadSpec(
            name="agent",
            kind="DaemonSet",
            namespace=NS,
            image="agent:1",
            traffic=Traffic(base_rps=5),
        ),
        nodes=4,
    )
    c.advance(2 * STEP_S)
    assert status(c)["numberAvailable"] == 4
    set_image(c, "agent:bad")
    c.advance(10 * STEP_S)
    assert sorted(images(c).values()) == ["agent:1", "agent:1", "agent:1", "agent:bad"]
    assert status(c)["numberUnavailable"] == 1
    assert status(c)["updatedNumberScheduled"] == 1


def test_on_delete_replaces_only_the_pods_someone_deletes() -> None:
    c = with_nodes(2)
    c.create_workload("daemonsets", NS, body(updateStrategy={"type": "OnDelete"}))
    c.advance(2 * STEP_S)
    set_image(c, "agent:2")
    c.advance(3 * STEP_S)
    assert set(images(c).values()) == {"agent:1"}
    c.delete_object("pods", NS, by_node(c)["node-00"][0]["metadata"]["name"])
    assert images(c) == {"node-00": "agent:2", "node-01": "agent:1"}


def test_revisions_are_numbered_and_a_rollback_renumbers_the_earlier_one() -> None:
    c = with_nodes(2)
    c.create_workload("daemonsets", NS, body())
    set_image(c, "agent:2")
    revisions = {r["revision"]: r for r in c.list_objects("controllerrevisions", NS)}
    assert sorted(revisions) == [1, 2]
    first = revisions[1]
    assert first["metadata"]["labels"]["app"] == "agent"
    assert first["data"]["spec"]["template"]["$patch"] == "replace"
    # What kubectl rollout undo daemonset sends: the revision's data.
    c.patch_workload("daemonsets", NS, "agent", first["data"], STRATEGIC_MERGE_PATCH)
    numbers = {
        r["metadata"]["name"]: r["revision"] for r in c.list_objects("controllerrevisions", NS)
    }
    assert numbers[first["metadata"]["name"]] == 3
    assert len(numbers) == 2
    ds = c.get_object("daemonsets", NS, "agent")
    assert ds["metadata"]["annotations"][TEMPLATE_GENERATION] == "3"
    assert ds["spec"]["template"]["spec"]["containers"][0]["image"] == "agent:1"
    c.advance(6 * STEP_S)
    assert set(images(c).values()) == {"agent:1"}
    labels = {p["metadata"]["labels"][REVISION_LABEL] for p in pods(c)}
    assert labels == {first["metadata"]["labels"][REVISION_LABEL]}


def test_history_beyond_the_limit_is_trimmed_oldest_first() -> None:
    c = with_nodes(1)
    c.create_workload("daemonsets", NS, body(revisionHistoryLimit=1))
    for i in range(2, 5):
        set_image(c, f"agent:{i}")
        c.advance(3 * STEP_S)
    assert sorted(r["revision"] for r in c.list_objects("controllerrevisions", NS)) == [3, 4]


def test_a_write_that_leaves_the_template_alone_keeps_the_template_generation() -> None:
    c = with_nodes(1)
    c.create_workload("daemonsets", NS, body())
    c.patch_workload(
        "daemonsets",
        NS,
        "agent",
        {"metadata": {"labels": {"team": "infra"}}},
        STRATEGIC_MERGE_PATCH,
    )
    ds = c.get_object("daemonsets", NS, "agent")
    assert ds["metadata"]["annotations"][TEMPLATE_GENERATION] == "1"


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (
            {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0}}},
            "spec.updateStrategy.rollingUpdate.maxUnavailable",
        ),
        ({"updateStrategy": {"type": "Recreate"}}, "spec.updateStrategy.type"),
        ({"selector": {"matchLabels": {"app": "other"}}}, "spec.template.metadata.labels"),
        ({"minReadySeconds": -1}, "spec.minReadySeconds"),
    ],
)
def test_invalid_daemonsets_are_refused_naming_the_field(spec: K8s, field: str) -> None:
    c = with_nodes(1)
    with pytest.raises(ApiError) as caught:
        c.create_workload("daemonsets", NS, body(**spec))
    assert caught.value.code == 422
    assert field in caught.value.message


def test_a_pod_template_that_restarts_never_is_refused() -> None:
    c = with_nodes(1)
    spec = body()
    spec["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    with pytest.raises(ApiError, match=r"spec\.template\.spec\.restartPolicy"):
        c.create_workload("daemonsets", NS, spec)


def test_the_selector_cannot_change() -> None:
    c = with_nodes(1)
    c.create_workload("daemonsets", NS, body())
    labels = {"app": "agent", "tier": "x"}
    patch = {
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}},
        }
    }
    with pytest.raises(ApiError, match="field is immutable"):
        c.patch_workload("daemonsets", NS, "agent", patch, "application/merge-patch+json")


def test_deleting_the_daemonset_takes_its_pods_and_revisions() -> None:
    c = with_nodes(2)
    c.create_workload("daemonsets", NS, body())
    c.delete_object("daemonsets", NS, "agent")
    c.advance(STEP_S)
    assert c.list_objects("pods", NS) == []
    assert c.list_objects("controllerrevisions", NS) == []


def test_a_generated_pod_name_that_is_taken_is_drawn_again() -> None:
    c = with_nodes(2)
    names = iter(["aaaaa", "aaaaa", "bbbbb"])
    c.state.suffix = lambda: next(names)  # type: ignore[method-assign]  # force a collision
    c.create_workload("daemonsets", NS, body())
    assert sorted(p["metadata"]["name"] for p in pods(c)) == ["agent-aaaaa", "agent-bbbbb"]


def test_a_not_ready_node_keeps_its_daemonset_pod_where_a_deployments_pod_leaves() -> None:
    agent = WorkloadSpec(
        name="agent", kind="DaemonSet", namespace=NS, image="agent:1", traffic=Traffic(base_rps=5)
    )
    web = WorkloadSpec(
        name="web", namespace=NS, replicas=3, image="web:1", traffic=Traffic(base_rps=10)
    )
    scenario = Scenario(
        name="ds",
        description="a node goes NotReady",
        start=datetime(2026, 3, 2, 11, 0, tzinfo=UTC),
        step_s=STEP_S,
        seed=3,
        workloads=[agent, web],
        events=[Event(at_s=60, kind="node_notready", node="node-01", expect="drain")],
        nodes=NodePool(count=3),
    )
    c = Cluster(scenario)
    c.advance(30)
    before = by_node(c)["node-01"][0]["metadata"]["name"]
    web_before = {
        p["metadata"]["name"] for p in c.pods_of(NS, "web") if p["spec"]["nodeName"] == "node-01"
    }
    assert web_before
    c.advance(600)  # past the 300 s every other pod tolerates a not-ready node
    assert by_node(c)["node-01"][0]["metadata"]["name"] == before
    web_after = {p["metadata"]["name"] for p in c.pods_of(NS, "web")}
    assert not web_before & web_after
    node = c.get_object("nodes", "", "node-01")
    assert {(t["key"], t["effect"]) for t in node["spec"]["taints"]} >= {
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/not-ready", "NoSchedule"),
    }
    # As in Kubernetes: the NoSchedule taint, which no automatic toleration covers, takes
    # the node out of the desired count, and the pod that stays counts as misscheduled.
    assert (status(c)["desiredNumberScheduled"], status(c)["numberMisscheduled"]) == (2, 1)
