"""The simulated cluster's write verbs, one protocol each, for the code that writes
through them.

A release, a drain and the Git syncer write the way a client of the API server would,
through the cluster's own verbs (``Cluster`` in ``cluster.py``), so that validation,
resourceVersions and watches see them. Each user is typed against the verbs it uses,
built from these, so a verb's signature is written once beside the cluster's.
"""

from __future__ import annotations

from typing import Any, Protocol

from healer.sim.objects import K8s


class PatchesWorkloads(Protocol):
    """Patch a workload (apps/v1) as ``kubectl patch`` does, rollouts following."""

    def patch_workload(
        self,
        resource: str,
        namespace: str,
        name: str,
        patch: Any,
        content_type: str,
        *,
        dry_run: bool = False,
    ) -> K8s: ...


class PatchesObjects(Protocol):
    """Patch any other object: a node, a syncer's custom object."""

    def patch_object(
        self,
        resource: str,
        namespace: str,
        name: str,
        patch: Any,
        content_type: str,
        *,
        dry_run: bool,
    ) -> K8s: ...
