"""`healer bench chaos` refuses bad input with one line, exit code 2, before anything runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from healer.chaos.bench import check_inputs, default_scenarios
from healer.errors import ConfigError

REPO = Path(__file__).resolve().parents[3]


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "healer.cli", "bench", "chaos", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0]
    assert result.stdout == ""  # nothing ran: no table


def test_unknown_scenario() -> None:
    result = bench("--scenarios", "default,nope", "--seeds", "1")
    assert_one_line_error(result, "unknown scenario 'nope'", "memory-leak")


def test_unwritable_json_path(tmp_path: Path) -> None:
    result = bench("--scenarios", "default", "--json", str(tmp_path / "missing" / "out.json"))
    assert_one_line_error(result, "--json", str(tmp_path / "missing" / "out.json"))


def test_plots_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    result = bench("--plots", str(tmp_path / "file" / "plots"))
    assert_one_line_error(result, "--plots", "file")


def test_json_path_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--json"):
        check_inputs(None, seeds=1, json_out=tmp_path, plots=None, config=None)


def test_a_checked_json_path_is_not_left_behind(tmp_path: Path) -> None:
    check_inputs(["default"], seeds=1, json_out=tmp_path / "out.json", plots=None, config=None)
    assert not (tmp_path / "out.json").exists()


def test_no_seeds() -> None:
    with pytest.raises(ConfigError, match="--seeds"):
        check_inputs(None, seeds=0, json_out=None, plots=None, config=None)


def test_the_default_set_leaves_out_the_scale_and_the_days_long_scenarios() -> None:
    assert "large-cluster" not in default_scenarios()
    assert "second-week" not in default_scenarios()
    assert {"default", "storm", "benign-day", "crash-loop", "cpu-hog"} <= set(default_scenarios())
    nodes = {"node-notready", "node-memory-pressure", "node-maintenance"}
    assert nodes <= set(default_scenarios())  # healer heals them (the README's table)
    gitops = {"gitops-bad-release", "flux-bad-release"}
    assert gitops <= set(default_scenarios())  # healed through Git (the README's table)


def test_unknown_start() -> None:
    result = bench("--scenarios", "default", "--seeds", "1", "--start", "tepid")
    assert_one_line_error(result, "--start must be one of warm, cold, both", "'tepid'")


def test_the_start_chooses_the_healer_contenders() -> None:
    def contenders(start: str) -> tuple[str, ...]:
        plan = check_inputs(
            ["default"], seeds=1, json_out=None, plots=None, config=None, start=start
        )
        return plan.contenders

    assert contenders("warm") == ("kubernetes", "static", "healer")
    assert contenders("cold") == ("kubernetes", "static", "healer-cold")
    assert contenders("both") == ("kubernetes", "static", "healer-cold", "healer")
