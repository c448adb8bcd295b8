"""The restart action: its request, its paused refusal, how a crash is reconciled."""

from __future__ import annotations

from datetime import timedelta

import pytest
from builders import CART, NOW, state
from fakes import FakeReads

from healer.actions import restart
from healer.actions.base import NoSettings, PlanInputs
from healer.config import GuardSettings
from healer.errors import PermanentActionError
from healer.types import Finding

ACTION = restart.ACTION


def cart(paused: bool = False, stamp: str | None = None) -> FakeReads:
    annotations = {restart.RESTARTED_AT: stamp} if stamp else {}
    dep = {"spec": {"paused": paused, "template": {"metadata": {"annotations": annotations}}}}
    return FakeReads(deployments={"cart": dep})  # type: ignore[dict-item]  # literal JSON


def test_a_restart_has_no_parameters_and_refuses_any() -> None:
    finding = Finding(CART, NOW, 0.9, (), NOW, "test")
    concrete = ACTION.concrete(PlanInputs(finding, state(), GuardSettings()), NoSettings())
    assert concrete.params.to_json() == {} and concrete.sizing == ""
    with pytest.raises(PermanentActionError, match=r"restart params.*replicas"):
        ACTION.request(CART, {"replicas": 3}, cart(), NOW)


def test_the_request_is_kubectl_rollout_restart() -> None:
    request = ACTION.request(CART, {}, cart(), NOW)

    assert request.to_json() == {
        "verb": "PATCH",
        "path": "/apis/apps/v1/namespaces/shop/deployments/cart",
        "content_type": "application/strategic-merge-patch+json",
        "body": {
            "spec": {
                "template": {
                    "metadata": {"annotations": {restart.RESTARTED_AT: "2026-03-02T12:00:00Z"}}
                }
            }
        },
    }


def test_a_paused_deployment_is_refused_from_a_fresh_read() -> None:
    with pytest.raises(PermanentActionError, match="paused: resume it before restarting"):
        ACTION.request(CART, {}, cart(paused=True), NOW)


def test_it_landed_when_the_template_carries_its_stamp() -> None:
    assert ACTION.landed(CART, {"params": {}}, NOW, cart(stamp="2026-03-02T12:00:00Z"))
    assert not ACTION.landed(CART, {"params": {}}, NOW + timedelta(seconds=1), cart(stamp="x"))
    assert not ACTION.landed(CART, {"params": {}}, NOW, cart())


def test_it_needs_the_paused_guard_and_rights_on_the_workloads_it_restarts() -> None:
    assert ACTION.guards == ("paused",)
    assert {(r.group, r.resource) for r in ACTION.rbac} == {
        ("apps", "deployments"),
        ("apps", "statefulsets"),
        ("apps", "daemonsets"),
    }
