"""Scoring: the JSON records' schema, and each measure on literal traces."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from healer.chaos.contenders import CONTENDERS, Act, Trace
from healer.chaos.score import RECORD_FIELDS, faults_of, records, slo_of
from healer.sim.cluster import SIGNALS
from healer.sim.scenario import Scenario
from healer.types import Signal

STEP_S = 15.0
MINUTES = 60
FAULT_AT_S = 30 * 60.0


def scenario(*events: dict[str, Any], annotations: dict[str, str] | None = None) -> Scenario:
    workload = {"image": "cart:1", "traffic": {"base_rps": 10}, "namespace": "shop"}
    return Scenario.model_validate(
        {
            "name": "literal",
            "description": "two workloads",
            "start": "2026-03-02T12:00:00Z",
            "images": {"cart:1": {"latency_s": 0.1}},
            "workloads": [
                {**workload, "name": "cart", "annotations": annotations or {}},
                {**workload, "name": "search"},
            ],
            "events": list(events),
        }
    )


BAD_RELEASE = {
    "at_s": FAULT_AT_S,
    "kind": "release",
    "workload": "shop/cart",
    "image": "cart:2",
    "expect": "rollback",
}
START = scenario().start.timestamp()


def trace(contender: str, **changes: tuple[float, float, float]) -> Trace:
    """An hour of two workloads at rest; ``signal=(from_min, to_min, value)`` changes cart's."""
    t = START + STEP_S * np.arange(MINUTES * 4)
    values = np.zeros((2, len(SIGNALS), t.size))
    values[:, SIGNALS.index(Signal.ERROR_RATIO)] = 0.002
    values[:, SIGNALS.index(Signal.LATENCY_P99)] = 0.1
    values[:, SIGNALS.index(Signal.MEMORY)] = 0.4
    values[:, SIGNALS.index(Signal.CPU)] = 0.4
    for name, (lo, hi, value) in changes.items():
        span = (t >= START + lo * 60) & (t < START + hi * 60)
        values[0, SIGNALS.index(Signal(name)), span] = value
    return Trace(contender, t, ("shop/cart", "shop/search"), values)


def traces(**by_contender: Trace) -> dict[str, Trace]:
    return {c: by_contender.get(c) or trace(c) for c in CONTENDERS}


def test_every_record_has_exactly_the_documented_fields_and_types() -> None:
    bad = trace("kubernetes", error_ratio=(30, 60, 0.2))
    got = records(scenario(BAD_RELEASE), 7, traces(kubernetes=bad))
    assert [r["contender"] for r in got] == list(CONTENDERS)
    for r in got:
        assert tuple(r) == RECORD_FIELDS
        assert (r["scenario"], r["seed"], r["fault"]) == ("literal", 7, "bad_release shop/cart")
        assert r["expected_action"] == "rollback"
        assert r["action"] is None or isinstance(r["action"], str)
        for key in ("time_to_detect_s", "time_to_heal_s"):
            assert r[key] is None or isinstance(r[key], float)
        for key in ("slo_minutes_lost", "oom_kills", "benign_actions"):
            assert isinstance(r[key], int)
    assert json.loads(json.dumps(got)) == got


def test_heal_is_the_start_of_five_minutes_back_within_baseline() -> None:
    healed = trace("healer", error_ratio=(31, 40, 0.2))
    never = trace("kubernetes", error_ratio=(31, 60, 0.2))
    got = {
        r["contender"]: r
        for r in records(scenario(BAD_RELEASE), 1, traces(kubernetes=never, healer=healed))
    }
    assert got["healer"]["time_to_heal_s"] == 600.0
    assert got["kubernetes"]["time_to_heal_s"] is None
    assert got["static"]["time_to_heal_s"] == 0.0  # the fault never showed


