"""The nodes' lifecycle: what the kubelets report and what the node lifecycle
controller and its taint manager do about it, as Kubernetes does.

* A kubelet that reports NotReady sets Ready False at once; one that stops reporting
  (``unreachable``) leaves its node as it was until the node monitor's grace period
  (40 s) has passed, when the node lifecycle controller sets every condition Unknown.
  Either way the node gets the ``not-ready`` (or ``unreachable``) taints, NoSchedule
  and NoExecute, and its pods turn unready (out of their Services' endpoints). The
  taint manager deletes each pod once its toleration of the NoExecute taint runs out
  (300 s by default, from the DefaultTolerationSeconds admission), so its controller
  makes it again on another node. Before its pods turn unready, the ones still
  reached fail and slow down.
* Memory pressure: a process outside the pods takes the node's memory and leaks more.
  When what is left falls under the kubelet's hard eviction threshold
  (``memory.available<100Mi``) the kubelet sets MemoryPressure (the node lifecycle
  controller taints the node ``memory-pressure:NoSchedule``) and evicts one pod per
  pass, BestEffort pods first, then the largest users: the pod fails with reason
  Evicted, an Event says why, and it is deleted. The condition clears five minutes
  (the eviction pressure transition period) after the last time memory was short.
  Meanwhile its pods are slow and fail more often (the node swaps and reclaims pages).

Decisions:

* The work is proportional to the nodes in trouble, not to the cluster: the troubles
  are in ``FaultState.nodes`` and the pods of a node in ``Placement``.
* A kubelet's status moves (``lastHeartbeatTime`` with it) when what it reports
  changes, not every five minutes as ``nodeStatusReportFrequency`` would have it: a
  write per node every five minutes would cost the 1,000-Deployment day
  (bench/sim_scale.py) seconds, for timestamps nothing here reads.
* A pod evicted by the kubelet is deleted after its Failed status is written: a real
  cluster keeps it until the pod garbage collector's threshold, but every other part
  of the simulator (and healer) counts a workload's pods as its live ones.
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime

from healer.sim.controllers.kubelet import refresh_pod_status
from healer.sim.nodes import (
    MEMORY_PRESSURE,
    NOT_READY,
    SYSTEM_MEMORY_BYTES,
    UNREACHABLE,
    UNSCHEDULABLE,
    condition,
    healthy,
    quantity,
    set_condition,
    tolerates,
)
from healer.sim.objects import K8s, rfc3339
from healer.sim.state import ClusterState, NodeTrouble, Now, drain

GRACE_S = 40.0
"""The node lifecycle controller's ``--node-monitor-grace-period``."""
EVICTION_THRESHOLD_BYTES = 100 * 2**20
"""The kubelet's default hard eviction threshold, ``memory.available<100Mi``."""
PRESSURE_TRANSITION_S = 300.0
"""``--eviction-pressure-transition-period``: how long MemoryPressure outlasts the shortage."""
PRESSURE_SLOWDOWN, PRESSURE_ERRORS = 3.0, 0.03
"""Pods on a node under memory pressure: latency times this, this share more errors."""
FAILING_SLOWDOWN, FAILING_ERRORS = 5.0, 0.5
"""Pods on a failing node still reached, before they turn unready."""


class CordonTaint:
    """A cordoned node (``spec.unschedulable``) carries the taint
    ``node.kubernetes.io/unschedulable:NoSchedule``, lifted when it is uncordoned, as
    the node lifecycle controller keeps it; the pods of a deleted node are deleted, as
    the pod garbage collector does. It reacts to writes: ``kubectl cordon`` then
    ``kubectl describe node`` shows the taint."""

    def reconcile(self, state: ClusterState, now: Now) -> None:
        while state.placement.orphans:
            key = state.placement.orphans.pop(0)
            if state.store.find("pods", *key) is not None:
                state.delete("pods", *key)
        for key in drain(state.queues.nodes):
            node = state.store.find("nodes", *key)
            if node is not None and _taint(
                node,
                UNSCHEDULABLE,
                "NoSchedule",
                now,
                present=bool(node["spec"].get("unschedulable")),
            ):
                state.store.update("nodes", node, spec_changed=True)
                state.queues.nodes.discard(key)  # its own write needs no second look


class NodeLifecycle:
    def reconcile(self, state: ClusterState, now: Now) -> None:
        for name, trouble in list(state.faults.nodes.items()):
            node = state.store.find("nodes", "", name)
            if node is None:
                del state.faults.nodes[name]
            elif trouble.kind == "node_notready":
                _not_ready(state, node, trouble, now)
            else:
                _memory_pressure(state, node, trouble, now)


# ---- not ready ----------------------------------------------------------------------


