"""One contender's run of one scenario and seed, in virtual time, and what it leaves behind.

Every contender gets an identical cluster: the scenario with the given seed, plus one
HorizontalPodAutoscaler per Deployment (``HPA_*`` below), because an autoscaler is part
of what "Kubernetes alone" means. The cluster advances one scrape step at a time; the
``static`` and ``healer`` contenders run a cycle every ``daemon.interval_s`` (30 s by
default) and act through the official client over HTTP, as against a real cluster.

A ``Trace`` keeps the signals of every workload at every step, the contender's actions,
the times it noticed something, and the OOM kills, for ``healer.chaos.score``.
"""

from __future__ import annotations

import copy
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from healer.act.kube import KubeActuator, api_client
from healer.audit.store import AuditStore
from healer.chaos.static import StaticRules
from healer.config import Settings
from healer.daemon import Actuator, Detector, Step
from healer.decide import load_playbooks
from healer.detect.shaped import ShapedDetector
from healer.detect.warm import WarmReport
from healer.harness import SimHarness, warmed_detector
from healer.lifecycle.alert_watch import PodOwners
from healer.lifecycle.node_watch import NodeCluster
from healer.sim.apiserver import serve_in_thread, write_kubeconfig
from healer.sim.cluster import Cluster
from healer.sim.objects import K8s
from healer.sim.scenario import Event, Scenario
from healer.sim.source import SimSource
from healer.sim.state import ClusterState, Now, deployment_of
from healer.types import ActionRecord, ActionStatus, NodePod, Plan, WorkloadRef, WorkloadState

CONTENDERS = ("kubernetes", "static", "healer-cold", "healer-undo", "healer")
"""Every contender, in the order of the tables. ``healer`` starts warm: its detector has
learned the scenario's quiet days before the start (``SimHarness.warm``), as a daemon in
its second week would have; ``healer-cold`` starts with an empty detector, as a daemon
installed a minute before the first fault."""
STARTS = {
    "warm": ("kubernetes", "static", "healer"),
    "cold": ("kubernetes", "static", "healer-cold"),
    "both": ("kubernetes", "static", "healer-cold", "healer"),
}
"""The contenders run for each choice of ``healer bench chaos --start``."""
GITOPS_CONTENDERS = ("healer-undo",)
"""Added for a scenario whose workloads a GitOps syncer owns: ``healer-undo`` is the warm
healer without the Git path (``gitops.enabled`` false), whose rollback is an in-cluster
undo that the syncer's self-heal reverts; ``healer`` and ``healer-cold`` take the Git
path there (``gitops_settings``)."""
HPA_TARGET_CPU_PCT = 80
"""The autoscaler's target: the usual 80% of requests, the static CPU rule's threshold."""
HPA_MAX_FACTOR = 3
"""maxReplicas is this many times the Deployment's replicas: room for a tripled load."""
HPA_EPISODE_S = 600.0
"""Autoscaler changes of one workload closer together than this are one action."""


@dataclass(frozen=True)
class Act:
    """One change a contender made to a workload."""

    at_s: float
    """UNIX seconds (virtual time)."""
    workload: str
    """namespace/name."""
    kind: str
    """restart, scale or rollback."""


@dataclass
class Trace:
    contender: str
    timestamps: NDArray[np.float64]
    """(T,) UNIX seconds, one per scrape step."""
    workloads: tuple[str, ...]
    values: NDArray[np.float64]
    """(W, S, T) in the order of ``healer.sim.cluster.SIGNALS``."""
    actions: list[Act] = field(default_factory=list)
    noticed: list[tuple[float, str]] = field(default_factory=list)
    """(UNIX seconds, workload): when the contender first saw trouble (a finding, an alert)."""
    oom_kills: list[tuple[float, str]] = field(default_factory=list)
    cause_present: dict[int, NDArray[np.bool_]] = field(default_factory=dict)
    """(T,) per fault, by index in the scenario's events: is its cause in the cluster?"""
    wall_s: float = 0.0
    cycle_s: list[float] = field(default_factory=list)
    """Wall-clock seconds of each of the contender's cycles."""
    warm: WarmReport | None = None
    """What the detector learned before the start (warm healer only)."""
    shape_rows: dict[str, int] = field(default_factory=dict)
    """Fewest shape-stage rows over each workload's scored signals, at the start."""