def test_a_short_return_to_baseline_is_not_a_heal() -> None:
    t = trace("healer", error_ratio=(31, 60, 0.2))
    t.values[0, SIGNALS.index(Signal.ERROR_RATIO), (40 * 4) : (43 * 4)] = 0.002
    got = records(scenario(BAD_RELEASE), 1, traces(healer=t))
    assert next(r for r in got if r["contender"] == "healer")["time_to_heal_s"] is None


def test_slo_minutes_count_errors_or_latency_beyond_the_slo() -> None:
    t = trace("healer", error_ratio=(31, 36, 0.2), latency_p99=(40, 43, 0.5))
    got = records(scenario(BAD_RELEASE), 1, traces(healer=t))
    assert next(r for r in got if r["contender"] == "healer")["slo_minutes_lost"] == 5 + 3


def test_slos_default_and_annotations() -> None:
    slos = slo_of(scenario(annotations={"healer.io/slo-latency-p99-s": "1.5"}))
    assert slos["shop/search"].error_ratio == 0.01
    assert slos["shop/search"].latency_p99_s == pytest.approx(0.3)  # 3 x the idle p99
    assert slos["shop/cart"].latency_p99_s == 1.5


def test_actions_are_the_faults_or_benign() -> None:
    t = trace("healer", error_ratio=(31, 40, 0.2))
    t.actions = [
        Act(START + 10 * 60, "shop/cart", "restart"),  # before the fault: benign
        Act(START + 33 * 60, "shop/cart", "rollback"),
        Act(START + 34 * 60, "shop/cart", "rollback"),
        Act(START + 35 * 60, "shop/search", "scale"),  # no fault there: benign
    ]
    t.noticed = [(START + 5 * 60, "shop/cart"), (START + 32 * 60, "shop/cart")]
    t.oom_kills = [(START + 20 * 60, "shop/cart"), (START + 45 * 60, "shop/cart")]
    got = next(
        r for r in records(scenario(BAD_RELEASE), 1, traces(healer=t)) if r["contender"] == "healer"
    )
    assert got["action"] == "rollback"
    assert got["benign_actions"] == 2
    assert got["time_to_detect_s"] == 120.0
    assert got["oom_kills"] == 1


def test_kubernetes_alone_detects_nothing() -> None:
    k = trace("kubernetes")
    k.noticed = [(START + 32 * 60, "shop/cart")]
    got = records(scenario(BAD_RELEASE), 1, traces(kubernetes=k))
    assert got[0]["time_to_detect_s"] is None


def test_a_crash_loop_heals_only_after_fifteen_quiet_minutes() -> None:
    crash = {**BAD_RELEASE, "kind": "crash_loop"}
    t = trace("healer")
    restarts = t.values[0, SIGNALS.index(Signal.RESTARTS)]
    restarts[np.arange(31 * 4, 60 * 4, 20)] = 4.0  # one restart every 5 minutes, as back-off
    got = records(scenario(crash), 1, traces(healer=t))
    assert next(r for r in got if r["contender"] == "healer")["time_to_heal_s"] is None
    assert faults_of(scenario(crash))[0].name == "crash_loop shop/cart"


def test_a_run_without_faults_still_reports_its_benign_actions() -> None:
    benign = {
        "at_s": 600,
        "kind": "scrape_gap",
        "workload": "*",
        "duration_s": 60,
        "expect": "none",
    }
    t = trace("static")
    t.actions = [Act(START + 20 * 60, "shop/search", "restart")]
    got = records(scenario(benign), 3, traces(static=t))
    assert [(r["contender"], r["fault"], r["benign_actions"]) for r in got] == [
        ("kubernetes", None, 0),
        ("static", None, 1),
        ("healer-cold", None, 0),
        ("healer-undo", None, 0),
        ("healer", None, 0),
    ]
    assert all(tuple(r) == RECORD_FIELDS for r in got)


