"""The resource types the simulated API server serves, and the rules of the simple ones.

One table drives routing, discovery (legacy and aggregated), server-side printing and
field selectors, so a resource cannot be served without being discoverable, or the
other way round. Deployments, StatefulSets, DaemonSets, ReplicaSets, ControllerRevisions,
Pods and Events are handled by the cluster's controllers; HorizontalPodAutoscalers,
PodDisruptionBudgets and Leases are plain stored objects whose defaults and validation
live here, mirroring the API server's (a 422 ``Invalid`` names the field, as ``kubectl``
users see it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from healer.sim.objects import ApiError, K8s


@dataclass(frozen=True)
class Subresource:
    name: str
    group_version: str
    kind: str
    verbs: tuple[str, ...]


@dataclass(frozen=True)
class Kind:
    """One resource type: where it is served, what it is called, what it supports."""

    group: str
    """API group; empty for the core group."""
    version: str
    resource: str
    kind: str
    verbs: tuple[str, ...]
    short_names: tuple[str, ...] = ()
    subresources: tuple[Subresource, ...] = ()
    fields: tuple[str, ...] = ()
    """Field selectors the kind indexes beyond metadata.name and metadata.namespace."""
    categories: tuple[str, ...] = ()
    namespaced: bool = True
    """False for a cluster-scoped kind (Node): served at ``/api/v1/nodes/{name}``, kept
    under the namespace ``""``."""

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """``deployments.apps``, as the API server names a resource in messages."""
        return f"{self.resource}.{self.group}" if self.group else self.resource

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"


_RW = ("create", "delete", "get", "list", "patch", "update", "watch")

KINDS: tuple[Kind, ...] = (
    Kind(
        "",
        "v1",
        "pods",
        "Pod",
        ("delete", "get", "list", "watch"),
        ("po",),
        (Subresource("eviction", "policy/v1", "Eviction", ("create",)),),
        ("spec.nodeName", "spec.restartPolicy", "status.phase", "status.podIP"),
        ("all",),
    ),
    Kind(
        "",
        "v1",
        "events",
        "Event",
        ("create", "delete", "get", "list", "watch"),
        ("ev",),
        fields=(
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ),
    ),
    Kind(
        "apps",
        "v1",
        "deployments",
        "Deployment",
        _RW,
        ("deploy",),
        (Subresource("scale", "autoscaling/v1", "Scale", ("get", "patch", "update")),),
        categories=("all",),
    ),
    Kind(
        "apps",
        "v1",
        "replicasets",
        "ReplicaSet",
        ("get", "list", "watch"),
        ("rs",),
        categories=("all",),
    ),
    Kind(
        "apps",
        "v1",
        "statefulsets",
        "StatefulSet",
        _RW,
        ("sts",),
        (
            Subresource("scale", "autoscaling/v1", "Scale", ("get", "patch", "update")),
            Subresource("status", "apps/v1", "StatefulSet", ("get", "patch", "update")),
        ),
        categories=("all",),
    ),
    Kind(
        "apps",
        "v1",
        "daemonsets",
        "DaemonSet",
        _RW,
        ("ds",),
        (Subresource("status", "apps/v1", "DaemonSet", ("get", "patch", "update")),),
        categories=("all",),
    ),
    Kind(
        "apps",
        "v1",
        "controllerrevisions",
        "ControllerRevision",
        ("delete", "get", "list", "watch"),
    ),
    Kind(
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        _RW,
        ("hpa",),
        categories=("all",),
    ),
    Kind("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", _RW, ("pdb",)),
    Kind("coordination.k8s.io", "v1", "leases", "Lease", _RW),
    # ---- Nodes: cluster-scoped; the status subresource is the kubelet's to write.
    Kind(
        "",
        "v1",
        "nodes",
        "Node",
        _RW,
        ("no",),
        (Subresource("status", "v1", "Node", ("get", "patch", "update")),),
        ("spec.unschedulable",),
        namespaced=False,
    ),
    # ---- CustomResourceDefinitions: the kinds they define are served too (sim.crds).
    Kind(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        _RW,
        ("crd", "crds"),
        (
            Subresource(
                "status",
                "apiextensions.k8s.io/v1",
                "CustomResourceDefinition",
                ("get", "patch", "update"),
            ),
        ),
        categories=("api-extensions",),
        namespaced=False,
    ),
)

# ---- GitOps: Argo CD and Flux, as a cluster with them installed serves them ----------
GITOPS = (
    Kind(
        "argoproj.io",
        "v1alpha1",
        "applications",
        "Application",
        _RW,
        ("app", "apps"),
        (Subresource("status", "argoproj.io/v1alpha1", "Application", ("get", "patch", "update")),),
    ),
    Kind(
        "kustomize.toolkit.fluxcd.io",
        "v1",
        "kustomizations",
        "Kustomization",
        _RW,
        ("ks",),
        (
            Subresource(
                "status",
                "kustomize.toolkit.fluxcd.io/v1",
                "Kustomization",
                ("get", "patch", "update"),
            ),
        ),
    ),
    Kind(
        "source.toolkit.fluxcd.io",
        "v1",
        "gitrepositories",
        "GitRepository",
        _RW,
        ("gitrepo",),
        (
            Subresource(
                "status", "source.toolkit.fluxcd.io/v1", "GitRepository", ("get", "patch", "update")
            ),
        ),
    ),
)
KINDS = KINDS + GITOPS

BY_RESOURCE = {k.resource: k for k in KINDS}
GROUP_VERSIONS = tuple(dict.fromkeys(k.group_version for k in KINDS))
PLAIN = (
    "horizontalpodautoscalers",
    "poddisruptionbudgets",
    "leases",
    "nodes",
    "customresourcedefinitions",
    *(k.resource for k in GITOPS),
)
"""Kinds stored as written (after defaults and validation), with no controller of their own
beyond status: the cluster's generic create, replace, patch and delete serve them."""

