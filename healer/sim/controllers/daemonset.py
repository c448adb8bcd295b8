"""The DaemonSet controller, as kube-controller-manager runs it: one pod per eligible node.

A node is eligible when the pod template, with the automatic tolerations every
DaemonSet pod gets (``AUTO_TOLERATIONS``), tolerates its taints and matches its
``nodeSelector`` and required node affinity (``healer.sim.eligibility``). Each pod
template the DaemonSet has had is a ControllerRevision it owns (``<name>-<hash>``,
numbered by ``revision``, its ``data`` the strategic merge patch that puts the template
back, which ``kubectl rollout undo daemonset`` sends); a return to an earlier template
renumbers that revision. Pods carry the hash in ``controller-revision-hash`` and the
DaemonSet's template generation in ``pod-template-generation``.

One pass of one DaemonSet (``_sync``), in the real controller's order:

* manage: a pod is created on each eligible node without one; the pods on a node that
  may no longer run them (an untolerated ``NoExecute`` taint, a selector or affinity
  that no longer matches, a node gone) are deleted; of two pods on a node the younger
  goes, except while a surge is replacing the older (then the older goes once the new
  one is Ready, or at once if it is not Ready itself);
* ``updateStrategy: RollingUpdate``: without ``maxSurge``, old pods are deleted (to come
  back updated) while fewer than ``maxUnavailable`` nodes lack an available pod, an old
  pod that is not available being replaced at once whatever the budget; with
  ``maxSurge``, a new pod is started beside the old one on up to ``maxSurge`` nodes at
  a time, and the old one deleted once the new one is available. ``OnDelete`` replaces
  nothing: a pod someone deletes comes back at the update revision;
* status: desiredNumberScheduled, currentNumberScheduled, numberReady, numberAvailable,
  numberUnavailable, updatedNumberScheduled, numberMisscheduled, observedGeneration;
* history: revisions beyond ``revisionHistoryLimit`` that no pod uses are deleted,
  oldest first.

Decisions:

* Pods are created with the node affinity the real controller sets (one required term,
  ``matchFields metadata.name In [node]``) and are bound at once (``spec.nodeName``,
  counted in the node's requests): the affinity leaves the scheduler one choice, which
  the simulator makes for it, whatever room is left (an agent comes first on its node).
* Available means Ready: ``minReadySeconds`` is kept on the object but not waited for.
* Deletion is at once, as for the other controllers here, and a pod the rolling update
  deleted comes back updated in the same pass (the real controller's next sync, a
  moment later); the rollout's pace is the readiness delay and the tick.
"""

from __future__ import annotations

import math
from collections import defaultdict

from healer.sim.controllers.kubelet import admit
from healer.sim.controllers.revisions import revision_for, trim_history
from healer.sim.controllers.scheduler import admission, scheduled_condition
from healer.sim.daemonsets import template_generation
from healer.sim.eligibility import Verdict, judge
from healer.sim.nodes import Request
from healer.sim.objects import K8s, copy_json
from healer.sim.state import ClusterState, Now, drain, owner_ref, pod_ready

REVISION_LABEL = "controller-revision-hash"
"""The pod (and ControllerRevision) label holding its template's hash."""
GENERATION_LABEL = "pod-template-generation"
"""The pod label holding the DaemonSet's template generation it was made from."""
AUTO_TOLERATIONS: tuple[K8s, ...] = (
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
)
"""The tolerations the DaemonSet controller adds to every pod it makes: an agent on a
node stays there through a node's trouble and a cordon, where a Deployment's pod goes."""


class DaemonSetController:
    """Moves each queued DaemonSet's pods, revisions and status toward its spec."""

    def reconcile(self, state: ClusterState, now: Now) -> None:
        for key in drain(state.queues.daemonsets):
            ds = state.store.find("daemonsets", *key)
            if ds is not None:
                _sync(state, ds, now)


def pod_spec_for(ds: K8s) -> K8s:
    """The pod spec the DaemonSet's pods get before their node is chosen: the template's,
    with the automatic tolerations added (those it already has are kept as written)."""
    spec: K8s = copy_json(ds["spec"]["template"]["spec"])
    tolerations = list(spec.get("tolerations") or [])
    keys = {(t.get("key"), t.get("effect")) for t in tolerations}
    tolerations += [t for t in AUTO_TOLERATIONS if (t["key"], t["effect"]) not in keys]
    spec["tolerations"] = [dict(t) for t in tolerations]
    return spec


def verdicts(state: ClusterState, ds: K8s) -> dict[str, Verdict]:
    """Each node's judgment for the DaemonSet's pods, by node name."""
    spec = pod_spec_for(ds)
    return {n["metadata"]["name"]: judge(n, spec) for n in state.store.list("nodes")}


