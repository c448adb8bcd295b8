"""The per-pod view of the simulated cluster: what the per-pod PromQL would return.

The sampler keeps each step's per-pod values for the last ten minutes
(``Sampler.pod_steps``); ``pod_frame`` reads them for the workloads asked for, as the
pods are at the last step: each signal averaged over the window, restarts per minute
over the restarts window, and the memory trend a least-squares line gives. A slot that
changed pods within the window is told apart by its serial, so a pod just created is
averaged over its own samples only.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from healer.collect.source import POD_WINDOW_S
from healer.sim.containers import ContainerTable
from healer.sim.controllers.sampler import RESTARTS_WINDOW_S, PodStep
from healer.types import POD_SIGNALS, PodFrame, Signal, WorkloadRef

_RESTARTS = POD_SIGNALS.index(Signal.RESTARTS)
_MEMORY = POD_SIGNALS.index(Signal.MEMORY)


def pod_frame(
    steps: Sequence[PodStep],
    table: ContainerTable,
    workloads: tuple[WorkloadRef, ...],
    wanted: Collection[WorkloadRef],
    *,
    until_s: float,
    window_s: float = POD_WINDOW_S,
) -> PodFrame:
    """The pods of the ``wanted`` workloads as of ``until_s``; ``workloads`` are the
    cluster's, in the order of the samples' workload index."""
    steps = [s for s in steps if s.unix_s <= until_s]
    index = {w: i for i, w in enumerate(workloads)}
    asked = sorted({index[w] for w in wanted if w in index})
    if not steps or not asked:
        return PodFrame.empty(until_s)
    last = steps[-1]
    pick = np.isin(last.owner, asked) & (table.serial[last.slots] == last.serial)
    slots, serial = last.slots[pick], last.serial[pick]
    means, slope = _window_means(steps, slots, serial, last.unix_s - window_s)
    means[:, _RESTARTS] = _restarts_per_min(steps, slots, serial, last.unix_s)
    remap = {w: i for i, w in enumerate(asked)}
    return PodFrame(
        at=last.unix_s,
        workloads=tuple(workloads[w] for w in asked),
        owner=np.asarray([remap[int(w)] for w in last.owner[pick]], dtype=np.int64),
        pods=tuple(str(table.pods[int(s)]["metadata"]["name"]) for s in slots),
        ready=last.ready[pick].copy(),
        signals=POD_SIGNALS,
        values=means,
        memory_slope=slope,
    )


def _aligned(
    step: PodStep, slots: NDArray[np.int64], serial: NDArray[np.int64]
) -> tuple[NDArray[np.bool_], NDArray[np.intp]]:
    """Which of ``slots`` the step sampled with the same pod, and their rows in it
    (the step's slots are ascending: ``flatnonzero`` order)."""
    rows = np.searchsorted(step.slots, slots)
    rows = np.minimum(rows, max(0, step.slots.size - 1))
    if step.slots.size == 0:
        return np.zeros(slots.size, dtype=bool), rows
    found = (step.slots[rows] == slots) & (step.serial[rows] == serial)
    return found, rows


def _window_means(
    steps: Sequence[PodStep], slots: NDArray[np.int64], serial: NDArray[np.int64], from_s: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Each signal's mean over the steps after ``from_s`` (NaN: no value), and the
    memory slope per second (0 with fewer than three samples)."""
    sums = np.zeros((slots.size, len(POD_SIGNALS)))
    counts = np.zeros((slots.size, len(POD_SIGNALS)))
    line = np.zeros((5, slots.size))  # n, sum t, sum y, sum t*y, sum t*t of memory
    t0 = steps[-1].unix_s
    for step in steps:
        if step.unix_s <= from_s:
            continue
        found, rows = _aligned(step, slots, serial)
        values = np.where(found[:, None], step.values[rows], np.nan)
        ok = np.isfinite(values)
        sums += np.where(ok, values, 0.0)
        counts += ok
        has = ok[:, _MEMORY].astype(np.float64)
        y = np.where(ok[:, _MEMORY], values[:, _MEMORY], 0.0)
        x = step.unix_s - t0
        line += np.stack([has, has * x, y, y * x, has * x * x])
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts
        n, sx, sy, sxy, sxx = line
        denominator = n * sxx - sx * sx
        slope = np.where((n >= 3) & (denominator > 0), (n * sxy - sx * sy) / denominator, 0.0)
    return means, np.nan_to_num(slope)


def _restarts_per_min(
    steps: Sequence[PodStep], slots: NDArray[np.int64], serial: NDArray[np.int64], last_s: float
) -> NDArray[np.float64]:
    """Restarts per minute over the restarts window, as
    ``rate(kube_pod_container_status_restarts_total[10m]) * 60`` per pod."""
    total = np.zeros(slots.size)
    spans: list[Any] = [s for s in steps if s.unix_s > last_s - RESTARTS_WINDOW_S]
    step_s = (spans[-1].unix_s - spans[0].unix_s) / max(1, len(spans) - 1) if spans else 0.0
    for step in spans:
        found, rows = _aligned(step, slots, serial)
        per_min = np.where(found, np.nan_to_num(step.values[rows, _RESTARTS]), 0.0)
        total += per_min * step_s / 60.0
    return total * 60.0 / RESTARTS_WINDOW_S
