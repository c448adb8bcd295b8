"""The simulated cluster's API, driven only through the official kubernetes client."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from healer.sim.cluster import Cluster

STRATEGIC = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"


def revisions(apps: client.AppsV1Api, name: str) -> dict[str, int]:
    sets = apps.list_namespaced_replica_set("shop", label_selector=f"app={name}").items
    return {
        rs.metadata.name: int(rs.metadata.annotations["deployment.kubernetes.io/revision"])
        for rs in sets
    }


def test_lists_deployments_across_and_within_namespaces(kube_api: Any) -> None:
    apps = client.AppsV1Api(kube_api)
    everywhere = {d.metadata.name for d in apps.list_deployment_for_all_namespaces().items}
    shop = {d.metadata.name for d in apps.list_namespaced_deployment("shop").items}
    assert everywhere == {"checkout", "search", "cart", "catalog", "storefront"}
    assert shop == everywhere - {"storefront"}


def test_rollout_restart_by_strategic_merge_patch_makes_a_new_revision(
    kube_api: Any, cluster: Cluster
) -> None:
    apps = client.AppsV1Api(kube_api)
    before = apps.read_namespaced_deployment("cart", "shop")
    patch = {
        "spec": {
            "template": {
                "metadata": {
                    "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-03-02T11:20:00Z"}
                }
            }
        }
    }
    after = apps.patch_namespaced_deployment("cart", "shop", patch, _content_type=STRATEGIC)
    assert after.metadata.generation == before.metadata.generation + 1
    assert (
        after.spec.template.spec.containers[0].image
        == before.spec.template.spec.containers[0].image
    )  # the patch merged, it did not replace
    assert int(after.metadata.resource_version) > int(before.metadata.resource_version)
    cluster.advance(300)
    done = apps.read_namespaced_deployment("cart", "shop")
    assert done.status.observed_generation == done.metadata.generation
    assert done.status.updated_replicas == done.status.available_replicas == 3
    assert sorted(revisions(apps, "cart").values()) == [1, 2]


def test_scale_subresource_read_and_patched(kube_api: Any, cluster: Cluster) -> None:
    apps = client.AppsV1Api(kube_api)
    scale = apps.read_namespaced_deployment_scale("search", "shop")
    assert scale.spec.replicas == 3
    assert scale.status.selector == "app=search"
    patched = apps.patch_namespaced_deployment_scale(
        "search", "shop", {"spec": {"replicas": 6}}, _content_type=MERGE
    )
    assert patched.spec.replicas == 6
    cluster.advance(60)
    pods = client.CoreV1Api(kube_api).list_namespaced_pod("shop", label_selector="app=search")
    assert len(pods.items) == 6


def test_replicasets_carry_revisions_and_rollback_reuses_the_old_one(
    kube_api: Any, cluster: Cluster
) -> None:
    apps = client.AppsV1Api(kube_api)
    image = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "catalog", "image": "registry.local/shop/catalog:9.9.9"}
                    ]
                }
            }
        }
    }
    apps.patch_namespaced_deployment("catalog", "shop", image, _content_type=STRATEGIC)
    cluster.advance(120)
    first = revisions(apps, "catalog")
    assert sorted(first.values()) == [1, 2]
    old = min(first, key=first.__getitem__)
    template = apps.read_namespaced_replica_set(old, "shop").spec.template
    body = apps.api_client.sanitize_for_serialization(template)
    del body["metadata"]["labels"]["pod-template-hash"]
    apps.patch_namespaced_deployment(
        "catalog",
        "shop",
        [{"op": "replace", "path": "/spec/template", "value": body}],
        _content_type="application/json-patch+json",
    )
    cluster.advance(120)
    assert revisions(apps, "catalog")[old] == 3  # reused, renumbered like kubectl undo


def test_errors_are_kubernetes_status_objects(kube_api: Any) -> None:
    apps = client.AppsV1Api(kube_api)
    with pytest.raises(ApiException) as missing:
        apps.read_namespaced_deployment("nope", "shop")
    assert missing.value.status == 404
    assert '"reason":"NotFound"' in missing.value.body.replace(" ", "")
    current = apps.read_namespaced_deployment("cart", "shop")
    current.metadata.resource_version = "1"
    with pytest.raises(ApiException) as conflict:
        apps.replace_namespaced_deployment("cart", "shop", current)
    assert conflict.value.status == 409
    with pytest.raises(ApiException) as invalid:
        apps.patch_namespaced_deployment_scale(
            "cart", "shop", {"spec": {"replicas": -1}}, _content_type=MERGE
        )
    assert invalid.value.status == 422


def test_an_object_body_sent_as_json_patch_is_rejected(sim_server: Any) -> None:
    """A real API server answers 400 to an object body labelled as a JSON patch."""
    import httpx

    answer = httpx.patch(
        f"{sim_server.url}/apis/apps/v1/namespaces/shop/deployments/cart",
        content=b'{"spec": {"replicas": 2}}',
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert answer.status_code == 400
    assert answer.json()["kind"] == "Status"
    unsupported = httpx.patch(
        f"{sim_server.url}/apis/apps/v1/namespaces/shop/deployments/cart",
        content=b"{}",
        headers={"Content-Type": "text/plain"},
    )
    assert unsupported.status_code == 415


def test_dry_run_answers_but_changes_nothing(kube_api: Any) -> None:
    apps = client.AppsV1Api(kube_api)
    before = apps.read_namespaced_deployment_scale("cart", "shop")
    answer = apps.patch_namespaced_deployment_scale(
        "cart", "shop", {"spec": {"replicas": 7}}, _content_type=MERGE, dry_run="All"
    )
    assert answer.spec.replicas == 7
    after = apps.read_namespaced_deployment_scale("cart", "shop")
    assert after.spec.replicas == 3
    assert after.metadata.resource_version == before.metadata.resource_version


def test_events_are_created_and_listed(kube_api: Any) -> None:
    core = client.CoreV1Api(kube_api)
    event = client.CoreV1Event(
        metadata=client.V1ObjectMeta(generate_name="cart."),
        involved_object=client.V1ObjectReference(kind="Deployment", name="cart", namespace="shop"),
        reason="Test",
        message="hello",
        type="Normal",
    )
    created = core.create_namespaced_event("shop", event)
    assert created.metadata.name.startswith("cart.")
    listed = core.list_namespaced_event("shop").items
    assert [e.reason for e in listed] == ["Test"]


def test_discovery_and_metrics_endpoints(sim_server: Any, kube_api: Any) -> None:
    import httpx

    version = client.VersionApi(kube_api).get_code()
    assert version.major == "1"
    groups = client.ApisApi(kube_api).get_api_versions()
    assert [g.name for g in groups.groups] == ["apps"]
    text = httpx.get(f"{sim_server.url}/metrics").text
    assert 'kube_deployment_spec_replicas{namespace="shop",deployment="cart"} 3' in text
