"""StatefulSets through the official client against the simulated API server: the
object, its ``status`` and ``scale`` subresources, its ControllerRevisions, discovery,
a watch, and the kube-state-metrics series the simulator exposes for it."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from healer.sim.cluster import Cluster
from healer.sim.exposition import render_metrics

MERGE = "application/merge-patch+json"


def body(name: str = "db") -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "serviceName": name,
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
    created = api.create_namespaced_stateful_set("shop", body())
    assert created.spec.pod_management_policy == "OrderedReady"  # the server's defaults
    assert created.spec.update_strategy.rolling_update.partition == 0
    for _ in range(4):
        cluster.advance(15)
    return api


def test_status_and_scale_subresources(apps: client.AppsV1Api) -> None:
    status = apps.read_namespaced_stateful_set_status("db", "shop").status
    assert (status.replicas, status.ready_replicas, status.current_revision) == (
        2,
        2,
        status.update_revision,
    )
    scale = apps.read_namespaced_stateful_set_scale("db", "shop")
    assert (scale.spec.replicas, scale.status.selector) == (2, "app=db")
    apps.patch_namespaced_stateful_set_scale(
        "db", "shop", {"spec": {"replicas": 4}}, _content_type=MERGE
    )
    assert apps.read_namespaced_stateful_set("db", "shop").spec.replicas == 4
    # A write to status changes the status only.
    patched = apps.patch_namespaced_stateful_set_status(
        "db",
        "shop",
        {"spec": {"replicas": 9}, "status": {"collisionCount": 1}},
        _content_type=MERGE,
    )
    assert (patched.spec.replicas, patched.status.collision_count) == (4, 1)


def test_controller_revisions_are_owned_and_numbered(apps: client.AppsV1Api) -> None:
    sts = apps.read_namespaced_stateful_set("db", "shop")
    [revision] = apps.list_namespaced_controller_revision("shop", label_selector="app=db").items
    assert revision.revision == 1
    assert revision.metadata.name == sts.status.update_revision
    assert revision.metadata.owner_references[0].uid == sts.metadata.uid
    assert revision.data["spec"]["template"]["$patch"] == "replace"


def test_an_immutable_field_is_refused_with_422(apps: client.AppsV1Api) -> None:
    with pytest.raises(ApiException) as caught:
        apps.patch_namespaced_stateful_set(
            "db", "shop", {"spec": {"serviceName": "other"}}, _content_type=MERGE
        )
    assert caught.value.status == 422
    assert "Forbidden" in (caught.value.body or "")


def test_discovery_names_statefulsets_and_their_subresources(kube_api: Any) -> None:
    resources = client.AppsV1Api(kube_api).get_api_resources().resources
    names = {r.name: r for r in resources}
    assert names["statefulsets"].short_names == ["sts"]
    assert {"statefulsets/scale", "statefulsets/status", "controllerrevisions"} <= names.keys()


def test_a_watch_sees_the_status_move(apps: client.AppsV1Api, cluster: Cluster) -> None:
    listed = apps.list_namespaced_stateful_set("shop")
    apps.patch_namespaced_stateful_set_scale(
        "db", "shop", {"spec": {"replicas": 3}}, _content_type=MERGE
    )
    cluster.advance(30)
    seen = [
        event["object"].status.replicas
        for event in watch.Watch().stream(
            apps.list_namespaced_stateful_set,
            "shop",
            resource_version=listed.metadata.resource_version,
            timeout_seconds=1,
        )
    ]
    assert seen and seen[-1] == 3


def test_metrics_name_the_statefulset_as_kube_state_metrics_does(
    apps: client.AppsV1Api, cluster: Cluster
) -> None:
    text = render_metrics(cluster)
    assert 'kube_statefulset_status_replicas_ready{namespace="shop",statefulset="db"} 2.0' in text
    assert (
        'kube_pod_owner{namespace="shop",pod="db-0",owner_kind="StatefulSet",owner_name="db"} 1.0'
        in text
    )
