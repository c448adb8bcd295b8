"""`healer run` and `healer sim serve` as real processes, for the high-availability tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml

from healer.api.auth import hash_token

REPO = Path(__file__).resolve().parents[2]
VIEWER_TOKEN = "test-viewer-token"
"""The daemons' API answers /api/v1 only with a token; the tests read as a viewer."""
VIEWER = {"Authorization": f"Bearer {VIEWER_TOKEN}"}
T = TypeVar("T")


def wait_for(what: str, check: Callable[[], T | None], timeout_s: float, every_s: float = 0.2) -> T:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@dataclass
class Process:
    """A healer command in its own process; its output goes to files, read while it runs."""

    name: str
    popen: subprocess.Popen[bytes]
    out: Path
    err: Path

    @classmethod
    def start(cls, name: str, args: list[str], workdir: Path, env: dict[str, str]) -> Process:
        out, err = workdir / f"{name}.out", workdir / f"{name}.err"
        environment = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
        with out.open("wb") as stdout, err.open("wb") as stderr:
            popen = subprocess.Popen(
                [sys.executable, "-m", "healer.cli", *args],
                stdout=stdout,
                stderr=stderr,
                env=environment,
                cwd=workdir,
            )
        return cls(name, popen, out, err)

    def stdout(self) -> str:
        return self.out.read_text()

    def stderr(self) -> str:
        return self.err.read_text()

    def logs(self) -> list[dict[str, Any]]:
        """The JSON log lines (stderr is not a terminal, so the daemon logs JSON)."""
        import json

        lines = []
        for line in self.stderr().splitlines():
            if line.startswith("{"):
                lines.append(json.loads(line))
        return lines

    def api_url(self) -> str:
        def found() -> str | None:
            self.check_running()
            match = re.search(r"API (http://\S+)", self.stdout())
            return match.group(1) if match else None

        # Several daemons start at once, beside other tests' processes (pytest-xdist).
        return wait_for(f"{self.name}'s API", found, 120)

    def check_running(self) -> None:
        if self.popen.poll() is not None:
            raise AssertionError(
                f"{self.name} exited with {self.popen.returncode}: {self.stderr()[-3000:]}"
            )

    def status(self) -> dict[str, Any]:
        answer = httpx.get(f"{self.api_url()}/api/v1/status", headers=VIEWER, timeout=5)
        answer.raise_for_status()
        body: dict[str, Any] = answer.json()
        return body

    def kill(self) -> None:
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def terminate(self, timeout_s: float = 30) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise


def serve_sim(workdir: Path, scenario: dict[str, Any], port: int) -> tuple[Process, Path, str]:
    """`healer sim serve` on ``port`` running ``scenario``, once its API answers: the
    process, the kubeconfig it wrote and the ``host:port`` Prometheus scrapes."""
    scenario_file = workdir / "scenario.yaml"
    scenario_file.write_text(yaml.safe_dump(scenario))
    kubeconfig = workdir / "kubeconfig"
    server = Process.start(
        "sim",
        [
            "sim",
            "serve",
            "--port",
            str(port),
            "--kubeconfig-out",
            str(kubeconfig),
            "--scenario",
            str(scenario_file),
        ],
        workdir,
        {},
    )

    def serving() -> bool:
        server.check_running()  # its port taken since it was picked: say so at once
        return kubeconfig.exists() and "API" in server.stdout()

    wait_for("the simulated cluster", serving, 60)
    return server, kubeconfig, f"127.0.0.1:{port}"


