"""Synthetic workload history for the joint-model tests: noisy signals, patterns on top."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from builders import HEALTHY
from numpy.typing import NDArray

from healer.types import Frame, Signal, WorkloadRef

SIGNALS = tuple(Signal)
STEP_S = 15.0
T0 = 1_772_449_200.0  # 2026-03-02T11:00:00Z
PER_HOUR = int(3600 / STEP_S)
WORKLOADS = tuple(WorkloadRef("shop", "Deployment", n) for n in ("cart", "orders", "search", "web"))

LEVEL = HEALTHY
NOISE = {
    Signal.CPU: 0.04,
    Signal.MEMORY: 0.005,
    Signal.RESTARTS: 0.0,
    Signal.REQUEST_RATE: 0.04,
    Signal.ERROR_RATIO: 0.3,
    Signal.LATENCY_P99: 0.04,
    Signal.READY_RATIO: 0.0,
}

F64 = NDArray[np.float64]


@dataclass(frozen=True)
class Pattern:
    """Signals multiplied by ``factor`` on one workload over rows ``[start, start + rows)``."""

    workload: int
    start: int
    rows: int
    factors: dict[Signal, float]


def history(
    hours: float, *, seed: int = 0, start_row: int = 0, patterns: tuple[Pattern, ...] = ()
) -> Frame:
    """Every workload at its level with its noise; traffic, and CPU with it, on a daily cycle."""
    rng = np.random.default_rng(seed)
    rows = int(hours * PER_HOUR)
    t = np.arange(start_row, start_row + rows)
    cycle = 1.0 + 0.3 * np.sin(2 * np.pi * t / (24 * PER_HOUR))
    values = np.empty((len(WORKLOADS), len(SIGNALS), rows))
    for s, sig in enumerate(SIGNALS):
        base = LEVEL[sig] * (cycle if sig in (Signal.CPU, Signal.REQUEST_RATE) else 1.0)
        values[:, s, :] = base * (1 + NOISE[sig] * rng.standard_normal((len(WORKLOADS), rows)))
    # CPU is spent serving requests: it follows traffic, with a little noise of its own.
    traffic = values[:, SIGNALS.index(Signal.REQUEST_RATE), :] / (
        LEVEL[Signal.REQUEST_RATE] * cycle
    )
    own = 1 + 0.01 * rng.standard_normal((len(WORKLOADS), rows))
    values[:, SIGNALS.index(Signal.CPU), :] = LEVEL[Signal.CPU] * cycle * traffic * own
    for p in patterns:
        for sig, factor in p.factors.items():
            values[p.workload, SIGNALS.index(sig), p.start : p.start + p.rows] *= factor
    return Frame(T0 + STEP_S * t, WORKLOADS, SIGNALS, values)


def at(frame: Frame, row: int) -> float:
    return float(frame.timestamps[row])