def _sync(state: ClusterState, ds: K8s, now: Now) -> None:
    digest = state.template_hash(ds)
    update = _update_revision(state, ds, digest, now)
    nodes = verdicts(state, ds)
    _manage(state, ds, nodes, digest, now)
    if ds["spec"]["updateStrategy"]["type"] == "RollingUpdate" and _roll(
        state, ds, nodes, digest, now
    ):
        _manage(state, ds, nodes, digest, now)  # the replaced pods come back updated
    _update_status(state, ds, nodes, digest)
    _trim_history(state, ds, update)


def _by_node(state: ClusterState, ds: K8s) -> dict[str, list[K8s]]:
    """The DaemonSet's pods by node, oldest first on each."""
    found: dict[str, list[K8s]] = defaultdict(list)
    for pod in state.owned("pods", ds):
        found[str(pod["spec"].get("nodeName") or "")].append(pod)
    for pods in found.values():
        pods.sort(key=lambda p: (p["metadata"]["creationTimestamp"], p["metadata"]["name"]))
    return found


def _is_new(pod: K8s, digest: str) -> bool:
    return bool(pod["metadata"]["labels"].get(REVISION_LABEL) == digest)


def _delete(state: ClusterState, pod: K8s) -> None:
    state.delete("pods", pod["metadata"]["namespace"], pod["metadata"]["name"])


def _manage(state: ClusterState, ds: K8s, nodes: dict[str, Verdict], digest: str, now: Now) -> None:
    """Create the missing pods, delete those that may not stay and the extras."""
    pods = _by_node(state, ds)
    surge = _surge_allowed(ds)
    for node, on_node in pods.items():
        verdict = nodes.get(node)
        if verdict is None or not verdict.may_continue:
            for pod in on_node:
                _delete(state, pod)
        elif len(on_node) > 1:
            for pod in _extras(on_node, digest, surge=surge):
                _delete(state, pod)
    for node, verdict in nodes.items():
        if verdict.should_run and not pods.get(node):
            _create_pod(state, ds, node, digest, now)


def _extras(on_node: list[K8s], digest: str, *, surge: bool) -> list[K8s]:
    """The pods on one node to delete: all but the oldest; with a surge, the oldest new
    and oldest old pod may stay together while the new one is not Ready but the old is."""
    if not surge:
        return on_node[1:]
    new = [p for p in on_node if _is_new(p, digest)]
    old = [p for p in on_node if not _is_new(p, digest)]
    doomed = new[1:] + old[1:]
    if new and old and (not pod_ready(old[0]) or pod_ready(new[0])):
        doomed.append(old[0])
    return doomed


def _surge_allowed(ds: K8s) -> bool:
    strategy = ds["spec"]["updateStrategy"]
    surge = (strategy.get("rollingUpdate") or {}).get("maxSurge", 0)
    return strategy["type"] == "RollingUpdate" and surge not in (0, "0%")


def _scaled(value: int | str, total: int) -> int:
    """An int-or-percent of ``total``, percentages rounded up (as for DaemonSets)."""
    if isinstance(value, str):
        return math.ceil(int(value.rstrip("%")) * total / 100)
    return int(value)


def _budgets(ds: K8s, desired: int) -> tuple[int, int]:
    """(maxUnavailable, maxSurge) in pods; never both 0, as the real controller has it."""
    rolling = ds["spec"]["updateStrategy"].get("rollingUpdate") or {}
    unavailable = _scaled(rolling.get("maxUnavailable", 1), desired)
    surge = _scaled(rolling.get("maxSurge", 0), desired)
    if unavailable == 0 and surge == 0:
        unavailable = 1
    return unavailable, surge


def _split(on_node: list[K8s], digest: str) -> tuple[K8s | None, K8s | None, bool]:
    """(new pod, old pod, ok) on one node; not ok with two of either kind."""
    new = [p for p in on_node if _is_new(p, digest)]
    old = [p for p in on_node if not _is_new(p, digest)]
    if len(new) > 1 or len(old) > 1:
        return None, None, False
    return (new[0] if new else None), (old[0] if old else None), True


def _roll(state: ClusterState, ds: K8s, nodes: dict[str, Verdict], digest: str, now: Now) -> bool:
    """One step of a rolling update within the DaemonSet's budgets; True when it
    deleted old pods without starting their replacements (``_manage`` starts them)."""
    pods = _by_node(state, ds)
    desired = sum(1 for v in nodes.values() if v.should_run)
    max_unavailable, max_surge = _budgets(ds, desired)
    if max_surge == 0:
        doomed = _old_to_delete(pods, digest, max_unavailable)
        for pod in doomed:
            _delete(state, pod)
        return bool(doomed)
    doomed, targets = _surge_plan(pods, nodes, digest, max_surge)
    for pod in doomed:
        _delete(state, pod)
    for node in targets:
        _create_pod(state, ds, node, digest, now)
    return False


