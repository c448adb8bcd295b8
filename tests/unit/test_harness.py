"""The simulated clock resumes after an audit store's history, never inside it."""

from __future__ import annotations

from datetime import timedelta

from healer.harness import resume_after
from healer.sim.scenario import load_scenario


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
