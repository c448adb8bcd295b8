"""DaemonSets through the official client against the simulated API server: the object
and the server's defaults, its ``status`` subresource (and no ``scale``), its
ControllerRevisions, discovery, a watch, a cordon that keeps its pod, and the
kube-state-metrics series the simulator exposes for it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from healer.sim.cluster import Cluster
from healer.sim.exposition import render_metrics

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"


def body(name: str = "agent") -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": name, "image": f"{name}:1"}]},
            },
        },
    }


@pytest.fixture
def apps(kube_api: Any, cluster: Cluster) -> client.AppsV1Api:
    api = client.AppsV1Api(kube_api)
    created = api.create_namespaced_daemon_set("shop", body())
    rolling = created.spec.update_strategy.rolling_update  # the server's defaults
    assert (rolling.max_unavailable, rolling.max_surge) == (1, 0)
    assert created.spec.revision_history_limit == 10
    for _ in range(2):
        cluster.advance(15)
    return api


@pytest.fixture
def core(kube_api: Any) -> client.CoreV1Api:
    return client.CoreV1Api(kube_api)


def test_status_counts_every_node_and_a_status_write_changes_status_only(
    apps: client.AppsV1Api, core: client.CoreV1Api
) -> None:
    count = len(core.list_node().items)
    status = apps.read_namespaced_daemon_set_status("agent", "shop").status
    assert (
        status.desired_number_scheduled,
        status.current_number_scheduled,
        status.number_ready,
        status.number_available,
        status.updated_number_scheduled,
        status.number_misscheduled,
        status.number_unavailable or 0,
        status.observed_generation,
    ) == (count, count, count, count, count, 0, 0, 1)
    patched = apps.patch_namespaced_daemon_set_status(
        "agent",
        "shop",
        {"spec": {"minReadySeconds": 9}, "status": {"collisionCount": 1}},
        _content_type=MERGE,
    )
    assert (patched.spec.min_ready_seconds, patched.status.collision_count) == (0, 1)


def test_a_daemonset_has_no_scale_subresource(apps: client.AppsV1Api) -> None:
    host = apps.api_client.configuration.host
    answer = httpx.get(f"{host}/apis/apps/v1/namespaces/shop/daemonsets/agent/scale")
    assert answer.status_code == 404
    assert answer.json()["kind"] == "Status"


def test_pods_carry_the_revision_hash_and_template_generation(
    apps: client.AppsV1Api, core: client.CoreV1Api
) -> None:
    [revision] = apps.list_namespaced_controller_revision("shop", label_selector="app=agent").items
    ds = apps.read_namespaced_daemon_set("agent", "shop")
    assert revision.revision == 1
    assert revision.metadata.owner_references[0].uid == ds.metadata.uid
    digest = revision.metadata.labels["controller-revision-hash"]
    assert revision.metadata.name == f"agent-{digest}"
    pods = core.list_namespaced_pod("shop", label_selector="app=agent").items
    assert {p.metadata.labels["controller-revision-hash"] for p in pods} == {digest}
    assert {p.metadata.labels["pod-template-generation"] for p in pods} == {"1"}
    assert len({p.spec.node_name for p in pods}) == len(pods) == len(core.list_node().items)


def test_a_cordoned_node_keeps_its_daemonset_pod(
    apps: client.AppsV1Api, core: client.CoreV1Api, cluster: Cluster
) -> None:
    before = {
        p.spec.node_name: p.metadata.name
        for p in core.list_namespaced_pod("shop", label_selector="app=agent").items
    }
    core.patch_node("node-01", {"spec": {"unschedulable": True}}, _content_type=STRATEGIC)
    cluster.advance(30)
    after = {
        p.spec.node_name: p.metadata.name
        for p in core.list_namespaced_pod("shop", label_selector="app=agent").items
    }
    assert after == before
    status = apps.read_namespaced_daemon_set("agent", "shop").status
    assert status.desired_number_scheduled == len(before)


def test_the_selector_cannot_change(apps: client.AppsV1Api) -> None:
    labels = {"app": "agent", "tier": "x"}
    patch = {
        "spec": {"selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}}}
    }
    with pytest.raises(ApiException) as caught:
        apps.patch_namespaced_daemon_set("agent", "shop", patch, _content_type=STRATEGIC)
    assert caught.value.status == 422
    assert "field is immutable" in (caught.value.body or "")


def test_discovery_names_daemonsets_and_their_status(kube_api: Any) -> None:
    resources = client.AppsV1Api(kube_api).get_api_resources().resources
    names = {r.name: r for r in resources}
    assert names["daemonsets"].short_names == ["ds"]
    assert "daemonsets/status" in names
    assert "daemonsets/scale" not in names


def test_a_watch_sees_the_rolling_update(apps: client.AppsV1Api, cluster: Cluster) -> None:
    listed = apps.list_namespaced_daemon_set("shop")
    apps.patch_namespaced_daemon_set(
        "agent",
        "shop",
        {"spec": {"template": {"spec": {"containers": [{"name": "agent", "image": "agent:2"}]}}}},
        _content_type=STRATEGIC,
    )
    cluster.advance(120)
    seen = [
        event["object"].status.updated_number_scheduled
        for event in watch.Watch().stream(
            apps.list_namespaced_daemon_set,
            "shop",
            resource_version=listed.metadata.resource_version,
            timeout_seconds=1,
        )
    ]
    assert (
        seen[-1] == apps.read_namespaced_daemon_set("agent", "shop").status.desired_number_scheduled
    )
    assert min(seen) < seen[-1]


def test_metrics_name_the_daemonset_as_kube_state_metrics_does(
    apps: client.AppsV1Api, core: client.CoreV1Api, cluster: Cluster
) -> None:
    text = render_metrics(cluster)
    count = len(core.list_node().items)
    line = f'kube_daemonset_status_number_available{{namespace="shop",daemonset="agent"}} {count}.0'
    assert line in text
    assert 'kube_daemonset_status_number_misscheduled{namespace="shop",daemonset="agent"} 0' in text
    pod = core.list_namespaced_pod("shop", label_selector="app=agent").items[0].metadata.name
    assert (
        f'kube_pod_owner{{namespace="shop",pod="{pod}",owner_kind="DaemonSet",owner_name="agent"}}'
        " 1.0" in text
    )