def _old_to_delete(pods: dict[str, list[K8s]], digest: str, max_unavailable: int) -> list[K8s]:
    unavailable, replace, candidates = 0, [], []
    for node in sorted(pods):
        new, old, ok = _split(pods[node], digest)
        if not ok or (new is None) == (old is None):
            unavailable += 1
        elif new is not None:
            unavailable += 0 if pod_ready(new) else 1
        elif old is not None and not pod_ready(old):
            replace.append(old)
        elif old is not None and unavailable < max_unavailable:
            candidates.append(old)
    room = max(0, min(max_unavailable - unavailable, len(candidates)))
    return replace + candidates[:room]


def _surge_plan(
    pods: dict[str, list[K8s]], nodes: dict[str, Verdict], digest: str, max_surge: int
) -> tuple[list[K8s], list[str]]:
    """(old pods to delete, nodes to start a new pod on beside the old one)."""
    doomed: list[K8s] = []
    allowed: list[str] = []
    candidates: list[str] = []
    surging = 0
    for node in sorted(pods):
        new, old, ok = _split(pods[node], digest)
        if not ok:
            surging += 1
        elif old is None:
            continue
        elif new is None and not pod_ready(old):
            # Not available anyway: replaced at once, outside the surge budget, or
            # deleted when the node should no longer run it.
            verdict = nodes.get(node)
            if verdict is not None and verdict.should_run:
                allowed.append(node)
            else:
                doomed.append(old)
        elif new is None:
            candidates.append(node)
        elif not pod_ready(new):
            surging += 1
        else:
            doomed.append(old)
    room = max(0, min(max_surge - surging, len(candidates)))
    return doomed, allowed + candidates[:room]


def _update_revision(state: ClusterState, ds: K8s, digest: str, now: Now) -> K8s:
    revisions = state.owned("controllerrevisions", ds)
    return revision_for(state, ds, revisions, digest, REVISION_LABEL, now)


def _create_pod(state: ClusterState, ds: K8s, node: str, digest: str, now: Now) -> K8s:
    meta = ds["metadata"]
    template = ds["spec"]["template"]
    spec = pod_spec_for(ds)
    spec["affinity"] = {
        **(spec.get("affinity") or {}),
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
                ]
            }
        },
    }
    spec["nodeName"] = node
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": _free_name(state, meta["namespace"], meta["name"]),
            "namespace": meta["namespace"],
            "labels": {
                **((template.get("metadata") or {}).get("labels") or {}),
                REVISION_LABEL: digest,
                GENERATION_LABEL: str(template_generation(ds)),
            },
            "annotations": dict((template.get("metadata") or {}).get("annotations") or {}),
            "ownerReferences": [owner_ref(ds)],
        },
        "spec": spec,
        "status": {
            "phase": "Pending",
            "conditions": [scheduled_condition(now)],
            "containerStatuses": [],
        },
    }
    admission(pod)
    created = state.store.create("pods", pod, now=now.at)
    state.placement.bind((meta["namespace"], created["metadata"]["name"]), node, Request.of(pod))
    admit(state, created, f"{meta['namespace']}/{meta['name']}", now)
    return created


def _free_name(state: ClusterState, namespace: str, prefix: str) -> str:
    """``<prefix>-<suffix>`` not yet taken: a generated name that collides is drawn again,
    as a controller retries after the API server's 409 (a DaemonSet on many nodes makes
    a collision of five random letters likely enough to matter)."""
    while True:
        name = f"{prefix}-{state.suffix()}"
        if state.store.find("pods", namespace, name) is None:
            return name


def _update_status(state: ClusterState, ds: K8s, nodes: dict[str, Verdict], digest: str) -> None:
    pods = _by_node(state, ds)
    desired = current = ready = updated = misscheduled = 0
    for node, verdict in nodes.items():
        on_node = pods.get(node) or []
        if not verdict.should_run:
            misscheduled += 1 if on_node else 0
            continue
        desired += 1
        if not on_node:
            continue
        current += 1
        ready += 1 if pod_ready(on_node[0]) else 0
        updated += 1 if _is_new(on_node[0], digest) else 0
    status = {
        "currentNumberScheduled": current,
        "numberMisscheduled": misscheduled,
        "desiredNumberScheduled": desired,
        "numberReady": ready,
        "observedGeneration": ds["metadata"]["generation"],
        "updatedNumberScheduled": updated,
        "numberAvailable": ready,
        "numberUnavailable": desired - ready,
    }
    if ds.get("status") != status:
        ds["status"] = status
        state.store.update("daemonsets", ds, spec_changed=False)


def _trim_history(state: ClusterState, ds: K8s, update: K8s) -> None:
    in_use = {p["metadata"]["labels"].get(REVISION_LABEL) for p in state.owned("pods", ds)}
    in_use.add(update["metadata"]["labels"].get(REVISION_LABEL))
    trim_history(state, ds, lambda r: r["metadata"]["labels"].get(REVISION_LABEL) in in_use)
