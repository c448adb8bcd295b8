"""The simulated clock resumes after an audit store's history, never inside it; the loop
cycles on its own schedule however the caller slices simulated time."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from healer.config import Settings, load_settings
from healer.harness import SimHarness, resume_after
from healer.sim.cluster import Cluster
from healer.sim.scenario import load_scenario
from healer.vitals import Vitals


def test_a_fresh_or_older_store_keeps_the_scenario_start() -> None:
    scenario = load_scenario("default")
    assert resume_after(scenario, None) is scenario
    assert resume_after(scenario, scenario.start - timedelta(days=3)) is scenario


def test_a_store_with_later_history_moves_the_start_by_whole_days_past_it() -> None:
    scenario = load_scenario("default")
    for hours, days in ((0, 1), (5, 1), (23.9, 1), (24, 2), (50, 3)):
        latest = scenario.start + timedelta(hours=hours)
        moved = resume_after(scenario, latest)
        assert moved.start == scenario.start + timedelta(days=days)
        assert moved.start > latest
        assert moved.events == scenario.events  # the same story, told later


@dataclass
class CountingHealer:
    """Records when it was asked to cycle; stands in for the loop."""

    settings: Settings
    cycled_at: list[datetime] = field(default_factory=list)
    vitals: Vitals = field(default_factory=Vitals)

    def cycle(self, now: datetime) -> object:
        self.cycled_at.append(now)
        return object()  # any detection: the cycle had data


def test_time_advanced_in_slices_shorter_than_the_interval_still_cycles_on_schedule() -> None:
    scenario = load_scenario("memory-leak")  # a 15 s step
    settings = load_settings(None, daemon={"interval_s": 60.0})
    loop = CountingHealer(settings)
    unused: Any = None  # no server, kubeconfig or store: only the clock and the cycle run
    harness = SimHarness(Cluster(scenario), unused, unused, healer=unused, store=unused)
    harness.healer = loop  # type: ignore[assignment]  # the harness only asks it to cycle
    for _ in range(8):
        harness.run_for(45)  # a reviewer's slice, shorter than the interval
    assert [(t - scenario.start).total_seconds() for t in loop.cycled_at] == [
        60.0,
        120.0,
        180.0,
        240.0,
        300.0,
        360.0,
    ]
