"""What the detector knows about each signal: which way is harm, and its resolution.

Polarity says which deviation hurts users: memory going up is a problem, going down is
not; ready_ratio the other way round. Request rate is context, not harm (a surge is
the cause of an overload, not its symptom, and stays high after the fix), so it is
attributed in findings but not scored.

The resolution floors are measurement granularity, not alert thresholds: below them a
change is indistinguishable from rounding (half a percent of requests failing, 2% of a
CPU request, a 5% step in available replicas). They only stop a perfectly flat series,
whose learned spread is zero, from turning any change into an infinite deviation.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from healer.types import Signal

POLARITY: dict[Signal, float] = {
    Signal.CPU: 1.0,
    Signal.MEMORY: 1.0,
    Signal.RESTARTS: 1.0,
    Signal.REQUEST_RATE: 0.0,
    Signal.ERROR_RATIO: 1.0,
    Signal.LATENCY_P99: 1.0,
    Signal.READY_RATIO: -1.0,
}

ABSOLUTE_FLOOR: dict[Signal, float] = {
    Signal.CPU: 0.02,
    Signal.MEMORY: 0.005,
    Signal.RESTARTS: 0.1,  # one restart in the 10-minute window of the restarts signal
    Signal.REQUEST_RATE: 0.01,
    Signal.ERROR_RATIO: 0.005,
    Signal.LATENCY_P99: 0.002,
    Signal.READY_RATIO: 0.05,
}

# Relative resolution: 2% of the level, for signals whose scale differs by workload.
RELATIVE_FLOOR = 0.02


def polarity(signals: tuple[Signal, ...]) -> NDArray[np.float64]:
    return np.array([POLARITY[s] for s in signals], dtype=np.float64)


def absolute_floor(signals: tuple[Signal, ...]) -> NDArray[np.float64]:
    return np.array([ABSOLUTE_FLOOR[s] for s in signals], dtype=np.float64)
