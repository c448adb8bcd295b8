"""`healer gate` as a pipeline runs it: `healer sim serve` is the cluster, a real
Prometheus scrapes it every second, `kubectl set image` ships each release, and the
gate runs as its own process and answers with its exit code.

Three workloads of one scenario run the same image for the first minute (the history
the gate learns the previous revision from); then each gets one release: an image that
behaves the same (passes), one that fails 3% of requests (fails) and one whose only
symptom is 4x the p99 latency (fails). Each verdict must come within the --for window;
the time to verdict is printed (run with -s to see it).

The detector runs on the wall-clock settings of test_healer_run (30 s of warm-up
instead of 15 min, 1 s scrapes, 4 s rate windows), so one rate window is 4 s here
where it is a minute in a cluster; the same number of samples decides.

Without the prometheus binary these tests skip (fail when HEALER_REQUIRE_PROMETHEUS=1).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from daemons import serve_sim, write_settings
from test_prometheus import PrometheusServer, _binary, _free_port

pytestmark = pytest.mark.integration

HISTORY_S = 60
"""Real seconds of the first image before any release: twice the detector's warm-up."""
WINDOW = "90s"
WINDOW_S = 90.0

FAST = {
    "prometheus": {"step_s": 1, "rate_window_s": 4, "retries": 0, "timeout_s": 5},
    "detector": {
        "warmup_s": 30,
        "persistence_s": 4,
        "baseline_half_life_s": 120,
        "spread_half_life_s": 300,
    },
}


def workload(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": "shop",
        "replicas": 2,
        "image": "shop/cart:1",
        "traffic": {"base_rps": 60, "noise": 0.03},
    }


def scenario(start: datetime) -> dict[str, Any]:
    return {
        "name": "gate-e2e",
        "description": "three releases of the same service, judged by healer gate",
        "start": start.isoformat(),
        "step_s": 1,
        "seed": 11,
        "images": {
            "shop/cart:1": {"error_ratio": 0.002, "latency_s": 0.08},
            "shop/cart:good": {"error_ratio": 0.002, "latency_s": 0.08},
            "shop/cart:errors": {"error_ratio": 0.03, "latency_s": 0.08},
            "shop/cart:slow": {"error_ratio": 0.002, "latency_s": 0.32},
        },
        "workloads": [workload("good"), workload("errors"), workload("slow"), workload("fresh")],
    }


@dataclass
class Stack:
    kubeconfig: Path
    settings: Path
    prometheus: PrometheusServer
    workdir: Path

    def kubectl(self, *args: str) -> str:
        kubectl = shutil.which("kubectl")
        if kubectl is None:
            pytest.skip("the kubectl binary is not installed (Debian package kubectl)")
        done = subprocess.run(
            [kubectl, "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def gate(self, name: str, *extra: str) -> tuple[int, dict[str, Any], float]:
        """Run `healer gate --json`; its exit code, its verdict and its wall time."""
        args = ["gate", "--workload", f"shop/{name}", "--for", WINDOW, "--json"]
        args += ["--config", str(self.settings), "--kubeconfig", str(self.kubeconfig), *extra]
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "healer.cli", *args],
            capture_output=True,
            text=True,
            timeout=WINDOW_S + 60,
            cwd=self.workdir,
            check=False,
        )
        took = time.monotonic() - started
        assert done.stdout.strip(), done.stderr[-3000:]
        return done.returncode, json.loads(done.stdout.strip().splitlines()[-1]), took


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    _binary("prometheus")
    workdir = tmp_path_factory.mktemp("gate")
    start = datetime.now(UTC).replace(microsecond=0)
    server, kubeconfig, target = serve_sim(workdir, scenario(start), _free_port())
    prometheus = PrometheusServer.start(
        workdir, targets=[target], data_dir=workdir / "prometheus", interval_s=1.0
    )
    settings = write_settings(
        workdir / "gate.yaml", {**FAST, "prometheus": {**FAST["prometheus"], "url": prometheus.url}}
    )
    try:
        time.sleep(HISTORY_S)  # the previous revision's history
        yield Stack(kubeconfig, settings, prometheus, workdir)
    finally:
        prometheus.stop()
        server.terminate()


def release(stack: Stack, name: str, image: str) -> None:
    stack.kubectl("set", "image", f"deployment/{name}", f"*={image}", "-n", "shop")


def report(name: str, code: int, verdict: dict[str, Any], took: float) -> None:
    print(
        f"\nhealer gate shop/{name}: exit {code} ({verdict['verdict']}), rollout "
        f"{verdict['rollout_s']:.1f} s, time to verdict {verdict['time_to_verdict_s']:.1f} s "
        f"after the rollout, {took:.1f} s in all, {verdict['samples']} samples; "
        f"{verdict['reason']}; p-values {verdict['p_values']}; evidence {verdict['evidence']}"
    )


def test_a_good_release_passes_within_the_window(stack: Stack) -> None:
    release(stack, "good", "shop/cart:good")
    code, verdict, took = stack.gate("good")
    report("good", code, verdict, took)
    assert (code, verdict["verdict"]) == (0, "healthy"), verdict
    assert verdict["revision"] == 2 and verdict["images"] == ["shop/cart:good"]
    assert took < WINDOW_S


def test_a_release_failing_three_percent_fails_and_is_rolled_back(stack: Stack) -> None:
    release(stack, "errors", "shop/cart:errors")
    code, verdict, took = stack.gate("errors", "--rollback")
    report("errors", code, verdict, took)
    assert (code, verdict["verdict"]) == (1, "unhealthy"), verdict
    assert verdict["evidence"][0]["signal"] == "error_ratio", verdict
    assert verdict["rolled_back_to"] == 1 and took < WINDOW_S
    image = stack.kubectl(
        "get", "deploy", "errors", "-n", "shop", "-o", "jsonpath={..containers[0].image}"
    )
    assert image == "shop/cart:1"


def test_a_release_whose_only_symptom_is_4x_p99_fails(stack: Stack) -> None:
    release(stack, "slow", "shop/cart:slow")
    code, verdict, took = stack.gate("slow")
    report("slow", code, verdict, took)
    assert (code, verdict["verdict"]) == (1, "unhealthy"), verdict
    assert verdict["evidence"][0]["signal"] == "latency_p99", verdict
    assert verdict["rolled_back_to"] is None and took < WINDOW_S


def test_a_workload_without_history_cannot_be_judged(stack: Stack) -> None:
    # shop/fresh has run one revision since the cluster started: nothing before it.
    code, verdict, _ = stack.gate("fresh")
    assert (code, verdict["verdict"]) == (2, "undecided"), verdict
    assert verdict["reason"].startswith("not enough history to judge"), verdict


def test_an_unknown_workload_is_exit_2_with_the_reason(stack: Stack) -> None:
    args = ["gate", "--workload", "shop/nothing", "--for", "5s", "--config", str(stack.settings)]
    process = subprocess.run(
        [sys.executable, "-m", "healer.cli", *args, "--kubeconfig", str(stack.kubeconfig)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=stack.workdir,
        check=False,
    )
    assert process.returncode == 2, process.stdout + process.stderr
    assert "nothing" in process.stderr
