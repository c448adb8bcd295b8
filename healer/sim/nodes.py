"""Nodes: the v1 Node objects of a scenario's pool, and the rules the scheduler and the
node lifecycle share (requests, taints and tolerations, conditions).

A node reads as a kubelet registers it: the ``kubernetes.io/hostname``, ``os``, ``arch``
and zone labels, capacity and allocatable CPU, memory and pods, the four conditions a
kubelet reports (Ready, MemoryPressure, DiskPressure, PIDPressure) with their
heartbeat and transition times, addresses and ``nodeInfo``.

Decisions:

* ``NodeUsage`` keeps what the pods bound to each node request, updated as pods are
  bound and deleted, so that placing a pod never sums over the cluster's pods.
* Quantities are parsed by the official client's ``parse_quantity`` (Kubernetes'
  grammar: ``250m``, ``128Gi``, ``1e3``), cached per string: a cluster has few
  distinct request values.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING

import numpy as np
from kubernetes.utils.quantity import parse_quantity
from numpy.typing import NDArray

from healer.sim.objects import K8s, rfc3339
from healer.sim.scenario import NodePool

if TYPE_CHECKING:
    from healer.sim.containers import ContainerTable
    from healer.sim.state import ClusterState

KUBELET_VERSION = "v1.31.0"
CONDITIONS = ("MemoryPressure", "DiskPressure", "PIDPressure", "Ready")
"""The kubelet's conditions, in the order it reports them."""
_HEALTHY = {
    "MemoryPressure": ("False", "KubeletHasSufficientMemory", "kubelet has sufficient memory"),
    "DiskPressure": ("False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    "PIDPressure": ("False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    "Ready": ("True", "KubeletReady", "kubelet is posting ready status"),
}

# The taints Kubernetes itself puts on nodes (k8s.io/api/core/v1 well_known_taints.go).
NOT_READY = "node.kubernetes.io/not-ready"
UNREACHABLE = "node.kubernetes.io/unreachable"
UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
MEMORY_PRESSURE = "node.kubernetes.io/memory-pressure"
DEFAULT_TOLERATION_S = 300
"""The DefaultTolerationSeconds admission plugin's: how long a pod stays on a node that
is not ready or unreachable before the taint manager evicts it."""


def register(state: ClusterState) -> None:
    """Register the scenario's nodes, before any pod exists. Their uids are derived
    from their names, not drawn: the random stream stays the workloads'."""
    pool, now = state.scenario.nodes, state.clock.now()
    for i, name in enumerate(pool.names(state.specs)):
        node = manifest(pool, name, i, now)
        node["metadata"]["uid"] = str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{name}.node.sim"))
        state.store.create("nodes", node, now=now)


def manifest(pool: NodePool, name: str, index: int, now: datetime) -> K8s:
    """The Node ``name`` (the ``index``-th of the pool) as its kubelet registers it."""
    zone = f"zone-{chr(ord('a') + index % pool.zones)}"
    resources = {
        "cpu": _cpu_text(pool.cpu_cores),
        "memory": f"{pool.memory_bytes // 2**10}Ki",
        "pods": str(pool.max_pods),
        "ephemeral-storage": "100Gi",
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": "amd64",
                "topology.kubernetes.io/zone": zone,
                **pool.labels,
            },
            "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {"podCIDR": f"10.244.{index % 256}.0/24"},
        "status": {
            "capacity": dict(resources),
            "allocatable": dict(resources),
            "conditions": [condition(kind, *_HEALTHY[kind], now) for kind in CONDITIONS],
            "addresses": [
                {"type": "InternalIP", "address": f"10.0.{index // 250}.{index % 250 + 2}"},
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": f"{index:032x}",
                "systemUUID": f"{index:08x}-0000-4000-8000-000000000000",
                "bootID": f"{index:08x}-0000-4000-8000-000000000001",
                "kernelVersion": "6.1.0-28-amd64",
                "osImage": "Debian GNU/Linux 12 (bookworm)",
                "containerRuntimeVersion": "containerd://1.7.24",
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": KUBELET_VERSION,
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        },
    }


def _cpu_text(cores: float) -> str:
    return str(int(cores)) if cores == int(cores) else f"{round(cores * 1000)}m"


def condition(kind: str, status: str, reason: str, message: str, now: datetime) -> K8s:
    at = rfc3339(now)
    return {
        "type": kind,
        "status": status,
        "lastHeartbeatTime": at,
        "lastTransitionTime": at,
        "reason": reason,
        "message": message,
    }


def healthy(kind: str, now: datetime) -> K8s:
    """The condition ``kind`` as a healthy kubelet reports it."""
    return condition(kind, *_HEALTHY[kind], now)


def set_condition(node: K8s, new: K8s) -> bool:
    """Put ``new`` in the node's conditions; the transition time moves only when the
    status does. True when the status changed."""
    conditions = node["status"].setdefault("conditions", [])
    for i, old in enumerate(conditions):
        if old.get("type") == new["type"]:
            changed = bool(old.get("status") != new["status"])
            if not changed:
                new = {**new, "lastTransitionTime": old.get("lastTransitionTime")}
            conditions[i] = new
            return changed
    conditions.append(new)
    return True


def condition_status(node: K8s, kind: str) -> str:
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind:
            return str(c.get("status"))
    return "Unknown"


@cache
def quantity(text: str) -> float:
    """A Kubernetes quantity as a number: cores for CPU, bytes for memory."""
    # The client's parse_quantity is untyped; it returns a Decimal.
    return float(parse_quantity(text))  # type: ignore[no-untyped-call]


# ---- requests, taints and tolerations -----------------------------------------------


@dataclass(frozen=True)
class Request:
    """What a pod asks of a node: CPU cores, memory bytes, one pod slot."""

    cpu: float
    memory: float

    @classmethod
    def of(cls, pod: K8s) -> Request:
        cpu = memory = 0.0
        for container in pod["spec"].get("containers") or []:
            requests = (container.get("resources") or {}).get("requests") or {}
            cpu += quantity(str(requests.get("cpu", "0")))
            memory += quantity(str(requests.get("memory", "0")))
        return cls(cpu, memory)


@dataclass
class NodeUsage:
    """A node as the scheduler sees it: what it offers and what its pods request."""

    name: str
    cpu: float = 0.0
    memory: float = 0.0
    pods: float = 0.0
    used_cpu: float = 0.0
    used_memory: float = 0.0
    used_pods: int = 0
    bound: set[tuple[str, str]] = field(default_factory=set)
    """The pods bound to it, by namespace and name."""
    address: str = ""
    pod_cidr: str = ""
    _ips: int = 0

    def next_pod_ip(self) -> str:
        """An address from the node's pod CIDR (a /24), in turn, as its CNI hands out."""
        self._ips = self._ips % 253 + 1
        prefix = self.pod_cidr.rsplit(".", 1)[0] if self.pod_cidr else "10.244.255"
        return f"{prefix}.{self._ips + 1}"

    def observe(self, node: K8s) -> None:
        self.pod_cidr = str(node["spec"].get("podCIDR", ""))
        self.address = next(
            (
                str(a.get("address"))
                for a in (node.get("status") or {}).get("addresses") or []
                if a.get("type") == "InternalIP"
            ),
            "",
        )
        allocatable = (node.get("status") or {}).get("allocatable") or {}
        self.cpu = quantity(str(allocatable.get("cpu", "0")))
        self.memory = quantity(str(allocatable.get("memory", "0")))
        self.pods = quantity(str(allocatable.get("pods", "0")))

    def fits(self, request: Request) -> bool:
        return (
            self.used_pods + 1 <= self.pods
            and self.used_cpu + request.cpu <= self.cpu + 1e-9
            and self.used_memory + request.memory <= self.memory
        )

    def add(self, key: tuple[str, str], request: Request, sign: int) -> None:
        if sign > 0:
            self.bound.add(key)
        else:
            self.bound.discard(key)
        self.used_cpu += sign * request.cpu
        self.used_memory += sign * request.memory
        self.used_pods += sign


def tolerates(tolerations: list[K8s], taint: K8s) -> bool:
    """Whether one of ``tolerations`` tolerates ``taint`` (v1 Toleration.ToleratesTaint)."""
    for t in tolerations:
        if t.get("effect") and t.get("effect") != taint.get("effect"):
            continue
        if t.get("key") and t.get("key") != taint.get("key"):
            continue
        if not t.get("key") and t.get("operator") != "Exists":
            continue
        if t.get("operator") == "Exists" or t.get("value", "") == taint.get("value", ""):
            return True
    return False


def blocking_taint(node: K8s, pod: K8s) -> K8s | None:
    """The first NoSchedule or NoExecute taint of ``node`` that ``pod`` does not tolerate."""
    tolerations = pod["spec"].get("tolerations") or []
    for taint in node["spec"].get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(tolerations, taint):
            return dict(taint)
    return None


def selects(node: K8s, pod: K8s) -> bool:
    """Whether the node's labels carry every label of the pod's ``nodeSelector``, and
    the node meets one of the terms of its required node affinity (the form a
    DaemonSet's pods carry: ``matchFields`` on ``metadata.name``)."""
    labels = node["metadata"].get("labels") or {}
    wanted = pod["spec"].get("nodeSelector") or {}
    if not all(labels.get(k) == v for k, v in wanted.items()):
        return False
    affinity = ((pod["spec"].get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = affinity.get("nodeSelectorTerms") or []
    fields = {"metadata.name": node["metadata"]["name"]}
    return not terms or any(_term_holds(term, labels, fields) for term in terms)


def _term_holds(term: K8s, labels: dict[str, str], fields: dict[str, str]) -> bool:
    """One node selector term: every expression on labels and on fields holds."""
    checks = [(r, labels) for r in term.get("matchExpressions") or []]
    checks += [(r, fields) for r in term.get("matchFields") or []]
    return bool(checks) and all(_requirement(r, values) for r, values in checks)


def _requirement(requirement: K8s, values: dict[str, str]) -> bool:
    key, op = requirement.get("key", ""), requirement.get("operator")
    allowed = [str(v) for v in requirement.get("values") or []]
    if op == "In":
        return values.get(key) in allowed
    if op == "NotIn":
        return values.get(key) not in allowed
    if op == "Exists":
        return key in values
    if op == "DoesNotExist":
        return key not in values
    if op in ("Gt", "Lt") and key in values and allowed:
        try:
            number, bound = int(values[key]), int(allowed[0])
        except ValueError:
            return False
        return number > bound if op == "Gt" else number < bound
    return False


def default_tolerations() -> list[K8s]:
    """What the DefaultTolerationSeconds admission plugin adds to every pod."""
    return [
        {
            "key": key,
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": DEFAULT_TOLERATION_S,
        }
        for key in (NOT_READY, UNREACHABLE)
    ]


# ---- what node-exporter reads ---------------------------------------------------------

SYSTEM_MEMORY_BYTES = 1.5 * 2**30
"""Memory the node's own processes use (the kubelet, the container runtime, the OS)."""
SYSTEM_CPU_SHARE = 0.02
"""The share of the node's CPU time its own processes spend (mode ``system``)."""


@dataclass
class NodeMeters:
    """Per node (by ``Placement.index``): CPU seconds its pods have used, summed from
    the containers' counters each step, so the node's counter never goes back when a
    pod leaves; and memory taken by processes outside the pods (a fault's)."""

    user_cpu_s: list[float] = field(default_factory=list)
    outside_bytes: list[float] = field(default_factory=list)

    def grow(self, count: int) -> None:
        missing = count - len(self.user_cpu_s)
        self.user_cpu_s.extend([0.0] * missing)
        self.outside_bytes.extend([0.0] * missing)

    def settle(self, table: ContainerTable, slots: NDArray[np.intp]) -> None:
        """Add what the containers in ``slots`` used since they were last settled to
        their nodes' counters: when a pod leaves (its slot is freed) and when the
        counters are read, so no step pays for it."""
        f = table.f
        nodes = f["node_index"][slots]
        slots = slots[nodes >= 0]
        if not len(slots):
            return
        index = f["node_index"][slots].astype(np.intp)
        self.grow(int(index.max()) + 1)
        used = np.bincount(index, weights=f["cpu_seconds"][slots] - f["mark_node_cpu"][slots])
        for i in np.flatnonzero(used):
            self.user_cpu_s[i] += float(used[i])
        f["mark_node_cpu"][slots] = f["cpu_seconds"][slots]
