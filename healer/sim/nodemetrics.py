"""The nodes' series, under the names kube-state-metrics and node-exporter give them.

kube-state-metrics: ``kube_node_info``, ``kube_node_status_condition`` (one series per
condition and status, 1 for the one that holds), ``kube_node_spec_unschedulable``,
``kube_node_spec_taint``, ``kube_node_status_capacity`` and
``kube_node_status_allocatable`` (by ``resource`` and ``unit``), and ``kube_pod_info``
with the pod's ``node``. node-exporter, one per node, each series labelled with the
exporter's ``instance`` (the node's address, port 9100) and the ``node`` it runs on, as
a kube-prometheus scrape config relabels them: ``node_memory_MemTotal_bytes``,
``node_memory_MemAvailable_bytes``, ``node_cpu_seconds_total`` by ``cpu`` and ``mode``.

Decisions:

* Memory available is what the node has less its own processes, its pods' working
  sets and what a fault's process outside the pods took (the same figure the kubelet
  compares with its eviction threshold).
* CPU time per mode is the node's total spread evenly over its cores: ``user`` is what
  its pods used (``healer.sim.nodes.NodeMeters``), ``system`` a fixed share, ``idle``
  the rest of the wall time since the node registered.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np

from healer.sim.nodes import (
    CONDITIONS,
    SYSTEM_CPU_SHARE,
    SYSTEM_MEMORY_BYTES,
    quantity,
)
from healer.sim.objects import K8s

if TYPE_CHECKING:
    from healer.sim.cluster import Cluster

Rows = list[tuple[str, float]]
_UNITS = {"cpu": "core", "memory": "byte", "pods": "integer", "ephemeral-storage": "byte"}


def _labels(**labels: str) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return "{" + inner + "}"


def _address(node: K8s) -> str:
    for address in (node.get("status") or {}).get("addresses") or []:
        if address.get("type") == "InternalIP":
            return str(address.get("address"))
    return ""


def node_families(cluster: Cluster) -> Iterator[tuple[str, str, Rows]]:
    """Every node series, at the cluster's current time; none without nodes."""
    nodes = cluster.store.list("nodes")
    if not nodes:
        return
    yield "kube_node_info", "gauge", [(_info(n), 1.0) for n in nodes]
    yield "kube_node_status_condition", "gauge", [row for n in nodes for row in _conditions(n)]
    yield (
        "kube_node_spec_unschedulable",
        "gauge",
        [(_labels(node=_name(n)), float(bool(n["spec"].get("unschedulable")))) for n in nodes],
    )
    taints = [row for n in nodes for row in _taints(n)]
    if taints:
        yield "kube_node_spec_taint", "gauge", taints
    for field in ("capacity", "allocatable"):
        yield (
            f"kube_node_status_{field}",
            "gauge",
            [row for n in nodes for row in _resources(n, field)],
        )
    yield from _exporter(cluster, nodes)


def pod_info(cluster: Cluster) -> Iterator[tuple[str, str, Rows]]:
    """``kube_pod_info``: where each pod runs (``node`` empty while it waits for one)."""
    rows = []
    for pod in cluster.store.list("pods"):
        meta, status = pod["metadata"], pod.get("status") or {}
        owner = (meta.get("ownerReferences") or [{}])[0]
        labels = _labels(
            namespace=meta["namespace"],
            pod=meta["name"],
            uid=meta["uid"],
            host_ip=status.get("hostIP", ""),
            pod_ip=status.get("podIP", ""),
            node=pod["spec"].get("nodeName", ""),
            created_by_kind=owner.get("kind", "<none>"),
            created_by_name=owner.get("name", "<none>"),
            priority_class="",
            host_network="false",
        )
        rows.append((labels, 1.0))
    if rows:
        yield "kube_pod_info", "gauge", rows


def _name(node: K8s) -> str:
    return str(node["metadata"]["name"])


def _info(node: K8s) -> str:
    info = (node.get("status") or {}).get("nodeInfo") or {}
    return _labels(
        node=_name(node),
        kernel_version=info.get("kernelVersion", ""),
        os_image=info.get("osImage", ""),
        container_runtime_version=info.get("containerRuntimeVersion", ""),
        kubelet_version=info.get("kubeletVersion", ""),
        kubeproxy_version=info.get("kubeProxyVersion", ""),
        provider_id="",
        pod_cidr=node["spec"].get("podCIDR", ""),
        internal_ip=_address(node),
        system_uuid=info.get("systemUUID", ""),
    )


def _conditions(node: K8s) -> Rows:
    rows = []
    for c in (node.get("status") or {}).get("conditions") or []:
        for status in ("true", "false", "unknown"):
            labels = _labels(node=_name(node), condition=str(c.get("type")), status=status)
            rows.append((labels, float(str(c.get("status")).lower() == status)))
    return rows


def _taints(node: K8s) -> Rows:
    return [
        (
            _labels(
                node=_name(node),
                key=str(t.get("key", "")),
                value=str(t.get("value", "")),
                effect=str(t.get("effect", "")),
            ),
            1.0,
        )
        for t in node["spec"].get("taints") or []
    ]


def _resources(node: K8s, field: str) -> Rows:
    values = (node.get("status") or {}).get(field) or {}
    return [
        (
            _labels(node=_name(node), resource=resource, unit=_UNITS.get(resource, "integer")),
            quantity(str(value)),
        )
        for resource, value in sorted(values.items())
    ]


def _exporter(cluster: Cluster, nodes: list[K8s]) -> Iterator[tuple[str, str, Rows]]:
    state = cluster.state
    index, meters, t = state.placement.index, state.node_meters, state.table
    n, f = t.size, t.f
    meters.settle(t, np.flatnonzero(t.live()))
    live = t.live() & (f["node_index"][:n] >= 0)
    width = max(len(index), 1)
    memory = np.bincount(
        f["node_index"][:n][live].astype(np.intp),
        weights=f["memory_bytes"][:n][live],
        minlength=width,
    )
    meters.grow(len(index))
    now = cluster.clock.now()
    total_rows, available_rows, cpu_rows = [], [], []
    for node in nodes:
        name, i = _name(node), index[_name(node)]
        where = _labels(instance=f"{_address(node)}:9100", node=name)
        total = quantity(str(node["status"]["capacity"].get("memory", "0")))
        available = total - SYSTEM_MEMORY_BYTES - float(memory[i]) - meters.outside_bytes[i]
        total_rows.append((where, total))
        available_rows.append((where, max(0.0, available)))
        cpu_rows.extend(_cpu(node, name, where, meters.user_cpu_s[i], now))
    yield "node_memory_MemTotal_bytes", "gauge", total_rows
    yield "node_memory_MemAvailable_bytes", "gauge", available_rows
    yield "node_cpu_seconds_total", "counter", cpu_rows


def _cpu(node: K8s, name: str, where: str, user_s: float, now: datetime) -> Rows:
    cores = max(1, int(quantity(str(node["status"]["capacity"].get("cpu", "1")))))
    created = datetime.fromisoformat(node["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
    wall_s = max(0.0, (now - created).total_seconds()) * cores
    system_s = wall_s * SYSTEM_CPU_SHARE
    idle_s = max(0.0, wall_s - system_s - user_s)
    rows = []
    instance = where[1:-1]  # the instance and node labels, to put beside cpu and mode
    for cpu in range(cores):
        for mode, seconds in (("idle", idle_s), ("system", system_s), ("user", user_s)):
            rows.append((f'{{cpu="{cpu}",mode="{mode}",{instance}}}', seconds / cores))
    return rows


__all__ = ["CONDITIONS", "node_families", "pod_info"]
