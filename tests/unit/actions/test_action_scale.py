"""The scale action: sizing, the scale subresource or the HPA floor, crash reconciling."""

from __future__ import annotations

from datetime import timedelta

import pytest
from builders import CART, NOW, state
from fakes import FakeReads

from healer.actions import scale
from healer.actions.base import NoSettings, PlanInputs
from healer.config import GuardSettings
from healer.errors import PermanentActionError
from healer.types import Direction, Finding, HpaState, Signal, SignalDeviation

ACTION = scale.ACTION
MERGE = "application/merge-patch+json"


def cpu(value: float, baseline: float) -> Finding:
    deviation = SignalDeviation(Signal.CPU, value, baseline, 6.0, Direction.UP)
    return Finding(CART, NOW, 0.9, (deviation,), NOW - timedelta(minutes=5), "test")


def test_sizing_from_cpu_fills_typed_params_and_the_guard_input() -> None:
    inputs = PlanInputs(cpu(1.6, 0.8), state(), GuardSettings())
    concrete = ACTION.concrete(inputs, scale.ScaleSettings(max_step_factor=2.0))

    assert concrete.params == scale.ScaleParams(replicas=6, from_replicas=3)
    assert concrete.params.to_json() == {"replicas": 6, "from_replicas": 3}
    assert concrete.scale == scale.ScaleTarget(3, 6, 1, GuardSettings().max_replicas)
    assert concrete.sizing == "; CPU at 2.00x its baseline with 1.25x headroom: 3 -> 6"


def test_with_an_hpa_the_floor_is_raised_and_named() -> None:
    hpa = HpaState("cart", min_replicas=2, max_replicas=10)
    concrete = ACTION.concrete(
        PlanInputs(cpu(1.6, 0.8), state(hpa=hpa), GuardSettings()), scale.ScaleSettings()
    )
    assert concrete.params.to_json() == {"replicas": 6, "from_replicas": 2, "hpa": "cart"}


def test_the_settings_of_another_kind_are_refused() -> None:
    with pytest.raises(TypeError, match="ScaleSettings"):
        ACTION.concrete(PlanInputs(cpu(1, 1), state(), GuardSettings()), NoSettings())


def test_the_request_patches_the_scale_subresource_or_the_hpa() -> None:
    plain = ACTION.request(CART, {"replicas": 5, "from_replicas": 3}, FakeReads(), NOW)
    floor = ACTION.request(CART, {"replicas": 5, "hpa": "cart-hpa"}, FakeReads(), NOW)

    assert (plain.verb, plain.path, plain.content_type, plain.body) == (
        "PATCH",
        "/apis/apps/v1/namespaces/shop/deployments/cart/scale",
        MERGE,
        {"spec": {"replicas": 5}},
    )
    assert (floor.path, floor.body) == (
        "/apis/autoscaling/v2/namespaces/shop/horizontalpodautoscalers/cart-hpa",
        {"spec": {"minReplicas": 5}},
    )


def test_missing_or_mistyped_replicas_name_the_field() -> None:
    with pytest.raises(PermanentActionError, match="replicas: Field required"):
        ACTION.request(CART, {"from_replicas": 3}, FakeReads(), NOW)
    with pytest.raises(PermanentActionError, match="replicas: Input should be a valid integer"):
        ACTION.request(CART, {"replicas": "many"}, FakeReads(), NOW)


def test_it_landed_when_the_replicas_or_the_floor_say_so() -> None:
    reads = FakeReads(
        deployments={"cart": {"spec": {"replicas": 5}}},
        hpas={"cart-hpa": {"spec": {"minReplicas": 4}}},
    )
    assert ACTION.landed(CART, {"params": {"replicas": 5}}, NOW, reads)
    assert not ACTION.landed(CART, {"params": {"replicas": 6}}, NOW, reads)
    assert ACTION.landed(CART, {"params": {"replicas": 4, "hpa": "cart-hpa"}}, NOW, reads)
    assert not ACTION.landed(CART, {"params": {"replicas": 5, "hpa": "cart-hpa"}}, NOW, reads)


def test_it_needs_the_scale_bounds_guard() -> None:
    assert ACTION.guards == ("scale_bounds",)