INITIAL_STATUS: dict[str, K8s] = {
    # The Go types' required status fields, as a new object reads before its controller runs.
    "horizontalpodautoscalers": {"currentReplicas": 0, "desiredReplicas": 0},
    "poddisruptionbudgets": {
        "disruptionsAllowed": 0,
        "currentHealthy": 0,
        "desiredHealthy": 0,
        "expectedPods": 0,
    },
}


def lookup(group_version: str, resource: str) -> Kind:
    """The kind served at ``group_version``/``resource``; 404 as the API server answers."""
    kind = BY_RESOURCE.get(resource)
    if kind is None or kind.group_version != group_version:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    return kind


def invalid(kind: Kind, name: object, field: str, detail: str) -> ApiError:
    return ApiError(
        422,
        "Invalid",
        f'{kind.kind}.{kind.group or "core"} "{name}" is invalid: {field}: {detail}',
        {
            "name": str(name),
            "group": kind.group,
            "kind": kind.kind,
            "causes": [{"reason": "FieldValueInvalid", "message": detail, "field": field}],
        },
    )


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def int_or_percent(value: Any) -> bool:
    if _int(value):
        return bool(value >= 0)
    if isinstance(value, str) and value.endswith("%"):
        return value[:-1].isdigit()
    return False


def default_and_validate(kind: Kind, obj: K8s) -> None:
    """Fill the API server's defaults into ``obj`` and reject what it would reject."""
    meta = obj.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    if not isinstance(name, str) or not name:
        raise invalid(kind, name, "metadata.name", "Required value")
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        raise invalid(kind, name, "spec", "Invalid value: must be an object")
    {
        "horizontalpodautoscalers": _hpa,
        "poddisruptionbudgets": _pdb,
        "leases": _lease,
        "nodes": _node,
        "applications": _application,
        "kustomizations": _kustomization,
        "gitrepositories": _git_repository,
    }[kind.resource](kind, name, spec)


def _hpa(kind: Kind, name: str, spec: K8s) -> None:
    target = spec.get("scaleTargetRef")
    if not isinstance(target, dict) or not target.get("kind") or not target.get("name"):
        raise invalid(kind, name, "spec.scaleTargetRef", "Required value: kind and name")
    spec.setdefault("minReplicas", 1)
    low, high = spec["minReplicas"], spec.get("maxReplicas")
    if not _int(low) or low < 1:
        raise invalid(kind, name, "spec.minReplicas", f"Invalid value: {low!r}: must be >= 1")
    if not _int(high) or high < low:
        raise invalid(
            kind, name, "spec.maxReplicas", f"Invalid value: {high!r}: must be >= minReplicas"
        )
    metrics = spec.setdefault(
        "metrics",
        # The API server's default: 80% average CPU utilisation.
        [
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 80},
                },
            }
        ],
    )
    if not isinstance(metrics, list):
        raise invalid(kind, name, "spec.metrics", "Invalid value: must be a list")
    for i, metric in enumerate(metrics):
        if not isinstance(metric, dict) or metric.get("type") not in (
            "Resource",
            "ContainerResource",
            "Pods",
            "Object",
            "External",
        ):
            raise invalid(kind, name, f"spec.metrics[{i}].type", "Unsupported value")
        target = (metric.get("resource") or {}).get("target") or {}
        utilisation = target.get("averageUtilization")
        if utilisation is not None and (not _int(utilisation) or utilisation < 1):
            raise invalid(
                kind,
                name,
                f"spec.metrics[{i}].resource.target.averageUtilization",
                f"Invalid value: {utilisation!r}: must be greater than 0",
            )


