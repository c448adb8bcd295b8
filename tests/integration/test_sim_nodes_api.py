"""Nodes through the official client against the simulated API server: the cluster-scoped
object, its ``status`` subresource, patches, a watch, discovery, and the scheduler's
placement of pods as a client reads it."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from healer.api.server import ServerThread
from healer.sim.apiserver import serve_in_thread, write_kubeconfig
from healer.sim.cluster import Cluster
from healer.sim.scenario import load_scenario

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"


@pytest.fixture
def core(kube_api: Any) -> client.CoreV1Api:
    return client.CoreV1Api(kube_api)


def test_the_default_scenario_has_three_ready_nodes_as_kubelets_register_them(
    core: client.CoreV1Api,
) -> None:
    nodes = core.list_node().items
    assert [n.metadata.name for n in nodes] == ["node-00", "node-01", "node-02"]
    node = nodes[0]
    assert node.metadata.namespace is None
    assert node.metadata.labels["kubernetes.io/hostname"] == "node-00"
    assert node.metadata.labels["topology.kubernetes.io/zone"] == "zone-a"
    assert (node.status.capacity["cpu"], node.status.allocatable["pods"]) == ("32", "110")
    conditions = {c.type: c for c in node.status.conditions}
    assert [conditions[t].status for t in ("Ready", "MemoryPressure", "DiskPressure")] == [
        "True",
        "False",
        "False",
    ]
    assert conditions["PIDPressure"].last_heartbeat_time is not None
    assert conditions["Ready"].reason == "KubeletReady"
    assert node.status.node_info.kubelet_version.startswith("v1.")
    assert node.spec.unschedulable is None


def test_every_pod_is_bound_to_a_node_and_listed_by_node(core: client.CoreV1Api) -> None:
    pods = core.list_pod_for_all_namespaces().items
    assert pods and all(p.spec.node_name for p in pods)
    assert {p.spec.node_name for p in pods} == {"node-00", "node-01", "node-02"}
    on_first = core.list_pod_for_all_namespaces(field_selector="spec.nodeName=node-00").items
    assert on_first and {p.spec.node_name for p in on_first} == {"node-00"}
    scheduled = [c for c in pods[0].status.conditions if c.type == "PodScheduled"]
    assert scheduled[0].status == "True"
    keys = {t.key for t in pods[0].spec.tolerations}
    assert keys == {"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"}


def test_cordon_by_strategic_merge_patch_and_a_field_selector(core: client.CoreV1Api) -> None:
    node = core.patch_node("node-01", {"spec": {"unschedulable": True}}, _content_type=STRATEGIC)
    assert node.spec.unschedulable is True
    cordoned = core.list_node(field_selector="spec.unschedulable=true").items
    assert [n.metadata.name for n in cordoned] == ["node-01"]
    taint = {"key": "dedicated", "value": "db", "effect": "NoSchedule"}
    node = core.patch_node("node-01", {"spec": {"taints": [taint]}}, _content_type=MERGE)
    assert [(t.key, t.effect) for t in node.spec.taints] == [("dedicated", "NoSchedule")]


def test_a_bad_taint_is_refused_with_422_naming_the_field(core: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as caught:
        core.patch_node(
            "node-00",
            {"spec": {"taints": [{"key": "x", "effect": "Sometimes"}]}},
            _content_type=MERGE,
        )
    assert caught.value.status == 422
    assert "spec.taints[0].effect" in caught.value.body


def test_the_status_subresource_writes_the_status_only(core: client.CoreV1Api) -> None:
    patched = core.patch_node_status(
        "node-02",
        {"spec": {"unschedulable": True}, "status": {"allocatable": {"pods": "20"}}},
        _content_type=MERGE,
    )
    assert patched.spec.unschedulable is None
    assert patched.status.allocatable["pods"] == "20"
    assert core.read_node_status("node-02").status.allocatable["pods"] == "20"


def test_a_node_is_not_found_under_a_namespace(
    core: client.CoreV1Api, sim_server: ServerThread
) -> None:
    answer = httpx.get(f"{sim_server.url}/api/v1/namespaces/default/nodes/node-00")
    assert (answer.status_code, answer.json()["reason"]) == (404, "NotFound")
    with pytest.raises(ApiException) as caught:
        core.read_node("node-99")
    assert caught.value.status == 404


def test_a_watch_sees_a_cordon(core: client.CoreV1Api) -> None:
    version = core.list_node().metadata.resource_version
    seen: list[tuple[str, str, bool]] = []

    def follow() -> None:
        for event in watch.Watch().stream(
            core.list_node, resource_version=version, timeout_seconds=5
        ):
            node = event["object"]
            seen.append((event["type"], node.metadata.name, bool(node.spec.unschedulable)))
            return

    follower = threading.Thread(target=follow)
    follower.start()
    core.patch_node("node-00", {"spec": {"unschedulable": True}}, _content_type=STRATEGIC)
    follower.join(10)
    assert seen == [("MODIFIED", "node-00", True)]


def test_discovery_says_nodes_are_cluster_scoped(core: client.CoreV1Api) -> None:
    resources = {r.name: r for r in core.get_api_resources().resources}
    assert resources["nodes"].namespaced is False
    assert resources["nodes"].short_names == ["no"]
    assert resources["nodes/status"].namespaced is False
    assert resources["pods"].namespaced is True


def test_a_pod_no_node_can_run_stays_pending_until_a_node_has_room(
    core: client.CoreV1Api, kube_api: Any, cluster: Cluster
) -> None:
    for name in ("node-00", "node-01", "node-02"):
        core.patch_node(name, {"spec": {"unschedulable": True}}, _content_type=STRATEGIC)
    apps = client.AppsV1Api(kube_api)
    apps.patch_namespaced_deployment_scale(
        "cart", "shop", {"spec": {"replicas": 4}}, _content_type=MERGE
    )
    pods = core.list_namespaced_pod("shop", label_selector="app=cart").items
    pending = [p for p in pods if not p.spec.node_name]
    assert len(pending) == 1
    condition = pending[0].status.conditions[0]
    assert (pending[0].status.phase, condition.type, condition.status, condition.reason) == (
        "Pending",
        "PodScheduled",
        "False",
        "Unschedulable",
    )
    assert condition.message == "0/3 nodes are available: 3 node(s) were unschedulable."
    core.patch_node("node-01", {"spec": {"unschedulable": False}}, _content_type=STRATEGIC)
    cluster.advance(15)
    bound = core.read_namespaced_pod(pending[0].metadata.name, "shop")
    assert bound.spec.node_name == "node-01"
    cluster.advance(30)
    assert apps.read_namespaced_deployment("cart", "shop").status.ready_replicas == 4


def test_deleting_a_node_deletes_its_pods_and_their_controllers_replace_them(
    core: client.CoreV1Api, kube_api: Any
) -> None:
    gone = {
        p.metadata.name
        for p in core.list_pod_for_all_namespaces(field_selector="spec.nodeName=node-02").items
    }
    core.delete_node("node-02")
    pods = core.list_pod_for_all_namespaces().items
    assert gone and not gone & {p.metadata.name for p in pods}
    assert {p.spec.node_name for p in pods} == {"node-00", "node-01"}
    apps = client.AppsV1Api(kube_api)
    for dep in apps.list_deployment_for_all_namespaces().items:
        replicas = [p for p in pods if p.metadata.name.startswith(dep.metadata.name + "-")]
        assert len(replicas) == dep.spec.replicas


def test_an_unreachable_node_as_a_client_sees_it_in_virtual_time(tmp_path: Path) -> None:
    cluster = Cluster(load_scenario("node-notready"))
    server = serve_in_thread(cluster)
    api = config.new_client_from_config(
        config_file=str(write_kubeconfig(tmp_path / "kubeconfig", server.url))
    )
    try:
        core = client.CoreV1Api(api)
        on_node = "spec.nodeName=node-01"
        before = [
            p.metadata.name for p in core.list_pod_for_all_namespaces(field_selector=on_node).items
        ]
        cluster.advance(1800 + 60)  # the kubelet stopped; the grace period is over
        node = core.read_node_status("node-01")
        ready = next(c for c in node.status.conditions if c.type == "Ready")
        assert (ready.status, ready.reason) == ("Unknown", "NodeStatusUnknown")
        assert {(t.key, t.effect) for t in node.spec.taints} == {
            ("node.kubernetes.io/unreachable", "NoSchedule"),
            ("node.kubernetes.io/unreachable", "NoExecute"),
        }
        stuck = core.list_pod_for_all_namespaces(field_selector=on_node).items
        assert [p.metadata.name for p in stuck] == before
        assert {c.status for p in stuck for c in p.status.conditions if c.type == "Ready"} == {
            "False"
        }
        cluster.advance(300)  # the pods' toleration is over: evicted, made again elsewhere
        assert core.list_pod_for_all_namespaces(field_selector=on_node).items == []
        apps = client.AppsV1Api(api)
        cluster.advance(30)
        for dep in apps.list_deployment_for_all_namespaces().items:
            assert dep.status.ready_replicas == dep.spec.replicas
    finally:
        api.close()
        server.stop()
