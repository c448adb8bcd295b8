"""What the simulated cluster's controllers share: the object store, the containers'
runtime columns, the work queues, the random stream and the reading of the clock.

Every controller is handed one ``ClusterState`` and works on it; none holds a
reference to another's private state, so a new kind is a new controller, not an edit
to the others. The store's write listener (``WorkQueues.on_change``) plays the
informers' part: it queues what each write concerns for the controllers' next pass.

Decisions:

* One random stream (``rng``) for uids, generated names and the workloads' draws, in
  the order the tick makes them: a run is reproducible per seed, and moving code
  between controllers must not reorder the draws (the chaos benchmark's records stay
  identical). API faults draw from a stream of their own (``healer.sim.faults``).
* ``Now`` is read from the clock once per tick and passed to every controller: the
  clock does not move within a tick, so all controllers see the same instant.
"""

from __future__ import annotations

import bisect
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from healer.sim import workloads
from healer.sim.clock import VirtualClock
from healer.sim.containers import Container, ContainerTable
from healer.sim.nodes import NodeMeters, NodeUsage, Request
from healer.sim.objects import K8s, ObjectStore, template_hash
from healer.sim.scenario import Event, Scenario, WorkloadSpec

REVISION = "deployment.kubernetes.io/revision"
LATENCY_BUCKETS_S = workloads.LATENCY_BUCKETS_S


@dataclass(frozen=True)
class Now:
    """One reading of the virtual clock: the instant, as UNIX seconds, and since the start."""

    at: datetime
    unix_s: float
    elapsed_s: float

    @classmethod
    def of(cls, clock: VirtualClock) -> Now:
        return cls(clock.now(), clock.now_s(), clock.elapsed_s)


@dataclass
class Overload:
    """A traffic surge on one workload: ``factor`` times its demand after a linear ramp."""

    start_s: float
    factor: float
    ramp_s: float

    def multiplier(self, t_s: float) -> float:
        if t_s < self.start_s:
            return 1.0
        progress = min(1.0, (t_s - self.start_s) / self.ramp_s) if self.ramp_s > 0 else 1.0
        return 1.0 + (self.factor - 1.0) * progress


@dataclass
class NodeTrouble:
    """A node fault in progress (``node_notready``, ``node_memory_pressure``), UNIX s."""

    kind: str
    start_s: float
    end_s: float
    unreachable: bool = False
    bytes_per_s: float = 0.0
    taken_bytes: float = float("nan")
    """Memory the outside process took at the start (set on the first pass)."""
    pressure_s: float = float("-inf")
    """When the kubelet last saw memory under its eviction threshold."""


@dataclass
class Drain:
    """A person's drain of a node for maintenance: uncordoned at ``until_s`` (UNIX s)."""

    until_s: float


@dataclass
class FaultState:
    """The faults in progress that outlive their event: surges and recurring leaks,
    node troubles and maintenance drains, by node name."""

    overloads: dict[str, Overload] = field(default_factory=dict)
    leaks: dict[str, Event] = field(default_factory=dict)  # recurring leaks, by workload
    nodes: dict[str, NodeTrouble] = field(default_factory=dict)
    drains: dict[str, Drain] = field(default_factory=dict)


@dataclass
class Placement:
    """Where pods run: each node's offer and use, and the pods waiting for a node.

    Kept up to date by the store's listener (``observe``, ``forget``) and by the
    scheduler's bindings, so that neither the scheduler nor the node lifecycle sums
    over the cluster's pods.
    """

    usage: dict[str, NodeUsage] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    """The nodes' names, sorted: the scheduler's round robin goes through them."""
    cursor: int = 0
    pending: dict[tuple[str, str], str] = field(default_factory=dict)
    """Pods no node could run (namespace, name), with their workload, in arrival order."""
    retry: bool = False
    """Something made room since the pending pods were last tried."""
    index: dict[str, int] = field(default_factory=dict)
    """Each node's index in the containers' ``node_index`` column and the node meters,
    given once and never reused."""
    bound: dict[tuple[str, str], tuple[str, Request]] = field(default_factory=dict)
    orphans: list[tuple[str, str]] = field(default_factory=list)
    """Pods bound to a node that was deleted: the pod garbage collector's to delete."""

    def observe(self, change: str, node: K8s) -> None:
        name = node["metadata"]["name"]
        self.retry = True
        if change == "DELETED":
            usage = self.usage.pop(name, None)
            self.order.remove(name)
            if usage is not None:
                self.orphans.extend(sorted(usage.bound))
            return
        if name not in self.usage:
            self.usage[name] = NodeUsage(name)
            bisect.insort(self.order, name)
            self.index.setdefault(name, len(self.index))
        self.usage[name].observe(node)

    def bind(self, pod: tuple[str, str], node: str, request: Request) -> None:
        self.bound[pod] = (node, request)
        self.usage[node].add(pod, request, +1)

    def forget(self, pod: tuple[str, str]) -> None:
        """A pod left: its node's room is free again."""
        self.pending.pop(pod, None)
        bound = self.bound.pop(pod, None)
        if bound is not None:
            usage = self.usage.get(bound[0])
            if usage is not None:
                usage.add(pod, bound[1], -1)
            self.retry = True

    def pods_on(self, node: str) -> list[tuple[str, str]]:
        usage = self.usage.get(node)
        return sorted(usage.bound) if usage is not None else []


