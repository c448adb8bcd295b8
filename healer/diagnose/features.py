"""The numbers a learned diagnoser sees: a finding and its workload's context, as a row.

The same evidence the rules weigh, in fixed columns (``FEATURES``): each signal's signed
deviation, how long after the latest rollout the anomaly began, whether an older
revision exists, the replicas against the HPA's bounds, the restarts and the memory
trend against the limit, and the share of watched workloads anomalous in the same
cycle (an upstream or monitoring fault moves many at once). Pure and cheap: one row per
diagnosis, computed from values the daemon already holds.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from healer.diagnose.rules import slope_per_s
from healer.types import Finding, Frame, Signal, WorkloadState

ROLLOUT_AGE_CAP_MIN = 240.0
"""Rollouts older than four hours all look the same: long-running, not a suspect."""

FEATURES: tuple[str, ...] = (
    *(f"deviation_{s.value}" for s in Signal),
    "rollout_age_min",
    "has_previous_revision",
    "replicas_over_hpa_max",
    "hpa_at_max",
    "restarts_per_min",
    "memory_headroom",
    "memory_slope_per_min",
    "anomalous_share",
)


def features(
    finding: Finding, frame: Frame, state: WorkloadState, anomalous_share: float
) -> NDArray[np.float64]:
    """One row of ``FEATURES`` for this finding; NaN-free (absent evidence is 0)."""
    deviations = [_deviation(finding, s) for s in Signal]
    current = state.current_revision
    age_min = (
        ROLLOUT_AGE_CAP_MIN
        if current is None
        else (finding.onset - current.created).total_seconds() / 60.0
    )
    age_min = float(np.clip(age_min, -5.0, ROLLOUT_AGE_CAP_MIN))
    hpa = state.hpa
    over_hpa = state.replicas / hpa.max_replicas if hpa and hpa.max_replicas else 0.0
    restarts = finding.deviation(Signal.RESTARTS)
    memory = finding.deviation(Signal.MEMORY)
    memory_level = memory.value if memory else _last(frame, finding, Signal.MEMORY)
    row = [
        *deviations,
        age_min,
        1.0 if state.previous_revision is not None else 0.0,
        over_hpa,
        1.0 if hpa and state.replicas >= hpa.max_replicas else 0.0,
        restarts.value if restarts else _last(frame, finding, Signal.RESTARTS),
        1.0 - memory_level,
        slope_per_s(frame, finding, Signal.MEMORY) * 60.0 if frame.timestamps.size else 0.0,
        anomalous_share,
    ]
    return np.nan_to_num(np.asarray(row, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)


def _deviation(finding: Finding, signal: Signal) -> float:
    d = finding.deviation(signal)
    return d.deviation if d is not None and math.isfinite(d.deviation) else 0.0


def _last(frame: Frame, finding: Finding, signal: Signal) -> float:
    if finding.workload not in frame.workload_rows or signal not in frame.signals:
        return 0.0
    series = frame.series(finding.workload, signal)
    finite = series[np.isfinite(series)]
    return float(finite[-1]) if finite.size else 0.0
