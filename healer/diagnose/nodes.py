"""Whether a node fails its pods: the diagnosis that leads to a cordon and a drain.

A node is to blame when its condition is bad (NotReady, or under memory, disk or PID
pressure) *and* pods it runs fail *while the same workloads' pods on other nodes are
Ready*. A pod fails when it is not Ready or, on a node under pressure, when its
workload is anomalous now (slow, erring: a pressed node's pods stay Ready while they
crawl, and kube-state-metrics has no per-pod latency). Each half alone is not enough:
a node under brief pressure whose pods all serve hurts nobody, and pods failing on
every node are their workload's fault (a bad release, a crash loop), which moving
them would not cure.

Decisions:

- Replicas are told apart by their owner (``NodePod.workload``: namespace, kind and
  name of the controller, as kube-state-metrics' ``kube_pod_info{created_by_*}`` says),
  not by a Deployment name, so a StatefulSet's or a bare ReplicaSet's pods compare the
  same way.
- Replicas are compared with those on healthy nodes only: when two nodes fail at once,
  each one's failing pods must not clear the other.
- A workload with no pod elsewhere cannot be compared: the bad condition stands as the
  evidence, at a lower confidence. A workload failing elsewhere too is left out of the
  node's account; when it is the only one failing, the node is not diagnosed.
- The anomalous workloads are the detector's findings of the same cycle, passed in;
  a workload anomalous on every node with a pressed node among them is the weaker
  case, which is why pressure has the lower confidence.
- DaemonSet pods are not evidence: each node runs its own, there is nothing to compare
  with, and a drain would leave them anyway.
- Pure and instantaneous: how long a node has been bad (``nodes.grace_s``) is the
  node watch's business, which remembers it across cycles.
"""

from __future__ import annotations

from collections.abc import Sequence, Set
from dataclasses import dataclass

from healer.types import Cause, Diagnosis, NodePod, NodeState, TargetKind, WorkloadRef

CONFIDENCE_NOT_READY = 0.9
"""A NotReady node with failing pods whose replicas elsewhere serve: the kubelet lost."""
CONFIDENCE_PRESSURE = 0.8
"""Pressure is a softer signal than NotReady: the kubelet may evict and recover itself."""
UNCOMPARED_PENALTY = 0.2
"""Taken off when no failing workload has a pod elsewhere to compare with."""


@dataclass(frozen=True)
class Hurt:
    """The workloads a node hurts: failing there, fine (or absent) elsewhere."""

    failing: tuple[NodePod, ...]
    """The node's failing pods of those workloads."""
    compared: int
    """Their workloads' pods on other nodes, all Ready."""


def workload_of(pod: NodePod) -> WorkloadRef | None:
    """The Deployment or StatefulSet that runs the pod: a ReplicaSet's name is its
    Deployment's with the pod template's hash appended (``cart-7f9c``)."""
    kind, _, name = pod.owner.partition("/")
    if kind == "ReplicaSet" and "-" in name:
        return WorkloadRef(pod.namespace, TargetKind.DEPLOYMENT.value, name.rsplit("-", 1)[0])
    if kind == "StatefulSet":
        return WorkloadRef(pod.namespace, TargetKind.STATEFULSET.value, name)
    return None


def failing(node: NodeState, anomalous: Set[WorkloadRef] = frozenset()) -> list[NodePod]:
    """The node's pods that fail: not Ready, or (under pressure) of an anomalous workload."""
    return [
        p
        for p in node.pods
        if not p.terminating
        and not p.daemon
        and (not p.ready or (bool(node.pressure) and workload_of(p) in anomalous))
    ]


def hurt(
    node: NodeState, nodes: Sequence[NodeState], anomalous: Set[WorkloadRef] = frozenset()
) -> Hurt:
    """The node's failing pods whose workloads do not fail on other, healthy nodes."""
    bad = failing(node, anomalous)
    elsewhere: dict[str, list[NodePod]] = {}
    for other in nodes:
        if other.name != node.name and other.healthy:  # two bad nodes do not excuse each other
            for pod in other.pods:
                if not pod.terminating:
                    elsewhere.setdefault(pod.workload, []).append(pod)
    blamed = [p for p in bad if all(o.ready for o in elsewhere.get(p.workload, []))]
    compared = sum(len(elsewhere.get(w, [])) for w in {p.workload for p in blamed})
    return Hurt(tuple(blamed), compared)


def diagnose(
    node: NodeState, nodes: Sequence[NodeState], anomalous: Set[WorkloadRef] = frozenset()
) -> Diagnosis | None:
    """The node's diagnosis now, or None when it hurts no workload; ``anomalous`` are the
    workloads the detector finds anomalous in this cycle."""
    if node.healthy:
        return None
    found = hurt(node, nodes, anomalous)
    if not found.failing:
        return None
    cause = Cause.NODE_NOT_READY if not node.ready else Cause.NODE_PRESSURE
    confidence = CONFIDENCE_NOT_READY if not node.ready else CONFIDENCE_PRESSURE
    if not found.compared:
        confidence -= UNCOMPARED_PENALTY
    return Diagnosis(node.ref, cause, confidence, _explain(node, found))


def _explain(node: NodeState, found: Hurt) -> str:
    state = "NotReady" if not node.ready else "under " + ", ".join(node.pressure)
    workloads = sorted({p.workload for p in found.failing})
    shown = ", ".join(workloads[:5]) + (
        f" and {len(workloads) - 5} more" if len(workloads) > 5 else ""
    )
    pods = len(found.failing)
    where = (
        f"while their {found.compared} pods on other nodes are Ready"
        if found.compared
        else "and they run nowhere else to compare with"
    )
    return (
        f"node {node.name} is {state} and {pods} pod{'s' if pods != 1 else ''} on it "
        f"fail ({shown}) {where}."
    )
