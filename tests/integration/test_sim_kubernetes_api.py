"""The simulated cluster's API, driven only through the official kubernetes client."""

from __future__ import annotations

import json
from typing import Any

import httpx
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


@pytest.mark.parametrize(
    ("content_type", "body", "problem"),
    [
        ("application/json-patch+json", b'{"op": "replace"}', "cannot unmarshal object"),
        ("application/json-patch+json", b"[1]", "cannot unmarshal number"),
        (MERGE, b'[{"spec": {}}]', "cannot unmarshal array"),
        (STRATEGIC, b"7", "cannot unmarshal number"),
        (STRATEGIC, b"null", "cannot unmarshal null"),
    ],
)
@pytest.mark.parametrize("path", ["deployments/cart", "deployments/cart/scale"])
def test_a_patch_body_of_the_wrong_shape_is_a_400_status(
    sim_server: Any, content_type: str, body: bytes, problem: str, path: str
) -> None:
    answer = httpx.patch(
        f"{sim_server.url}/apis/apps/v1/namespaces/shop/{path}",
        content=body,
        headers={"Content-Type": content_type},
    )
    assert answer.status_code == 400
    status = answer.json()
    assert (status["kind"], status["reason"], status["code"]) == ("Status", "BadRequest", 400)
    assert problem in status["message"]
    assert content_type in status["message"] or "JSON patch" in status["message"]


def test_an_unsupported_patch_type_is_415_whatever_the_body(sim_server: Any) -> None:
    answer = httpx.patch(
        f"{sim_server.url}/apis/apps/v1/namespaces/shop/deployments/cart",
        content=b"not json at all",
        headers={"Content-Type": "application/apply-patch+yaml"},
    )
    assert answer.status_code == 415
    assert answer.json()["reason"] == "UnsupportedMediaType"


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
    assert [g.name for g in groups.groups] == [
        "apps",
        "autoscaling",
        "policy",
        "coordination.k8s.io",
        "apiextensions.k8s.io",
        "argoproj.io",
        "kustomize.toolkit.fluxcd.io",
        "source.toolkit.fluxcd.io",
    ]
    assert client.AutoscalingV2Api(kube_api).get_api_resources().group_version == "autoscaling/v2"
    policy = client.PolicyV1Api(kube_api).get_api_resources()
    assert [r.name for r in policy.resources] == ["poddisruptionbudgets"]
    leases = client.CoordinationV1Api(kube_api).get_api_resources()
    assert [r.name for r in leases.resources] == ["leases"]
    pods = {r.name for r in client.CoreV1Api(kube_api).get_api_resources().resources}
    assert {"pods", "pods/eviction", "events"} <= pods
    text = httpx.get(f"{sim_server.url}/metrics").text
    assert 'kube_deployment_spec_replicas{namespace="shop",deployment="cart"} 3' in text


# ---- pods, eviction and disruption budgets ---------------------------------------------


def pod_names(core: client.CoreV1Api, selector: str) -> list[str]:
    return sorted(
        p.metadata.name for p in core.list_namespaced_pod("shop", label_selector=selector).items
    )


def evict(core: client.CoreV1Api, name: str, **kwargs: Any) -> Any:
    body = client.V1Eviction(metadata=client.V1ObjectMeta(name=name, namespace="shop"))
    return core.create_namespaced_pod_eviction(name, "shop", body, **kwargs)


def budget(spec: dict[str, Any], name: str = "cart") -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": "cart"}}, **spec},
    }


def test_pods_get_list_by_selector_and_delete_then_replaced(
    kube_api: Any, cluster: Cluster
) -> None:
    core = client.CoreV1Api(kube_api)
    names = pod_names(core, "app=cart")
    assert len(names) == 3
    pod = core.read_namespaced_pod(names[0], "shop")
    assert pod.status.phase == "Running"
    assert pod.metadata.owner_references[0].kind == "ReplicaSet"
    assert len(pod_names(core, "app in (cart,search),tier=backend")) == 6
    assert len(pod_names(core, "app notin (cart)")) == 9
    running = core.list_namespaced_pod("shop", field_selector="status.phase=Running").items
    assert len(running) == 12
    by_name = core.list_namespaced_pod("shop", field_selector=f"metadata.name={names[0]}").items
    assert [p.metadata.name for p in by_name] == [names[0]]
    core.delete_namespaced_pod(names[0], "shop")
    after = pod_names(core, "app=cart")  # the ReplicaSet replaced it at once, not on a tick
    assert len(after) == 3
    assert names[0] not in after
    (replacement,) = set(after) - set(names)
    assert core.read_namespaced_pod(replacement, "shop").status.conditions[0].status == "False"
    cluster.advance(30)
    assert pod_names(core, "app=cart") == after


