"""explain() on literal findings, workload states and small frames."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from builders import HEALTHY, state

from healer.diagnose.rules import explain
from healer.types import (
    Cause,
    Direction,
    Finding,
    Frame,
    PodState,
    Revision,
    Signal,
    SignalDeviation,
    WorkloadRef,
)

SIGNALS = tuple(Signal)
CART = WorkloadRef("shop", "Deployment", "cart")
STEP_S = 15.0
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
SAMPLES = 41  # ten minutes
ONSET = NOW - timedelta(minutes=5)


def flat_frame(**series: np.ndarray | float) -> Frame:
    """Ten minutes of one workload, every signal flat unless given."""
    timestamps = NOW.timestamp() - STEP_S * np.arange(SAMPLES)[::-1]
    base = HEALTHY
    values = np.empty((1, len(SIGNALS), SAMPLES))
    for s, sig in enumerate(SIGNALS):
        values[0, s] = series.get(sig.value, base[sig])
    return Frame(timestamps, (CART,), SIGNALS, values)


def up(signal: Signal, value: float, baseline: float, deviation: float) -> SignalDeviation:
    return SignalDeviation(signal, value, baseline, deviation, Direction.UP)


def finding(*deviations: SignalDeviation, onset: datetime = ONSET) -> Finding:
    ordered = tuple(sorted(deviations, key=lambda d: -abs(d.deviation)))
    return Finding(CART, NOW, 0.99, ordered, onset=onset, model_version="test/1")


def revision(number: int, created: datetime, image: str) -> Revision:
    return Revision(number, f"cart-{number:010d}", created, (image,))


OLD = revision(3, NOW - timedelta(days=3), "registry.local/shop/cart:2.4.0")
LONG_RUNNING = state(OLD, revision(2, NOW - timedelta(days=9), "registry.local/shop/cart:2.3.0"))


# ---- memory_leak -----------------------------------------------------------------------


def test_climbing_memory_with_steady_traffic_is_a_memory_leak() -> None:
    # 0.40 -> 0.70 of the limit in 10 minutes: 3% per minute, 10 minutes left.
    memory = np.linspace(0.40, 0.70, SAMPLES)
    frame = flat_frame(memory=memory)
    result = explain(finding(up(Signal.MEMORY, 0.70, 0.40, 30.0)), frame, LONG_RUNNING)
    assert result.cause == Cause.MEMORY_LEAK
    assert result.workload == CART
    assert 0.6 <= result.confidence <= 0.95
    assert "about 10 min" in result.explanation
    assert "3.00% of the limit per minute" in result.explanation
    assert "70%" in result.explanation


def test_memory_up_with_a_traffic_surge_is_not_a_memory_leak() -> None:
    frame = flat_frame(memory=np.linspace(0.40, 0.70, SAMPLES))
    result = explain(
        finding(up(Signal.MEMORY, 0.70, 0.40, 30.0), up(Signal.REQUEST_RATE, 300.0, 100.0, 12.0)),
        frame,
        LONG_RUNNING,
    )
    assert result.cause != Cause.MEMORY_LEAK


def test_memory_up_but_falling_is_not_a_memory_leak() -> None:
    frame = flat_frame(memory=np.linspace(0.80, 0.70, SAMPLES))
    result = explain(finding(up(Signal.MEMORY, 0.70, 0.40, 30.0)), frame, LONG_RUNNING)
    assert result.cause == Cause.UNKNOWN


# ---- overload --------------------------------------------------------------------------


def test_cpu_latency_and_traffic_up_is_overload() -> None:
    frame = flat_frame(
        cpu=np.linspace(0.5, 1.6, SAMPLES),
        latency_p99=np.linspace(0.08, 0.9, SAMPLES),
        request_rate=np.linspace(100.0, 300.0, SAMPLES),
    )
    result = explain(
        finding(
            up(Signal.CPU, 1.6, 0.5, 14.0),
            up(Signal.LATENCY_P99, 0.9, 0.08, 40.0),
            up(Signal.REQUEST_RATE, 300.0, 100.0, 12.0),
        ),
        frame,
        LONG_RUNNING,
    )
    assert result.cause == Cause.OVERLOAD
    assert result.confidence >= 0.7
    assert "3.0x its baseline" in result.explanation
    assert "3 replicas" in result.explanation


def test_cpu_and_latency_up_without_traffic_is_a_cpu_hog_not_an_overload() -> None:
    deviations = (up(Signal.CPU, 1.6, 0.5, 14.0), up(Signal.LATENCY_P99, 0.9, 0.08, 40.0))
    with_traffic = explain(
        finding(*deviations, up(Signal.REQUEST_RATE, 300.0, 100.0, 12.0)),
        flat_frame(),
        LONG_RUNNING,
    )
    without = explain(finding(*deviations), flat_frame(), LONG_RUNNING)
    assert with_traffic.cause == Cause.OVERLOAD
    assert without.cause == Cause.CPU_HOG
    assert without.confidence >= 0.7
    assert "traffic not unusual" in without.explanation


def test_cpu_up_alone_is_a_less_sure_cpu_hog() -> None:
    alone = explain(finding(up(Signal.CPU, 1.0, 0.5, 8.0)), flat_frame(), LONG_RUNNING)
    hurting = explain(
        finding(up(Signal.CPU, 1.0, 0.5, 8.0), up(Signal.LATENCY_P99, 0.3, 0.08, 9.0)),
        flat_frame(),
        LONG_RUNNING,
    )
    assert alone.cause == hurting.cause == Cause.CPU_HOG
    assert alone.confidence < hurting.confidence


def test_cpu_up_with_climbing_memory_is_not_a_cpu_hog() -> None:
    memory = np.linspace(0.4, 0.8, SAMPLES)
    result = explain(
        finding(up(Signal.CPU, 1.0, 0.5, 8.0), up(Signal.MEMORY, 0.8, 0.4, 30.0)),
        flat_frame(memory=memory),
        LONG_RUNNING,
    )
    assert result.cause == Cause.MEMORY_LEAK


# ---- bad_release -----------------------------------------------------------------------


def test_errors_up_shortly_after_a_rollout_is_a_bad_release() -> None:
    current = revision(5, ONSET - timedelta(minutes=4), "registry.local/shop/cart:2.5.0")
    previous = revision(4, NOW - timedelta(days=2), "registry.local/shop/cart:2.4.1")
    result = explain(
        finding(up(Signal.ERROR_RATIO, 0.18, 0.002, 35.0)), flat_frame(), state(current, previous)
    )
    assert result.cause == Cause.BAD_RELEASE
    assert result.confidence >= 0.6
    assert "revision 5" in result.explanation
    assert "revision 4" in result.explanation
    assert "registry.local/shop/cart:2.5.0" in result.explanation
    assert "4 min after" in result.explanation


def test_errors_and_latency_after_a_rollout_raise_confidence() -> None:
    current = revision(5, ONSET - timedelta(minutes=2), "cart:2.5.0")
    previous = revision(4, NOW - timedelta(days=2), "cart:2.4.1")
    errors = up(Signal.ERROR_RATIO, 0.18, 0.002, 35.0)
    latency = up(Signal.LATENCY_P99, 0.25, 0.08, 20.0)
    one = explain(finding(errors), flat_frame(), state(current, previous))
    both = explain(finding(errors, latency), flat_frame(), state(current, previous))
    assert both.cause == one.cause == Cause.BAD_RELEASE
    assert both.confidence > one.confidence


def test_errors_after_the_first_revision_are_not_a_bad_release() -> None:
    only = revision(1, ONSET - timedelta(minutes=4), "registry.local/shop/cart:2.5.0")
    result = explain(finding(up(Signal.ERROR_RATIO, 0.18, 0.002, 35.0)), flat_frame(), state(only))
    assert result.cause != Cause.BAD_RELEASE
    assert result.cause == Cause.UNKNOWN


def test_errors_long_after_the_rollout_are_not_a_bad_release() -> None:
    result = explain(finding(up(Signal.ERROR_RATIO, 0.18, 0.002, 35.0)), flat_frame(), LONG_RUNNING)
    assert result.cause != Cause.BAD_RELEASE


def test_onset_just_before_the_rollout_does_not_read_as_a_negative_delay() -> None:
    current = revision(5, ONSET + timedelta(seconds=30), "cart:2.5.0")
    previous = revision(4, NOW - timedelta(days=2), "cart:2.4.1")
    result = explain(
        finding(up(Signal.ERROR_RATIO, 0.18, 0.002, 35.0)), flat_frame(), state(current, previous)
    )
    assert result.cause == Cause.BAD_RELEASE
    assert "-1 min" not in result.explanation


# ---- crash_loop ------------------------------------------------------------------------


def test_restarts_without_memory_is_a_crash_loop() -> None:
    frame = flat_frame(restarts=np.where(np.arange(SAMPLES) > 20, 4.0, 0.0))
    result = explain(finding(up(Signal.RESTARTS, 4.0, 0.0, 8.0)), frame, LONG_RUNNING)
    assert result.cause == Cause.CRASH_LOOP
    assert "4.0/min" in result.explanation


def test_a_crash_loop_soon_after_a_rollout_is_sure_and_names_the_revision() -> None:
    current = revision(5, ONSET - timedelta(minutes=6), "registry.local/shop/cart:2.5.0")
    previous = revision(4, NOW - timedelta(days=2), "registry.local/shop/cart:2.4.1")
    result = explain(
        finding(up(Signal.RESTARTS, 0.6, 0.0, 6.0)),
        flat_frame(),
        state(current, previous),
    )
    assert result.cause == Cause.CRASH_LOOP
    assert result.confidence >= 0.8
    assert "revision 5 (registry.local/shop/cart:2.5.0)" in result.explanation


def test_a_rollout_stalled_on_a_pod_that_restarts_and_is_not_ready_is_a_crash_loop() -> None:
    """A StatefulSet replaces a pod in place: its ready ratio drops before restarts add up."""
    current = revision(5, ONSET - timedelta(minutes=1), "registry.local/shop/ledger:3.1.0")
    previous = revision(4, NOW - timedelta(days=2), "registry.local/shop/ledger:3.0.4")
    ready_down = SignalDeviation(Signal.READY_RATIO, 0.67, 1.0, -7.0, Direction.DOWN)
    pods = (
        PodState("ledger-0", True, 0, NOW - timedelta(days=2)),
        PodState("ledger-2", False, 3, ONSET),
    )
    result = explain(finding(ready_down), flat_frame(), state(current, previous, pods=pods))
    assert (result.cause, result.confidence) == (Cause.CRASH_LOOP, 0.8)
    assert result.explanation.startswith(
        "Pod ledger-2 has restarted 3 times and never became Ready"
    )
    quiet = (PodState("ledger-2", False, 0, ONSET),)  # not Ready yet, never crashed
    starting = explain(finding(ready_down), flat_frame(), state(current, previous, pods=quiet))
    assert starting.cause == Cause.UNKNOWN


def test_a_crash_loop_long_after_any_rollout_is_unsure() -> None:
    result = explain(finding(up(Signal.RESTARTS, 0.6, 0.0, 6.0)), flat_frame(), LONG_RUNNING)
    assert result.cause == Cause.CRASH_LOOP
    assert result.confidence <= 0.5
    assert "no recent rollout" in result.explanation


def pod(name: str, *, ready: bool, restarts: int) -> PodState:
    return PodState(name, ready, restarts, NOW - timedelta(minutes=1))


def test_unready_pods_restarting_while_ready_drops_after_a_rollout_is_a_sure_crash_loop() -> None:
    # A DaemonSet's bad release: one node's pod replaced, not ready and crashing, before
    # the restarts signal has climbed.
    current = revision(5, ONSET, "registry.local/infra/proxy:2.4.0")
    previous = revision(4, NOW - timedelta(days=2), "registry.local/infra/proxy:2.3.1")
    pods = (
        pod("proxy-a", ready=True, restarts=0),
        pod("proxy-b", ready=False, restarts=3),
        pod("proxy-c", ready=False, restarts=2),
    )
    down = SignalDeviation(Signal.READY_RATIO, 0.75, 1.0, -6.0, Direction.DOWN)
    result = explain(finding(down), flat_frame(), state(current, previous, pods=pods))
    assert result.cause == Cause.CRASH_LOOP
    assert result.confidence >= 0.8
    assert "2 of 3 pods are not ready and restarting (5 restarts)" in result.explanation


def test_unready_pods_that_never_restarted_are_no_crash_loop() -> None:
    current = revision(5, ONSET, "registry.local/infra/proxy:2.4.0")
    pods = (pod("proxy-a", ready=True, restarts=0), pod("proxy-b", ready=False, restarts=0))
    down = SignalDeviation(Signal.READY_RATIO, 0.75, 1.0, -6.0, Direction.DOWN)
    result = explain(finding(down), flat_frame(), state(current, OLD, pods=pods))
    assert result.cause == Cause.UNKNOWN


def test_restarts_with_climbing_memory_is_a_memory_leak_not_a_crash_loop() -> None:
    frame = flat_frame(memory=np.linspace(0.40, 0.70, SAMPLES))
    result = explain(
        finding(up(Signal.MEMORY, 0.70, 0.40, 30.0), up(Signal.RESTARTS, 4.0, 0.0, 8.0)),
        frame,
        LONG_RUNNING,
    )
    assert result.cause == Cause.MEMORY_LEAK


# ---- unknown ---------------------------------------------------------------------------


def test_an_unrelated_deviation_is_unknown_and_unsure() -> None:
    down = SignalDeviation(Signal.READY_RATIO, 0.5, 1.0, -10.0, Direction.DOWN)
    result = explain(finding(down), flat_frame(ready_ratio=0.5), LONG_RUNNING)
    assert result.cause == Cause.UNKNOWN
    assert result.confidence < 0.5
    assert "ready_ratio" in result.explanation


def test_weak_deviations_are_unknown() -> None:
    result = explain(
        finding(up(Signal.CPU, 0.6, 0.5, 3.5), up(Signal.LATENCY_P99, 0.1, 0.08, 3.2)),
        flat_frame(),
        LONG_RUNNING,
    )
    assert result.cause == Cause.UNKNOWN
    assert result.confidence < 0.5


def test_explain_is_deterministic() -> None:
    frame = flat_frame(memory=np.linspace(0.40, 0.70, SAMPLES))
    f = finding(up(Signal.MEMORY, 0.70, 0.40, 30.0))
    assert explain(f, frame, LONG_RUNNING) == explain(f, frame, LONG_RUNNING)
