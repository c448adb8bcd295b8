"""A MetricsSource that reads the simulated cluster's sampled signals.

The samples are the values the PromQL of ``collect`` computes from the simulator's
``/metrics`` (rates over one scrape step), taken in-process so that hours of simulated
time are read without a Prometheus server in between.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

import numpy as np

from healer.sim.cluster import SIGNALS, Cluster
from healer.sim.podview import pod_frame
from healer.types import Frame, PodFrame, WorkloadRef


class SimSource:
    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster

    def fetch(self, *, until: datetime, window_s: float) -> Frame:
        with self._cluster.lock:
            times = np.asarray(self._cluster.timestamps, dtype=np.float64)
            end = until.timestamp()
            keep = np.flatnonzero((times > end - window_s) & (times <= end))
            if keep.size:
                values = np.stack([self._cluster.samples[i] for i in keep], axis=-1)
            else:
                values = np.empty((len(self._cluster.workloads), len(SIGNALS), 0))
            return Frame(
                timestamps=times[keep],
                workloads=self._cluster.workloads,
                signals=SIGNALS,
                values=values,
            )

    def fetch_pods(self, *, until: datetime, workloads: Collection[WorkloadRef]) -> PodFrame:
        """The per-pod values of ``workloads`` (``healer.sim.podview``)."""
        with self._cluster.lock:
            return pod_frame(
                self._cluster.pod_steps,
                self._cluster.state.table,
                self._cluster.workloads,
                workloads,
                until_s=until.timestamp(),
            )
