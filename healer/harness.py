"""healer wired to the simulated cluster: what `healer demo`, the tests and the benchmarks run.

The simulated cluster serves its Kubernetes API on a loopback port, and healer's
actuator reaches it through the official client and a kubeconfig, exactly as it would
reach a real cluster; only the metrics are read in-process (``SimSource``). Time is
virtual: ``run_for`` advances it as fast as the CPU allows, ``run_realtime`` in step with
the wall clock times ``speed``.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import structlog

from healer.act.kube import KubeActuator, api_client
from healer.api.server import ServerThread
from healer.audit.store import AuditStore
from healer.config import Settings
from healer.daemon import Healer, Reporter, cycle_once
from healer.decide import load_playbooks
from healer.detect.combined import build_detector
from healer.sim.apiserver import serve_in_thread, write_kubeconfig
from healer.sim.cluster import Cluster
from healer.sim.scenario import Scenario
from healer.sim.source import SimSource

log = structlog.get_logger("healer.harness")


def resume_after(scenario: Scenario, latest: datetime | None) -> Scenario:
    """``scenario`` moved on by whole days to start after ``latest``, the newest record
    of an audit store from an earlier run; unchanged for an empty or older store.

    A store's history must not lie in the simulated future: outcomes would come before
    their actions and cooldowns from times not yet reached. Whole days keep the
    scenario's time of day, which its traffic and benign events are written for.
    """
    if latest is None or latest < scenario.start:
        return scenario
    days = (latest - scenario.start) // timedelta(days=1) + 1
    start = scenario.start + timedelta(days=days)
    log.info("simulated_clock_resumed", start=start.isoformat(), after=latest.isoformat())
    return scenario.model_copy(update={"start": start})


@dataclass
class SimHarness:
    cluster: Cluster
    server: ServerThread
    kubeconfig: Path
    healer: Healer
    store: AuditStore

    @classmethod
    def start(
        cls,
        scenario: Scenario,
        *,
        settings: Settings,
        store: AuditStore,
        report: Reporter | None = None,
        workdir: Path | None = None,
        api_port: int = 0,
        cluster: Cluster | None = None,
    ) -> SimHarness:
        """Start the simulated cluster's API server and build the loop against it.

        Playbooks are validated first, so a bad one stops start-up before anything runs.
        ``cluster`` is one already built for ``scenario`` (the chaos benchmark adds
        autoscalers to it first); by default a new one, whose clock starts after the
        store's history (``resume_after``).
        """
        playbooks = load_playbooks(settings.playbooks_dir)
        cluster = cluster or Cluster(resume_after(scenario, store.latest_at()))
        server = serve_in_thread(cluster, port=api_port)
        folder = workdir or Path(tempfile.mkdtemp(prefix="healer-sim-"))
        kubeconfig = write_kubeconfig(folder / "kubeconfig", server.url)
        actuator = KubeActuator(api_client(kubeconfig))
        healer = Healer(
            source=SimSource(cluster),
            detector=build_detector(settings.detector),
            actuator=actuator,
            store=store,
            playbooks=playbooks,
            settings=settings,
            report=report or (lambda step: None),
        )
        healer.resume()  # an audit store from an earlier run: verify, never act twice
        return cls(cluster, server, kubeconfig, healer, store)

    def _tick(self, since_cycle_s: float) -> float:
        step_s = self.cluster.scenario.step_s
        self.cluster.advance(step_s)
        since_cycle_s += step_s
        if since_cycle_s >= self.healer.settings.daemon.interval_s:
            cycle_once(self.healer, self.cluster.clock.now())  # logs and counts a failure
            since_cycle_s = 0.0
        return since_cycle_s

    def run_for(self, duration_s: float) -> None:
        """Advance simulated time by ``duration_s`` as fast as possible, cycling on schedule."""
        since = 0.0
        end = self.cluster.elapsed_s + duration_s
        while self.cluster.elapsed_s < end:
            since = self._tick(since)

    def run_realtime(
        self,
        *,
        speed: float,
        duration_s: float | None = None,
        stop: threading.Event | None = None,
        until: Callable[[], bool] | None = None,
    ) -> None:
        """Advance simulated time at ``speed`` simulated seconds per wall-clock second."""
        stop = stop or threading.Event()
        step_wall_s = self.cluster.scenario.step_s / speed
        since, started = 0.0, time.monotonic()
        end = None if duration_s is None else self.cluster.elapsed_s + duration_s
        ticks = 0
        while not stop.is_set() and (end is None or self.cluster.elapsed_s < end):
            since = self._tick(since)
            ticks += 1
            if until is not None and until():
                return
            stop.wait(max(0.0, started + ticks * step_wall_s - time.monotonic()))

    def close(self) -> None:
        self.server.stop()
