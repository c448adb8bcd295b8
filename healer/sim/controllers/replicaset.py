"""The ReplicaSet controller: as many pods of the template as the spec asks for.

Missing pods are created (and handed to the kubelet to start); surplus pods are deleted,
unready ones first, then the youngest, as Kubernetes' controller ranks them. The status
counts the pods and the ready ones, written only when it changed.
"""

from __future__ import annotations

from healer.sim.controllers.scheduler import admission, place
from healer.sim.objects import K8s, copy_json
from healer.sim.state import ClusterState, Now, drain, owner_name, owner_ref, pod_ready


class ReplicaSetController:
    def reconcile(self, state: ClusterState, now: Now) -> None:
        for key in drain(state.queues.replicasets):
            rs = state.store.find("replicasets", *key)
            if rs is not None:
                self._reconcile(state, rs, now)

    def _reconcile(self, state: ClusterState, rs: K8s, now: Now) -> None:
        pods = state.owned("pods", rs)
        want = rs["spec"]["replicas"]
        for _ in range(want - len(pods)):
            self._create_pod(state, rs, now)
        if len(pods) > want:
            # Like the ReplicaSet controller: unready pods go first, then the youngest.
            # A pod waiting for a node (no container) ranks as the youngest.
            doomed = sorted(
                pods,
                key=lambda p: (
                    pod_ready(p),
                    -state.container(p).started_s if state.running(p) else -float("inf"),
                ),
            )
            for pod in doomed[: len(pods) - want]:
                state.delete("pods", pod["metadata"]["namespace"], pod["metadata"]["name"])
        pods = state.owned("pods", rs)
        ready = sum(1 for p in pods if pod_ready(p))
        status = {
            "replicas": len(pods),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "observedGeneration": rs["metadata"]["generation"],
        }
        if rs.get("status") != status:
            rs["status"] = status
            state.store.update("replicasets", rs, spec_changed=False)

    def _create_pod(self, state: ClusterState, rs: K8s, now: Now) -> None:
        template = copy_json(rs["spec"]["template"])
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{rs['metadata']['name']}-{state.suffix()}",
                "namespace": rs["metadata"]["namespace"],
                "labels": dict(template["metadata"].get("labels", {})),
                "annotations": dict(template["metadata"].get("annotations", {})),
                "ownerReferences": [owner_ref(rs)],
            },
            "spec": template["spec"],
            "status": {"phase": "Pending", "conditions": [], "containerStatuses": []},
        }
        admission(pod)
        created = state.store.create("pods", pod, now=now.at)
        workload = f"{rs['metadata']['namespace']}/{owner_name(rs)}"
        place(state, created, workload, now)
