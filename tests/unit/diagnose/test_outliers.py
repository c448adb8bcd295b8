"""One pod against its siblings: the robust z-score, its limits, and the diagnosis."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
from builders import CART, NOW, revision, state

from healer.diagnose.outliers import PodOutlier, find, outlier_diagnosis
from healer.types import (
    POD_SIGNALS,
    Cause,
    Direction,
    Finding,
    PodFrame,
    PodState,
    Revision,
    Signal,
    SignalDeviation,
    WorkloadRef,
)

SEARCH = WorkloadRef("shop", "Deployment", "search")
HEALTHY = {
    Signal.CPU: 0.5,
    Signal.MEMORY: 0.4,
    Signal.RESTARTS: 0.0,
    Signal.ERROR_RATIO: 0.002,
    Signal.LATENCY_P99: 0.08,
}


def pods(
    *workloads: tuple[WorkloadRef, list[dict[Signal, float]]], ready: list[bool] | None = None
) -> PodFrame:
    """A PodFrame of the given workloads' pods, each a healthy pod changed as given,
    with a little noise so that siblings never agree exactly."""
    rng = np.random.default_rng(3)
    owner, names, rows = [], [], []
    for w, (workload, changes) in enumerate(workloads):
        for p, change in enumerate(changes):
            owner.append(w)
            names.append(f"{workload.name}-{p}")
            values = {**HEALTHY, **change}
            rows.append([values[s] * (1 + rng.normal(0, 0.005)) for s in POD_SIGNALS])
    count = len(names)
    return PodFrame(
        at=NOW.timestamp(),
        workloads=tuple(w for w, _ in workloads),
        owner=np.asarray(owner, dtype=np.int64),
        pods=tuple(names),
        ready=np.asarray(ready if ready is not None else [True] * count),
        signals=POD_SIGNALS,
        values=np.asarray(rows, dtype=np.float64),
        memory_slope=np.zeros(count),
    )


def test_one_slow_pod_among_healthy_ones_is_the_outlier() -> None:
    found = find(pods((CART, [{}, {}, {Signal.LATENCY_P99: 0.4}, {}])))
    outlier = found[CART]
    assert (outlier.pod, outlier.signal, outlier.ready_pods) == ("cart-2", Signal.LATENCY_P99, 4)
    assert outlier.ratio > 4.5 and outlier.z > 20
    assert abs(outlier.siblings - 0.08) < 0.002


def test_each_workload_is_judged_against_its_own_pods_only() -> None:
    frame = pods(
        (CART, [{Signal.MEMORY: 0.2}, {Signal.MEMORY: 0.2}, {Signal.MEMORY: 0.2}]),
        (SEARCH, [{Signal.MEMORY: 0.6}, {Signal.MEMORY: 0.6}, {Signal.MEMORY: 0.9}]),
    )
    found = find(frame)
    assert list(found) == [SEARCH]
    assert (found[SEARCH].pod, found[SEARCH].signal) == ("search-2", Signal.MEMORY)


def test_a_workload_wide_change_has_no_outlier() -> None:
    leaking = [{Signal.MEMORY: 0.8}] * 4
    assert find(pods((CART, leaking))) == {}


def test_two_pods_standing_out_are_not_one_bad_pod() -> None:
    slow = {Signal.LATENCY_P99: 0.5}
    assert find(pods((CART, [{}, slow, {}, {}, slow]))) == {}


def test_fewer_than_three_ready_pods_are_not_judged() -> None:
    slow = {Signal.LATENCY_P99: 0.5}
    assert find(pods((CART, [{}, slow]))) == {}
    assert find(pods((CART, [{}, slow, {}]), ready=[True, True, False])) == {}
    assert CART in find(pods((CART, [{}, slow, {}])))


def test_a_small_difference_is_no_outlier_however_quiet_the_siblings() -> None:
    # 10% more memory than siblings that agree to a fraction of a percent: many spreads
    # off, but no difference a person would act on.
    assert find(pods((CART, [{}, {}, {Signal.MEMORY: 0.44}, {}]))) == {}
    assert CART in find(pods((CART, [{}, {}, {Signal.MEMORY: 0.6}, {}])))


def test_restarts_stand_out_from_siblings_that_never_restart() -> None:
    found = find(pods((CART, [{}, {Signal.RESTARTS: 1.0}, {}])))
    assert (found[CART].pod, found[CART].signal) == ("cart-1", Signal.RESTARTS)


def test_no_pods_no_outliers() -> None:
    assert find(PodFrame.empty()) == {}


LATENCY_UP = SignalDeviation(Signal.LATENCY_P99, 0.19, 0.09, 30.0, Direction.UP)
SLOW = PodOutlier(CART, "cart-b", Signal.LATENCY_P99, 0.41, 0.082, 25.0, 5.0, 3, 0.0)
PODS = tuple(PodState(f"cart-{c}", True, 0, NOW - timedelta(hours=5)) for c in "abc")


def finding(*deviations: SignalDeviation) -> Finding:
    return Finding(CART, NOW, 0.99, deviations, NOW - timedelta(minutes=2), "test")


def test_the_diagnosis_names_the_pod_and_how_far_it_stands_out() -> None:
    diagnosis = outlier_diagnosis(finding(LATENCY_UP), state(pods=PODS), SLOW)
    assert diagnosis is not None
    assert (diagnosis.cause, diagnosis.pod) == (Cause.POD_OUTLIER, "cart-b")
    assert 0.6 <= diagnosis.confidence <= 0.9
    assert diagnosis.explanation.startswith(
        "One pod (cart-b) is an outlier: its p99 latency is 0.41 s, 5.0x its 2 siblings' "
        "median (0.082 s, 25 spreads off)"
    )


def test_a_growing_memory_outlier_says_how_fast() -> None:
    leak = PodOutlier(CART, "cart-b", Signal.MEMORY, 0.62, 0.4, 15.0, 1.55, 4, 0.0002)
    memory = SignalDeviation(Signal.MEMORY, 0.46, 0.4, 9.0, Direction.UP)
    diagnosis = outlier_diagnosis(finding(memory), state(pods=PODS), leak)
    assert diagnosis is not None and "grows 1.20% of the limit a minute" in diagnosis.explanation


def test_the_outlier_must_explain_what_the_workload_shows() -> None:
    memory = SignalDeviation(Signal.MEMORY, 0.46, 0.4, 9.0, Direction.UP)
    assert outlier_diagnosis(finding(memory), state(pods=PODS), SLOW) is None
    down = SignalDeviation(Signal.LATENCY_P99, 0.05, 0.09, -6.0, Direction.DOWN)
    assert outlier_diagnosis(finding(down), state(pods=PODS), SLOW) is None
    assert outlier_diagnosis(finding(LATENCY_UP), state(pods=PODS), None) is None


def test_pods_of_two_revisions_are_a_release_not_an_outlier() -> None:
    fresh = Revision(5, "cart-5", NOW - timedelta(minutes=10), ("cart:5",))
    rolled = state(fresh, revision(4), pods=PODS)
    assert outlier_diagnosis(finding(LATENCY_UP), rolled, SLOW) is None
    midway = state(pods=PODS, updated_replicas=2)
    assert outlier_diagnosis(finding(LATENCY_UP), midway, SLOW) is None


def test_a_pod_already_gone_is_no_diagnosis() -> None:
    others = tuple(p for p in PODS if p.name != "cart-b")
    assert outlier_diagnosis(finding(LATENCY_UP), state(pods=others), SLOW) is None
