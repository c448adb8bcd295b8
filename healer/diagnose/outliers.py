"""One pod against its siblings: telling an outlier pod apart from a workload-wide fault.

The detector judges each workload's signals against their own history; it cannot say
whether the whole workload moved or one of its pods did. Here each pod is compared with
the other pods of its workload at the same moment, on the signals a pod has of its own
(``POD_SIGNALS``): a robust z-score, its distance from the workload's median in units of
the workload's median absolute deviation. No history is kept per pod, so the detector's
series do not multiply by the replica count: the comparison costs a sort of the pods
being diagnosed.

``outlier_diagnosis`` turns one outlier into a diagnosis that names the pod, when the
finding points the same way (the pod's signal is one the workload deviates on, upward),
and no rollout explains the difference (pods of two revisions differ by design: that is
``bad_release``'s case).

Decisions:

- Only workloads with at least ``MIN_READY_PODS`` ready pods are judged: with two pods
  there is no majority to call one of them odd, and a pod that is not Ready serves no
  traffic, so its latency and errors say nothing.
- Robust statistics (median and MAD) rather than mean and standard deviation: the
  outlier itself would inflate the spread it is judged by. The MAD has a floor (a share
  of the median, and an absolute floor per signal), so that pods that agree almost
  exactly (memory varies by a fraction of a percent) do not make a trifle an outlier.
- A pod must stand out both in spreads (``MIN_Z``) and by a ratio a person would call a
  difference (``MIN_RATIO``): its latency 5x its siblings', not 3% over them.
- Exactly one pod: two or more pods standing out at once is no longer one bad pod.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
from numpy.typing import NDArray

from healer.types import (
    Cause,
    Diagnosis,
    Direction,
    Finding,
    PodFrame,
    Signal,
    WorkloadRef,
    WorkloadState,
)

MIN_READY_PODS = 3
"""Fewer ready pods than this are never judged one against the others."""
MIN_Z = 4.0
"""Robust z-score a pod must reach: four spreads beyond its siblings' median."""
MIN_RATIO: Mapping[Signal, float] = {
    Signal.MEMORY: 1.15,
    Signal.CPU: 1.6,
    Signal.LATENCY_P99: 2.0,
    Signal.ERROR_RATIO: 3.0,
    Signal.RESTARTS: 3.0,
}
"""How many times its siblings' median a pod's value must be. Memory grows with load by
about 8% and differs little between pods of one workload, which share its traffic;
CPU follows the requests a pod happens to get; latency and errors vary more from pod
to pod."""
SPREAD_FLOOR: Mapping[Signal, tuple[float, float]] = {
    Signal.MEMORY: (0.03, 0.01),
    Signal.CPU: (0.1, 0.02),
    Signal.LATENCY_P99: (0.1, 0.005),
    Signal.ERROR_RATIO: (0.25, 0.005),
    Signal.RESTARTS: (0.25, 0.2),
}
"""(share of the median, absolute) below which the MAD-based spread is not taken: the
larger of the two applies. Absolute floors are in each signal's unit (a share of the
limit or request, seconds, a ratio, restarts per minute)."""
MAD_TO_SIGMA = 1.4826
"""Scales the median absolute deviation to a normal distribution's standard deviation."""
RELEASE_WINDOW = timedelta(minutes=20)
"""A rollout this close before the anomaly began explains pods that differ."""
SIGNAL_WORDS: Mapping[Signal, str] = {
    Signal.MEMORY: "memory",
    Signal.CPU: "CPU",
    Signal.LATENCY_P99: "p99 latency",
    Signal.ERROR_RATIO: "error ratio",
    Signal.RESTARTS: "restart rate",
}


@dataclass(frozen=True)
class PodOutlier:
    """The one pod of a workload that stands out from its siblings, and by how much."""

    workload: WorkloadRef
    pod: str
    signal: Signal
    value: float
    siblings: float
    """The median of the workload's ready pods on ``signal``."""
    z: float
    ratio: float
    ready_pods: int
    memory_slope_per_s: float
    """The pod's memory trend, share of its limit per second."""


def find(pods: PodFrame) -> dict[WorkloadRef, PodOutlier]:
    """Each workload of ``pods`` with exactly one outlier pod, and that pod. Vectorised
    over every pod at once: one sort per signal."""
    ready_count = np.bincount(pods.owner[pods.ready], minlength=len(pods.workloads)).astype(
        np.int64
    )
    judged = pods.ready & (ready_count[pods.owner] >= MIN_READY_PODS)
    best_z = np.zeros(len(pods.pods))
    best = np.full(len(pods.pods), -1, dtype=np.int64)
    medians = np.full((len(pods.pods), len(pods.signals)), np.nan)
    for s, signal in enumerate(pods.signals):
        if signal not in MIN_RATIO:
            continue
        z, median = _robust_z(pods.owner, pods.values[:, s], judged, len(pods.workloads), signal)
        medians[:, s] = median
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = pods.values[:, s] / median
        flagged = (z >= MIN_Z) & ((ratio >= MIN_RATIO[signal]) | (median <= 0)) & judged
        stronger = flagged & (z > best_z)
        best_z[stronger], best[stronger] = z[stronger], s
    flagged_pods = best >= 0
    per_workload = np.bincount(pods.owner[flagged_pods], minlength=len(pods.workloads))
    out = {}
    for p in np.flatnonzero(flagged_pods & (per_workload[pods.owner] == 1)):
        s, w = int(best[p]), int(pods.owner[p])
        value, siblings = float(pods.values[p, s]), float(medians[p, s])
        out[pods.workloads[w]] = PodOutlier(
            workload=pods.workloads[w],
            pod=pods.pods[p],
            signal=pods.signals[s],
            value=value,
            siblings=siblings,
            z=float(best_z[p]),
            ratio=value / siblings if siblings > 0 else float("inf"),
            ready_pods=int(ready_count[w]),
            memory_slope_per_s=float(pods.memory_slope[p]),
        )
    return out


