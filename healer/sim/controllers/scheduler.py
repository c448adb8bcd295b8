"""The scheduler: binds each new pod to a node that can run it, as kube-scheduler does.

A node can run a pod when it is schedulable (not cordoned), carries every label of the
pod's ``nodeSelector``, has no NoSchedule or NoExecute taint the pod does not tolerate,
and has room for the pod's CPU and memory requests and one more pod within its
allocatable. Among those, the scheduler takes the next one after the node it chose
last (round robin over the nodes in name order), which spreads a Deployment's pods over
the nodes as kube-scheduler's spreading scores do. The bound pod gets ``spec.nodeName``
and the condition PodScheduled, and its kubelet starts its container.

A pod no node can run stays Pending with PodScheduled False (reason Unschedulable) and
a message counting the reasons per node, as ``kubectl describe pod`` shows; it waits in
the queue of unscheduled pods, tried again when a node changes or a pod leaves one.

Decisions:

* A pod is placed as it is created (``place``), within the controller's pass that
  creates it: the simulator's step is 15 s, and a real scheduler binds within
  milliseconds. The pod is still written first without a node and then bound, so a
  watch sees the binding as kube-scheduler's.
* Round robin rather than a score per node: it is O(1) per pod when nodes have room,
  where scoring every node for every pod would cost a scan of the cluster per pod
  (bench/sim_scale.py creates thousands).
* The queue is retried only when something that could make room happened (a node
  changed, a bound pod left), never as a scan per tick.
"""

from __future__ import annotations

from collections import Counter

from healer.sim.controllers.kubelet import admit
from healer.sim.nodes import Request, blocking_taint, default_tolerations, selects
from healer.sim.objects import K8s, rfc3339
from healer.sim.state import ClusterState, Now


class Scheduler:
    """Tries the pods waiting for a node again, when something made room."""

    def reconcile(self, state: ClusterState, now: Now) -> None:
        placement = state.placement
        if not placement.retry or not placement.pending:
            return
        placement.retry = False
        for key, workload in list(placement.pending.items()):
            pod = state.store.find("pods", *key)
            if pod is None or _bind(state, pod, workload, now):
                del placement.pending[key]


def admission(pod: K8s) -> None:
    """What the API server's admission adds to a new pod: the default tolerations of
    not-ready and unreachable nodes (300 s), unless the pod sets its own."""
    tolerations = pod["spec"].setdefault("tolerations", [])
    keys = {t.get("key") for t in tolerations}
    tolerations.extend(t for t in default_tolerations() if t["key"] not in keys)


def place(state: ClusterState, pod: K8s, workload: str, now: Now) -> None:
    """Bind the new ``pod`` (of ``workload``, namespace/name) and start its container,
    or leave it Pending and queued when no node can run it."""
    if not _bind(state, pod, workload, now):
        meta = pod["metadata"]
        state.placement.pending[(meta["namespace"], meta["name"])] = workload


def _bind(state: ClusterState, pod: K8s, workload: str, now: Now) -> bool:
    placement = state.placement
    request = Request.of(pod)
    names = placement.order
    reasons: Counter[str] = Counter()
    for step in range(len(names)):
        i = (placement.cursor + step) % len(names)
        reason = _unfit(state, names[i], pod, request)
        if reason is None:
            placement.cursor = i + 1
            _write_binding(state, pod, names[i], request, now)
            admit(state, pod, workload, now)
            return True
        reasons[reason] += 1
    _write_unschedulable(state, pod, len(names), reasons, now)
    return False


def _unfit(state: ClusterState, name: str, pod: K8s, request: Request) -> str | None:
    """Why node ``name`` cannot run ``pod``, in the scheduler's words; None when it can."""
    node = state.store.find("nodes", "", name)
    usage = state.placement.usage.get(name)
    if node is None or usage is None:
        return "node(s) not found"
    if node["spec"].get("unschedulable"):
        return "node(s) were unschedulable"
    if not selects(node, pod):
        return "node(s) didn't match Pod's node affinity/selector"
    taint = blocking_taint(node, pod)
    if taint is not None:
        return f"node(s) had untolerated taint {{{taint['key']}: {taint.get('value', '')}}}"
    if usage.used_pods + 1 > usage.pods:
        return "Too many pods"
    if usage.used_cpu + request.cpu > usage.cpu + 1e-9:
        return "Insufficient cpu"
    if usage.used_memory + request.memory > usage.memory:
        return "Insufficient memory"
    return None


def _write_binding(state: ClusterState, pod: K8s, node: str, request: Request, now: Now) -> None:
    meta = pod["metadata"]
    pod["spec"]["nodeName"] = node
    status = pod["status"]
    status["conditions"] = [scheduled_condition(now)]
    usage = state.placement.usage[node]
    status["hostIP"], status["podIP"] = usage.address, usage.next_pod_ip()
    status.pop("reason", None)
    status.pop("message", None)
    state.placement.bind((meta["namespace"], meta["name"]), node, request)
    state.store.update("pods", pod, spec_changed=False)


def scheduled_condition(now: Now) -> K8s:
    return {"type": "PodScheduled", "status": "True", "lastTransitionTime": rfc3339(now.at)}


def _write_unschedulable(
    state: ClusterState, pod: K8s, nodes: int, reasons: Counter[str], now: Now
) -> None:
    detail = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items()))
    message = f"0/{nodes} nodes are available: {detail}." if detail else "no nodes available"
    new = {
        **pod["status"],
        "phase": "Pending",
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": message,
                "lastTransitionTime": rfc3339(now.at),
            }
        ],
    }
    if [{**c, "lastTransitionTime": None} for c in new["conditions"]] != [
        {**c, "lastTransitionTime": None} for c in pod["status"].get("conditions") or []
    ]:
        pod["status"] = new
        state.store.update("pods", pod, spec_changed=False)