def test_eviction_honours_a_min_available_budget(kube_api: Any, cluster: Cluster) -> None:
    core, policy = client.CoreV1Api(kube_api), client.PolicyV1Api(kube_api)
    created = policy.create_namespaced_pod_disruption_budget("shop", budget({"minAvailable": 2}))
    assert created.status.disruptions_allowed == 1
    assert created.status.expected_pods == 3
    first, second, _ = pod_names(core, "app=cart")
    evict(core, first)
    assert first not in pod_names(core, "app=cart")
    with pytest.raises(ApiException) as refused:
        evict(core, second)
    assert refused.value.status == 429
    status = json.loads(refused.value.body)
    assert status["kind"] == "Status"
    assert status["reason"] == "TooManyRequests"
    assert status["details"]["causes"][0]["reason"] == "DisruptionBudget"
    assert second in pod_names(core, "app=cart")
    cluster.advance(60)  # the ReplicaSet replaced the evicted pod, and it became ready
    assert (
        policy.read_namespaced_pod_disruption_budget("cart", "shop").status.disruptions_allowed == 1
    )
    evict(core, second)
    assert second not in pod_names(core, "app=cart")
    assert len(pod_names(core, "app=cart")) == 3  # replaced at once


@pytest.mark.parametrize(
    ("spec", "allowed"),
    [
        ({"minAvailable": "50%"}, 1),  # ceil(1.5) = 2 must stay
        ({"minAvailable": "100%"}, 0),
        ({"maxUnavailable": 2}, 2),
        ({"maxUnavailable": "34%"}, 2),  # ceil(1.02) = 2 may go
        ({"maxUnavailable": 0}, 0),
    ],
)
def test_budget_arithmetic_with_ints_and_percentages(
    kube_api: Any, spec: dict[str, Any], allowed: int
) -> None:
    core, policy = client.CoreV1Api(kube_api), client.PolicyV1Api(kube_api)
    policy.create_namespaced_pod_disruption_budget("shop", budget(spec))
    read = policy.read_namespaced_pod_disruption_budget("cart", "shop")
    assert read.status.disruptions_allowed == allowed
    names = pod_names(core, "app=cart")
    for name in names[:allowed]:
        evict(core, name)
    with pytest.raises(ApiException) as refused:
        evict(core, names[allowed])
    assert refused.value.status == 429


def test_eviction_dry_run_and_missing_pod(kube_api: Any) -> None:
    core = client.CoreV1Api(kube_api)
    name = pod_names(core, "app=cart")[0]
    evict(core, name, dry_run="All")
    assert name in pod_names(core, "app=cart")
    with pytest.raises(ApiException) as missing:
        evict(core, "no-such-pod")
    assert missing.value.status == 404


def test_budgets_are_listed_and_invalid_ones_refused(kube_api: Any) -> None:
    policy = client.PolicyV1Api(kube_api)
    policy.create_namespaced_pod_disruption_budget("shop", budget({"minAvailable": 1}))
    assert [
        b.metadata.name for b in policy.list_namespaced_pod_disruption_budget("shop").items
    ] == ["cart"]
    assert len(policy.list_pod_disruption_budget_for_all_namespaces().items) == 1
    with pytest.raises(ApiException) as invalid:
        policy.create_namespaced_pod_disruption_budget(
            "shop", budget({"minAvailable": 1, "maxUnavailable": 1}, name="both")
        )
    assert invalid.value.status == 422
    with pytest.raises(ApiException) as exists:
        policy.create_namespaced_pod_disruption_budget("shop", budget({"minAvailable": 1}))
    assert exists.value.status == 409


# ---- horizontal pod autoscalers --------------------------------------------------------


def autoscaler(minimum: int, maximum: int, target: int, name: str = "search") -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": minimum,
            "maxReplicas": maximum,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": target},
                    },
                }
            ],
        },
    }


def replicas(apps: client.AppsV1Api, name: str = "search") -> int:
    return int(apps.read_namespaced_deployment(name, "shop").spec.replicas)