def _robust_z(
    owner: NDArray[np.int64],
    values: NDArray[np.float64],
    judged: NDArray[np.bool_],
    groups: int,
    signal: Signal,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per pod: its robust z-score within its workload (0 where not judged) and the
    workload's median (NaN where none)."""
    keep = judged & np.isfinite(values)
    median = _group_median(owner, values, keep, groups)
    pod_median = median[owner]
    deviation = np.abs(values - pod_median)
    mad = _group_median(owner, deviation, keep, groups)[owner]
    relative, absolute = SPREAD_FLOOR[signal]
    spread = np.maximum(MAD_TO_SIGMA * mad, np.maximum(relative * np.abs(pod_median), absolute))
    with np.errstate(invalid="ignore"):
        z = np.where(keep, (values - pod_median) / spread, 0.0)
    return np.nan_to_num(z), pod_median


def _group_median(
    owner: NDArray[np.int64], values: NDArray[np.float64], keep: NDArray[np.bool_], groups: int
) -> NDArray[np.float64]:
    """The median of ``values[keep]`` per ``owner`` group (NaN for a group with none)."""
    index = np.flatnonzero(keep)
    out = np.full(groups, np.nan)
    if index.size == 0:
        return out
    # One sort of a single key, the group then the value: a float key (group times a
    # span wider than the values) sorts several times faster than ``lexsort`` of two.
    picked = values[index]
    least = float(picked.min())
    span = float(picked.max()) - least + 1.0
    order = index[np.argsort(owner[index] * span + (picked - least))]
    counts = np.bincount(owner[order], minlength=groups)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    has = counts > 0
    low = starts[has] + (counts[has] - 1) // 2
    high = starts[has] + counts[has] // 2
    sorted_values = values[order]
    out[has] = (sorted_values[low] + sorted_values[high]) / 2.0
    return out


def outlier_diagnosis(
    finding: Finding, state: WorkloadState, outlier: PodOutlier | None
) -> Diagnosis | None:
    """``pod_outlier`` naming the pod, when one pod explains what the finding says;
    None when the rules on the workload's signals should answer instead."""
    if outlier is None or outlier.workload != finding.workload:
        return None
    deviation = finding.deviation(outlier.signal)
    if deviation is None or deviation.direction != Direction.UP:
        return None
    if not state.rollout_complete or _rolled_out_lately(finding, state):
        return None
    if outlier.pod not in {p.name for p in state.pods if not p.terminating}:
        return None
    strength = min(1.0, (outlier.z - MIN_Z) / (3 * MIN_Z))
    confidence = 0.7 + 0.2 * strength - (0.05 if outlier.ready_pods == MIN_READY_PODS else 0.0)
    return Diagnosis(
        finding.workload,
        Cause.POD_OUTLIER,
        round(min(confidence, 0.9), 2),
        _explain(outlier),
        pod=outlier.pod,
    )


def _rolled_out_lately(finding: Finding, state: WorkloadState) -> bool:
    current = state.current_revision
    if current is None or state.previous_revision is None:
        return False
    return -timedelta(minutes=1) <= finding.onset - current.created <= RELEASE_WINDOW


def _explain(o: PodOutlier) -> str:
    word = SIGNAL_WORDS[o.signal]
    trend = ""
    if o.signal == Signal.MEMORY:
        level, median = f"its memory is at {o.value:.0%} of its limit", f"{o.siblings:.0%}"
        if o.memory_slope_per_s > 0:
            trend = f", and grows {o.memory_slope_per_s * 6000:.2f}% of the limit a minute"
    elif o.signal == Signal.LATENCY_P99:
        level, median = f"its p99 latency is {o.value:.3g} s", f"{o.siblings:.3g} s"
    elif o.signal in (Signal.CPU, Signal.ERROR_RATIO):
        level, median = f"its {word} is {o.value:.1%}", f"{o.siblings:.1%}"
    else:
        level, median = f"its {word} is {o.value:.2g}/min", f"{o.siblings:.2g}/min"
    times = f"{o.ratio:.1f}x" if np.isfinite(o.ratio) else "far over"
    return (
        f"One pod ({o.pod}) is an outlier: {level}, {times} its {o.ready_pods - 1} "
        f"siblings' median ({median}, {o.z:.0f} spreads off){trend}; the others are not "
        "affected, so the fault is that pod's, not the workload's."
    )
