"""Sampling: each tick's row of signals per workload, the ground truth the benchmarks
score and ``healer.sim.source.SimSource`` serves.

Counters are differenced every step, in a scrape gap too (they must move on), but a
workload inside a gap gets NaN for that step, as Prometheus would have no sample.

Per-pod values are kept for the last ``POD_HISTORY_S`` only (``pod_steps``), never for
the whole run: they are read for the few workloads a cycle diagnoses, and a day of
5,000 pods' values would cost gigabytes.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from healer.sim import workloads
from healer.sim.controllers.faults import window_factors
from healer.sim.state import ClusterState, Now
from healer.types import Signal

SIGNALS = tuple(Signal)
# Restarts are sparse events: the signal averages them over this window, as the PromQL
# ``rate(kube_pod_container_status_restarts_total[10m])`` does (collect/signals.py).
RESTARTS_WINDOW_S = 600.0

Row = np.ndarray[Any, np.dtype[np.float64]]
POD_HISTORY_S = RESTARTS_WINDOW_S
"""How far back per-pod values are kept: the restarts window, the longest a pod's
signal looks back."""


@dataclass(frozen=True)
class PodStep:
    """One step's per-pod values: the slots sampled, which pod held each (its serial),
    its workload, whether it was Ready, and its (P, 5) values of ``POD_SIGNALS``."""

    unix_s: float
    slots: np.ndarray[Any, np.dtype[np.int64]]
    serial: np.ndarray[Any, np.dtype[np.int64]]
    owner: np.ndarray[Any, np.dtype[np.int64]]
    ready: np.ndarray[Any, np.dtype[np.bool_]]
    values: Row


class Sampler:
    def __init__(self, step_s: float) -> None:
        self._step_s = step_s
        self.timestamps: list[float] = []
        self.samples: list[Row] = []  # (W, S) per step
        # Restarts per workload of each step in the restarts window, newest last.
        self._restart_steps: deque[Row] = deque(maxlen=max(1, round(RESTARTS_WINDOW_S / step_s)))
        self.pod_steps: deque[PodStep] = deque(maxlen=max(1, round(POD_HISTORY_S / step_s)))

    def reconcile(self, state: ClusterState, now: Now) -> None:
        sampled = window_factors(state, "scrape_gap", now.elapsed_s) == 1.0
        pods: list[tuple[Any, Row]] = []
        t = state.table
        row = workloads.signals(t, state.columns, dt_s=self._step_s, sampled=sampled, pods_out=pods)
        slots, values = pods[0]
        self.pod_steps.append(
            PodStep(
                now.unix_s,
                slots,
                t.serial[slots],
                t.workload[slots],
                t.b["key_ready"][slots],
                values,
            )
        )
        self._window_restarts(row)
        self.timestamps.append(now.unix_s)
        self.samples.append(row)

    def _window_restarts(self, row: Row) -> None:
        """Restarts per minute over the last ``RESTARTS_WINDOW_S`` instead of one step."""
        r = SIGNALS.index(Signal.RESTARTS)
        self._restart_steps.append(np.nan_to_num(row[:, r]) * self._step_s / 60.0)
        total = np.sum(self._restart_steps, axis=0)
        row[:, r] = np.where(np.isnan(row[:, r]), np.nan, total * 60.0 / RESTARTS_WINDOW_S)