def _not_ready(state: ClusterState, node: K8s, trouble: NodeTrouble, now: Now) -> None:
    name = node["metadata"]["name"]
    if now.unix_s >= trouble.end_s:
        _recover(state, node, now)
        _pods_affected(state, name, down=False, slowdown=1.0, errors=0.0, now=now)
        del state.faults.nodes[name]
        return
    noticed = not trouble.unreachable or now.unix_s - trouble.start_s >= GRACE_S
    if not noticed:
        _pods_affected(
            state, name, down=False, slowdown=FAILING_SLOWDOWN, errors=FAILING_ERRORS, now=now
        )
        return
    key = UNREACHABLE if trouble.unreachable else NOT_READY
    changed = False
    if trouble.unreachable:
        for kind in ("MemoryPressure", "DiskPressure", "PIDPressure", "Ready"):
            old = _condition(node, kind)
            changed |= set_condition(
                node,
                {
                    **condition(
                        kind,
                        "Unknown",
                        "NodeStatusUnknown",
                        "Kubelet stopped posting node status.",
                        now.at,
                    ),
                    "lastHeartbeatTime": old.get("lastHeartbeatTime", rfc3339(now.at)),
                },
            )
    else:
        changed |= set_condition(
            node,
            condition(
                "Ready",
                "False",
                "KubeletNotReady",
                "container runtime network not ready: NetworkReady=false",
                now.at,
            ),
        )
    changed |= _taint(node, key, "NoSchedule", now, present=True)
    changed |= _taint(node, key, "NoExecute", now, present=True)
    if changed:
        state.store.update("nodes", node, spec_changed=False)
    _pods_affected(state, name, down=True, slowdown=1.0, errors=0.0, now=now)
    _taint_manager(state, node, now)


def _recover(state: ClusterState, node: K8s, now: Now) -> None:
    """The kubelet reports again: healthy conditions, the lifecycle taints lifted."""
    changed = False
    for kind in ("MemoryPressure", "DiskPressure", "PIDPressure", "Ready"):
        changed |= set_condition(node, healthy(kind, now.at))
    for key in (NOT_READY, UNREACHABLE, MEMORY_PRESSURE):
        for effect in ("NoSchedule", "NoExecute"):
            changed |= _taint(node, key, effect, now, present=False)
    if changed:
        state.store.update("nodes", node, spec_changed=False)


def _taint_manager(state: ClusterState, node: K8s, now: Now) -> None:
    """Delete the node's pods whose toleration of a NoExecute taint has run out."""
    taints = [t for t in node["spec"].get("taints") or [] if t.get("effect") == "NoExecute"]
    for key in state.placement.pods_on(node["metadata"]["name"]):
        pod = state.store.find("pods", *key)
        if pod is None:
            continue
        tolerations = pod["spec"].get("tolerations") or []
        for taint in taints:
            if _toleration_over(tolerations, taint, now):
                _event(
                    state,
                    pod,
                    "TaintManagerEviction",
                    f"Marking for deletion Pod {key[0]}/{key[1]}",
                    now,
                )
                state.delete("pods", *key)
                break


def _toleration_over(tolerations: list[K8s], taint: K8s, now: Now) -> bool:
    if not tolerates(tolerations, taint):
        return True
    seconds = [
        t["tolerationSeconds"]
        for t in tolerations
        if t.get("tolerationSeconds") is not None and tolerates([t], taint)
    ]
    if len(seconds) < sum(1 for t in tolerations if tolerates([t], taint)):
        return False  # one toleration has no limit: the pod stays for ever
    added = _unix(taint.get("timeAdded")) or now.unix_s
    return bool(now.unix_s >= added + float(min(seconds)))


# ---- memory pressure ------------------------------------------------------------------


def _memory_pressure(state: ClusterState, node: K8s, trouble: NodeTrouble, now: Now) -> None:
    name = node["metadata"]["name"]
    index = state.placement.index[name]
    active = now.unix_s < trouble.end_s
    total = quantity(str(node["status"]["capacity"].get("memory", "0")))
    if active and math.isnan(trouble.taken_bytes):
        # The outside process starts by taking all but half the threshold.
        trouble.taken_bytes = (
            total - SYSTEM_MEMORY_BYTES - _pods_memory(state, name) - EVICTION_THRESHOLD_BYTES / 2
        )
    taken = (
        trouble.taken_bytes + trouble.bytes_per_s * (now.unix_s - trouble.start_s)
        if active
        else 0.0
    )
    state.node_meters.grow(index + 1)
    state.node_meters.outside_bytes[index] = max(0.0, taken)
    available = total - SYSTEM_MEMORY_BYTES - _pods_memory(state, name) - taken
    if available < EVICTION_THRESHOLD_BYTES:
        trouble.pressure_s = now.unix_s
        _evict_one(state, name, available, now)
    pressed = now.unix_s - trouble.pressure_s < PRESSURE_TRANSITION_S
    if pressed:
        status = condition(
            "MemoryPressure",
            "True",
            "KubeletHasInsufficientMemory",
            "kubelet has insufficient memory available",
            now.at,
        )
    else:
        status = healthy("MemoryPressure", now.at)
    changed = set_condition(node, status)
    changed |= _taint(node, MEMORY_PRESSURE, "NoSchedule", now, present=pressed)
    if changed:
        state.store.update("nodes", node, spec_changed=False)
    if pressed:
        _pods_affected(
            state, name, down=False, slowdown=PRESSURE_SLOWDOWN, errors=PRESSURE_ERRORS, now=now
        )
    else:
        _pods_affected(state, name, down=False, slowdown=1.0, errors=0.0, now=now)
        if not active:
            del state.faults.nodes[name]


