"""The runtime state of every simulated container, as columns over all pods at once.

The API objects (pods) say what a kubelet would report; what they do not hold (CPU
seconds burnt, memory in use, requests served, a leak in progress) lives here, one row
("slot") per pod. Keeping it as numpy columns rather than one Python object per pod is
what lets the workload model step thousands of pods in a handful of array operations:
the simulated cluster must run a day of 5,000 pods in under a minute.

Slots are handed out by ``allocate`` and returned by ``free``; a freed slot is reused by
the next pod, lowest first, so that runs are reproducible per seed. ``Container`` is a
view of one slot with the attribute names the rest of the simulator and its tests use.
"""

from __future__ import annotations

import heapq
from typing import Any

import numpy as np
from numpy.typing import NDArray

Floats = NDArray[np.float64]

# Columns of float64, each with its value in a fresh slot. NaN stands for "none yet".
_FLOAT_COLUMNS: dict[str, float] = {
    "started_s": 0.0,
    "leak_from_s": np.nan,
    "leak_bytes_per_s": 0.0,
    "memory_bytes": 0.0,
    "cpu_seconds": 0.0,
    "requests_ok": 0.0,
    "requests_err": 0.0,
    "latency_sum_s": 0.0,
    "last_p99_s": np.nan,
    "burn_cores": 0.0,
    "crashes": 0.0,
    "restarts": 0.0,
    # What the behaviour of the pod's image makes of it (fixed for the pod's life).
    "error_ratio": 0.0,
    "latency_s": 0.0,
    "cpu_factor": 1.0,
    # Counter values at the last sample, to difference the next one against.
    "mark_cpu": 0.0,
    "mark_ok": 0.0,
    "mark_err": 0.0,
    "mark_restarts": 0.0,
    # The HPA controller's last CPU reading: (time, cpu seconds).
    "hpa_t": np.nan,
    "hpa_cpu": 0.0,
    # What the pod's status was last built from: (ready, started, started_s, restarts).
    "key_started_s": np.nan,
    "key_restarts": np.nan,
    # What the pod's node does to it: latency times ``node_slowdown``, ``node_errors``
    # more of its requests fail (a node under pressure); the node's index, -1 for none.
    "node_slowdown": 1.0,
    "node_errors": 0.0,
    "node_index": -1.0,
    "mark_node_cpu": 0.0,
}
_BOOL_COLUMNS = ("alive", "crash_on_start", "key_ready", "key_up", "node_down")
"""``node_down``: the pod's node is not ready, so the pod is not ready either."""


class ContainerTable:
    """Columns of container state indexed by slot; ``size`` slots have ever been used."""

    def __init__(self, buckets: int, capacity: int = 64) -> None:
        self.buckets = buckets
        self.capacity = 0
        self.size = 0
        self._free: list[int] = []
        self.f: dict[str, Floats] = {name: np.empty(0) for name in _FLOAT_COLUMNS}
        self.b: dict[str, NDArray[np.bool_]] = {
            name: np.zeros(0, dtype=bool) for name in _BOOL_COLUMNS
        }
        self.workload = np.zeros(0, dtype=np.int64)
        """Index of the scenario workload the pod serves, -1 for pods of other Deployments."""
        self.latency_buckets = np.zeros((0, buckets))
        self.pods: list[Any] = []
        """The pod object (the store's dict) in each slot, None when free."""
        self._grow(capacity)

    def _grow(self, capacity: int) -> None:
        extra = capacity - self.capacity
        for name, initial in _FLOAT_COLUMNS.items():
            self.f[name] = np.concatenate([self.f[name], np.full(extra, initial)])
        for name in _BOOL_COLUMNS:
            self.b[name] = np.concatenate([self.b[name], np.zeros(extra, dtype=bool)])
        self.workload = np.concatenate([self.workload, np.full(extra, -1, dtype=np.int64)])
        self.latency_buckets = np.concatenate(
            [self.latency_buckets, np.zeros((extra, self.buckets))]
        )
        self.pods.extend([None] * extra)
        self.capacity = capacity

    def allocate(self, pod: Any, workload: int) -> int:
        """A fresh slot for ``pod``: every column at its initial value."""
        if self._free:
            slot = heapq.heappop(self._free)
        else:
            if self.size == self.capacity:
                self._grow(self.capacity * 2)
            slot = self.size
            self.size += 1
        for name, initial in _FLOAT_COLUMNS.items():
            self.f[name][slot] = initial
        for name in _BOOL_COLUMNS:
            self.b[name][slot] = False
        self.b["alive"][slot] = True
        self.workload[slot] = workload
        self.latency_buckets[slot] = 0.0
        self.pods[slot] = pod
        return slot

    def free(self, slot: int) -> None:
        self.b["alive"][slot] = False
        self.workload[slot] = -1
        self.pods[slot] = None
        heapq.heappush(self._free, slot)

    def live(self) -> NDArray[np.bool_]:
        """Which of the first ``size`` slots hold a pod."""
        return self.b["alive"][: self.size]


class Container:
    """One container's runtime state: a view of its slot in a ``ContainerTable``."""

    def __init__(self, table: ContainerTable, slot: int) -> None:
        self._table, self.slot = table, slot

    def _get(self, name: str) -> float:
        return float(self._table.f[name][self.slot])

    def _set(self, name: str, value: float) -> None:
        self._table.f[name][self.slot] = value

    @property
    def started_s(self) -> float:
        return self._get("started_s")

    @property
    def cpu_seconds(self) -> float:
        return self._get("cpu_seconds")

    @property
    def memory_bytes(self) -> float:
        return self._get("memory_bytes")

    @property
    def requests_ok(self) -> float:
        return self._get("requests_ok")

    @property
    def requests_err(self) -> float:
        return self._get("requests_err")

    @property
    def latency_sum_s(self) -> float:
        return self._get("latency_sum_s")

    @property
    def latency_buckets(self) -> list[float]:
        return [float(v) for v in self._table.latency_buckets[self.slot]]

    @property
    def burn_cores(self) -> float:
        """CPU burnt besides serving requests (a runaway thread), until the container restarts."""
        return self._get("burn_cores")

    @property
    def leak_from_s(self) -> float | None:
        value = self._get("leak_from_s")
        return None if np.isnan(value) else value

    @property
    def last_p99_s(self) -> float | None:
        value = self._get("last_p99_s")
        return None if np.isnan(value) else value
