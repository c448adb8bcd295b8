"""Nodes as kube-state-metrics describes them: conditions, cordons and the pods they run.

One instant read per cycle of four series, for all nodes at once, never one query per
node: ``kube_node_status_condition`` (the conditions that are true),
``kube_node_spec_unschedulable``, ``kube_pod_info`` (which node runs each pod, and its
controller in ``created_by_kind``/``created_by_name``), ``kube_pod_status_ready`` and
``kube_pod_deletion_timestamp`` (a pod terminating). ``node_states`` turns the answers
into ``NodeState`` values; it is pure, so the same function serves Prometheus and the
simulator's own exposition.

Decisions: the read goes through the same range client as the signals (a range of one
step ending at ``until``), so TLS, authentication and retries are configured once; a
node no series names is not in the cluster; a pod whose readiness is not reported is
counted not Ready (kube-state-metrics reports it for every pod it knows).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol

from healer.errors import PrometheusUnavailable
from healer.types import NodePod, NodeState

QUERIES: Mapping[str, str] = {
    "conditions": 'kube_node_status_condition{status="true"} == 1',
    "unschedulable": "kube_node_spec_unschedulable",
    "pods": 'kube_pod_info{node!=""}',
    "ready": 'kube_pod_status_ready{condition="true"}',
    "deleting": "kube_pod_deletion_timestamp",
}
"""The PromQL of each part, by the names kube-state-metrics gives its series."""

PRESSURES = ("MemoryPressure", "DiskPressure", "PIDPressure")
"""The conditions that, when true, put a node under pressure."""

Labels = Mapping[str, str]
Sample = tuple[Labels, float]
"""One series' labels and its value at the instant read."""


class Instant(Protocol):
    """Reads one PromQL expression at one instant: each series' labels and value."""

    def instant(self, promql: str, *, at: datetime) -> Sequence[Sample]: ...


def node_states(parts: Mapping[str, Sequence[Sample]]) -> tuple[NodeState, ...]:
    """The nodes the series name, by name, from the answers to ``QUERIES``."""
    true_conditions: dict[str, set[str]] = {}
    for labels, _ in parts.get("conditions", ()):
        true_conditions.setdefault(labels.get("node", ""), set()).add(labels.get("condition", ""))
    cordoned = {
        labels.get("node", ""): value >= 1 for labels, value in parts.get("unschedulable", ())
    }
    ready = {_pod_key(labels) for labels, value in parts.get("ready", ()) if value >= 1}
    deleting = {_pod_key(labels) for labels, _ in parts.get("deleting", ())}
    pods: dict[str, list[NodePod]] = {}
    for labels, _ in parts.get("pods", ()):
        key = _pod_key(labels)
        owner = labels.get("created_by_kind", "")
        owner = (
            f"{owner}/{labels.get('created_by_name', '')}" if owner and owner != "<none>" else ""
        )
        pods.setdefault(labels.get("node", ""), []).append(
            NodePod(key[0], key[1], owner, key in ready, key in deleting)
        )
    names = sorted((true_conditions.keys() | cordoned.keys()) - {""})
    return tuple(
        NodeState(
            name=name,
            ready="Ready" in true_conditions.get(name, set()),
            pressure=tuple(c for c in PRESSURES if c in true_conditions.get(name, set())),
            unschedulable=cordoned.get(name, False),
            pods=tuple(sorted(pods.get(name, []), key=lambda p: (p.namespace, p.name))),
        )
        for name in names
    )


def read_nodes(source: Instant, *, at: datetime) -> tuple[NodeState, ...]:
    """Every node at ``at``; ``PrometheusUnavailable`` names the part that failed."""
    parts: dict[str, Sequence[Sample]] = {}
    for part, promql in QUERIES.items():
        try:
            parts[part] = source.instant(promql, at=at)
        except PrometheusUnavailable as exc:
            raise PrometheusUnavailable(f"nodes ({part}: {promql}): {exc}") from exc
    return node_states(parts)


def _pod_key(labels: Labels) -> tuple[str, str]:
    return labels.get("namespace", ""), labels.get("pod", "")
