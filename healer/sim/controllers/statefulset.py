"""The StatefulSet controller, as kube-controller-manager runs it.

Pods have stable names, ``<name>-<ordinal>``. Each pod template the StatefulSet has had
is kept as a ControllerRevision it owns (``<name>-<hash>``, numbered by ``revision``,
its ``data`` the strategic merge patch that puts the template back, as ``kubectl
rollout undo`` applies it); a return to an earlier template renumbers that revision
rather than making a new one. Pods carry their revision's name in the
``controller-revision-hash`` label.

One pass of one StatefulSet (``_sync``), in the real controller's order:

* replicas: missing ordinals below ``spec.replicas`` are created and ordinals at or
  above it deleted, highest first. With ``podManagementPolicy: OrderedReady`` one pod
  at a time, each waiting for every lower ordinal to be Ready (a pod that is not Ready
  holds everything, the rollback caveat Kubernetes documents); ``Parallel`` does all
  at once;
* ``updateStrategy: RollingUpdate``: the pods with ordinal >= ``partition`` not at the
  update revision are replaced, highest ordinal first, one at a time, each waiting for
  the replaced pod to be Ready; a pod created below the partition gets the current
  revision. ``OnDelete`` replaces nothing: a pod someone deletes comes back at the
  update revision;
* status: replicas, readyReplicas, availableReplicas, currentReplicas, updatedReplicas,
  currentRevision, updateRevision, observedGeneration; the current revision becomes the
  update revision once a rolling update has every pod updated and Ready;
* history: revisions beyond ``revisionHistoryLimit`` that no pod uses, oldest first,
  are deleted.

Decisions:

* Deletion is at once (no graceful termination), as for the other controllers here, so
  a replaced pod comes back on the next pass; the rollout's pace is the readiness delay
  and the tick, as a real rollout's is the probes'.
* Revision names use the simulator's template hash (``state.template_hash``), which
  ignores what a client's round trip adds (``creationTimestamp: null``): kubectl's undo
  sends the stored template back and must find the same revision.
"""

from __future__ import annotations

from healer.sim.controllers.revisions import revision_for, template_of, trim_history
from healer.sim.controllers.scheduler import admission, place
from healer.sim.objects import K8s
from healer.sim.state import ClusterState, Now, drain, owner_ref, pod_ready

REVISION_LABEL = "controller-revision-hash"
"""The pod label naming its ControllerRevision."""
HASH_LABEL = "controller.kubernetes.io/hash"
"""The ControllerRevision label holding its template's hash."""
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"


class StatefulSetController:
    """Moves each queued StatefulSet's pods, revisions and status toward its spec."""

    def reconcile(self, state: ClusterState, now: Now) -> None:
        for key in drain(state.queues.statefulsets):
            sts = state.store.find("statefulsets", *key)
            if sts is not None:
                _sync(state, sts, now)


def ordinal(pod: K8s) -> int:
    """The ordinal in a StatefulSet pod's name (``web-2`` is 2); -1 for another name."""
    suffix = pod["metadata"]["name"].rsplit("-", 1)[-1]
    return int(suffix) if suffix.isdigit() else -1


def _sync(state: ClusterState, sts: K8s, now: Now) -> None:
    revisions = state.owned("controllerrevisions", sts)
    update = _update_revision(state, sts, revisions, now)
    revisions = state.owned("controllerrevisions", sts)
    current_name = (sts.get("status") or {}).get("currentRevision")
    current = next((r for r in revisions if r["metadata"]["name"] == current_name), update)
    pods = {ordinal(p): p for p in state.owned("pods", sts)}
    if _replicas(state, sts, pods, current, update, now):
        _roll(state, sts, pods, update)
    _update_status(state, sts, current, update)
    _trim_history(state, sts, current, update)


def _update_revision(state: ClusterState, sts: K8s, revisions: list[K8s], now: Now) -> K8s:
    return revision_for(state, sts, revisions, state.template_hash(sts), HASH_LABEL, now)