class ChaosCluster(Cluster):
    """The simulated cluster, with the ground truth the benchmark scores against.

    Besides the OOM kills the kubelet reports, it notes at every step whether the cause
    of each fault is still in the cluster (``cause_present``, by event index):

    * memory_leak, pod_leak: a running container is leaking;
    * pod_slow: the slow pod is still running;
    * cpu_hog: a running container burns CPU besides its work;
    * release, crash_loop: a pod runs the release's image;
    * overload: never, since the surge of traffic stays; only capacity answers it;
    * node_notready, node_memory_pressure: pods not terminating are bound to the node
      while it is NotReady or under pressure.
    """

    def __init__(self, scenario: Scenario) -> None:
        self.kills: list[tuple[float, str, str]] = []  # (UNIX s, namespace/name, reason)
        self.cause_present: dict[int, list[bool]] = {
            i: [] for i, e in enumerate(scenario.events) if e.expect != "none"
        }
        super().__init__(scenario)
        self.state.kill_listeners.append(self._killed)
        self.tick = (*self.tick, self)  # after the sampler: one flag per sample

    def _killed(self, pod: K8s, reason: str, now: Now) -> None:
        owner = deployment_of(pod)
        self.kills.append((now.unix_s, f"{pod['metadata']['namespace']}/{owner}", reason))

    def reconcile(self, state: ClusterState, now: Now) -> None:
        for i, flags in self.cause_present.items():
            flags.append(self._present(self.scenario.events[i], now))

    def _present(self, event: Event, now: Now) -> bool:
        if now.elapsed_s < event.at_s or event.kind == "overload":
            return False
        if event.node is not None:
            return self._node_holds_pods(event.node)
        namespace, name = event.workload.split("/", 1)
        dep = self.state.workload(namespace, name)
        pods = self.state.pods_of(dep) if dep is not None else []
        if event.kind in ("release", "crash_loop"):
            return any(p["spec"]["containers"][0]["image"] == event.image for p in pods)
        containers = [self.container(p) for p in pods if self.state.running(p)]
        if event.kind == "cpu_hog":
            return any(c.burn_cores > 0 for c in containers)
        if event.kind == "pod_slow":
            return any(c.slow_factor > 1.0 for c in containers)
        return any(c.leak_from_s is not None and c.leak_from_s < now.unix_s for c in containers)

    def _node_holds_pods(self, name: str) -> bool:
        """The node is NotReady or under pressure and pods not terminating are on it."""
        node = self.state.store.get("nodes", "", name)
        true = {c["type"] for c in node["status"]["conditions"] if c["status"] == "True"}
        if "Ready" in true and not true & {"MemoryPressure", "DiskPressure", "PIDPressure"}:
            return False
        return any(
            p["spec"].get("nodeName") == name and not p["metadata"].get("deletionTimestamp")
            for p in self.state.store.list("pods", None)
        )


def build_cluster(scenario: Scenario) -> ChaosCluster:
    """The scenario's cluster with an autoscaler on every workload (Deployment or
    StatefulSet; a DaemonSet has no replicas to scale)."""
    cluster = ChaosCluster(scenario)
    for spec in scenario.expanded():
        if spec.kind == "DaemonSet":
            continue
        body: K8s = {
            "metadata": {"name": spec.name},
            "spec": {
                "scaleTargetRef": {
                    "apiVersion": "apps/v1",
                    "kind": spec.kind,
                    "name": spec.name,
                },
                "minReplicas": max(1, spec.replicas),
                "maxReplicas": max(1, spec.replicas) * HPA_MAX_FACTOR,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {
                                "type": "Utilization",
                                "averageUtilization": HPA_TARGET_CPU_PCT,
                            },
                        },
                    }
                ],
            },
        }
        cluster.create_object("horizontalpodautoscalers", spec.namespace, body, dry_run=False)
    return cluster


