"""``healer gate`` on a fake cluster, fake metrics and a fake clock: the verdicts, the
early stops, the refusals to judge and the rollback."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from builders import HEALTHY

from healer.config import DetectorSettings
from healer.detect.sequential import Decision, Running, SequentialTest
from healer.errors import CollectError
from healer.gate import GateDeps, GateSettings, Verdict, describe, parse_duration, run_gate
from healer.types import (
    ActionRecord,
    ActionStatus,
    Frame,
    Plan,
    Revision,
    Signal,
    WorkloadRef,
    WorkloadState,
)

CART = WorkloadRef("shop", "Deployment", "cart")
OTHER = WorkloadRef("shop", "Deployment", "search")
SIGNALS = tuple(Signal)
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
RELEASED = T0 + timedelta(hours=1)
"""The new revision's ReplicaSet was created here; the hour before it is history."""
NORMAL = HEALTHY
NOISE = {Signal.CPU: 0.02, Signal.MEMORY: 0.005, Signal.REQUEST_RATE: 4.0}
NOISE |= {Signal.ERROR_RATIO: 0.0005, Signal.LATENCY_P99: 0.004}
SETTINGS = GateSettings(
    window_s=600, step_s=15, thin_s=60, detector=DetectorSettings(), history_s=3600
)

Behaviour = Callable[[Signal, float], float]
"""A signal's true value at a time (UNIX s), before noise."""


def normal(signal: Signal, t: float) -> float:
    return NORMAL[signal]


def errors_after(share: float) -> Behaviour:
    def behave(signal: Signal, t: float) -> float:
        bad = signal is Signal.ERROR_RATIO and t >= RELEASED.timestamp()
        return share if bad else NORMAL[signal]

    return behave


def slow_after(factor: float) -> Behaviour:
    def behave(signal: Signal, t: float) -> float:
        bad = signal is Signal.LATENCY_P99 and t >= RELEASED.timestamp()
        return NORMAL[signal] * factor if bad else NORMAL[signal]

    return behave


@dataclass
class Metrics:
    """Every workload's signals on a 15 s grid from ``since``, with seeded noise."""

    behave: Behaviour
    since: datetime = T0
    seed: int = 3
    workloads: tuple[WorkloadRef, ...] = (CART, OTHER)
    fail: bool = False

    def fetch(self, *, until: datetime, window_s: float) -> Frame:
        if self.fail:
            raise CollectError("prometheus.url: connection refused")
        end = until.timestamp()
        start = max(end - window_s, self.since.timestamp() - 1)
        times = np.arange(np.ceil(start / 15) * 15, end + 1e-9, 15.0)
        values = np.empty((len(self.workloads), len(SIGNALS), len(times)))
        for s, signal in enumerate(SIGNALS):
            for i, t in enumerate(times):
                noise = np.random.default_rng([self.seed, s, int(t)]).normal(0.0, 1.0, 2)
                for w in range(len(self.workloads)):
                    base = self.behave(signal, t) if w == 0 else NORMAL[signal]
                    values[w, s, i] = base + NOISE.get(signal, 0.0) * noise[w]
        return Frame(times, self.workloads, SIGNALS, values)


@dataclass
class FakeCluster:
    """A Deployment whose rollout completes after ``rollout_s``; records what it is sent."""

    clock: Callable[[], datetime]
    rollout_s: float = 30.0
    revisions: tuple[Revision, ...] = (
        Revision(2, "cart-2", RELEASED, ("shop/cart:2",), "t2"),
        Revision(1, "cart-1", T0 - timedelta(days=2), ("shop/cart:1",), "t1"),
    )
    sent: list[Plan] = field(default_factory=list)

    def read_state(self, workload: WorkloadRef) -> WorkloadState:
        done = self.clock() >= RELEASED + timedelta(seconds=self.rollout_s)
        return WorkloadState(
            workload=workload,
            replicas=3,
            ready_replicas=3,
            updated_replicas=3 if done else 1,
            available_replicas=3,
            generation=2,
            observed_generation=2,
            paused=False,
            revisions=self.revisions,
            total_replicas=3 if done else 4,
        )

    def apply(self, plan: Plan, *, now: datetime) -> ActionRecord:
        self.sent.append(plan)
        return ActionRecord(plan.action, plan.workload, {}, ActionStatus.SUCCEEDED, now, now)


@dataclass
class Clock:
    now: datetime = RELEASED

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def gate(
    metrics: Metrics, settings: GateSettings = SETTINGS, **cluster: float
) -> tuple[Verdict, FakeCluster, Clock]:
    clock = Clock()
    fake = FakeCluster(clock, **cluster)
    deps = GateDeps(cluster=fake, history=metrics, live=metrics, clock=clock, sleep=clock.sleep)
    return run_gate(CART, settings, deps), fake, clock


