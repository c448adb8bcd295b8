"""Where a target lives in the Kubernetes API, by its kind.

A ``WorkloadRef`` names its kind (``Deployment``); actions build their paths here, so a
new target kind is one row in ``_RESOURCES``, not a path string in every action.
"""

from __future__ import annotations

from healer.errors import PermanentActionError
from healer.types import TargetKind, WorkloadRef

_RESOURCES: dict[TargetKind, tuple[str, str]] = {
    TargetKind.DEPLOYMENT: ("/apis/apps/v1", "deployments"),
    TargetKind.STATEFULSET: ("/apis/apps/v1", "statefulsets"),
    TargetKind.DAEMONSET: ("/apis/apps/v1", "daemonsets"),
    TargetKind.NODE: ("/api/v1", "nodes"),
}
"""API prefix and resource of each target kind."""


def kind_of(target: WorkloadRef) -> TargetKind:
    """The target's kind; PermanentActionError for a kind healer cannot act on."""
    try:
        return TargetKind(target.kind)
    except ValueError:
        known = ", ".join(k.value for k in TargetKind)
        raise PermanentActionError(
            f"{target}: healer cannot act on a {target.kind} (only {known})"
        ) from None


def object_path(target: WorkloadRef) -> str:
    """``/apis/apps/v1/namespaces/NS/deployments/NAME`` for a Deployment;
    ``/api/v1/nodes/NAME`` for a Node, which is cluster-scoped."""
    if kind_of(target) is TargetKind.NODE:
        return node_path(target.name)
    prefix, resource = _RESOURCES[kind_of(target)]
    return f"{prefix}/namespaces/{target.namespace}/{resource}/{target.name}"


def pod_path(namespace: str, name: str) -> str:
    return f"/api/v1/namespaces/{namespace}/pods/{name}"


def node_path(name: str) -> str:
    return f"/api/v1/nodes/{name}"
