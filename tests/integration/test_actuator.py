"""The actuator's requests against the simulated API server, through the official client."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client

from healer.act.kube import KubeActuator
from healer.errors import PermanentActionError
from healer.sim.cluster import Cluster
from healer.types import ActionKind, ActionStatus, Mode, Plan, WorkloadRef

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
SEARCH = WorkloadRef("shop", "Deployment", "search")
CART = WorkloadRef("shop", "Deployment", "cart")


def plan(workload: WorkloadRef, action: ActionKind, mode: Mode = Mode.AUTO, **params: Any) -> Plan:
    return Plan(workload, "test", action, params, mode, (), "test", 600.0)


def add_hpa(kube_api: Any, name: str, minimum: int, maximum: int) -> None:
    hpa = client.V2HorizontalPodAutoscaler(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V2HorizontalPodAutoscalerSpec(
            scale_target_ref=client.V2CrossVersionObjectReference(
                api_version="apps/v1", kind="Deployment", name=name
            ),
            min_replicas=minimum,
            max_replicas=maximum,
            metrics=[
                client.V2MetricSpec(
                    type="Resource",
                    resource=client.V2ResourceMetricSource(
                        name="cpu",
                        target=client.V2MetricTarget(type="Utilization", average_utilization=80),
                    ),
                )
            ],
        ),
    )
    client.AutoscalingV2Api(kube_api).create_namespaced_horizontal_pod_autoscaler("shop", hpa)


def test_state_reports_revisions_and_no_hpa(kube_api: Any) -> None:
    state = KubeActuator(kube_api).read_state(SEARCH)
    assert state.replicas == 3 and state.rollout_complete
    assert [r.number for r in state.revisions] == [1]
    assert state.hpa is None


def test_scale_with_an_hpa_raises_its_floor_instead(kube_api: Any, cluster: Cluster) -> None:
    add_hpa(kube_api, "search", 3, 12)
    actuator = KubeActuator(kube_api)
    state = actuator.read_state(SEARCH)
    assert state.hpa is not None and state.hpa.min_replicas == 3
    record = actuator.apply(plan(SEARCH, ActionKind.SCALE, replicas=7, hpa="search"), now=NOW)
    assert record.status == ActionStatus.SUCCEEDED, record.error
    assert "horizontalpodautoscalers/search" in str(record.request["path"])
    hpa = client.AutoscalingV2Api(kube_api).read_namespaced_horizontal_pod_autoscaler(
        "search", "shop"
    )
    assert hpa.spec.min_replicas == 7
    cluster.advance(120)
    assert actuator.read_state(SEARCH).replicas >= 7  # the autoscaler obeyed its new floor


def test_plain_scale_patches_the_scale_subresource(kube_api: Any) -> None:
    actuator = KubeActuator(kube_api)
    record = actuator.apply(plan(SEARCH, ActionKind.SCALE, replicas=5), now=NOW)
    assert record.status == ActionStatus.SUCCEEDED
    assert record.request["path"] == "/apis/apps/v1/namespaces/shop/deployments/search/scale"
    assert actuator.read_state(SEARCH).replicas == 5


def test_dry_run_is_validated_by_the_server_and_changes_nothing(kube_api: Any) -> None:
    actuator = KubeActuator(kube_api)
    record = actuator.apply(plan(SEARCH, ActionKind.SCALE, Mode.DRY_RUN, replicas=5), now=NOW)
    assert record.status == ActionStatus.DRY_RUN
    assert actuator.read_state(SEARCH).replicas == 3
    events = client.CoreV1Api(kube_api).list_namespaced_event("shop").items
    assert events == []


def test_approval_mode_sends_nothing(kube_api: Any) -> None:
    actuator = KubeActuator(kube_api)
    record = actuator.apply(plan(SEARCH, ActionKind.RESTART, Mode.APPROVAL), now=NOW)
    assert record.status == ActionStatus.PENDING_APPROVAL
    assert actuator.read_state(SEARCH).generation == 1


def test_rollback_without_an_earlier_revision_fails_cleanly(kube_api: Any) -> None:
    record = KubeActuator(kube_api).apply(plan(CART, ActionKind.ROLLBACK, to_revision=7), now=NOW)
    assert record.status == ActionStatus.FAILED
    assert "no revision 7" in (record.error or "")


def test_restart_of_a_missing_workload_fails_with_the_servers_reason(kube_api: Any) -> None:
    ghost = WorkloadRef("shop", "Deployment", "ghost")
    record = KubeActuator(kube_api).apply(plan(ghost, ActionKind.RESTART), now=NOW)
    assert record.status == ActionStatus.FAILED
    assert (record.error or "").startswith("404")


def test_each_action_posts_an_event_on_the_deployment(kube_api: Any) -> None:
    KubeActuator(kube_api).apply(plan(CART, ActionKind.RESTART), now=NOW)
    [event] = client.CoreV1Api(kube_api).list_namespaced_event("shop").items
    assert (event.involved_object.kind, event.involved_object.name) == ("Deployment", "cart")
    assert event.reason == "HealerRestart"
    assert event.source.component == "healer"


def test_a_pod_resolves_to_the_workload_that_controls_it(kube_api: Any, cluster: Cluster) -> None:
    """Through the owner references, as an alert naming a pod is resolved: a
    Deployment's pod (through its ReplicaSet), a StatefulSet's pod, a pod that is gone
    (the server's 404)."""
    actuator = KubeActuator(kube_api)
    [pod, *_] = cluster.pods_of("shop", "search")
    assert actuator.owner_of_pod("shop", pod["metadata"]["name"]) == SEARCH
    labels = {"app": "ledger"}
    template = {
        "metadata": {"labels": labels},
        "spec": {"containers": [{"name": "l", "image": "l:1"}]},
    }
    cluster.create_workload(
        "statefulsets",
        "shop",
        {
            "metadata": {"name": "ledger"},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": template},
        },
    )
    cluster.advance(30)
    assert actuator.owner_of_pod("shop", "ledger-0") == WorkloadRef("shop", "StatefulSet", "ledger")
    with pytest.raises(PermanentActionError, match="404"):
        actuator.owner_of_pod("shop", "search-gone")
