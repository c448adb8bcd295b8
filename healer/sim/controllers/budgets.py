"""The disruption controller: the status of every PodDisruptionBudget, from its pods.

The arithmetic (how many may be disrupted) is ``healer.sim.disruption``'s; this pass
finds each budget's pods and their controllers' replica counts, and writes a status only
when it changed. The eviction subresource calls ``update_budget`` too, so that it
decides on the pods as they are at the request.
"""

from __future__ import annotations

from healer.sim.disruption import budget_status
from healer.sim.objects import K8s, rfc3339, selector_matches
from healer.sim.state import ClusterState, Now, deployment_of, pod_ready


class DisruptionController:
    def reconcile(self, state: ClusterState, now: Now) -> None:
        for pdb in state.store.list("poddisruptionbudgets"):
            update_budget(state, pdb, now)


def update_budget(state: ClusterState, pdb: K8s, now: Now) -> None:
    """The disruption controller's pass over one budget."""
    ns = pdb["metadata"]["namespace"]
    selector = pdb["spec"].get("selector")
    pods = [
        p
        for p in state.store.list("pods", ns)
        if selector_matches(selector, p["metadata"].get("labels") or {})
    ]
    controllers = {deployment_of(p) for p in pods if p["metadata"].get("ownerReferences")}
    replicas = sum(
        d["spec"]["replicas"]
        for d in (state.workload(ns, name) for name in controllers)
        if d is not None
    )
    status = budget_status(
        pdb,
        healthy=sum(1 for p in pods if pod_ready(p)),
        matched=len(pods),
        controller_replicas=replicas,
        now=rfc3339(now.at),
    )
    if pdb.get("status") != status:
        pdb["status"] = status
        state.store.update("poddisruptionbudgets", pdb, spec_changed=False)