def _pods_memory(state: ClusterState, node: str) -> float:
    slots = _slots(state, node)
    return float(state.table.f["memory_bytes"][slots].sum()) if slots else 0.0


def _evict_one(state: ClusterState, node: str, available: float, now: Now) -> None:
    """The kubelet's eviction: BestEffort pods first, then the largest memory users."""
    ranked = []
    for key in state.placement.pods_on(node):
        pod = state.store.find("pods", *key)
        if pod is not None and state.running(pod):
            best_effort = not any(
                (c.get("resources") or {}).get("requests") for c in pod["spec"]["containers"]
            )
            ranked.append((not best_effort, -state.container(pod).memory_bytes, key, pod))
    if not ranked:
        return
    _, minus_bytes, key, pod = min(ranked)
    message = (
        "The node was low on resource: memory. Threshold quantity: 100Mi, available: "
        f"{max(0, int(available // 1024))}Ki. Container {pod['spec']['containers'][0]['name']} "
        f"was using {int(-minus_bytes // 1024)}Ki, which exceeds its request of 0. "
    )
    pod["status"] = {
        **pod["status"],
        "phase": "Failed",
        "reason": "Evicted",
        "message": message,
        "conditions": [
            {"type": "Ready", "status": "False"},
            {
                "type": "DisruptionTarget",
                "status": "True",
                "reason": "TerminationByKubelet",
                "message": message,
            },
        ],
    }
    state.store.update("pods", pod, spec_changed=False)
    _event(state, pod, "Evicted", message, now, component="kubelet")
    state.delete("pods", *key)


# ---- shared -------------------------------------------------------------------------


def _slots(state: ClusterState, node: str) -> list[int]:
    out = []
    for key in state.placement.pods_on(node):
        pod = state.store.find("pods", *key)
        if pod is not None and state.running(pod):
            out.append(state.slots[pod["metadata"]["uid"]])
    return out


def _pods_affected(
    state: ClusterState, node: str, *, down: bool, slowdown: float, errors: float, now: Now
) -> None:
    """Set what the node does to its pods; a pod whose readiness changes is reported."""
    f, b = state.table.f, state.table.b
    for slot in _slots(state, node):
        f["node_slowdown"][slot], f["node_errors"][slot] = slowdown, errors
        if bool(b["node_down"][slot]) != down:
            b["node_down"][slot] = down
            refresh_pod_status(state, state.table.pods[slot], now)


def _condition(node: K8s, kind: str) -> K8s:
    for c in node["status"].get("conditions") or []:
        if c.get("type") == kind:
            return dict(c)
    return {}


def _taint(node: K8s, key: str, effect: str, now: Now, *, present: bool) -> bool:
    """Add or lift one taint; True when the node's taints changed."""
    taints = node["spec"].get("taints") or []
    there = any(t.get("key") == key and t.get("effect") == effect for t in taints)
    if there == present:
        return False
    if present:
        node["spec"]["taints"] = [
            *taints,
            {"key": key, "effect": effect, "timeAdded": rfc3339(now.at)},
        ]
    else:
        kept = [t for t in taints if not (t.get("key") == key and t.get("effect") == effect)]
        if kept:
            node["spec"]["taints"] = kept
        else:
            node["spec"].pop("taints", None)
    return True


def _unix(timestamp: object) -> float | None:
    if not isinstance(timestamp, str):
        return None
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def _event(
    state: ClusterState,
    pod: K8s,
    reason: str,
    message: str,
    now: Now,
    component: str = "taint-eviction-controller",
) -> None:
    meta = pod["metadata"]
    at = rfc3339(now.at)
    name = f"{meta['name']}.{int(now.unix_s * 1000):x}"
    state.store.create(
        "events",
        {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": name,
                "namespace": meta["namespace"],
                # Derived, not drawn: the random stream stays the workloads'.
                "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{meta['namespace']}/{name}/{reason}")),
            },
            "involvedObject": {
                "kind": "Pod",
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
                "apiVersion": "v1",
            },
            "reason": reason,
            "message": message,
            "type": "Warning" if reason == "Evicted" else "Normal",
            "source": {"component": component, "host": pod["spec"].get("nodeName", "")},
            "firstTimestamp": at,
            "lastTimestamp": at,
            "count": 1,
        },
        now=now.at,
    )