@dataclass
class RecordingActuator:
    """The actuator, noting every action it carries out."""

    inner: Actuator
    done: list[ActionRecord] = field(default_factory=list)

    def read_state(self, workload: WorkloadRef) -> WorkloadState:
        return self.inner.read_state(workload)

    def apply(self, plan: Plan, *, now: datetime) -> ActionRecord:
        record = self.inner.apply(plan, now=now)
        self.done.append(record)
        return record

    def already_applied(self, intent: ActionRecord) -> bool:
        return self.inner.already_applied(intent)

    def owner_of_pod(self, namespace: str, pod: str) -> WorkloadRef | None:
        inner = self.inner
        return inner.owner_of_pod(namespace, pod) if isinstance(inner, PodOwners) else None

    def pods_on_node(self, node: str) -> tuple[NodePod, ...]:
        inner = self.inner
        return inner.pods_on_node(node) if isinstance(inner, NodeCluster) else ()


def _drive(
    cluster: Cluster, duration_s: float, interval_s: float, cycle: Callable[[datetime], Any]
) -> list[float]:
    """Advance ``duration_s`` of virtual time step by step, cycling every ``interval_s``.

    Returns the wall-clock seconds each cycle took.
    """
    since, spent = 0.0, []
    end = cluster.elapsed_s + duration_s
    while cluster.elapsed_s < end:
        cluster.advance(cluster.scenario.step_s)
        since += cluster.scenario.step_s
        if since >= interval_s:
            started = time.perf_counter()
            cycle(cluster.clock.now())
            spent.append(time.perf_counter() - started)
            since = 0.0
    return spent


def run_contender(
    contender: str,
    scenario: Scenario,
    *,
    duration_s: float,
    settings: Settings,
    warmed: Warmed | None = None,
) -> Trace:
    """Run ``scenario`` (its seed already set) for ``duration_s`` under ``contender``.

    ``warmed``: the warm healer's detector, warmed beforehand (``warm_for``); by default
    the run warms one itself."""
    started = time.perf_counter()
    cluster = build_cluster(scenario)
    with tempfile.TemporaryDirectory(prefix="healer-chaos-") as folder:
        cycle_s: list[float] = []
        started_warm = _Start(warmed)
        if contender == "kubernetes":
            actions = _run_alone(cluster, duration_s)
            noticed: list[tuple[float, str]] = []
        elif contender == "static":
            actions, noticed, cycle_s = _run_static(cluster, duration_s, settings, Path(folder))
        elif contender in ("healer", "healer-cold", "healer-undo"):
            actions, noticed, cycle_s = _run_healer(
                cluster,
                duration_s,
                gitops_settings(settings, scenario, Path(folder), git=contender != "healer-undo"),
                Path(folder),
                start=started_warm if contender != "healer-cold" else None,
            )
        else:
            raise ValueError(f"unknown contender {contender!r}")
    trace = Trace(
        contender=contender,
        timestamps=np.asarray(cluster.timestamps, dtype=np.float64),
        workloads=tuple(f"{w.namespace}/{w.name}" for w in cluster.workloads),
        values=np.stack(cluster.samples, axis=-1),
        actions=actions,
        noticed=noticed,
        oom_kills=[(t, w) for t, w, reason in cluster.kills if reason == "OOMKilled"],
        cycle_s=cycle_s,
        cause_present={i: np.asarray(f, dtype=bool) for i, f in cluster.cause_present.items()},
        warm=started_warm.report,
        shape_rows=started_warm.shape_rows,
    )
    trace.wall_s = time.perf_counter() - started
    return trace


def gitops_settings(settings: Settings, scenario: Scenario, folder: Path, *, git: bool) -> Settings:
    """``settings`` for a run of ``scenario``: on a GitOps scenario, the Git path on
    (its clones under ``folder``) or off, and auto mode for GitOps-owned workloads,
    since nobody approves in a benchmark; any other scenario's as they are."""
    if scenario.gitops is None:
        return settings
    gitops = settings.gitops.model_copy(
        update={"enabled": git, "cache_dir": folder / "git", "forge": "none"}
    )
    guards = settings.guards.model_copy(update={"gitops_mode": settings.guards.mode})
    return settings.model_copy(update={"gitops": gitops, "guards": guards})


def _replicas(cluster: Cluster) -> dict[str, int]:
    out = {}
    for w in cluster.workloads:
        dep = cluster.state.workload(w.namespace, w.name)
        out[f"{w.namespace}/{w.name}"] = dep["spec"].get("replicas", 0) if dep else 0
    return out


