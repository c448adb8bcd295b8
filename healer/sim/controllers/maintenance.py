"""A person's maintenance of a node, as ``kubectl drain`` then ``kubectl uncordon`` do it.

The drain cordons the node (``spec.unschedulable``) and evicts its pods through the
Eviction API, so disruption budgets are respected: an eviction a budget refuses (429)
is tried again on the next pass, as kubectl retries every five seconds. DaemonSet pods
are left where they are (``--ignore-daemonsets``). When the maintenance ends the node
is uncordoned. Every step goes through the API verbs, as the person's kubectl would,
so a watch (and healer) sees the writes.

A benign event: nothing is wrong with the cluster, and nothing should be healed.
"""

from __future__ import annotations

from typing import Protocol

from healer.sim.objects import ApiError, K8s
from healer.sim.state import ClusterState, Drain, Now, owner_kind
from healer.sim.verbs import PatchesObjects

STRATEGIC = "application/strategic-merge-patch+json"


class NodeApi(PatchesObjects, Protocol):
    """The API verbs a person's kubectl uses to drain a node (the cluster's own)."""

    def evict_pod(self, namespace: str, name: str, body: K8s, *, dry_run: bool) -> K8s: ...


def start_drain(api: NodeApi, state: ClusterState, node: str, until_s: float, now: Now) -> None:
    """Cordon ``node`` and evict what can be evicted now; the rest on later passes."""
    api.patch_object("nodes", "", node, {"spec": {"unschedulable": True}}, STRATEGIC, dry_run=False)
    state.faults.drains[node] = Drain(until_s)
    continue_drains(api, state, now)


def continue_drains(api: NodeApi, state: ClusterState, now: Now) -> None:
    """One pass over the drains in progress: evict, and uncordon those that are over."""
    for node, drain in list(state.faults.drains.items()):
        if now.unix_s >= drain.until_s:
            del state.faults.drains[node]
            if state.store.find("nodes", "", node) is not None:
                api.patch_object(
                    "nodes", "", node, {"spec": {"unschedulable": None}}, STRATEGIC, dry_run=False
                )
            continue
        for namespace, name in state.placement.pods_on(node):
            pod = state.store.find("pods", namespace, name)
            if pod is None or owner_kind(pod) == "DaemonSet":
                continue
            try:
                api.evict_pod(namespace, name, {"metadata": {"name": name}}, dry_run=False)
            except ApiError as exc:
                if exc.code != 429:  # a budget said no: try again on the next pass
                    raise
