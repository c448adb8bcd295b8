"""Ground-truth labels from scenarios: which cause an anomaly had, and when."""

from __future__ import annotations

from healer.groundtruth import cause_at
from healer.sim.scenario import load_scenario
from healer.types import Cause


def test_the_fault_active_on_the_workload_is_the_cause() -> None:
    default = load_scenario("default")
    assert cause_at(default, "shop/checkout", 1100) is Cause.UNKNOWN  # before the leak
    assert cause_at(default, "shop/checkout", 1300) is Cause.MEMORY_LEAK
    assert cause_at(default, "shop/search", 2800) is Cause.OVERLOAD
    assert cause_at(default, "shop/cart", 4000) is Cause.BAD_RELEASE
    assert cause_at(default, "shop/catalog", 2200) is Cause.UNKNOWN  # a good release
    assert cause_at(default, "web/storefront", 3000) is Cause.UNKNOWN  # the daily peak


def test_crash_loops_and_cpu_hogs_are_labelled() -> None:
    assert cause_at(load_scenario("crash-loop"), "shop/profile", 2000) is Cause.CRASH_LOOP
    assert cause_at(load_scenario("cpu-hog"), "shop/recommend", 2000) is Cause.CPU_HOG