@dataclass
class WorkQueues:
    """What changed since each controller's last pass, as informers feed controllers."""

    deployments: set[tuple[str, str]] = field(default_factory=set)
    statuses: set[tuple[str, str]] = field(default_factory=set)
    replicasets: set[tuple[str, str]] = field(default_factory=set)
    statefulsets: set[tuple[str, str]] = field(default_factory=set)
    nodes: set[tuple[str, str]] = field(default_factory=set)
    deleted_owners: list[str] = field(default_factory=list)  # uids the GC must follow

    def absorb(self, other: WorkQueues) -> None:
        """Add what ``other`` still holds, queue by queue (sets joined, lists extended in
        their order): work a write queued that its reaction left for the next tick."""
        for name, queue in vars(other).items():
            mine = getattr(self, name)
            if isinstance(mine, set):
                mine.update(queue)
            else:
                mine.extend(queue)


def drain(queue: set[tuple[str, str]]) -> Iterable[tuple[str, str]]:
    """The queued keys in name order (the order of a full pass); the queue starts afresh."""
    keys = sorted(queue)
    queue.clear()
    return keys


class ClusterState:
    """The state every controller of the simulated cluster reads and writes."""

    def __init__(self, scenario: Scenario, clock: VirtualClock) -> None:
        self.scenario = scenario
        self.clock = clock
        self.rng = np.random.default_rng(scenario.seed)
        self.store = ObjectStore(uid=self.new_uid)
        self.specs: list[WorkloadSpec] = scenario.expanded()
        by_key = {f"{w.namespace}/{w.name}": w for w in self.specs}
        self.table = ContainerTable(len(LATENCY_BUCKETS_S))
        self.slots: dict[str, int] = {}  # pod uid -> slot in the table
        self.faults = FaultState()
        self.queues = WorkQueues()
        self.placement = Placement()
        self.node_meters = NodeMeters()
        self.workload_index = {key: i for i, key in enumerate(by_key)}
        self.columns = workloads.WorkloadColumns(list(by_key.values()))
        self._hashes: dict[str, tuple[int, str]] = {}  # Deployment uid -> (generation, hash)
        self.kill_listeners: list[Callable[[K8s, str, Now], None]] = []
        """Called with (pod, reason, now) when a container dies (OOMKilled, Error)."""
        self.store.listeners.append(self.on_change)

    def now(self) -> Now:
        return Now.of(self.clock)

    def on_change(self, change: str, resource: str, obj: K8s) -> None:
        """The informers' event handler: queue what the change concerns.

        A pod's change concerns its ReplicaSet and that one's Deployment; a ReplicaSet's
        change itself and its Deployment; a deleted owner its dependents (the GC's).
        """
        meta = obj["metadata"]
        if resource == "nodes":
            self.placement.observe(change, obj)
            if change != "DELETED":
                self.queues.nodes.add(("", meta["name"]))
            return
        ns, name = meta.get("namespace", ""), meta["name"]
        if resource == "pods" and change == "DELETED":
            self.placement.forget((ns, name))
        if resource == "statefulsets" or (resource == "pods" and owner_kind(obj) == "StatefulSet"):
            self._stateful_change(change, resource, obj)
            return
        if resource not in ("deployments", "replicasets", "pods"):
            return
        if change == "DELETED" and resource != "pods":
            self.queues.deleted_owners.append(meta["uid"])
        if resource == "deployments":
            index = self.workload_index.get(f"{ns}/{name}")
            if index is not None:
                self.columns.observe(index, None if change == "DELETED" else obj)
        else:
            replicaset = owner_name(obj) if resource == "pods" else name
            self.queues.replicasets.add((ns, replicaset))
            name = replicaset.rsplit("-", 1)[0] if resource == "pods" else owner_name(obj)
        self.queues.deployments.add((ns, name))
        self.queues.statuses.add((ns, name))

    def _stateful_change(self, change: str, resource: str, obj: K8s) -> None:
        """A StatefulSet's change, or its pod's, queues the StatefulSet; a deleted one
        its dependents (pods and ControllerRevisions) for the GC."""
        meta = obj["metadata"]
        if resource == "pods":
            self.queues.statefulsets.add((meta["namespace"], owner_name(obj)))
            return
        if change == "DELETED":
            self.queues.deleted_owners.append(meta["uid"])
        index = self.workload_index.get(f"{meta['namespace']}/{meta['name']}")
        if index is not None:
            self.columns.observe(index, None if change == "DELETED" else obj)
        self.queues.statefulsets.add((meta["namespace"], meta["name"]))

    # ---- reads shared by the controllers -----------------------------------------------

    def owned(self, resource: str, owner: K8s) -> list[K8s]:
        return self.store.owned(resource, owner["metadata"]["uid"])

    def pods_of(self, workload: K8s) -> list[K8s]:
        """The pods of a Deployment (through its ReplicaSets) or of a StatefulSet."""
        if workload.get("kind") == "StatefulSet":
            return self.owned("pods", workload)
        return [p for rs in self.owned("replicasets", workload) for p in self.owned("pods", rs)]

    def workload(self, namespace: str, name: str) -> K8s | None:
        """The Deployment, else the StatefulSet, called ``name``; None when neither is."""
        return self.store.find("deployments", namespace, name) or self.store.find(
            "statefulsets", namespace, name
        )

    def container(self, pod: K8s) -> Container:
        return Container(self.table, self.slots[pod["metadata"]["uid"]])

    def running(self, pod: K8s) -> bool:
        """Whether the pod has a container (it is bound to a node and its kubelet
        started it); a pod waiting for a node has none."""
        return pod["metadata"]["uid"] in self.slots

    def template_hash(self, dep: K8s) -> str:
        """The pod-template-hash of the Deployment's template, recomputed on spec changes
        only (every template change moves ``metadata.generation``)."""
        meta = dep["metadata"]
        cached = self._hashes.get(meta["uid"])
        if cached is None or cached[0] != meta["generation"]:
            cached = (meta["generation"], template_hash(dep["spec"]["template"]))
            self._hashes[meta["uid"]] = cached
        return cached[1]

    # ---- writes shared by the controllers and the API ----------------------------------

    def delete(self, resource: str, namespace: str, name: str) -> K8s:
        """Delete at once (no graceful termination); a pod's container slot is freed."""
        obj = self.store.delete(resource, namespace, name)
        if resource == "pods":
            slot = self.slots.pop(obj["metadata"]["uid"], None)
            if slot is not None:
                self.node_meters.settle(self.table, np.array([slot], dtype=np.intp))
                self.table.free(slot)
        return obj

    def new_uid(self) -> str:
        high, low = (int(v) for v in self.rng.integers(0, 2**63, size=2))
        return str(uuid.UUID(int=(high << 64) | low, version=4))

    def suffix(self) -> str:
        alphabet = "bcdfghjklmnpqrstvwxz2456789"  # the one Kubernetes uses for generated names
        return "".join(alphabet[int(i)] for i in self.rng.integers(0, len(alphabet), 5))


# ---- object helpers ----------------------------------------------------------------------


def owner_name(obj: K8s) -> str:
    return str(obj["metadata"]["ownerReferences"][0]["name"])


def owner_kind(obj: K8s) -> str | None:
    refs = obj["metadata"].get("ownerReferences") or []
    return str(refs[0].get("kind")) if refs else None


def deployment_of(pod: K8s) -> str:
    """The workload a pod belongs to: its StatefulSet, or its ReplicaSet's name less the
    template hash (its Deployment)."""
    if owner_kind(pod) == "StatefulSet":
        return owner_name(pod)
    return owner_name(pod).rsplit("-", 1)[0]


def revision(rs: K8s) -> int:
    return int(rs["metadata"].get("annotations", {}).get(REVISION, "0"))


def pod_ready(pod: K8s) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", [])
    )


def owner_ref(owner: K8s) -> K8s:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
