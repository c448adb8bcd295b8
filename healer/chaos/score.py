"""Scoring contenders against the simulator's ground truth; pure functions over traces.

Definitions, the same for every contender:

* A **fault** is a scenario event whose ``expect`` is a remediation; its class is its
  kind (``release`` with a remediation is ``bad_release``). Events with ``expect: none``
  are benign.
* **Time to detect**: from the fault's start to the contender's first sign of noticing
  that workload (healer: a finding; static: an alert starting to fire). Kubernetes
  alone raises nothing, so it is null for it.
* **Cause present**: the simulator's own state says the fault's cause is still in the
  cluster (``healer.chaos.contenders.ChaosCluster``): leaking or runaway containers
  still running, pods still on the bad image. Scaling out dilutes a runaway thread's
  CPU over more pods; it does not remove it.
* **Baseline**: per workload and signal, the 99th percentile of the ``BASELINE_S``
  before the fault starts, in the ``kubernetes`` run, where nothing acts before the
  fault, widened by ``MARGINS``. Only the signals the fault disturbs are judged
  (``HEAL_SIGNALS``): a scaled-out Deployment has less CPU per pod, a restarted one
  a younger heap, and neither is a symptom.
* **Time to heal**: from the fault's start to the first sample of a stretch of
  ``STABLE_S`` (15 minutes for a crash loop) with the cause gone and every judged
  signal within its baseline (missing samples neither break nor make such a stretch),
  counted once the fault has shown (a signal out of its baseline, or its cause
  present; 0 when neither ever happened). Null when it never happens before the end of
  the run.
* **SLO minutes lost**: minutes, from the fault's start to the end of the run, in which
  the workload's mean error ratio or mean p99 latency is beyond its SLO (``slo_of``).
  For a run without faults, the sum over all workloads over the whole run.
* **OOM kills**: containers of the workload OOM-killed from the fault's start on.
* **Action**: the distinct kinds of the contender's actions on the workload from the
  fault's start on, in order, joined with ``+``; null when none. Any other action is
  a **benign action** of the run.
* **Came back**: the contender acted on the fault, and its cause is in the cluster at
  the end of the run: a fix that did not stick (an in-cluster rollback that a GitOps
  syncer's self-heal reverted within seconds, before a pod even changed).
* **Node faults** (``node_notready``, ``node_memory_pressure``) name a node, not a
  workload: they hurt every workload of the scenario (``Fault.hurt``), each judged as
  above, and heal when all of them have (the latest heal); the cause is present while
  pods not terminating are bound to the node and it is NotReady or under pressure. Its
  action is what was done to the node and to the workloads it hurt; a drain counts as
  ``drain`` whether or not the cordon before it and the uncordon after it are named,
  as ``kubectl drain`` cordons first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from healer.chaos.contenders import Trace
from healer.sim.cluster import SIGNALS
from healer.sim.scenario import Scenario
from healer.types import JsonObject, JsonValue, Signal

FAULT_CLASSES = {
    "memory_leak": "memory_leak",
    "overload": "overload",
    "release": "bad_release",
    "crash_loop": "crash_loop",
    "cpu_hog": "cpu_hog",
    "pod_leak": "pod_outlier",
    "pod_slow": "pod_outlier",
    "node_notready": "node_notready",
    "node_memory_pressure": "node_memory_pressure",
}
HEAL_SIGNALS: dict[str, tuple[Signal, ...]] = {
    "memory_leak": (Signal.MEMORY,),
    "overload": (Signal.ERROR_RATIO, Signal.LATENCY_P99),
    "bad_release": (Signal.ERROR_RATIO, Signal.LATENCY_P99),
    "crash_loop": (Signal.RESTARTS,),
    "cpu_hog": (Signal.CPU, Signal.LATENCY_P99),
    "pod_outlier": (Signal.MEMORY, Signal.LATENCY_P99),
    "node_notready": (Signal.ERROR_RATIO, Signal.LATENCY_P99),
    "node_memory_pressure": (Signal.ERROR_RATIO, Signal.LATENCY_P99),
}
MARGINS: dict[Signal, tuple[float, float]] = {
    Signal.ERROR_RATIO: (0.0, 0.01),  # one percentage point over the noise of 0.2% errors
    Signal.LATENCY_P99: (0.25, 0.0),  # a quarter over: the daily peak moves it ~15%
    Signal.MEMORY: (0.0, 0.05),  # 5% of the limit: what load alone adds to the heap
    Signal.CPU: (0.25, 0.0),
    Signal.RESTARTS: (0.0, 0.5),  # one restart in a 15 s step reads as 4 a minute
}
"""(relative, absolute) widening of a baseline: the larger of the two applies."""
BASELINE_S = 1800.0
BASELINE_QUANTILE = 0.99
STABLE_S = 300.0
"""Five minutes within baseline make a heal, as a verifier would want ..."""
STABLE_S_BY_CLASS = {"crash_loop": 900.0}
"""... except for a crash loop, whose back-off waits up to 5 minutes between restarts."""
SLO_ERROR_RATIO = 0.01
"""Default SLO: at most 1% of requests fail ..."""
SLO_LATENCY_FACTOR = 3.0
"""... and p99 latency stays within 3x the idle p99 of the image the workload starts with."""
SLO_ERROR_ANNOTATION = "healer.io/slo-error-ratio"
SLO_LATENCY_ANNOTATION = "healer.io/slo-latency-p99-s"
"""A workload's annotations in the scenario override either default."""
RECORD_FIELDS = (
    "scenario",
    "seed",
    "contender",
    "fault",
    "expected_action",
    "action",
    "time_to_detect_s",
    "time_to_heal_s",
    "slo_minutes_lost",
    "oom_kills",
    "benign_actions",
    "cause_returned",
)