def _run_alone(cluster: Cluster, duration_s: float) -> list[Act]:
    """Kubernetes alone: its only remediation is the autoscaler changing replicas.

    The autoscaler moves in small steps; changes of one workload less than
    ``HPA_EPISODE_S`` apart count as one action.
    """
    actions: list[Act] = []
    before = _replicas(cluster)
    last: dict[str, float] = {}
    end = cluster.elapsed_s + duration_s
    while cluster.elapsed_s < end:
        cluster.advance(cluster.scenario.step_s)
        now_s, replicas = cluster.clock.now_s(), _replicas(cluster)
        for w, n in replicas.items():
            if n == before.get(w):
                continue
            if now_s - last.get(w, -float("inf")) >= HPA_EPISODE_S:
                actions.append(Act(now_s, w, "scale"))
            last[w] = now_s
        before = replicas
    return actions


def _acts(records: list[ActionRecord]) -> list[Act]:
    return [
        Act(r.started.timestamp(), str(r.target), str(r.kind))
        for r in records
        if r.status == ActionStatus.SUCCEEDED
    ]


def _run_static(
    cluster: Cluster, duration_s: float, settings: Settings, folder: Path
) -> tuple[list[Act], list[tuple[float, str]], list[float]]:
    server = serve_in_thread(cluster)
    try:
        kubeconfig = write_kubeconfig(folder / "kubeconfig", server.url)
        actuator = RecordingActuator(KubeActuator(api_client(kubeconfig)))
        rules = StaticRules(
            source=SimSource(cluster),
            actuator=actuator,
            playbooks=load_playbooks(settings.playbooks_dir),
            guards=settings.guards,
            step_s=cluster.scenario.step_s,
        )
        cycle_s = _drive(cluster, duration_s, settings.daemon.interval_s, rules.cycle)
    finally:
        server.stop()
    return _acts(actuator.done), [(at.timestamp(), str(w)) for at, w, _ in rules.fired], cycle_s


@dataclass
class _Start:
    """How a warm healer started: what warming learned, and the shape stage's rows."""

    warmed: Warmed | None = None
    """Warmed beforehand (``warm_for``); None: warm at the start of the run."""
    report: WarmReport | None = None
    shape_rows: dict[str, int] = field(default_factory=dict)


def _run_healer(
    cluster: Cluster,
    duration_s: float,
    settings: Settings,
    folder: Path,
    *,
    start: _Start | None = None,
) -> tuple[list[Act], list[tuple[float, str]], list[float]]:
    """healer's loop over the run; warmed first with the quiet days when ``start`` is
    given (which then receives what warming learned)."""
    steps: list[Step] = []
    store = AuditStore(f"sqlite:///{folder / 'audit.db'}")
    harness = SimHarness.start(
        cluster.scenario,
        settings=settings,
        store=store,
        report=steps.append,
        workdir=folder,
        cluster=cluster,
    )
    try:
        if start is not None:
            detector, start.report = start.warmed or warm_for(cluster.scenario, settings)
            harness.healer.detector = copy.deepcopy(detector)  # a run never changes it
            start.shape_rows = _shape_rows(harness.healer.detector)
        actuator = RecordingActuator(harness.healer.actuator)
        harness.healer.actuator = actuator
        cycle_s = _drive(cluster, duration_s, settings.daemon.interval_s, harness.healer.cycle)
    finally:
        harness.close()
        store.close()
    noticed = [(s.at.timestamp(), str(s.workload)) for s in steps if s.kind == "finding"]
    return _acts(actuator.done), noticed, cycle_s


Warmed = tuple[Detector, WarmReport]
"""A detector warmed on a scenario's quiet days, and what it learned."""


def warm_for(scenario: Scenario, settings: Settings) -> Warmed:
    """A detector of ``settings`` warmed on ``scenario``'s quiet days before its start.

    The quiet days are the same for every seed (``harness.QUIET_SEED``): the benchmark
    warms once per scenario and hands a copy to each seed's run.
    """
    return warmed_detector(scenario, settings.detector)


def _shape_rows(detector: object) -> dict[str, int]:
    if not isinstance(detector, ShapedDetector):
        return {}
    out: dict[str, int] = {}
    for (workload, _), rows in detector.shape_rows().items():
        name = f"{workload.namespace}/{workload.name}"
        out[name] = min(out.get(name, rows), rows)
    return out
