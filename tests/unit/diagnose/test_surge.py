"""Early overload evidence: surges found on literal frames, judged against capacity."""

from __future__ import annotations

import numpy as np
import pytest
from builders import CART, NOW, state

from healer.config import SurgeSettings
from healer.diagnose.surge import Surge, capacity_target, demand_of, diagnose, find_surges
from healer.types import Cause, Demand, Frame, HpaState, Signal, WorkloadRef

STEP_S = 15.0
SETTINGS = SurgeSettings()
QUIET = WorkloadRef("shop", "Deployment", "quiet")
RPS_PER_CPU = 250.0
"""cart at rest: 120 requests/s on 3 replicas at 48% of their CPU request each."""


def frame(rates: dict[WorkloadRef, list[float]], replicas: int = 3) -> Frame:
    """Frames of request rate and CPU per replica (CPU follows requests), 15 s apart."""
    workloads = tuple(rates)
    signals = (Signal.CPU, Signal.REQUEST_RATE, Signal.LATENCY_P99)
    length = len(next(iter(rates.values())))
    t = NOW.timestamp() - STEP_S * np.arange(length)[::-1]
    values = np.zeros((len(workloads), len(signals), length))
    for w, series in enumerate(rates.values()):
        rate = np.asarray(series, dtype=np.float64)
        values[w, 1] = rate
        values[w, 0] = rate / RPS_PER_CPU * 3 / replicas
        values[w, 2] = 0.1
    return Frame(t, workloads, signals, values)


def steady(n: int = 40, level: float = 120.0, seed: int = 1) -> list[float]:
    """``n`` samples of ``level`` with 4% scrape-to-scrape noise."""
    noise = np.exp(np.random.default_rng(seed).normal(0.0, 0.04, n))
    return list(level * noise)


def ramp(factor: float, ramp_s: float, after_s: float, level: float = 120.0) -> list[float]:
    """The samples ``after_s`` into a surge to ``factor`` times over ``ramp_s``."""
    steps = int(after_s // STEP_S)
    return [level * (1 + (factor - 1) * min(1.0, (i + 1) * STEP_S / ramp_s)) for i in range(steps)]


def test_a_climbing_surge_is_found_two_scrapes_in() -> None:
    found = find_surges(frame({CART: steady() + ramp(2.8, 120, 30)}), SETTINGS)

    assert [s.finding.workload for s in found] == [CART]
    surge = found[0]
    assert surge.rps_before == pytest.approx(120, rel=0.05)
    assert surge.rps == pytest.approx(120 * 1.45)
    assert surge.since_s == 15.0
    assert {d.signal for d in surge.finding.signals} == {Signal.REQUEST_RATE, Signal.CPU}
    assert all(d.deviation > SETTINGS.min_rise_sigma for d in surge.finding.signals)
    assert surge.finding.model_version == "surge"


def test_only_the_surging_workload_is_found() -> None:
    rates = {QUIET: steady(42, seed=2), CART: steady() + ramp(3.0, 120, 30)}

    assert [s.finding.workload for s in find_surges(frame(rates), SETTINGS)] == [CART]


@pytest.mark.parametrize(
    ("tail", "why"),
    [
        ([156.0], "one scrape is a burst"),
        ([156.0, 156.0], "two bursts in a row do not keep climbing"),
        ([126.0, 131.0], "climbing, but within the noise of the reference"),
        ([156.0, 180.0, 120.0], "the rise is over"),
        ([156.0, float("nan")], "a scrape gap is no evidence"),
    ],
)
def test_what_is_no_surge(tail: list[float], why: str) -> None:
    assert find_surges(frame({CART: steady() + tail}), SETTINGS) == [], why


def test_the_daily_peak_is_no_surge() -> None:
    # From 1x to 1.8x over three hours (15 s samples): a few percent per ten minutes.
    hours = np.arange(720) * STEP_S / 3600
    rates = list(
        120
        * (1 + 0.8 * np.minimum(1.0, hours / 3))
        * np.exp(np.random.default_rng(3).normal(0, 0.04, 720))
    )

    for end in range(60, 720, 2):
        assert find_surges(frame({CART: rates[:end]}), SETTINGS) == [], end


def test_no_surge_without_a_reference() -> None:
    assert find_surges(frame({CART: steady(6) + ramp(3.0, 120, 30)}), SETTINGS) == []


def test_no_surge_when_cpu_does_not_follow() -> None:
    f = frame({CART: steady() + ramp(3.0, 120, 30)})
    f.values[0, 0, -2:] = f.values[0, 0, 0]  # requests up, CPU per replica flat

    assert find_surges(f, SETTINGS) == []


def test_demand_carries_the_trend_over_the_lead_time() -> None:
    f = frame({CART: [120.0] * 40 + ramp(3.0, 120, 30)})

    demand = demand_of(f, 0, replicas=3, lead_s=120.0)

    assert demand is not None
    assert demand.rps == 180.0
    assert demand.cpu_per_rps == pytest.approx(3 / RPS_PER_CPU * 3 / 3)
    # least squares over the last minute (120, 120, 150, 180): 1.4 requests/s per second
    assert demand.projected_rps == pytest.approx(180 + 1.4 * 120)


def test_demand_of_a_falling_rate_is_the_rate_now() -> None:
    f = frame({CART: [300.0, 280.0, 260.0, 240.0]})

    demand = demand_of(f, 0, replicas=3, lead_s=120.0)

    assert demand is not None and demand.projected_rps == 240.0


def test_no_demand_without_requests() -> None:
    assert demand_of(frame({CART: [0.0] * 5}), 0, replicas=3, lead_s=120.0) is None


def surge_of(rates: list[float]) -> Surge:
    found = find_surges(frame({CART: rates}), SETTINGS)
    assert found
    return found[0]


def test_a_surge_heading_past_the_hpa_target_is_an_overload() -> None:
    surge = surge_of(steady() + ramp(2.8, 120, 30))
    hpa = HpaState("cart", 3, 9, target_cpu_utilisation=0.8)
    # 300 requests/s x 1.2% of a request each over 3 replicas: 120% per replica
    demand = Demand(rps=174.0, projected_rps=300.0, cpu_per_rps=0.012)

    diagnosis = diagnose(surge, demand, state(hpa=hpa), SETTINGS)

    assert diagnosis is not None
    assert diagnosis.cause is Cause.OVERLOAD
    assert diagnosis.confidence >= 0.6  # the scale playbooks act on it
    assert "120% of requests, past the 80%" in diagnosis.explanation


def test_a_surge_the_replicas_absorb_is_left_to_the_hpa() -> None:
    surge = surge_of(steady() + ramp(2.8, 120, 30))
    hpa = HpaState("cart", 6, 18, target_cpu_utilisation=0.8)
    demand = Demand(rps=174.0, projected_rps=300.0, cpu_per_rps=0.012)  # 60% on 6

    assert diagnose(surge, demand, state(replicas=6, hpa=hpa), SETTINGS) is None
    assert diagnose(surge, None, state(), SETTINGS) is None


def test_capacity_is_the_hpa_target_or_the_setting() -> None:
    assert capacity_target(state(hpa=HpaState("cart", 1, 5, 0.6)), SETTINGS) == 0.6
    assert capacity_target(state(hpa=HpaState("cart", 1, 5)), SETTINGS) == 0.8
    assert capacity_target(state(), SETTINGS.model_copy(update={"target_utilisation": 0.7})) == 0.7
