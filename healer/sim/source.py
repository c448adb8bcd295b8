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
from healer.sim.objects import K8s
from healer.sim.podview import pod_frame
from healer.types import Frame, NodePod, NodeState, PodFrame, WorkloadRef


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

    def nodes(self, *, until: datetime) -> tuple[NodeState, ...]:
        """The nodes as kube-state-metrics would report them now (``collect.nodes``):
        their true conditions, their cordon, and the pods bound to each."""
        with self._cluster.lock:
            nodes = self._cluster.list_objects("nodes", None)
            pods = self._cluster.list_objects("pods", None)
        bound: dict[str, list[NodePod]] = {}
        for pod in pods:
            node = pod["spec"].get("nodeName")
            if node:
                bound.setdefault(node, []).append(_node_pod(pod))
        return tuple(_node_state(n, bound.get(n["metadata"]["name"], [])) for n in nodes)


_PRESSURES = ("MemoryPressure", "DiskPressure", "PIDPressure")


def _true_conditions(obj: K8s) -> set[str]:
    return {
        c["type"]
        for c in (obj.get("status") or {}).get("conditions") or []
        if c["status"] == "True"
    }


def _node_state(node: K8s, pods: list[NodePod]) -> NodeState:
    true = _true_conditions(node)
    return NodeState(
        name=node["metadata"]["name"],
        ready="Ready" in true,
        pressure=tuple(c for c in _PRESSURES if c in true),
        unschedulable=bool(node["spec"].get("unschedulable")),
        pods=tuple(sorted(pods, key=lambda p: (p.namespace, p.name))),
    )


def _node_pod(pod: K8s) -> NodePod:
    meta = pod["metadata"]
    owner = next((r for r in meta.get("ownerReferences") or [] if r.get("controller")), None)
    return NodePod(
        namespace=meta["namespace"],
        name=meta["name"],
        owner=f"{owner['kind']}/{owner['name']}" if owner else "",
        ready="Ready" in _true_conditions(pod),
        terminating=meta.get("deletionTimestamp") is not None,
    )