def test_hpa_keeps_replicas_within_bounds_and_writes_status(
    kube_api: Any, cluster: Cluster
) -> None:
    hpas, apps = client.AutoscalingV2Api(kube_api), client.AppsV1Api(kube_api)
    hpas.create_namespaced_horizontal_pod_autoscaler("shop", autoscaler(5, 8, 80))
    cluster.advance(15)
    assert replicas(apps) == 5  # raised to minReplicas at the first sync
    hpas.patch_namespaced_horizontal_pod_autoscaler(
        "search", "shop", {"spec": {"maxReplicas": 4, "minReplicas": 2}}, _content_type=MERGE
    )
    cluster.advance(15)
    # The bounds apply at once; below them the window's highest recommendation (all of
    # them low: the pods are far below 80%) decides.
    assert 2 <= replicas(apps) <= 4
    status = hpas.read_namespaced_horizontal_pod_autoscaler("search", "shop").status
    assert status.desired_replicas == replicas(apps)
    assert status.current_metrics[0].resource.current.average_utilization > 0
    conditions = {c.type: (c.status, c.reason) for c in status.conditions}
    assert conditions["ScalingActive"] == ("True", "ValidMetricFound")
    assert conditions["AbleToScale"][0] == "True"
    assert [
        h.metadata.name for h in hpas.list_namespaced_horizontal_pod_autoscaler("shop").items
    ] == ["search"]


def test_hpa_scales_up_on_cpu_and_down_only_after_the_stabilisation_window(
    kube_api: Any, cluster: Cluster
) -> None:
    hpas, apps = client.AutoscalingV2Api(kube_api), client.AppsV1Api(kube_api)
    hpas.create_namespaced_horizontal_pod_autoscaler("shop", autoscaler(1, 12, 80))
    cluster.advance(60)
    utilisation = hpas.read_namespaced_horizontal_pod_autoscaler("search", "shop").status
    measured = utilisation.current_metrics[0].resource.current.average_utilization
    # A target far below the measured utilisation: scale up, at most +100% or +4 per sync.
    low = max(1, measured // 4)
    strategic = [
        {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": low},
            },
        }
    ]
    hpas.patch_namespaced_horizontal_pod_autoscaler(
        "search", "shop", {"spec": {"metrics": strategic}}, _content_type=STRATEGIC
    )
    before = replicas(apps)
    cluster.advance(15)
    grown = replicas(apps)
    assert before < grown <= max(2 * before, before + 4)
    cluster.advance(120)
    peak = replicas(apps)
    assert peak > grown
    # A target far above: the recommendation drops, but not for five minutes.
    hpas.patch_namespaced_horizontal_pod_autoscaler(
        "search",
        "shop",
        {
            "spec": {
                "metrics": [
                    {
                        **strategic[0],
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": 95},
                        },
                    }
                ]
            }
        },
        _content_type=MERGE,
    )
    cluster.advance(240)
    assert replicas(apps) == peak
    cluster.advance(120)
    assert replicas(apps) < peak


def test_hpa_create_is_validated_and_dry_run_changes_nothing(kube_api: Any) -> None:
    hpas = client.AutoscalingV2Api(kube_api)
    with pytest.raises(ApiException) as invalid:
        hpas.create_namespaced_horizontal_pod_autoscaler("shop", autoscaler(5, 2, 80))
    assert invalid.value.status == 422
    hpas.create_namespaced_horizontal_pod_autoscaler("shop", autoscaler(1, 3, 80), dry_run="All")
    assert hpas.list_namespaced_horizontal_pod_autoscaler("shop").items == []


# ---- leases ----------------------------------------------------------------------------


def test_leases_created_replaced_with_conflicts_and_listed(kube_api: Any) -> None:
    leases = client.CoordinationV1Api(kube_api)
    body = client.V1Lease(
        metadata=client.V1ObjectMeta(name="healer-leader"),
        spec=client.V1LeaseSpec(holder_identity="pod-a", lease_duration_seconds=15),
    )
    created = leases.create_namespaced_lease("shop", body)
    current = leases.read_namespaced_lease("healer-leader", "shop")
    assert current.spec.holder_identity == "pod-a"
    current.spec.holder_identity = "pod-b"
    replaced = leases.replace_namespaced_lease("healer-leader", "shop", current)
    assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)
    current.spec.holder_identity = "pod-c"  # still carries the old resourceVersion
    with pytest.raises(ApiException) as conflict:
        leases.replace_namespaced_lease("healer-leader", "shop", current)
    assert conflict.value.status == 409
    assert json.loads(conflict.value.body)["reason"] == "Conflict"
    listed = leases.list_namespaced_lease("shop").items
    assert [(lease.metadata.name, lease.spec.holder_identity) for lease in listed] == [
        ("healer-leader", "pod-b")
    ]
    leases.delete_namespaced_lease("healer-leader", "shop", dry_run="All")
    assert len(leases.list_namespaced_lease("shop").items) == 1


