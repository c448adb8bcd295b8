"""Cordon, drain and uncordon: the requests kubectl sends, and how a crash is judged."""

from __future__ import annotations

import pytest

from healer.actions import REGISTRY, handler
from healer.errors import PermanentActionError
from healer.types import ActionKind, JsonObject, WorkloadRef, node_ref
from tests.builders import NOW
from tests.unit.actions.fakes import FakeReads

NODE = node_ref("node-b")


def cluster(unschedulable: bool | None) -> FakeReads:
    spec: JsonObject = {} if unschedulable is None else {"unschedulable": unschedulable}
    return FakeReads(nodes={"node-b": {"metadata": {"name": "node-b"}, "spec": spec}})


def test_a_node_target_is_cluster_scoped_and_named_as_kubectl_names_it() -> None:
    assert (NODE.namespace, NODE.kind, str(NODE)) == ("", "Node", "node/node-b")


def test_cordon_patches_unschedulable_true_with_a_strategic_merge_patch() -> None:
    request = handler(ActionKind.CORDON).request(NODE, {}, cluster(None), NOW)

    assert request.to_json() == {
        "verb": "PATCH",
        "path": "/api/v1/nodes/node-b",
        "content_type": "application/strategic-merge-patch+json",
        "body": {"spec": {"unschedulable": True}},
    }


def test_uncordon_removes_unschedulable_as_kubectls_two_way_merge_patch_does() -> None:
    request = handler(ActionKind.UNCORDON).request(NODE, {}, cluster(True), NOW)

    assert request.path == "/api/v1/nodes/node-b"
    assert request.body == {"spec": {"unschedulable": None}}


@pytest.mark.parametrize(
    ("kind", "unschedulable", "landed"),
    [
        (ActionKind.CORDON, True, True),
        (ActionKind.CORDON, None, False),
        (ActionKind.UNCORDON, None, True),
        (ActionKind.UNCORDON, False, True),
        (ActionKind.UNCORDON, True, False),
    ],
)
def test_a_cordon_or_uncordon_landed_when_the_node_says_so(
    kind: ActionKind, unschedulable: bool | None, landed: bool
) -> None:
    intent: JsonObject = {"action": kind.value, "params": {}}
    assert handler(kind).landed(NODE, intent, NOW, cluster(unschedulable)) is landed


def test_whether_a_cordon_landed_on_a_node_that_is_gone_cannot_be_told() -> None:
    with pytest.raises(PermanentActionError, match="node/node-b does not exist"):
        handler(ActionKind.CORDON).landed(NODE, {"params": {}}, NOW, FakeReads())


def test_a_drain_sends_an_eviction_for_the_pod_it_names_never_a_delete() -> None:
    params = {"namespace": "shop", "pod": "cart-1"}
    request = handler(ActionKind.DRAIN).request(NODE, params, FakeReads(), NOW)

    assert request.verb == "POST"
    assert request.path == "/api/v1/namespaces/shop/pods/cart-1/eviction"
    assert request.body == {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": "cart-1", "namespace": "shop"},
    }


def test_a_drain_without_its_pod_is_refused_naming_the_field() -> None:
    with pytest.raises(PermanentActionError, match=r"drain params .*pod: Field required"):
        handler(ActionKind.DRAIN).request(NODE, {"namespace": "shop"}, FakeReads(), NOW)


def test_a_drains_eviction_landed_when_the_pod_is_gone_or_terminating() -> None:
    sent = handler(ActionKind.DRAIN).request(
        NODE, {"namespace": "shop", "pod": "cart-1"}, FakeReads(), NOW
    )
    running = FakeReads(pods={"cart-1": {"metadata": {"name": "cart-1"}}})
    leaving = FakeReads(
        pods={
            "cart-1": {"metadata": {"name": "cart-1", "deletionTimestamp": "2026-03-02T12:00:00Z"}}
        }
    )
    drain = handler(ActionKind.DRAIN)

    assert drain.landed(NODE, sent.to_json(), NOW, FakeReads()) is True
    assert drain.landed(NODE, sent.to_json(), NOW, leaving) is True
    assert drain.landed(NODE, sent.to_json(), NOW, running) is False


def test_only_a_drain_leaves_a_pdbs_429_to_the_next_cycle() -> None:
    assert [k for k, a in REGISTRY.items() if not a.retry_throttled] == [ActionKind.DRAIN]


@pytest.mark.parametrize("kind", [ActionKind.CORDON, ActionKind.DRAIN, ActionKind.UNCORDON])
def test_node_actions_refuse_a_workload_and_workload_actions_refuse_a_node(
    kind: ActionKind,
) -> None:
    cart = WorkloadRef("shop", "Deployment", "cart")
    with pytest.raises(PermanentActionError, match="does not support a Deployment"):
        handler(kind).request(cart, {"namespace": "shop", "pod": "p"}, FakeReads(), NOW)
    for other in (ActionKind.RESTART, ActionKind.SCALE, ActionKind.ROLLBACK, ActionKind.EVICT):
        assert not handler(other).supports("Node")


def test_nodes_need_get_and_patch_and_a_drain_needs_evictions() -> None:
    rights = {(r.resource, v) for r in handler(ActionKind.CORDON).rbac for v in r.verbs}
    assert rights == {("nodes", "get"), ("nodes", "patch")}
    drain = {(r.resource, v) for r in handler(ActionKind.DRAIN).rbac for v in r.verbs}
    assert ("pods/eviction", "create") in drain and ("pods", "list") in drain
    assert all(v != "delete" for _, v in drain)
