"""The evict action: the pod chosen at plan time, the Eviction, crash reconciling."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from builders import CART, NOW, state
from fakes import FakeReads

from healer.actions import evict, handler
from healer.actions.base import NoSettings, PlanInputs
from healer.config import GuardSettings
from healer.decide import load_playbooks, plan
from healer.errors import PermanentActionError
from healer.types import (
    ActionHistory,
    ActionKind,
    Cause,
    Diagnosis,
    Direction,
    Finding,
    Mode,
    Plan,
    PodState,
    Signal,
    SignalDeviation,
    WorkloadRef,
)

ACTION = evict.ACTION
FINDING = Finding(CART, NOW, 0.9, (), NOW, "test")


def pod(name: str, *, ready: bool = True, restarts: int = 0, age_h: float = 1) -> PodState:
    return PodState(name, ready, restarts, NOW - timedelta(hours=age_h))


def chosen(*pods: PodState) -> dict[str, object]:
    inputs = PlanInputs(FINDING, state(pods=pods), GuardSettings())
    return dict(ACTION.concrete(inputs, NoSettings()).params.to_json())


def test_it_is_registered_under_its_kind_and_the_old_name() -> None:
    assert handler(ActionKind.EVICT) is ACTION
    assert ActionKind("delete_pod") is ActionKind.EVICT


def test_the_pod_is_chosen_when_the_plan_is_made() -> None:
    young, old = pod("cart-young", age_h=1), pod("cart-old", age_h=9)
    assert chosen(young, old) == {"pod": "cart-old"}
    assert chosen(young, old, pod("cart-crashy", restarts=4)) == {"pod": "cart-crashy"}
    assert chosen(old, pod("cart-stuck", ready=False), pod("cart-crashy", restarts=4)) == {
        "pod": "cart-stuck"
    }
    going = PodState("cart-going", False, 9, NOW - timedelta(days=1), terminating=True)
    assert chosen(going, young) == {"pod": "cart-young"}


def test_the_reason_names_the_pod() -> None:
    inputs = PlanInputs(FINDING, state(pods=(pod("cart-a", restarts=2),)), GuardSettings())
    assert ACTION.concrete(inputs, NoSettings()).sizing == (
        "; evicting pod cart-a (ready, 2 restarts)"
    )


def test_without_a_pod_the_request_fails_with_the_reason() -> None:
    assert chosen() == {}
    with pytest.raises(PermanentActionError, match="no pod to evict"):
        ACTION.request(CART, {}, FakeReads(), NOW)


def test_the_request_is_the_eviction_kubectl_drain_sends() -> None:
    request = ACTION.request(CART, {"pod": "cart-a"}, FakeReads(), NOW)

    assert request.to_json() == {
        "verb": "POST",
        "path": "/api/v1/namespaces/shop/pods/cart-a/eviction",
        "content_type": "application/json",
        "body": {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": "cart-a", "namespace": "shop"},
        },
    }


def test_it_landed_when_the_pod_is_gone_or_terminating() -> None:
    reads = FakeReads(
        pods={"cart-a": {"metadata": {}}, "cart-b": {"metadata": {"deletionTimestamp": "x"}}}
    )
    assert not ACTION.landed(CART, {"params": {"pod": "cart-a"}}, NOW, reads)
    assert ACTION.landed(CART, {"params": {"pod": "cart-b"}}, NOW, reads)
    assert ACTION.landed(CART, {"params": {"pod": "cart-gone"}}, NOW, reads)
    assert not ACTION.landed(CART, {"params": {}}, NOW, reads)
    sent = ACTION.request(CART, {"pod": "cart-b"}, reads, NOW).to_json()
    assert ACTION.landed(CART, sent, NOW, reads)  # a record that kept the request


def test_it_needs_the_eviction_budget_guard_and_the_eviction_subresource() -> None:
    assert ACTION.guards == ("eviction_budget",)
    assert ("", "pods/eviction", ("create",)) in {
        (r.group, r.resource, r.verbs) for r in ACTION.rbac
    }


def test_the_shipped_playbook_plans_an_eviction_in_batch_only() -> None:
    books = load_playbooks(Path(__file__).resolve().parents[3] / "playbooks")
    history = ActionHistory(last_action_at={}, recent_action_times=(), in_flight=0)
    memory = SignalDeviation(Signal.MEMORY, 0.9, 0.5, 8.0, Direction.UP)

    def planned(workload: WorkloadRef) -> Plan | None:
        return plan(
            Diagnosis(workload, Cause.MEMORY_LEAK, 0.9, "leak"),
            Finding(workload, NOW, 0.9, (memory,), NOW, "test"),
            state(workload=workload, pods=(pod("w-new"), pod("w-old", age_h=30))),
            playbooks=books,
            guards=GuardSettings(mode=Mode.AUTO),
            history=history,
            anomalous_workloads=1,
            watched_workloads=10,
            now=NOW,
        )

    batch = planned(WorkloadRef("batch", "Deployment", "worker"))
    assert batch is not None and batch.action is ActionKind.EVICT
    assert batch.params == {"pod": "w-old"} and batch.allowed and batch.mode is Mode.APPROVAL
    assert batch.reason.endswith("; evicting pod w-old (ready, 0 restarts)")
    shop = planned(CART)
    assert shop is not None and shop.action is ActionKind.RESTART


def test_the_pod_the_diagnosis_names_is_the_one_evicted() -> None:
    pods = (pod("cart-a", restarts=5), pod("cart-b"), pod("cart-odd", age_h=0.5))
    inputs = PlanInputs(FINDING, state(pods=pods), GuardSettings(), pod="cart-odd")
    concrete = ACTION.concrete(inputs, NoSettings())
    assert concrete.params.to_json() == {"pod": "cart-odd"}
    assert concrete.sizing == "; evicting pod cart-odd, the outlier"


def test_a_named_pod_already_gone_is_not_replaced_by_another() -> None:
    going = PodState("cart-odd", True, 0, NOW, terminating=True)
    for pods in ((pod("cart-a"), pod("cart-b")), (pod("cart-a"), going)):
        inputs = PlanInputs(FINDING, state(pods=pods), GuardSettings(), pod="cart-odd")
        concrete = ACTION.concrete(inputs, NoSettings())
        assert concrete.params.to_json() == {}
        assert concrete.sizing == "; pod cart-odd, the outlier, is already gone"


def outlier_plan(history: ActionHistory, **guards: object) -> Plan | None:
    books = load_playbooks(Path(__file__).resolve().parents[3] / "playbooks")
    latency = SignalDeviation(Signal.LATENCY_P99, 0.3, 0.09, 30.0, Direction.UP)
    return plan(
        Diagnosis(CART, Cause.POD_OUTLIER, 0.85, "one slow pod", pod="cart-b"),
        Finding(CART, NOW, 0.99, (latency,), NOW, "test"),
        state(pods=(pod("cart-a", restarts=3), pod("cart-b"), pod("cart-c"))),
        playbooks=books,
        guards=GuardSettings(mode=Mode.AUTO, **guards),  # type: ignore[arg-type]
        history=history,
        anomalous_workloads=1,
        watched_workloads=10,
        now=NOW,
    )


def test_the_shipped_playbook_evicts_the_outlier_pod_in_any_namespace() -> None:
    history = ActionHistory(last_action_at={}, recent_action_times=(), in_flight=0)
    planned = outlier_plan(history)
    assert planned is not None and planned.playbook == "evict-outlier-pod"
    assert planned.action is ActionKind.EVICT and planned.params == {"pod": "cart-b"}
    assert planned.allowed and planned.mode is Mode.AUTO
    [budget] = [g for g in planned.guard_results if g.guard == "eviction_budget"]
    assert budget.passed and budget.detail == "no pod of shop/cart evicted lately"


def test_one_eviction_per_workload_per_evict_cooldown() -> None:
    evicted = {CART: NOW - timedelta(minutes=20)}
    history = ActionHistory(
        last_action_at={}, recent_action_times=(), in_flight=0, last_eviction_at=evicted
    )
    blocked = outlier_plan(history)
    assert blocked is not None and blocked.blocked_by == ("eviction_budget",)
    [budget] = [g for g in blocked.guard_results if g.guard == "eviction_budget"]
    assert "evicted 20m ago" in budget.detail and "within 30m" in budget.detail
    shorter = outlier_plan(history, evict_cooldown_s=600)
    assert shorter is not None and shorter.allowed
