"""The garbage collector: background cascading deletion of what a deleted owner owned.

A deleted Deployment's ReplicaSets (a StatefulSet's ControllerRevisions and pods) go on
the next pass, and their pods with them (the
ReplicaSets' deletions queue their own uids in turn), as with Kubernetes' default
``propagationPolicy: Background``.
"""

from __future__ import annotations

from healer.sim.state import ClusterState, Now


class GarbageCollector:
    def reconcile(self, state: ClusterState, now: Now) -> None:
        """Delete the ReplicaSets, then the pods, whose owner is gone."""
        queue = state.queues.deleted_owners
        while queue:
            uid = queue.pop(0)
            for resource in ("replicasets", "controllerrevisions", "pods"):
                for obj in state.store.owned(resource, uid):
                    meta = obj["metadata"]
                    state.delete(resource, meta["namespace"], meta["name"])
