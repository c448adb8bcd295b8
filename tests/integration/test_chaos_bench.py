"""`healer bench chaos` end to end on one scenario and seed: table, JSON records, chart.

The static and healer contenders act through the official client over HTTP against the
simulated cluster, in worker processes, as the full benchmark does.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from healer.chaos.bench import bench_settings
from healer.chaos.contenders import run_contender
from healer.chaos.score import RECORD_FIELDS
from healer.sim.scenario import load_scenario

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def test_bad_release_end_to_end(tmp_path: Path) -> None:
    out, plots = tmp_path / "chaos.json", tmp_path / "plots"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "healer.cli",
            "bench",
            "chaos",
            "--scenarios",
            "bad-release",
            "--seeds",
            "1",
            "--jobs",
            "1",
            "--json",
            str(out),
            "--plots",
            str(plots),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "bad_release shop/cart" in result.stdout
    assert "healer in auto mode" in result.stdout
    records = json.loads(out.read_text())
    assert [r["contender"] for r in records] == ["kubernetes", "static", "healer"]
    assert all(tuple(r) == RECORD_FIELDS for r in records)
    by = {r["contender"]: r for r in records}
    # Kubernetes never rolls back; the threshold rule on errors does, as healer does.
    assert by["kubernetes"]["action"] is None
    assert by["kubernetes"]["time_to_heal_s"] is None
    assert by["static"]["action"] == "rollback"
    assert by["static"]["time_to_heal_s"] is not None
    assert by["static"]["time_to_detect_s"] >= 300  # error ratio above 5% for 5 minutes
    assert by["kubernetes"]["slo_minutes_lost"] > by["static"]["slo_minutes_lost"]
    assert (plots / "bad-release.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_overload_is_scaled_for_ahead_of_the_autoscaler(tmp_path: Path) -> None:
    out = tmp_path / "chaos.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "healer.cli",
            "bench",
            "chaos",
            "--scenarios",
            "overload",
            "--seeds",
            "5",
            "--jobs",
            "1",
            "--json",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    records = json.loads(out.read_text())
    healer = [r for r in records if r["contender"] == "healer"]

    def heal_s(contender: str) -> float:
        return statistics.median(
            r["time_to_heal_s"] for r in records if r["contender"] == contender
        )

    # The surge is seen two scrapes in and scaled for before the HPA's CPU average passes
    # its target. Medians over the seeds: a seed where healer kept latency within its
    # baseline is scored from the first later blip (a burst past the downstream limit).
    assert all(r["action"] == "scale" and r["time_to_detect_s"] <= 60 for r in healer)
    assert all(r["benign_actions"] == 0 for r in healer)
    assert heal_s("healer") < heal_s("kubernetes")
    assert heal_s("healer") < heal_s("static")


def test_a_warm_run_starts_with_the_shape_stage_warm() -> None:
    """The warm healer has learned the quiet days before the scenario when it starts:
    every workload's shape series hold at least ``shape_warmup_buckets`` rows, and the
    quiet run up to the first fault raises nothing."""
    scenario = load_scenario("bad-release")
    settings = bench_settings(None)
    first_s = min(e.at_s for e in scenario.events)
    trace = run_contender("healer", scenario, duration_s=first_s - 300, settings=settings)
    assert trace.warm is not None and not trace.warm.short
    assert trace.warm.last_s == scenario.start.timestamp()
    assert set(trace.shape_rows) == set(trace.workloads)
    assert min(trace.shape_rows.values()) >= settings.detector.shape_warmup_buckets
    assert trace.noticed == [] and trace.actions == []
    cold = run_contender("healer-cold", scenario, duration_s=600, settings=settings)
    assert cold.warm is None and cold.shape_rows == {}