def write_settings(path: Path, settings: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return path


QUICK_LEASE = {"lease_duration_s": 6, "renew_deadline_s": 4, "retry_period_s": 1}
"""Lease timings of the test daemons: a follower takes over 6 s after the last renewal it
saw instead of Kubernetes' 15 s, so a takeover test waits a few seconds, not a quarter of
a minute. The proportions are the defaults' (15/10/2): the leader retries a failed
renewal three times before it gives up acting, and gives up 2 s before anyone may take
over. Wider than a loaded test machine's pauses (a second or two)."""


def daemon_settings(workdir: Path, prometheus_url: str, **sections: Any) -> dict[str, Any]:
    """Settings for a test daemon: one shared store, API on a free port, auto mode,
    ``QUICK_LEASE``."""
    base: dict[str, Any] = {
        "leader": dict(QUICK_LEASE),
        "guards": {"mode": "auto"},
        "store": {"url": f"sqlite:///{workdir / 'audit.db'}"},
        "api": {
            "host": "127.0.0.1",
            "port": 0,
            "tokens": [{"name": "tests", "role": "viewer", "sha256": hash_token(VIEWER_TOKEN)}],
        },
        "prometheus": {"url": prometheus_url, "retries": 0, "timeout_s": 2},
        "playbooks_dir": str(REPO / "playbooks"),
    }
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value}
    return base


def fast_settings(workdir: Path, prometheus_url: str, *, verify_stable_s: float) -> dict[str, Any]:
    """``daemon_settings`` for a daemon that heals in wall-clock seconds: a 2 s cycle on
    1 s scrapes; the detector learns for 30 s (instead of 15 min) and needs 4 s of
    persistence, so a fault shows within seconds; healed after ``verify_stable_s`` of
    quiet."""
    return daemon_settings(
        workdir,
        prometheus_url,
        prometheus={"step_s": 1, "rate_window_s": 4},
        daemon={"interval_s": 2, "window_s": 600, "verify_stable_s": verify_stable_s},
        detector={
            "warmup_s": 30,
            "persistence_s": 4,
            "baseline_half_life_s": 120,
            "spread_half_life_s": 300,
        },
    )


def healers(count: int) -> list[str]:
    """Names for ``count`` daemons: healer-0, healer-1, ..."""
    return [f"healer-{i}" for i in range(count)]


def start_daemons(
    names: list[str], workdir: Path, kubeconfig: Path, settings: dict[str, Any], *args: str
) -> list[Process]:
    """`healer run ARGS` once per name (its leader identity), all on ``settings``."""
    config = write_settings(workdir / "healer.yaml", settings)
    run = ["run", "--config", str(config), "--kubeconfig", str(kubeconfig), *args]
    return [Process.start(name, run, workdir, {"HEALER_LEADER__IDENTITY": name}) for name in names]


WARM_HISTORY_S = 45.0
"""Seconds the acting daemons cycle before a test ships a bad release: one and a half
times the 30 s warm-up of ``fast_settings``, so every series is scored, against a
baseline of a few rate windows past its warm-up, whether the daemon warmed from
Prometheus' history at start or learns from its own cycles (it starts cold when the
history holds nothing for it)."""


def wait_until_warm(daemons: list[Process]) -> None:
    """Return ``WARM_HISTORY_S`` after the daemons that act (the leader, or each holder
    of a shard) have all cycled once.

    A release shipped then, rather than at a fixed second of the scenario, is judged
    against the same warm detector however long the daemons took to start.
    """

    def acting_have_cycled() -> bool:
        statuses = [d.status() for d in daemons]
        acting = [s for s in statuses if s.get("is_leader") or s.get("shards_held")]
        return bool(acting) and all(s["cycles"] >= 1 for s in acting)

    wait_for("the acting daemons' first cycle", acting_have_cycled, 120)
    time.sleep(WARM_HISTORY_S)


def ship(kubeconfig: Path, workload: str, image: str) -> None:
    """Release ``image`` to the Deployment ``namespace/name`` as a pipeline's `kubectl set
    image` does: a strategic merge patch of its container (the simulator's are named
    after the workload)."""
    from kubernetes import client
    from kubernetes import config as kube_config

    namespace, name = workload.split("/")
    patch = {"spec": {"template": {"spec": {"containers": [{"name": name, "image": image}]}}}}
    api = kube_config.new_client_from_config(config_file=str(kubeconfig))
    try:
        client.AppsV1Api(api).patch_namespaced_deployment(name, namespace, patch)
    finally:
        api.close()
