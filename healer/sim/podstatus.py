"""Each pod's readiness and deletion, as kube-state-metrics exposes them.

``kube_pod_status_ready{condition}`` (one series per condition value, ``true``, ``false``
and ``unknown``, 1 for the one that holds) and ``kube_pod_deletion_timestamp`` (UNIX
seconds, only for a pod being deleted): with ``kube_pod_info``'s node, what tells a node
that fails its pods (``healer.collect.nodes``) apart from one whose pods serve.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING

from healer.sim.objects import K8s

if TYPE_CHECKING:
    from healer.sim.cluster import Cluster

Rows = list[tuple[str, float]]


def _ready(pod: K8s) -> str:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return str(condition.get("status", "Unknown")).lower()
    return "unknown"


def pod_status(cluster: Cluster) -> Iterator[tuple[str, str, Rows]]:
    """The two families, at the cluster's current time; none without pods."""
    ready: Rows = []
    deleting: Rows = []
    for pod in cluster.store.list("pods"):
        meta = pod["metadata"]
        names = f'namespace="{meta["namespace"]}",pod="{meta["name"]}",uid="{meta["uid"]}"'
        holds = _ready(pod)
        for value in ("true", "false", "unknown"):
            ready.append((f'{{{names},condition="{value}"}}', 1.0 if value == holds else 0.0))
        if meta.get("deletionTimestamp"):
            when = datetime.fromisoformat(meta["deletionTimestamp"].replace("Z", "+00:00"))
            deleting.append((f"{{{names}}}", when.timestamp()))
    if ready:
        yield "kube_pod_status_ready", "gauge", ready
    if deleting:
        yield "kube_pod_deletion_timestamp", "gauge", deleting