def test_a_good_release_passes_early_and_says_why() -> None:
    verdict, cluster, _ = gate(Metrics(normal))
    assert verdict.decision is Decision.HEALTHY and verdict.exit_code == 0
    assert verdict.rollout_s == 30.0 and (verdict.judged_s or 0.0) < 600
    assert "look like the previous revision's" in verdict.reason
    assert cluster.sent == []


def test_three_percent_errors_fail_naming_the_error_ratio_and_roll_back() -> None:
    settings = GateSettings(
        window_s=600, step_s=15, thin_s=60, detector=DetectorSettings(), rollback=True
    )
    verdict, cluster, _ = gate(Metrics(errors_after(0.03)), settings)
    assert verdict.decision is Decision.UNHEALTHY and verdict.exit_code == 1
    assert verdict.evidence[0].signal is Signal.ERROR_RATIO
    assert verdict.evidence[0].baseline == pytest.approx(0.002, abs=0.001)
    # p-values about 0.03 each (the detector's scale floor): four samples decide.
    assert 2 <= verdict.samples <= 5
    [plan] = cluster.sent
    assert plan.params == {"to_revision": 1, "from_revision": 2}
    assert verdict.rolled_back_to == 1
    lines = describe(verdict)
    assert lines[0] == "healer gate shop/cart revision 2 (shop/cart:2): UNHEALTHY"
    assert any(line.startswith("  error_ratio: 0.03") for line in lines)
    assert lines[-1] == "  rolled back to revision 1"


def test_four_times_the_p99_fails() -> None:
    verdict, _, _ = gate(Metrics(slow_after(4.0)))
    assert verdict.decision is Decision.UNHEALTHY
    assert [e.signal for e in verdict.evidence] == [Signal.LATENCY_P99]


def test_a_workload_without_history_is_not_judged_never_passed() -> None:
    verdict, _, _ = gate(Metrics(normal, since=RELEASED - timedelta(minutes=5)))
    assert verdict.decision is Decision.UNDECIDED and verdict.exit_code == 2
    assert verdict.reason.startswith("not enough history to judge: 285 s")


def test_a_workload_prometheus_has_never_seen_is_not_judged() -> None:
    verdict, _, _ = gate(Metrics(normal, workloads=(OTHER,)))
    assert verdict.exit_code == 2
    assert "no metrics of shop/cart in the 3600 s" in verdict.reason


def test_metrics_that_cannot_be_read_are_exit_2_with_the_reason() -> None:
    verdict, _, _ = gate(Metrics(normal, fail=True))
    assert verdict.exit_code == 2 and verdict.reason.startswith("history unreadable: ")
    assert "connection refused" in verdict.reason


def test_a_rollout_that_does_not_complete_in_the_window_is_unhealthy() -> None:
    settings = GateSettings(window_s=60, step_s=15, thin_s=60, detector=DetectorSettings())
    verdict, _, clock = gate(Metrics(normal), settings, rollout_s=3600)
    assert verdict.decision is Decision.UNHEALTHY
    assert "did not complete within 60 s: 1/3 updated" in verdict.reason
    assert clock.now - RELEASED <= timedelta(seconds=61)


def test_a_window_too_short_to_be_sure_is_exit_2_saying_where_it_leant() -> None:
    settings = GateSettings(window_s=45, step_s=15, thin_s=60, detector=DetectorSettings())
    verdict, _, _ = gate(Metrics(normal), settings, rollout_s=0)
    assert verdict.exit_code == 2
    assert "window ended before the test was sure" in verdict.reason
    assert "leaning healthy" in verdict.reason


def test_the_sequential_test_bounds_and_floor() -> None:
    test = SequentialTest(false_fail=0.01, false_pass=0.01)
    assert test.upper == pytest.approx(np.log(99)) and test.lower == pytest.approx(-np.log(99))
    assert test.llr(test.p_floor) == pytest.approx(test.upper / 2)
    assert test.llr(1e-300) == test.llr(test.p_floor)  # one sample never decides
    running = Running(test)
    assert running.add(float("nan")) is Decision.UNDECIDED and running.samples == 0
    assert running.add(1e-9) is Decision.UNDECIDED
    assert running.add(1e-9) is Decision.UNHEALTHY
    with pytest.raises(ValueError, match="false_fail"):
        SequentialTest(false_fail=0.7)


def test_healthy_p_values_pass_and_rarely_fail() -> None:
    """Uniform p-values (a healthy release, independent samples): the test passes them,
    and fails at most about false_fail of 2,000 such releases."""
    rng = np.random.default_rng(5)
    test = SequentialTest()
    failed = 0
    for _ in range(2000):
        running = Running(test)
        while running.decision is Decision.UNDECIDED:
            running.add(float(rng.uniform()))
        failed += running.decision is Decision.UNHEALTHY
    assert failed <= 2000 * test.false_fail


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90.0), ("90s", 90.0), ("10m", 600.0), ("1.5h", 5400.0)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0s", "ten minutes", "-5m", "10d"])
def test_bad_durations_name_the_shape(text: str) -> None:
    with pytest.raises(ValueError, match="duration such as 90s"):
        parse_duration(text)
