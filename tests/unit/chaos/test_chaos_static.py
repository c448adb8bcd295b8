"""The static contender: its alert rules fire as documented, and run the matching playbook."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from builders import CART, NOW, revision, state

from healer.chaos.static import RULES, StaticRules, firing
from healer.config import GuardSettings
from healer.decide import load_playbooks
from healer.types import (
    ActionKind,
    ActionRecord,
    ActionStatus,
    Frame,
    Mode,
    Plan,
    Signal,
    WorkloadRef,
    WorkloadState,
)

STEP_S = 15.0
SIGNALS = tuple(Signal)
PLAYBOOKS = load_playbooks(Path(__file__).resolve().parents[3] / "playbooks")
OTHER = WorkloadRef("shop", "Deployment", "search")


def frame(signal: Signal, tail: list[float], *, steps: int = 60, rest: float = 0.01) -> Frame:
    """Two workloads at rest; cart's ``signal`` ends with the values of ``tail``."""
    values = np.full((2, len(SIGNALS), steps), rest)
    values[0, SIGNALS.index(signal), steps - len(tail) :] = tail
    t = NOW.timestamp() - STEP_S * np.arange(steps)[::-1]
    return Frame(t.astype(np.float64), (CART, OTHER), SIGNALS, values)


def fired(f: Frame) -> set[tuple[str, str]]:
    return {(a.workload.name, a.rule.name) for a in firing(f, step_s=STEP_S)}


def test_the_documented_rules() -> None:
    table = {(r.name, r.signal, r.threshold, r.for_s, r.cause.value) for r in RULES}
    assert table == {
        ("HighErrorRatio", Signal.ERROR_RATIO, 0.05, 300.0, "bad_release"),
        ("MemoryNearLimit", Signal.MEMORY, 0.90, 0.0, "memory_leak"),
        ("CpuOverRequests", Signal.CPU, 0.80, 300.0, "overload"),
    }


def test_error_ratio_fires_after_five_minutes_above_five_percent() -> None:
    # 5 minutes of 15 s samples span 21 of them, the first and the last included.
    assert fired(frame(Signal.ERROR_RATIO, [0.06] * 21)) == {("cart", "HighErrorRatio")}
    assert fired(frame(Signal.ERROR_RATIO, [0.06] * 20)) == set()
    assert fired(frame(Signal.ERROR_RATIO, [0.05] * 40)) == set()  # above, not at


def test_a_dip_or_a_gap_resets_the_pending_alert() -> None:
    dip = [0.2] * 10 + [0.01] + [0.2] * 15
    assert fired(frame(Signal.ERROR_RATIO, dip)) == set()
    gap = [0.2] * 10 + [float("nan")] + [0.2] * 15
    assert fired(frame(Signal.ERROR_RATIO, gap)) == set()


def test_memory_fires_at_once_above_ninety_percent() -> None:
    assert fired(frame(Signal.MEMORY, [0.91])) == {("cart", "MemoryNearLimit")}
    assert fired(frame(Signal.MEMORY, [0.95, 0.89])) == set()


def test_cpu_fires_after_five_minutes_above_eighty_percent_of_requests() -> None:
    assert fired(frame(Signal.CPU, [0.85] * 21)) == {("cart", "CpuOverRequests")}
    assert fired(frame(Signal.CPU, [0.79] * 40)) == set()


def test_too_short_a_history_holds_every_for_rule_back() -> None:
    assert fired(frame(Signal.CPU, [0.9] * 10, steps=10)) == set()


@dataclass
class FakeSource:
    frames: list[Frame]

    def fetch(self, *, until: datetime, window_s: float) -> Frame:
        return self.frames.pop(0)


@dataclass
class FakeActuator:
    state: WorkloadState
    applied: list[Plan] = field(default_factory=list)

    def read_state(self, workload: WorkloadRef) -> WorkloadState:
        return self.state

    def apply(self, plan: Plan, *, now: datetime) -> ActionRecord:
        self.applied.append(plan)
        return ActionRecord(plan.action, plan.workload, {}, ActionStatus.SUCCEEDED, now, now)


def rules(frames: list[Frame], current: WorkloadState) -> tuple[StaticRules, FakeActuator]:
    actuator = FakeActuator(current)
    static = StaticRules(
        source=FakeSource(frames),
        actuator=actuator,
        playbooks=PLAYBOOKS,
        guards=GuardSettings(mode=Mode.AUTO),
        step_s=STEP_S,
    )
    return static, actuator


@pytest.mark.parametrize(
    ("signal", "tail", "action"),
    [
        (Signal.ERROR_RATIO, [0.2] * 21, ActionKind.ROLLBACK),
        (Signal.MEMORY, [0.93], ActionKind.RESTART),
        (Signal.CPU, [1.6] * 21, ActionKind.SCALE),
    ],
)
def test_each_alert_runs_its_playbook_once(signal: Signal, tail: list[float], action: str) -> None:
    static, actuator = rules([frame(signal, tail)] * 3, state())
    for i in range(3):  # still firing: the webhook ran when it started, not again
        static.cycle(NOW + timedelta(seconds=30 * i))
    assert [p.action for p in actuator.applied] == [action]
    assert [(w, rule) for _, w, rule in static.fired] == [(CART, static.actions[0].rule)]


def test_scale_is_sized_from_cpu_over_the_threshold() -> None:
    static, actuator = rules([frame(Signal.CPU, [1.6] * 21)], state())
    static.cycle(NOW)
    # 3 replicas x (1.6 / 0.8) x 1.25 headroom = 7.5, so 8, capped at x2 per step: 6.
    assert actuator.applied[0].params["replicas"] == 6


def test_rollback_without_an_earlier_revision_is_blocked_by_the_guard() -> None:
    static, actuator = rules([frame(Signal.ERROR_RATIO, [0.2] * 21)], state(revision(4)))
    static.cycle(NOW)
    assert actuator.applied == []
    assert len(static.fired) == 1


def test_the_cooldown_holds_a_second_alert_on_the_same_workload() -> None:
    memory = frame(Signal.MEMORY, [0.95] * 21)
    memory.values[0, SIGNALS.index(Signal.ERROR_RATIO), -21:] = 0.3
    static, actuator = rules([memory], state())
    static.cycle(NOW)
    assert len(static.fired) == 2
    assert len(actuator.applied) == 1
