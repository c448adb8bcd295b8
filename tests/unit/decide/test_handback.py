"""Raised HPA floors: noted with what they replaced, handed back when due, kept as JSON."""

from __future__ import annotations

from datetime import timedelta

from builders import CART, NOW, state

from healer.config import GuardSettings
from healer.decide.handback import (
    HAND_BACK,
    Floor,
    from_json,
    hand_back,
    noted,
    still_ours,
    to_json,
)
from healer.types import ActionKind, GuardResult, HpaState, JsonValue, Mode, Plan, WorkloadState

AUTO = GuardSettings(mode=Mode.AUTO)
HOUR_S = 3600.0


def raise_plan(replicas: int, from_replicas: int) -> Plan:
    params: dict[str, JsonValue] = {
        "replicas": replicas,
        "from_replicas": from_replicas,
        "hpa": "cart",
    }
    ok = (GuardResult("scale_bounds", True, "fine"),)
    return Plan(CART, "scale-up-on-overload", ActionKind.SCALE, params, Mode.AUTO, ok, "", 300)


def test_a_second_raise_keeps_the_first_original() -> None:
    floors = noted({}, raise_plan(6, 3), NOW)
    floors = noted(floors, raise_plan(9, 6), NOW + timedelta(minutes=5))

    assert list(floors.values()) == [Floor(CART, "cart", 3, 9, NOW + timedelta(minutes=5))]


def test_a_plain_scale_is_not_a_floor() -> None:
    plain = raise_plan(6, 3)
    plain = Plan(
        CART,
        plain.playbook,
        plain.action,
        {"replicas": 6, "from_replicas": 3},
        Mode.AUTO,
        (),
        "",
        300,
    )

    assert noted({}, plain, NOW) == {}


def raised(min_replicas: int = 6, **changes: object) -> tuple[Floor, WorkloadState]:
    return Floor(CART, "cart", 3, 6, NOW), state(
        replicas=7, hpa=HpaState("cart", min_replicas, 9, 0.8), **changes
    )


def test_handed_back_after_the_hold_when_not_climbing() -> None:
    floor, current = raised()
    later = NOW + timedelta(hours=1)

    plan = hand_back(floor, current, now=later, hold_s=HOUR_S, climbing=False, guards=AUTO)

    assert plan is not None
    assert plan.playbook == HAND_BACK
    assert plan.params == {"replicas": 3, "from_replicas": 6, "hpa": "cart"}
    assert plan.allowed
    assert "7 replicas now" in plan.guard_results[0].detail


def test_not_handed_back_early_climbing_opted_out_or_cautious() -> None:
    floor, current = raised()
    later = NOW + timedelta(hours=1)
    soon = NOW + timedelta(minutes=59)

    def due(current: WorkloadState, at: object = later, climbing: bool = False) -> bool:
        plan = hand_back(floor, current, now=at, hold_s=HOUR_S, climbing=climbing, guards=AUTO)  # type: ignore[arg-type]  # at is a datetime
        return plan is not None

    assert not due(current, soon)
    assert not due(current, climbing=True)
    assert not due(raised(annotations={"healer.io/enabled": "false"})[1])
    assert not due(raised(annotations={"healer.io/mode": "approval"})[1])
    assert due(current)
    held = hand_back(
        floor,
        current,
        now=later,
        hold_s=HOUR_S,
        climbing=False,
        guards=AUTO,
        policy_mode=Mode.APPROVAL,  # a HealingPolicy asks for approval
    )
    assert held is None


def test_a_floor_changed_since_is_not_ours() -> None:
    floor, current = raised()
    _, changed = raised(min_replicas=5)

    assert still_ours(floor, current)
    assert not still_ours(floor, changed)
    assert not still_ours(floor, state())


def test_floors_survive_json() -> None:
    floors = noted({}, raise_plan(6, 3), NOW)

    assert from_json(to_json(floors)) == floors
    assert from_json(None) == {}


def test_a_floor_is_kept_while_requests_stay_above_their_rate_before_the_surge() -> None:
    (floor,) = noted({}, raise_plan(6, 3), NOW, rps_before=120.0).values()
    current = state(replicas=7, hpa=HpaState("cart", 6, 9, 0.8))
    later = NOW + timedelta(hours=1)

    def due(rps: float | None) -> bool:
        plan = hand_back(
            floor, current, now=later, hold_s=HOUR_S, climbing=False, guards=AUTO, rps=rps
        )
        return plan is not None

    assert floor.rps_before == 120.0
    assert not due(340.0)  # still surging: the new normal keeps its floor
    assert not due(None)  # no measurement, no hand-back
    assert due(140.0)  # within a quarter of the rate before the surge
