"""The kubelet: starts each pod's container, restarts it when it dies, and reports the
pod's status (readiness after a delay, restarts, the last termination's reason).

The containers' runtime state is numpy columns (``healer.sim.containers``), one slot per
pod; what the container does while running (traffic, CPU, memory) is the workloads'
step (``healer.sim.controllers.runtime``), which calls ``kill`` and ``crash`` here.
``Kubelet.reconcile`` reports the pods of Deployments outside the scenario (created
through the API), whose containers run nothing.

Decisions:

* A pod's status is rebuilt only when what it is built from (ready, started, start
  time, restarts) changed, compared for all pods at once: most pods change nothing
  from one step to the next, and an unchanged status is not written.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import numpy as np

from healer.sim.objects import K8s, rfc3339
from healer.sim.state import ClusterState, Now, deployment_of

# A container takes this long from start to passing its readiness probe.
READINESS_DELAY_S = 10.0


class Kubelet:
    def reconcile(self, state: ClusterState, now: Now) -> None:
        """Report the pods whose containers run no scenario workload."""
        table = state.table
        refresh_pods(state, table.live() & (table.workload[: table.size] < 0), now)


def admit(state: ClusterState, pod: K8s, workload: str, now: Now) -> None:
    """Give a new pod a container slot and start it; its image decides its behaviour."""
    table = state.table
    slot = table.allocate(pod, state.workload_index.get(workload, -1))
    state.slots[pod["metadata"]["uid"]] = slot
    behaviour = state.scenario.behaviour(pod["spec"]["containers"][0]["image"])
    f = table.f
    f["started_s"][slot] = now.unix_s
    f["node_index"][slot] = state.placement.index.get(pod["spec"].get("nodeName", ""), -1)
    f["error_ratio"][slot] = behaviour.error_ratio
    f["latency_s"][slot] = behaviour.latency_s
    f["cpu_factor"][slot] = behaviour.cpu_factor
    table.b["crash_on_start"][slot] = behaviour.crash_on_start
    start_container(state, workload, slot)
    refresh_pod_status(state, pod, now)


def start_container(state: ClusterState, workload: str, slot: int) -> None:
    """A container (re)starts clean, unless its workload's leak comes back."""
    f = state.table.f
    f["burn_cores"][slot], f["leak_from_s"][slot], f["memory_bytes"][slot] = 0.0, np.nan, 0.0
    leak = state.faults.leaks.get(workload)
    if leak is not None and leak.recur_after_s:
        f["leak_from_s"][slot] = f["started_s"][slot] + leak.recur_after_s
        f["leak_bytes_per_s"][slot] = leak.bytes_per_s or 0.0


def crash(state: ClusterState, slot: int, now: Now) -> None:
    """Containers of a crashing image exit soon after each start, and back off."""
    f = state.table.f
    kill(state, state.table.pods[slot], slot, "Error", 1, now)
    # Kubernetes' back-off: 10 s doubling to 5 min, reset after 10 min of running.
    f["started_s"][slot] = now.unix_s + min(300.0, 10.0 * 2.0 ** f["crashes"][slot])
    f["crashes"][slot] += 1


def kill(state: ClusterState, pod: K8s, slot: int, reason: str, exit_code: int, now: Now) -> None:
    """The container died (OOM, crash); the kubelet restarts it in the same pod."""
    for listener in state.kill_listeners:
        listener(pod, reason, now)
    cs = pod["status"]["containerStatuses"][0]
    cs["restartCount"] = cs.get("restartCount", 0) + 1
    state.table.f["restarts"][slot] = cs["restartCount"]
    cs["lastState"] = {
        "terminated": {"reason": reason, "exitCode": exit_code, "finishedAt": rfc3339(now.at)}
    }
    state.table.f["started_s"][slot] = now.unix_s
    start_container(state, f"{pod['metadata']['namespace']}/{deployment_of(pod)}", slot)
    refresh_pod_status(state, pod, now)


def age_pods(state: ClusterState, seconds: float, now: Now, pods: list[K8s] | None = None) -> None:
    """Make every pod (or those of ``pods``) ``seconds`` older, as if it had been running
    that much longer."""
    t = state.table
    if pods is None:
        t.f["started_s"][: t.size][t.live()] -= seconds
        pods = state.store.list("pods")
    else:
        pods = [p for p in pods if state.running(p)]
        t.f["started_s"][[state.slots[p["metadata"]["uid"]] for p in pods]] -= seconds
    for pod in pods:
        refresh_pod_status(state, pod, now)


def refresh_pods(state: ClusterState, mask: np.ndarray[Any, np.dtype[np.bool_]], now: Now) -> None:
    """Refresh the status of the pods in ``mask`` whose status would change.

    What a status is built from (readiness, started, start time, restarts) is compared
    for all pods at once; only the few that differ are rebuilt, usually pods crossing
    their readiness delay.
    """
    t, n = state.table, state.table.size
    f, b = t.f, t.b
    up_s = now.unix_s - f["started_s"][:n]
    changed = (
        (b["key_ready"][:n] != ((up_s >= READINESS_DELAY_S) & ~b["node_down"][:n]))
        | (b["key_up"][:n] != (up_s >= 0))
        | (f["key_started_s"][:n] != f["started_s"][:n])
        | (f["key_restarts"][:n] != f["restarts"][:n])
    )
    for slot in np.flatnonzero(mask & changed):
        refresh_pod_status(state, t.pods[slot], now)


def refresh_pod_status(state: ClusterState, pod: K8s, now: Now) -> None:
    slot = state.slots[pod["metadata"]["uid"]]
    f, b = state.table.f, state.table.b
    started_s = float(f["started_s"][slot])
    up_s = now.unix_s - started_s
    ready = bool(up_s >= READINESS_DELAY_S and not b["node_down"][slot])
    status = pod["status"]
    restarts = (status["containerStatuses"] or [{}])[0].get("restartCount", 0)
    # Most pods change nothing from one step to the next: skip rebuilding their status.
    key = (ready, up_s >= 0, started_s, restarts)
    if key == (
        b["key_ready"][slot],
        b["key_up"][slot],
        f["key_started_s"][slot],
        f["key_restarts"][slot],
    ):
        return
    b["key_ready"][slot], b["key_up"][slot] = ready, up_s >= 0
    f["key_started_s"][slot], f["key_restarts"][slot] = started_s, restarts
    f["restarts"][slot] = restarts
    # A new status document (not an in-place edit) to compare with the old one.
    containers = status["containerStatuses"] or [
        {"name": pod["spec"]["containers"][0]["name"], "restartCount": 0}
    ]
    image = pod["spec"]["containers"][0]["image"]
    digest = hashlib.sha256(image.encode()).hexdigest()
    first = {
        **containers[0],
        "ready": ready,
        "image": image,
        "imageID": f"{image}@sha256:{digest}",
        "started": up_s >= 0,
        "state": {"running": {"startedAt": rfc3339(datetime.fromtimestamp(started_s, UTC))}}
        if up_s >= 0
        else {"waiting": {"reason": "CrashLoopBackOff"}},
    }
    scheduled = [c for c in status.get("conditions", []) if c.get("type") == "PodScheduled"]
    new = {
        **status,
        "phase": "Running",
        "startTime": status.get("startTime") or rfc3339(now.at),
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}, *scheduled],
        "containerStatuses": [first, *containers[1:]],
    }
    if new != status:
        pod["status"] = new
        state.store.update("pods", pod, spec_changed=False)