# ---- deployments: create, delete, history, lists ---------------------------------------


def manifest(name: str, history: int = 10) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": 2,
            "revisionHistoryLimit": history,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": f"registry.local/{name}:1"}]},
            },
        },
    }


def test_deployments_created_and_deleted_with_their_pods(kube_api: Any, cluster: Cluster) -> None:
    apps, core = client.AppsV1Api(kube_api), client.CoreV1Api(kube_api)
    dry = apps.create_namespaced_deployment("shop", manifest("extra"), dry_run="All")
    assert dry.metadata.name == "extra"
    with pytest.raises(ApiException):
        apps.read_namespaced_deployment("extra", "shop")
    apps.create_namespaced_deployment("shop", manifest("extra"))
    cluster.advance(60)
    dep = apps.read_namespaced_deployment("extra", "shop")
    assert dep.status.available_replicas == 2
    apps.delete_namespaced_deployment("extra", "shop", dry_run="All")
    assert apps.read_namespaced_deployment("extra", "shop").metadata.name == "extra"
    apps.delete_namespaced_deployment("extra", "shop")
    cluster.advance(15)
    assert apps.list_namespaced_replica_set("shop", label_selector="app=extra").items == []
    assert core.list_namespaced_pod("shop", label_selector="app=extra").items == []


def test_deleting_a_scenario_workload_keeps_the_cluster_running(
    kube_api: Any, cluster: Cluster
) -> None:
    client.AppsV1Api(kube_api).delete_namespaced_deployment("cart", "shop")
    cluster.advance(60)
    assert (
        client.CoreV1Api(kube_api).list_namespaced_pod("shop", label_selector="app=cart").items
        == []
    )


def test_revision_history_limit_prunes_old_replicasets(kube_api: Any, cluster: Cluster) -> None:
    apps = client.AppsV1Api(kube_api)
    apps.create_namespaced_deployment("shop", manifest("pruned", history=1))
    for tag in ("2", "3", "4"):
        cluster.advance(60)
        patch = {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [{"name": "pruned", "image": f"registry.local/pruned:{tag}"}]
                    }
                }
            }
        }
        apps.patch_namespaced_deployment("pruned", "shop", patch, _content_type=STRATEGIC)
    cluster.advance(120)
    sets = apps.list_namespaced_replica_set("shop", label_selector="app=pruned").items
    assert sorted(
        int(rs.metadata.annotations["deployment.kubernetes.io/revision"]) for rs in sets
    ) == [3, 4]


def test_lists_carry_a_resource_version_that_moves_with_writes(kube_api: Any) -> None:
    apps = client.AppsV1Api(kube_api)
    first = apps.list_namespaced_deployment("shop").metadata.resource_version
    apps.patch_namespaced_deployment_scale(
        "cart", "shop", {"spec": {"replicas": 4}}, _content_type=MERGE
    )
    second = apps.list_namespaced_deployment("shop").metadata.resource_version
    assert int(second) > int(first)
    by_field = apps.list_deployment_for_all_namespaces(
        field_selector="metadata.namespace=web"
    ).items
    assert [d.metadata.name for d in by_field] == ["storefront"]
    with pytest.raises(ApiException) as unsupported:
        apps.list_namespaced_deployment("shop", field_selector="spec.paused=true")
    assert unsupported.value.status == 400


def test_dry_run_on_event_create(kube_api: Any) -> None:
    core = client.CoreV1Api(kube_api)
    event = client.CoreV1Event(
        metadata=client.V1ObjectMeta(generate_name="cart."),
        involved_object=client.V1ObjectReference(kind="Deployment", name="cart", namespace="shop"),
        reason="Test",
    )
    core.create_namespaced_event("shop", event, dry_run="All")
    assert core.list_namespaced_event("shop").items == []


# ---- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/apis/example.com/v1/namespaces/shop/widgets",
        "/api/v1/namespaces/shop/configmaps",
        "/apis/apps/v2/namespaces/shop/deployments",
        "/apis/apps/v1/namespaces/shop/deployments/cart/status/extra",
        "/nothing/here",
    ],
)
def test_unsupported_paths_are_404_status(sim_server: Any, path: str) -> None:
    answer = httpx.get(f"{sim_server.url}{path}")
    assert answer.status_code == 404
    body = answer.json()
    assert (body["kind"], body["status"], body["reason"], body["code"]) == (
        "Status",
        "Failure",
        "NotFound",
        404,
    )


