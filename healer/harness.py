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
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import structlog

from healer.act.customobjects import CustomObjects
from healer.act.kube import KubeActuator, api_client
from healer.api.server import ServerThread
from healer.audit.store import AuditStore
from healer.compose import build_loop
from healer.config import DetectorSettings, Settings
from healer.daemon import Actuator, Detector, Healer, Reporter, cycle_once
from healer.decide import load_playbooks
from healer.detect.combined import build_detector
from healer.detect.warm import WarmReport, WarmSpan, wanted, warm
from healer.gitops.build import gitops_actuator
from healer.sim.apiserver import serve_in_thread, write_kubeconfig
from healer.sim.cluster import SIGNALS, Cluster
from healer.sim.scenario import Scenario
from healer.sim.source import SimSource
from healer.types import Frame

QUIET_SEED = 1_000_003
"""The quiet days before a scenario draw their noise from this seed, whatever the run's
seed: one past, many futures (the seeds of a benchmark vary what happens after the
start), and a past that is the same for every seed is learned once per scenario."""
HISTORY_CHUNK_STEPS = 288
"""Steps per frame of quiet history, as ``warmup`` reads Prometheus: a day of buckets."""

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
    since_cycle_s: float = 0.0
    """Simulated seconds since the last cycle, kept across ``run_for`` and
    ``run_realtime`` calls: the schedule is the daemon's, not the caller's, so time
    advanced in slices shorter than ``interval_s`` still cycles every ``interval_s``."""

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
        api = api_client(kubeconfig)
        actuator: Actuator = KubeActuator(api)
        if settings.gitops.enabled:
            actuator = gitops_actuator(
                actuator,
                objects=CustomObjects(api),
                settings=settings,
                unresolved=store.unresolved,
                reviews=store,
            )
        healer = build_loop(
            settings,
            source=SimSource(cluster),
            actuator=actuator,
            store=store,
            playbooks=playbooks,
            report=report,
        )
        healer.resume()  # an audit store from an earlier run: verify, never act twice
        return cls(cluster, server, kubeconfig, healer, store)

    def warm(self, span: WarmSpan | None = None) -> WarmReport:
        """Replace the loop's detector with one warmed on the scenario's quiet days
        before its start (``warmed_detector``)."""
        self.healer.detector, report = warmed_detector(
            self.cluster.scenario, self.healer.settings.detector, span
        )
        return report

    def _tick(self) -> None:
        step_s = self.cluster.scenario.step_s
        self.cluster.advance(step_s)
        self.since_cycle_s += step_s
        if self.since_cycle_s >= self.healer.settings.daemon.interval_s:
            cycle_once(self.healer, self.cluster.clock.now())  # logs and counts a failure
            self.since_cycle_s = 0.0

    def run_for(self, duration_s: float) -> None:
        """Advance simulated time by ``duration_s`` as fast as possible, cycling on schedule."""
        end = self.cluster.elapsed_s + duration_s
        while self.cluster.elapsed_s < end:
            self._tick()

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
        started = time.monotonic()
        end = None if duration_s is None else self.cluster.elapsed_s + duration_s
        ticks = 0
        while not stop.is_set() and (end is None or self.cluster.elapsed_s < end):
            self._tick()
            ticks += 1
            if until is not None and until():
                return
            stop.wait(max(0.0, started + ticks * step_wall_s - time.monotonic()))

    def close(self) -> None:
        self.server.stop()


def warmed_detector(
    scenario: Scenario, settings: DetectorSettings, span: WarmSpan | None = None
) -> tuple[Detector, WarmReport]:
    """A new detector of ``settings``, warmed with the scenario's quiet days before its
    start (``quiet_history``) as ``healer run`` warms one from Prometheus. ``span``: by
    default what the detector uses."""
    span = span or wanted(settings)
    detector = build_detector(settings)
    past, recent = quiet_history(scenario, span)
    return detector, warm(detector, past=past, recent=recent, wanted_s=span.total_s)


def quiet_history(scenario: Scenario, span: WarmSpan) -> tuple[list[Frame], list[Frame]]:
    """The scenario's workloads as they ran before its start, without its events.

    ``span.past_s`` before the start at one sample per bucket (the simulator's rates
    over a bucket-long step are the bucket's means), then the last ``span.recent_s`` at
    the scenario's scrape step; each in frames of ``HISTORY_CHUNK_STEPS`` steps. Only the
    clock and the workloads run: no API server, no detector, no loop. The run itself
    starts from fresh pods, as after a rollout, at the same traffic.
    """
    start_s = scenario.start.timestamp()
    past = _quiet(scenario, start_s - span.past_s, span.bucket_s, span.past_s - span.recent_s)
    recent = _quiet(scenario, start_s - span.recent_s, scenario.step_s, span.recent_s)
    return past, recent


def _quiet(scenario: Scenario, from_s: float, step_s: float, duration_s: float) -> list[Frame]:
    if duration_s <= 0:
        return []
    quiet = scenario.model_copy(
        update={
            "start": datetime.fromtimestamp(from_s, UTC),
            "step_s": step_s,
            "events": [],
            "api_faults": [],
            "seed": QUIET_SEED,
        }
    )
    cluster = Cluster(quiet)
    cluster.advance(duration_s)
    times = np.asarray(cluster.timestamps, dtype=np.float64)
    values = np.stack(cluster.samples, axis=-1)
    return [
        Frame(
            times[i : i + HISTORY_CHUNK_STEPS],
            cluster.workloads,
            SIGNALS,
            values[:, :, i : i + HISTORY_CHUNK_STEPS],
        )
        for i in range(0, len(times), HISTORY_CHUNK_STEPS)
    ]
