"""The Deployment controller, as Kubernetes runs it, and the Deployment status it keeps.

A pod template change makes a new ReplicaSet with the next
``deployment.kubernetes.io/revision`` (a return to an earlier template reuses that
ReplicaSet with a new number); rolling updates progress one pass at a time within
``maxSurge`` and ``maxUnavailable``; a paused Deployment still scales; idle ReplicaSets
beyond ``revisionHistoryLimit`` are deleted. ``status.observedGeneration`` catches up on
the status controller's next pass (``DeploymentStatus``), not at once.
"""

from __future__ import annotations

import math

from healer.sim.objects import K8s, copy_json, rfc3339
from healer.sim.state import (
    REVISION,
    ClusterState,
    Now,
    drain,
    owner_ref,
    pod_ready,
    revision,
)

# Deployment annotations the controller does not copy onto its ReplicaSets.
_NOT_COPIED = frozenset(
    {
        REVISION,
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "deployment.kubernetes.io/revision-history",
        "kubectl.kubernetes.io/last-applied-configuration",
    }
)


class DeploymentController:
    """Rolls each queued Deployment's ReplicaSets toward its spec."""

    def reconcile(self, state: ClusterState, now: Now) -> None:
        for key in drain(state.queues.deployments):
            dep = state.store.find("deployments", *key)
            if dep is not None:
                _reconcile(state, dep, now)


class DeploymentStatus:
    """Writes each queued Deployment's status from its ReplicaSets' pods."""

    def reconcile(self, state: ClusterState, now: Now) -> None:
        for key in drain(state.queues.statuses):
            dep = state.store.find("deployments", *key)
            if dep is not None:
                _update_status(state, dep, now)


def _reconcile(state: ClusterState, dep: K8s, now: Now) -> None:
    sets = state.owned("replicasets", dep)
    if dep["spec"].get("paused") and sets:
        _scale_paused(state, dep, sets)
        return
    new_rs = _current_replicaset(state, dep, sets, now)
    number = str(revision(new_rs))
    annotations = dep["metadata"].setdefault("annotations", {})
    if annotations.get(REVISION) != number:
        annotations[REVISION] = number  # the controller stamps the Deployment too
        state.store.update("deployments", dep, spec_changed=False)
    old = [rs for rs in sets if rs is not new_rs]
    replicas = dep["spec"]["replicas"]
    if not any(rs["spec"]["replicas"] for rs in old):
        _set_replicas(state, new_rs, replicas)
    else:
        _roll(state, dep, new_rs, old, replicas)
    limit = dep["spec"].get("revisionHistoryLimit", 10)
    idle = sorted(
        (rs for rs in old if rs["spec"]["replicas"] == 0 and not state.owned("pods", rs)),
        key=revision,
    )
    for rs in idle[: max(0, len(idle) - limit)]:
        state.store.delete("replicasets", rs["metadata"]["namespace"], rs["metadata"]["name"])


def _scale_paused(state: ClusterState, dep: K8s, sets: list[K8s]) -> None:
    """A paused Deployment makes no new ReplicaSet and rolls nothing, but still scales.

    As the controller does, the new replica count is given to the ReplicaSets that run
    pods, the newest absorbing the difference.
    """
    active = sorted((rs for rs in sets if rs["spec"]["replicas"] > 0), key=revision)
    if not active:
        active = [max(sets, key=revision)]
    extra = dep["spec"]["replicas"] - sum(rs["spec"]["replicas"] for rs in active)
    newest = active[-1]
    _set_replicas(state, newest, max(0, newest["spec"]["replicas"] + extra))


def _current_replicaset(state: ClusterState, dep: K8s, sets: list[K8s], now: Now) -> K8s:
    """The ReplicaSet of the current template, created or renumbered if need be."""
    pod_hash = state.template_hash(dep)
    top = max((revision(rs) for rs in sets), default=0)
    match = next(
        (rs for rs in sets if rs["metadata"]["labels"].get("pod-template-hash") == pod_hash),
        None,
    )
    if match is None:
        return _create_replicaset(state, dep, pod_hash, top + 1, now)
    if revision(match) != top:
        match["metadata"]["annotations"][REVISION] = str(top + 1)
        state.store.update("replicasets", match, spec_changed=False)
    return match


