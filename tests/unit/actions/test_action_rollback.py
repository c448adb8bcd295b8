"""The rollback action: the revision chosen, kubectl's undo patch, crash reconciling."""

from __future__ import annotations

import pytest
from builders import CART, NOW, revision, state
from fakes import FakeReads

from healer.actions import rollback
from healer.actions.base import NoSettings, PlanInputs
from healer.config import GuardSettings
from healer.errors import PermanentActionError
from healer.types import Finding, JsonObject, WorkloadRef

ACTION = rollback.ACTION
FINDING = Finding(CART, NOW, 0.9, (), NOW, "test")


def replicaset(number: int, image: str) -> JsonObject:
    return {
        "metadata": {
            "name": f"cart-{number}",
            "annotations": {rollback.REVISION: str(number), "team": f"t{number}"},
        },
        "spec": {
            "template": {
                "metadata": {"labels": {"app": "cart", "pod-template-hash": f"h{number}"}},
                "spec": {"containers": [{"name": "cart", "image": image}]},
            }
        },
    }


def cluster(paused: bool = False, current: int = 4) -> FakeReads:
    dep: JsonObject = {
        "metadata": {"annotations": {rollback.REVISION: str(current), "team": "t4"}},
        "spec": {"paused": paused},
    }
    sets = [replicaset(4, "cart:4"), replicaset(3, "cart:3")]
    return FakeReads(deployments={"cart": dep}, sets={"cart": sets})


def test_the_target_is_the_previous_revision_and_both_are_recorded() -> None:
    concrete = ACTION.concrete(PlanInputs(FINDING, state(), GuardSettings()), NoSettings())
    assert concrete.params.to_json() == {"to_revision": 3, "from_revision": 4}


def test_without_an_earlier_revision_only_the_current_is_recorded() -> None:
    only = state(revision(1))
    concrete = ACTION.concrete(PlanInputs(FINDING, only, GuardSettings()), NoSettings())
    assert concrete.params.to_json() == {"from_revision": 1}
    with pytest.raises(PermanentActionError, match="no earlier revision"):
        ACTION.request(CART, concrete.params.to_json(), cluster(), NOW)


def test_the_request_is_kubectl_rollout_undo() -> None:
    request = ACTION.request(CART, {"to_revision": 3, "from_revision": 4}, cluster(), NOW)

    assert (request.verb, request.path, request.content_type) == (
        "PATCH",
        "/apis/apps/v1/namespaces/shop/deployments/cart",
        "application/json-patch+json",
    )
    assert request.body == [
        {
            "op": "replace",
            "path": "/spec/template",
            "value": {
                "metadata": {"labels": {"app": "cart"}},
                "spec": {"containers": [{"name": "cart", "image": "cart:3"}]},
            },
        },
        {
            "op": "replace",
            "path": "/metadata/annotations",
            "value": {rollback.REVISION: "4", "team": "t3"},
        },
    ]


def test_a_missing_revision_or_a_paused_deployment_is_refused() -> None:
    with pytest.raises(PermanentActionError, match="no revision 2 to roll back to"):
        ACTION.request(CART, {"to_revision": 2}, cluster(), NOW)
    with pytest.raises(PermanentActionError, match="paused"):
        ACTION.request(CART, {"to_revision": 3}, cluster(paused=True), NOW)


def test_it_landed_once_the_deployment_left_the_revision_it_came_from() -> None:
    params = {"to_revision": 3, "from_revision": 4}
    assert not ACTION.landed(CART, {"params": params}, NOW, cluster(current=4))
    assert ACTION.landed(CART, {"params": params}, NOW, cluster(current=5))


def test_it_needs_the_rollback_guards_and_the_replicasets() -> None:
    assert ACTION.guards == ("paused", "rollback_target", "flip_back")
    assert ("apps", "replicasets") in {(r.group, r.resource) for r in ACTION.rbac}


LEDGER = WorkloadRef("shop", "StatefulSet", "ledger")


def ledger_pod(name: str, revision_name: str, *, ready: bool) -> JsonObject:
    return {
        "metadata": {"name": name, "labels": {"controller-revision-hash": revision_name}},
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def test_a_statefulset_rollback_deletes_the_pods_stuck_at_the_bad_revision() -> None:
    reads = FakeReads(
        controller_revisions={
            "ledger": [
                {"metadata": {"name": "ledger-bad"}, "revision": 2},
                {"metadata": {"name": "ledger-good"}, "revision": 3},
            ]
        },
        pods={
            "ledger-0": ledger_pod("ledger-0", "ledger-good", ready=True),
            "ledger-1": ledger_pod("ledger-1", "ledger-bad", ready=True),
            "ledger-2": ledger_pod("ledger-2", "ledger-bad", ready=False),
        },
    )
    follow = ACTION.follow_up(LEDGER, {"to_revision": 1, "from_revision": 2}, reads, NOW)
    assert [r.to_json() for r in follow] == [
        {
            "verb": "DELETE",
            "path": "/api/v1/namespaces/shop/pods/ledger-2",
            "content_type": "application/json",
            "body": None,
        }
    ]
    assert ACTION.follow_up(CART, {"to_revision": 3, "from_revision": 4}, reads, NOW) == ()