@pytest.mark.parametrize(
    ("content", "codes"),
    [
        (b"{not json", {400}),
        (b"[1, 2]", {400}),
        (b'{"metadata": {"name": "x"}, "spec": "nope"}', {400, 422}),
        (b'{"metadata": {"name": "x"}, "spec": {"replicas": "three"}}', {400, 422}),
        (b'{"kind": "Pod", "metadata": {"name": "x"}}', {400}),
    ],
)
def test_malformed_bodies_are_400_or_422_and_the_server_keeps_serving(
    sim_server: Any, kube_api: Any, content: bytes, codes: set[int]
) -> None:
    answer = httpx.post(
        f"{sim_server.url}/apis/apps/v1/namespaces/shop/deployments",
        content=content,
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code in codes
    assert answer.json()["kind"] == "Status"
    assert client.AppsV1Api(kube_api).read_namespaced_deployment("cart", "shop").spec.replicas == 3


def test_verbs_a_resource_does_not_support_are_405(sim_server: Any) -> None:
    answer = httpx.delete(f"{sim_server.url}/apis/apps/v1/namespaces/shop/replicasets/x")
    assert answer.status_code == 405
    assert answer.json()["reason"] == "MethodNotAllowed"


def test_tables_for_kubectl(sim_server: Any) -> None:
    answer = httpx.get(
        f"{sim_server.url}/apis/apps/v1/namespaces/shop/deployments",
        headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"},
    )
    body = answer.json()
    assert body["kind"] == "Table"
    assert [c["name"] for c in body["columnDefinitions"]][:2] == ["Name", "Ready"]
    assert body["rows"][0]["object"]["kind"] == "PartialObjectMetadata"


# ---- schemas ---------------------------------------------------------------------------


def test_served_objects_validate_against_the_kubernetes_1_31_schemas(
    sim_server: Any, kube_api: Any, cluster: Cluster
) -> None:
    """Every kind the simulator serves, as read over HTTP, against the OpenAPI schemas."""
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    client.AutoscalingV2Api(kube_api).create_namespaced_horizontal_pod_autoscaler(
        "shop", autoscaler(2, 6, 60)
    )
    client.PolicyV1Api(kube_api).create_namespaced_pod_disruption_budget(
        "shop", budget({"maxUnavailable": "25%"})
    )
    client.CoordinationV1Api(kube_api).create_namespaced_lease(
        "shop",
        client.V1Lease(
            metadata=client.V1ObjectMeta(name="healer"),
            spec=client.V1LeaseSpec(holder_identity="a", lease_duration_seconds=15),
        ),
    )
    test_events_are_created_and_listed(kube_api)
    client.CoreV1Api(kube_api).delete_namespaced_pod(
        pod_names(client.CoreV1Api(kube_api), "app=cart")[0], "shop"
    )
    cluster.advance(120)
    paths = {
        "Deployment": "/apis/apps/v1/namespaces/shop/deployments",
        "ReplicaSet": "/apis/apps/v1/namespaces/shop/replicasets",
        "Pod": "/api/v1/namespaces/shop/pods",
        "Event": "/api/v1/namespaces/shop/events",
        "HorizontalPodAutoscaler": "/apis/autoscaling/v2/namespaces/shop/horizontalpodautoscalers",
        "PodDisruptionBudget": "/apis/policy/v1/namespaces/shop/poddisruptionbudgets",
        "Lease": "/apis/coordination.k8s.io/v1/namespaces/shop/leases",
    }
    for kind, path in paths.items():
        listing = httpx.get(f"{sim_server.url}{path}").json()
        assert listing["items"], kind
        for obj in listing["items"]:
            assert obj["kind"] == kind
            kubernetes_validate.validate(obj, "1.31.0", strict=True)
    scale = httpx.get(
        f"{sim_server.url}/apis/apps/v1/namespaces/shop/deployments/cart/scale"
    ).json()
    kubernetes_validate.validate(scale, "1.31.0", strict=True)
    # The validator is strict: a field the schema does not know fails.
    wrong = {**listing["items"][0], "spec": {"holderIdentity": "a", "holder": "typo"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong, "1.31.0", strict=True)