def _create_replicaset(state: ClusterState, dep: K8s, pod_hash: str, number: int, now: Now) -> K8s:
    meta = dep["metadata"]
    template = copy_json(dep["spec"]["template"])
    template["metadata"].setdefault("labels", {})["pod-template-hash"] = pod_hash
    selector = copy_json(dep["spec"]["selector"])
    selector.setdefault("matchLabels", {})["pod-template-hash"] = pod_hash
    rs = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": f"{meta['name']}-{pod_hash}",
            "namespace": meta["namespace"],
            "labels": dict(template["metadata"]["labels"]),
            "annotations": {
                # The controller copies the Deployment's annotations (change-cause, ...).
                **{
                    k: v for k, v in (meta.get("annotations") or {}).items() if k not in _NOT_COPIED
                },
                REVISION: str(number),
                "deployment.kubernetes.io/desired-replicas": str(dep["spec"]["replicas"]),
            },
            "ownerReferences": [owner_ref(dep)],
        },
        "spec": {"replicas": 0, "selector": selector, "template": template},
        "status": {"replicas": 0, "readyReplicas": 0, "availableReplicas": 0},
    }
    return state.store.create("replicasets", rs, now=now.at)


def _roll(state: ClusterState, dep: K8s, new_rs: K8s, old: list[K8s], replicas: int) -> None:
    """One pass of the rolling update, within maxSurge and maxUnavailable."""
    strategy = dep["spec"]["strategy"].get("rollingUpdate", {})
    surge = resolve(strategy.get("maxSurge", "25%"), replicas, round_up=True)
    unavailable = resolve(strategy.get("maxUnavailable", "25%"), replicas, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1  # the API server rejects both zero; behave as if one were one
    everything = [new_rs, *old]
    total = sum(rs["spec"]["replicas"] for rs in everything)
    room = replicas + surge - total
    if new_rs["spec"]["replicas"] < replicas and room > 0:
        _set_replicas(state, new_rs, min(replicas, new_rs["spec"]["replicas"] + room))
    ready = sum(_ready_pods(state, rs) for rs in everything)
    removable = ready - (replicas - unavailable)
    for rs in sorted(old, key=revision):
        unready = rs["spec"]["replicas"] - _ready_pods(state, rs)
        cut = min(rs["spec"]["replicas"], max(0, removable) + max(0, unready))
        if cut:
            _set_replicas(state, rs, rs["spec"]["replicas"] - cut)
            removable -= max(0, cut - max(0, unready))


def _set_replicas(state: ClusterState, rs: K8s, replicas: int) -> None:
    if rs["spec"]["replicas"] != replicas:
        rs["spec"]["replicas"] = replicas
        state.store.update("replicasets", rs, spec_changed=True)


def _ready_pods(state: ClusterState, rs: K8s) -> int:
    return sum(1 for p in state.owned("pods", rs) if pod_ready(p))


def resolve(value: int | str, replicas: int, *, round_up: bool) -> int:
    """``maxSurge`` or ``maxUnavailable`` as a pod count: a percentage of ``replicas``."""
    if isinstance(value, int):
        return value
    share = float(value.rstrip("%")) / 100.0 * replicas
    return math.ceil(share) if round_up else math.floor(share)


def _update_status(state: ClusterState, dep: K8s, now: Now) -> None:
    sets = state.owned("replicasets", dep)
    pod_hash = state.template_hash(dep)
    pods = [p for rs in sets for p in state.owned("pods", rs)]
    updated = [p for p in pods if p["metadata"]["labels"].get("pod-template-hash") == pod_hash]
    ready = sum(1 for p in pods if pod_ready(p))
    replicas = dep["spec"]["replicas"]
    complete = len(updated) == replicas == len(pods) and ready >= replicas
    max_unavailable = resolve(
        dep["spec"]["strategy"].get("rollingUpdate", {}).get("maxUnavailable", "25%"),
        replicas,
        round_up=False,
    )
    at = rfc3339(now.at)
    status = {
        "observedGeneration": dep["metadata"]["generation"],
        "replicas": len(pods),
        "updatedReplicas": len(updated),
        "readyReplicas": ready,
        "availableReplicas": ready,
        "unavailableReplicas": max(0, replicas - ready),
        "conditions": [
            _condition(
                dep,
                "Available",
                ready >= replicas - max_unavailable,
                "MinimumReplicasAvailable",
                at,
            ),
            _condition(
                dep,
                "Progressing",
                True,
                "NewReplicaSetAvailable" if complete else "ReplicaSetUpdated",
                at,
            ),
        ],
    }
    if dep.get("status") != status:
        dep["status"] = status
        state.store.update("deployments", dep, spec_changed=False)


def _condition(dep: K8s, kind: str, ok: bool, reason: str, now: str) -> K8s:
    previous = next(
        (c for c in dep.get("status", {}).get("conditions", []) if c["type"] == kind), None
    )
    status = "True" if ok else "False"
    if previous is not None and previous["status"] == status and previous["reason"] == reason:
        # As the controller's SetDeploymentCondition: an unchanged condition is kept as it
        # is, so that a Deployment nothing happened to is not rewritten.
        return dict(previous)
    changed = previous is None or previous["status"] != status
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "lastUpdateTime": now,
        "lastTransitionTime": now
        if changed or previous is None
        else previous["lastTransitionTime"],
    }