def test_the_summary_table_and_the_chart(tmp_path: Path) -> None:
    from healer.chaos.report import markdown_table, plot_scenario

    healed = trace("healer", error_ratio=(31, 40, 0.2))
    healed.actions = [Act(START + 33 * 60, "shop/cart", "rollback")]
    never = trace("kubernetes", error_ratio=(31, 60, 0.2))
    runs = traces(kubernetes=never, healer=healed)
    table = markdown_table(records(scenario(BAD_RELEASE), 1, runs))
    assert "| bad_release | kubernetes | 0/1 |  | 0/1 | never |" in table
    assert "|  | healer | 1/1 | never | 1/1 | 600 |" in table
    assert "| benign actions | kubernetes | 0 in 1 runs |" in table
    plot_scenario(scenario(BAD_RELEASE), 1, runs, tmp_path / "chart.png")
    assert (tmp_path / "chart.png").read_bytes()[:4] == b"\x89PNG"


NODE_DOWN = {"at_s": FAULT_AT_S, "kind": "node_notready", "node": "node-01", "expect": "drain"}


def two_workload_trace(contender: str, heal_min: dict[int, float]) -> Trace:
    """Both workloads err from the fault on, each until its own minute in ``heal_min``."""
    base = trace(contender)
    values = base.values.copy()
    for row, until in heal_min.items():
        span = (base.timestamps >= START + FAULT_AT_S) & (base.timestamps < START + until * 60)
        values[row, SIGNALS.index(Signal.ERROR_RATIO), span] = 0.3
    return Trace(contender, base.timestamps, base.workloads, values)


def test_a_node_fault_names_its_node_and_hurts_every_workload() -> None:
    [fault] = faults_of(scenario(NODE_DOWN))
    assert (fault.name, fault.workload) == ("node_notready node/node-01", "node/node-01")
    assert fault.judged == ("shop/cart", "shop/search")


def test_a_node_fault_heals_when_its_last_workload_does_and_a_drain_is_one_action() -> None:
    healer = two_workload_trace("healer", {0: 34, 1: 38})
    healer.actions = [
        Act(START + FAULT_AT_S + 60, "node/node-01", "cordon"),
        Act(START + FAULT_AT_S + 90, "node/node-01", "drain"),
        Act(START + FAULT_AT_S + 1200, "node/node-01", "uncordon"),
    ]
    static = two_workload_trace("static", {0: 40, 1: 40})
    static.actions = [Act(START + FAULT_AT_S + 60, "shop/cart", "restart")]
    got = records(scenario(NODE_DOWN), 1, traces(healer=healer, static=static))
    by = {r["contender"]: r for r in got}

    assert by["healer"]["action"] == "drain" and by["healer"]["benign_actions"] == 0
    assert by["healer"]["time_to_heal_s"] == 8 * 60.0  # search, the later, at minute 38
    assert by["static"]["action"] == "restart"  # on a workload the node hurt: not benign
    assert by["static"]["benign_actions"] == 0
    assert by["static"]["time_to_heal_s"] == 10 * 60.0


def test_a_fix_that_did_not_stick_came_back() -> None:
    t = np.asarray(trace("kubernetes").timestamps)
    bad_from = t >= START + FAULT_AT_S

    def with_cause(contender: str, gone: tuple[float, float] | None, acted: bool) -> Trace:
        made = trace(contender)
        present = bad_from.copy()
        if gone is not None:
            present &= ~((t >= START + gone[0] * 60) & (t < START + gone[1] * 60))
        made.cause_present = {0: present}
        made.actions = [Act(START + 33 * 60, "shop/cart", "rollback")] if acted else []
        return made

    runs = traces(
        kubernetes=with_cause("kubernetes", None, acted=False),  # never fixed: not "back"
        static=with_cause("static", (33, 34), acted=True),  # undone, reverted a minute on
        healer=with_cause("healer", (33, 60), acted=True),  # gone for good
    )
    runs["healer-undo"] = with_cause("healer-undo", None, acted=True)  # reverted at once
    got = {r["contender"]: r["cause_returned"] for r in records(scenario(BAD_RELEASE), 1, runs)}
    assert got == {
        "kubernetes": False,
        "static": True,
        "healer-cold": False,
        "healer-undo": True,
        "healer": False,
    }
