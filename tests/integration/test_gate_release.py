"""`healer gate` as a pipeline runs it: `healer sim serve` is the cluster, a real
Prometheus scrapes it every second, `kubectl set image` ships each release, and the
gate runs as its own process and answers with its exit code.

Three workloads of one scenario run the same image for the first minute (the history
the gate learns the previous revision from); then each gets one release: an image that
behaves the same (passes), one that fails 3% of requests (fails) and one whose only
symptom is 4x the p99 latency (fails). Each verdict must come within the --for window;
the time to verdict is printed (run with -s to see it). The three releases ship at once
and their gates run side by side, as three pipelines would: each gate reads its own
workload's series, so one judgement does not wait for another's window.

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

    def gate(self, name: str, *extra: str) -> Gate:
        """Start `healer gate --json` on shop/``name``; ``Gate.verdict`` waits for it."""
        args = ["gate", "--workload", f"shop/{name}", "--for", WINDOW, "--json"]
        args += ["--config", str(self.settings), "--kubeconfig", str(self.kubeconfig), *extra]
        # Output to files, not pipes: a gate whose pipe nobody reads yet would block.
        out, err = self.workdir / f"gate-{name}.out", self.workdir / f"gate-{name}.err"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "healer.cli", *args],
                stdout=stdout,
                stderr=stderr,
                cwd=self.workdir,
            )
        return Gate(name, process, time.monotonic(), out, err)


@dataclass
class Gate:
    """A running `healer gate` process, started at ``started`` (monotonic seconds)."""

    name: str
    process: subprocess.Popen[bytes]
    started: float
    out: Path
    err: Path

    def verdict(self) -> Verdict:
        """Its exit code, its JSON verdict and its wall time, once it has exited."""
        try:
            self.process.wait(timeout=self.started + WINDOW_S + 60 - time.monotonic())
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                f"healer gate shop/{self.name} ran past its window: {self.err.read_text()}"
            ) from None
        took = time.monotonic() - self.started
        stdout = self.out.read_text()
        assert stdout.strip(), self.err.read_text()[-3000:]
        verdict = json.loads(stdout.strip().splitlines()[-1])
        return Verdict(self.name, self.process.returncode, verdict, took)


@dataclass(frozen=True)
class Verdict:
    name: str
    code: int
    verdict: dict[str, Any]
    took: float
    """Wall seconds from starting the gate to its exit, rollout included."""

    def report(self) -> None:
        v = self.verdict
        print(
            f"\nhealer gate shop/{self.name}: exit {self.code} ({v['verdict']}), rollout "
            f"{v['rollout_s']:.1f} s, time to verdict {v['time_to_verdict_s']:.1f} s "
            f"after the rollout, {self.took:.1f} s in all, {v['samples']} samples; "
            f"{v['reason']}; p-values {v['p_values']}; evidence {v['evidence']}"
        )


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


RELEASES = {
    "good": ("shop/cart:good",),
    "errors": ("shop/cart:errors", "--rollback"),
    "slow": ("shop/cart:slow",),
}
"""Each judged workload: its new image, then the gate's extra options."""


@pytest.fixture(scope="module")
def verdicts(stack: Stack) -> dict[str, Verdict]:
    """The three releases shipped one after the other and judged by three gates at once."""
    gates = []
    for name, (image, *extra) in RELEASES.items():
        release(stack, name, image)
        gates.append(stack.gate(name, *extra))
    try:
        return {gate.name: gate.verdict() for gate in gates}
    finally:
        for gate in gates:
            if gate.process.poll() is None:
                gate.process.kill()
                gate.process.wait()


def test_a_good_release_passes_within_the_window(verdicts: dict[str, Verdict]) -> None:
    judged = verdicts["good"]
    judged.report()
    verdict = judged.verdict
    assert (judged.code, verdict["verdict"]) == (0, "healthy"), verdict
    assert verdict["revision"] == 2 and verdict["images"] == ["shop/cart:good"]
    assert judged.took < WINDOW_S


def test_a_release_failing_three_percent_fails_and_is_rolled_back(
    stack: Stack, verdicts: dict[str, Verdict]
) -> None:
    judged = verdicts["errors"]
    judged.report()
    verdict = judged.verdict
    assert (judged.code, verdict["verdict"]) == (1, "unhealthy"), verdict
    assert verdict["evidence"][0]["signal"] == "error_ratio", verdict
    assert verdict["rolled_back_to"] == 1 and judged.took < WINDOW_S
    image = stack.kubectl(
        "get", "deploy", "errors", "-n", "shop", "-o", "jsonpath={..containers[0].image}"
    )
    assert image == "shop/cart:1"


def test_a_release_whose_only_symptom_is_4x_p99_fails(verdicts: dict[str, Verdict]) -> None:
    judged = verdicts["slow"]
    judged.report()
    verdict = judged.verdict
    assert (judged.code, verdict["verdict"]) == (1, "unhealthy"), verdict
    assert verdict["evidence"][0]["signal"] == "latency_p99", verdict
    assert verdict["rolled_back_to"] is None and judged.took < WINDOW_S


def test_a_workload_without_history_cannot_be_judged(stack: Stack) -> None:
    # shop/fresh has run one revision since the cluster started: nothing before it.
    judged = stack.gate("fresh").verdict()
    verdict = judged.verdict
    assert (judged.code, verdict["verdict"]) == (2, "undecided"), verdict
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