def _replicas(
    state: ClusterState,
    sts: K8s,
    pods: dict[int, K8s],
    current: K8s,
    update: K8s,
    now: Now,
) -> bool:
    """Create the missing ordinals and delete the condemned ones; False when this pass
    must stop there (OrderedReady waiting for a pod, or having changed one)."""
    spec = sts["spec"]
    replicas = spec["replicas"]
    ordered = spec.get("podManagementPolicy", "OrderedReady") == "OrderedReady"
    partition = _partition(sts)
    for i in range(replicas):
        pod = pods.get(i)
        if pod is None:
            rolling = spec["updateStrategy"]["type"] == "RollingUpdate"
            revision = current if rolling and i < partition else update
            pods[i] = _create_pod(state, sts, revision, i, now)
            if ordered:
                return False
        elif ordered and not pod_ready(pod):
            return False
    for i in sorted((i for i in pods if i >= replicas or i < 0), reverse=True):
        meta = pods.pop(i)["metadata"]
        state.delete("pods", meta["namespace"], meta["name"])
        if ordered:
            return False
    return True


def _roll(state: ClusterState, sts: K8s, pods: dict[int, K8s], update: K8s) -> None:
    """One step of a rolling update: the highest ordinal at or above the partition not
    at the update revision is deleted (to come back updated), once every pod above it
    is updated and Ready."""
    if sts["spec"]["updateStrategy"]["type"] != "RollingUpdate":
        return
    wanted = update["metadata"]["name"]
    for i in range(sts["spec"]["replicas"] - 1, _partition(sts) - 1, -1):
        pod = pods.get(i)
        if pod is None:
            return
        if pod["metadata"]["labels"].get(REVISION_LABEL) != wanted:
            state.delete("pods", pod["metadata"]["namespace"], pod["metadata"]["name"])
            return
        if not pod_ready(pod):
            return


def _partition(sts: K8s) -> int:
    strategy = sts["spec"]["updateStrategy"]
    return int((strategy.get("rollingUpdate") or {}).get("partition", 0))


def _create_pod(state: ClusterState, sts: K8s, revision: K8s, i: int, now: Now) -> K8s:
    meta = sts["metadata"]
    name = f"{meta['name']}-{i}"
    template = template_of(revision)
    spec = template["spec"]
    spec["hostname"] = name
    if sts["spec"].get("serviceName"):
        spec["subdomain"] = sts["spec"]["serviceName"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": {
                **((template.get("metadata") or {}).get("labels") or {}),
                REVISION_LABEL: revision["metadata"]["name"],
                POD_NAME_LABEL: name,
                POD_INDEX_LABEL: str(i),
            },
            "annotations": dict((template.get("metadata") or {}).get("annotations") or {}),
            "ownerReferences": [owner_ref(sts)],
        },
        "spec": spec,
        "status": {"phase": "Pending", "conditions": [], "containerStatuses": []},
    }
    admission(pod)
    created = state.store.create("pods", pod, now=now.at)
    place(state, created, f"{meta['namespace']}/{meta['name']}", now)
    return created


def _update_status(state: ClusterState, sts: K8s, current: K8s, update: K8s) -> None:
    pods = state.owned("pods", sts)
    at = {p["metadata"]["name"]: p["metadata"]["labels"].get(REVISION_LABEL) for p in pods}
    ready = sum(1 for p in pods if pod_ready(p))
    current_name, update_name = current["metadata"]["name"], update["metadata"]["name"]
    updated = sum(1 for r in at.values() if r == update_name)
    status = {
        "observedGeneration": sts["metadata"]["generation"],
        "replicas": len(pods),
        "readyReplicas": ready,
        "availableReplicas": ready,
        "currentReplicas": sum(1 for r in at.values() if r == current_name),
        "updatedReplicas": updated,
        "currentRevision": current_name,
        "updateRevision": update_name,
        "collisionCount": 0,
    }
    rolling = sts["spec"]["updateStrategy"]["type"] == "RollingUpdate"
    if rolling and updated == len(pods) == ready == sts["spec"]["replicas"]:
        # The rolling update is complete: the update revision becomes the current one.
        status["currentRevision"], status["currentReplicas"] = update_name, updated
    if sts.get("status") != status:
        sts["status"] = status
        state.store.update("statefulsets", sts, spec_changed=False)


def _trim_history(state: ClusterState, sts: K8s, current: K8s, update: K8s) -> None:
    in_use = {p["metadata"]["labels"].get(REVISION_LABEL) for p in state.owned("pods", sts)}
    in_use |= {current["metadata"]["name"], update["metadata"]["name"]}
    trim_history(state, sts, lambda r: r["metadata"]["name"] in in_use)
