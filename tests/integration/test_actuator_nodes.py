"""The node actions against the simulated API server, through the official client.

Cordon and uncordon patch ``spec.unschedulable`` as kubectl does; the pods of a node
are listed by ``spec.nodeName``; a drain's eviction a PodDisruptionBudget refuses is
recorded failed with the 429 at once (no retry holding the cycle) and the pod stays.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from healer.act.kube import KubeActuator
from healer.sim.cluster import Cluster
from healer.types import ActionKind, ActionRecord, ActionStatus, Mode, Plan, node_ref
from tests.builders import NOW

pytestmark = pytest.mark.integration


def act(actuator: KubeActuator, node: str, action: ActionKind, **params: Any) -> ActionRecord:
    plan = Plan(node_ref(node), "node-heal", action, params, Mode.AUTO, (), "test", 600.0)
    return actuator.apply(plan, now=NOW)


def busiest(cluster: Cluster) -> str:
    """The node that runs most of shop/cart's pods."""
    nodes = [p["spec"]["nodeName"] for p in cluster.list_objects("pods", "shop", "app=cart")]
    return max(sorted(set(nodes)), key=nodes.count)


def test_cordon_and_uncordon_patch_the_node_as_kubectl_does(
    kube_api: Any, cluster: Cluster
) -> None:
    actuator, core = KubeActuator(kube_api), client.CoreV1Api(kube_api)
    name = busiest(cluster)

    cordoned = act(actuator, name, ActionKind.CORDON)
    assert cordoned.status is ActionStatus.SUCCEEDED
    assert core.read_node(name).spec.unschedulable is True
    assert actuator.already_applied(cordoned) is True

    uncordoned = act(actuator, name, ActionKind.UNCORDON)
    assert uncordoned.status is ActionStatus.SUCCEEDED
    assert not core.read_node(name).spec.unschedulable
    assert actuator.already_applied(uncordoned) is True
    events = core.list_namespaced_event("default").items
    assert sorted((e.involved_object.kind, e.involved_object.name, e.reason) for e in events) == [
        ("Node", name, "HealerCordon"),
        ("Node", name, "HealerUncordon"),
    ]


def test_the_pods_of_a_node_are_those_bound_to_it(kube_api: Any, cluster: Cluster) -> None:
    name = busiest(cluster)
    pods = KubeActuator(kube_api).pods_on_node(name)

    bound = {
        p["metadata"]["name"]
        for p in cluster.list_objects("pods", None)
        if p["spec"].get("nodeName") == name
    }
    assert {p.name for p in pods} == bound
    cart = next(p for p in pods if p.name.startswith("cart-"))
    assert cart.owner.startswith("ReplicaSet/cart-") and cart.ready and not cart.daemon


def test_a_drain_a_budget_refuses_fails_at_once_and_deletes_nothing(
    kube_api: Any, cluster: Cluster
) -> None:
    actuator, policy = KubeActuator(kube_api), client.PolicyV1Api(kube_api)
    budget = {
        "metadata": {"name": "cart"},
        "spec": {"selector": {"matchLabels": {"app": "cart"}}, "maxUnavailable": 0},
    }
    policy.create_namespaced_pod_disruption_budget("shop", budget)
    name = busiest(cluster)
    pod = next(p for p in actuator.pods_on_node(name) if p.name.startswith("cart-"))

    record = act(actuator, name, ActionKind.DRAIN, namespace="shop", pod=pod.name)

    assert record.status is ActionStatus.FAILED
    assert record.error is not None and record.error.startswith("429")
    assert actuator.waits_s == []  # asked again next cycle, not retried now
    assert record.request["path"] == f"/api/v1/namespaces/shop/pods/{pod.name}/eviction"
    assert cluster.get_object("pods", "shop", pod.name)["metadata"].get("deletionTimestamp") is None

    policy.delete_namespaced_pod_disruption_budget("cart", "shop")
    again = act(actuator, name, ActionKind.DRAIN, namespace="shop", pod=pod.name)
    assert again.status is ActionStatus.SUCCEEDED
    assert actuator.already_applied(again) is True