@dataclass(frozen=True)
class Fault:
    index: int
    """Its position in the scenario's events."""
    name: str
    """``<class> <namespace>/<name>``, e.g. ``bad_release shop/cart``."""
    fault_class: str
    workload: str
    at_s: float
    """UNIX seconds."""
    expected_action: str
    hurt: tuple[str, ...] = ()
    """The workloads it hurts (namespace/name): its own, or a node's every workload."""

    @property
    def judged(self) -> tuple[str, ...]:
        return self.hurt or (self.workload,)


NODE_FAULTS = ("node_notready", "node_memory_pressure")


@dataclass(frozen=True)
class Slo:
    error_ratio: float
    latency_p99_s: float


def faults_of(scenario: Scenario) -> list[Fault]:
    start = scenario.start.timestamp()
    ordered = sorted(enumerate(scenario.events), key=lambda pair: pair[1].at_s)
    every = tuple(f"{w.namespace}/{w.name}" for w in scenario.expanded())
    faults = []
    for i, e in ordered:
        if e.expect == "none":
            continue
        node = e.kind in NODE_FAULTS
        target = f"node/{e.node}" if node else e.workload
        faults.append(
            Fault(
                i,
                f"{FAULT_CLASSES[e.kind]} {target}",
                FAULT_CLASSES[e.kind],
                target,
                start + e.at_s,
                e.expect,
                every if node else (),
            )
        )
    return faults


def slo_of(scenario: Scenario) -> dict[str, Slo]:
    """Every workload's SLO: the defaults above unless its annotations say otherwise."""
    out = {}
    for spec in scenario.expanded():
        notes = spec.annotations
        idle_s = scenario.behaviour(spec.image).latency_s
        out[f"{spec.namespace}/{spec.name}"] = Slo(
            float(notes.get(SLO_ERROR_ANNOTATION, SLO_ERROR_RATIO)),
            float(notes.get(SLO_LATENCY_ANNOTATION, SLO_LATENCY_FACTOR * idle_s)),
        )
    return out


def _series(trace: Trace, workload: str, signal: Signal) -> NDArray[np.float64]:
    row: NDArray[np.float64] = trace.values[trace.workloads.index(workload), SIGNALS.index(signal)]
    return row


def baseline_upper(
    reference: Trace, fault: Fault, workload: str | None = None
) -> dict[Signal, float]:
    """The upper edge of the baseline of each signal ``fault`` disturbs (inf: unknown),
    of ``workload`` (by default the fault's own)."""
    t = reference.timestamps
    before = (t >= fault.at_s - BASELINE_S) & (t < fault.at_s)
    out = {}
    for signal in HEAL_SIGNALS[fault.fault_class]:
        values = _series(reference, workload or fault.workload, signal)[before]
        values = values[np.isfinite(values)]
        if values.size == 0:
            out[signal] = math.inf
            continue
        q = float(np.quantile(values, BASELINE_QUANTILE))
        relative, absolute = MARGINS[signal]
        out[signal] = max(q * (1 + relative), q + absolute)
    return out


def time_to_heal_all(
    trace: Trace, fault: Fault, uppers: dict[str, dict[Signal, float]]
) -> float | None:
    """The latest heal over the workloads the fault hurts (None: one never healed)."""
    heals = [time_to_heal(trace, fault, uppers[w], workload=w) for w in fault.judged]
    return None if any(h is None for h in heals) else max((h or 0.0) for h in heals)