def _pdb(kind: Kind, name: str, spec: K8s) -> None:
    given = [key for key in ("minAvailable", "maxUnavailable") if spec.get(key) is not None]
    if len(given) > 1:
        raise invalid(
            kind, name, "spec", "Invalid value: minAvailable and maxUnavailable cannot be both set"
        )
    for key in given:
        if not int_or_percent(spec[key]):
            raise invalid(
                kind,
                name,
                f"spec.{key}",
                f"Invalid value: {spec[key]!r}: must be a non-negative integer or a percentage",
            )
    if (
        "selector" in spec
        and spec["selector"] is not None
        and not isinstance(spec["selector"], dict)
    ):
        raise invalid(kind, name, "spec.selector", "Invalid value: must be a label selector")
    spec.setdefault("unhealthyPodEvictionPolicy", "IfHealthyBudget")


def _lease(kind: Kind, name: str, spec: K8s) -> None:
    for key in ("leaseDurationSeconds", "leaseTransitions"):
        value = spec.get(key)
        if value is not None and (not _int(value) or value < 0):
            raise invalid(kind, name, f"spec.{key}", f"Invalid value: {value!r}: must be >= 0")
    holder = spec.get("holderIdentity")
    if holder is not None and not isinstance(holder, str):
        raise invalid(kind, name, "spec.holderIdentity", "Invalid value: must be a string")


# ---- Nodes ---------------------------------------------------------------------------

_TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def _node(kind: Kind, name: str, spec: K8s) -> None:
    """A Node's spec: ``unschedulable`` a boolean, each taint a key and a known effect."""
    unschedulable = spec.get("unschedulable")
    if unschedulable is not None and not isinstance(unschedulable, bool):
        raise invalid(kind, name, "spec.unschedulable", "Invalid value: must be a boolean")
    taints = spec.get("taints")
    if taints is None:
        return
    if not isinstance(taints, list):
        raise invalid(kind, name, "spec.taints", "Invalid value: must be a list")
    for i, taint in enumerate(taints):
        if not isinstance(taint, dict) or not taint.get("key"):
            raise invalid(kind, name, f"spec.taints[{i}].key", "Required value")
        if taint.get("effect") not in _TAINT_EFFECTS:
            raise invalid(
                kind,
                name,
                f"spec.taints[{i}].effect",
                f"Unsupported value: {taint.get('effect')!r}: supported values: "
                + ", ".join(f'"{e}"' for e in _TAINT_EFFECTS),
            )


# ---- GitOps kinds: the checks of their CRDs' schemas ------------------------------------


def _required(kind: Kind, name: str, spec: K8s, path: str, expected: type) -> Any:
    """The value at ``path`` (dotted, under spec) when it has the ``expected`` type; a
    422 naming the field otherwise, as a CRD's structural schema answers."""
    value: Any = spec
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if value is None:
        raise invalid(kind, name, f"spec.{path}", "Required value")
    if not isinstance(value, expected) or isinstance(value, bool) != (expected is bool):
        raise invalid(kind, name, f"spec.{path}", f"Invalid value: must be a {expected.__name__}")
    return value


def _application(kind: Kind, name: str, spec: K8s) -> None:
    """Argo CD requires a project and a destination; this cluster reads ``source``."""
    _required(kind, name, spec, "project", str)
    _required(kind, name, spec, "destination", dict)
    _required(kind, name, spec, "source.repoURL", str)
    automated = (spec.get("syncPolicy") or {}).get("automated")
    if automated is not None and not isinstance(automated, dict):
        raise invalid(kind, name, "spec.syncPolicy.automated", "Invalid value: must be an object")


def _kustomization(kind: Kind, name: str, spec: K8s) -> None:
    _required(kind, name, spec, "interval", str)
    _required(kind, name, spec, "prune", bool)
    _required(kind, name, spec, "sourceRef.kind", str)
    _required(kind, name, spec, "sourceRef.name", str)


def _git_repository(kind: Kind, name: str, spec: K8s) -> None:
    _required(kind, name, spec, "interval", str)
    _required(kind, name, spec, "url", str)