def time_to_heal(
    trace: Trace, fault: Fault, upper: dict[Signal, float], *, workload: str | None = None
) -> float | None:
    after = trace.timestamps >= fault.at_s
    t = trace.timestamps[after]
    out = np.zeros(t.size, dtype=bool)
    present = trace.cause_present.get(fault.index)
    if present is not None and present.size == trace.timestamps.size:
        out |= present[after]
    for signal, edge in upper.items():
        with np.errstate(invalid="ignore"):
            out |= _series(trace, workload or fault.workload, signal)[after] > edge  # NaN: not out
    left = np.flatnonzero(out)
    if left.size == 0:
        return 0.0
    step_s = float(np.median(np.diff(trace.timestamps))) if trace.timestamps.size > 1 else 15.0
    need = max(1, round(STABLE_S_BY_CLASS.get(fault.fault_class, STABLE_S) / step_s))
    bad = np.concatenate([[0], np.cumsum(out)])
    for i in range(int(left[0]), t.size - need + 1):
        if bad[i + need] - bad[i] == 0:
            return float(t[i] - fault.at_s)
    return None


def cause_returned(trace: Trace, fault: Fault) -> bool:
    """The contender acted on the fault and its cause is in the cluster again (or
    still) at the end of the run: a fix that did not stick."""
    present = trace.cause_present.get(fault.index)
    if present is None or present.size == 0 or _action(trace, fault) is None:
        return False
    return bool(present[-1])


def slo_minutes_lost(trace: Trace, workload: str, slo: Slo, from_s: float) -> int:
    after = trace.timestamps >= from_s
    minute = ((trace.timestamps[after] - from_s) // 60).astype(int)
    if minute.size == 0:
        return 0
    lost = 0
    errors = _series(trace, workload, Signal.ERROR_RATIO)[after]
    latency = _series(trace, workload, Signal.LATENCY_P99)[after]
    for m in np.unique(minute):
        e, p = errors[minute == m], latency[minute == m]
        e, p = e[np.isfinite(e)], p[np.isfinite(p)]
        if (e.size and e.mean() > slo.error_ratio) or (p.size and p.mean() > slo.latency_p99_s):
            lost += 1
    return lost


def _concerns(fault: Fault, workload: str) -> bool:
    return workload == fault.workload or workload in fault.hurt


def _action(trace: Trace, fault: Fault) -> str | None:
    kinds: list[str] = []
    for act in trace.actions:
        if _concerns(fault, act.workload) and act.at_s >= fault.at_s and act.kind not in kinds:
            kinds.append(act.kind)
    if "drain" in kinds:  # kubectl drain cordons first; the uncordon ends it
        kinds = [k for k in kinds if k not in ("cordon", "uncordon")]
    return "+".join(kinds) if kinds else None


def benign_actions(trace: Trace, faults: list[Fault]) -> int:
    return sum(
        1
        for act in trace.actions
        if not any(_concerns(f, act.workload) and act.at_s >= f.at_s for f in faults)
    )


def _detected(trace: Trace, fault: Fault) -> float | None:
    if trace.contender == "kubernetes":
        return None
    times = [t for t, w in trace.noticed if _concerns(fault, w) and t >= fault.at_s]
    return min(times) - fault.at_s if times else None


def records(scenario: Scenario, seed: int, traces: dict[str, Trace]) -> list[JsonObject]:
    """One record per contender and fault (one per contender when the run has no fault)."""
    faults = faults_of(scenario)
    slos = slo_of(scenario)
    reference = traces["kubernetes"]
    uppers = {f.name: {w: baseline_upper(reference, f, w) for w in f.judged} for f in faults}
    out: list[JsonObject] = []
    for contender, trace in traces.items():
        benign = benign_actions(trace, faults)
        common: JsonObject = {"scenario": scenario.name, "seed": seed, "contender": contender}
        for fault in faults:
            rows: dict[str, JsonValue] = {
                "fault": fault.name,
                "expected_action": fault.expected_action,
                "action": _action(trace, fault),
                "time_to_detect_s": _detected(trace, fault),
                "time_to_heal_s": time_to_heal_all(trace, fault, uppers[fault.name]),
                "slo_minutes_lost": sum(
                    slo_minutes_lost(trace, w, slos[w], fault.at_s) for w in fault.judged
                ),
                "oom_kills": sum(
                    1 for t, w in trace.oom_kills if w in fault.judged and t >= fault.at_s
                ),
            }
            returned = cause_returned(trace, fault)
            out.append({**common, **rows, "benign_actions": benign, "cause_returned": returned})
        if not faults:
            start = float(trace.timestamps[0]) if trace.timestamps.size else 0.0
            lost = sum(slo_minutes_lost(trace, w, slos[w], start) for w in trace.workloads)
            out.append(
                {
                    **common,
                    "fault": None,
                    "expected_action": None,
                    "action": None,
                    "time_to_detect_s": None,
                    "time_to_heal_s": None,
                    "slo_minutes_lost": lost,
                    "oom_kills": len(trace.oom_kills),
                    "benign_actions": benign,
                    "cause_returned": False,
                }
            )
    return out
