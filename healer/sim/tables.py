"""Server-side printing: the ``meta.k8s.io/v1`` Tables that ``kubectl get`` asks for.

kubectl requests lists with ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io`` and
prints the columns the server chooses; the columns here are those of the real API
server's printers (pkg/printers/internalversion), ages counted on the simulated clock.
Kinds without a printer get the server's default: Name and Created At.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from healer.sim.objects import K8s

Column = tuple[str, str, str]  # name, type, format
Cells = Callable[[K8s, datetime], list[object]]


def human_duration(seconds: float) -> str:
    """kubectl's age format (apimachinery's duration.HumanDuration)."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes, hours = s // 60, s // 3600
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y{days}d" if days else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def _age(timestamp: object, now: datetime) -> str:
    if not isinstance(timestamp, str) or not timestamp:
        return "<unknown>"
    then = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    return human_duration((now - then).total_seconds())


def _created(obj: K8s, now: datetime) -> str:
    return _age(obj["metadata"].get("creationTimestamp"), now)


def _deployment(obj: K8s, now: datetime) -> list[object]:
    spec, status = obj["spec"], obj.get("status") or {}
    return [
        obj["metadata"]["name"],
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
        status.get("updatedReplicas", 0),
        status.get("availableReplicas", 0),
        _created(obj, now),
    ]


def _replicaset(obj: K8s, now: datetime) -> list[object]:
    status = obj.get("status") or {}
    return [
        obj["metadata"]["name"],
        obj["spec"].get("replicas", 0),
        status.get("replicas", 0),
        status.get("readyReplicas", 0),
        _created(obj, now),
    ]


def _statefulset(obj: K8s, now: datetime) -> list[object]:
    status = obj.get("status") or {}
    ready = f"{status.get('readyReplicas', 0)}/{obj['spec'].get('replicas', 0)}"
    return [obj["metadata"]["name"], ready, _created(obj, now)]


def _daemonset(obj: K8s, now: datetime) -> list[object]:
    status = obj.get("status") or {}
    selector = (obj["spec"]["template"].get("spec") or {}).get("nodeSelector") or {}
    return [
        obj["metadata"]["name"],
        status.get("desiredNumberScheduled", 0),
        status.get("currentNumberScheduled", 0),
        status.get("numberReady", 0),
        status.get("updatedNumberScheduled", 0),
        status.get("numberAvailable", 0),
        ",".join(f"{k}={v}" for k, v in sorted(selector.items())) or "<none>",
        _created(obj, now),
    ]


def _controllerrevision(obj: K8s, now: datetime) -> list[object]:
    owner = next(
        (r for r in obj["metadata"].get("ownerReferences") or [] if r.get("controller")), None
    )
    controller = "<none>"
    if owner is not None:
        group = str(owner.get("apiVersion", "")).rpartition("/")[0]
        kind = str(owner.get("kind", "")).lower()
        controller = (
            f"{kind}.{group}/{owner.get('name')}" if group else f"{kind}/{owner.get('name')}"
        )
    return [obj["metadata"]["name"], controller, obj.get("revision", 0), _created(obj, now)]


def _pod(obj: K8s, now: datetime) -> list[object]:
    statuses = (obj.get("status") or {}).get("containerStatuses") or []
    ready = sum(1 for c in statuses if c.get("ready"))
    restarts = sum(int(c.get("restartCount", 0)) for c in statuses)
    reason = obj.get("status", {}).get("phase", "Pending")
    for c in statuses:
        waiting = (c.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason"):
            reason = waiting["reason"]
    status = obj.get("status") or {}
    return [
        obj["metadata"]["name"],
        f"{ready}/{len(obj['spec'].get('containers', []))}",
        status.get("reason") or reason,
        restarts,
        _created(obj, now),
        status.get("podIP") or "<none>",
        obj["spec"].get("nodeName") or "<none>",
        "<none>",
        "<none>",
    ]


def _event(obj: K8s, now: datetime) -> list[object]:
    involved = obj.get("involvedObject") or {}
    last = (
        obj.get("lastTimestamp") or obj.get("eventTime") or obj["metadata"].get("creationTimestamp")
    )
    return [
        _age(last, now),
        obj.get("type", ""),
        obj.get("reason", ""),
        f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}",
        str(obj.get("message", "")).strip(),
    ]


def _hpa(obj: K8s, now: datetime) -> list[object]:
    spec, status = obj["spec"], obj.get("status") or {}
    ref = spec.get("scaleTargetRef") or {}
    target = next(
        (
            m["resource"]["target"].get("averageUtilization")
            for m in spec.get("metrics", [])
            if m.get("type") == "Resource" and (m.get("resource") or {}).get("name") == "cpu"
        ),
        None,
    )
    current = next(
        (
            m["resource"]["current"].get("averageUtilization")
            for m in status.get("currentMetrics") or []
            if m.get("type") == "Resource"
        ),
        None,
    )
    shown = "<unknown>" if current is None else f"{current}%"
    return [
        obj["metadata"]["name"],
        f"{ref.get('kind')}/{ref.get('name')}",
        f"cpu: {shown}/{target}%" if target is not None else "<none>",
        spec.get("minReplicas", 1),
        spec.get("maxReplicas"),
        status.get("currentReplicas", 0),
        _created(obj, now),
    ]


def _pdb(obj: K8s, now: datetime) -> list[object]:
    spec = obj["spec"]
    return [
        obj["metadata"]["name"],
        str(spec["minAvailable"]) if spec.get("minAvailable") is not None else "N/A",
        str(spec["maxUnavailable"]) if spec.get("maxUnavailable") is not None else "N/A",
        (obj.get("status") or {}).get("disruptionsAllowed", 0),
        _created(obj, now),
    ]


def _lease(obj: K8s, now: datetime) -> list[object]:
    return [obj["metadata"]["name"], obj["spec"].get("holderIdentity", ""), _created(obj, now)]


def _node(obj: K8s, now: datetime) -> list[object]:
    """The node printer's cells: Ready as Ready, NotReady or Unknown, and
    SchedulingDisabled when cordoned; roles from ``node-role.kubernetes.io/`` labels."""
    status = obj.get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    state = {"True": "Ready", "False": "NotReady"}.get(str((ready or {}).get("status")), "Unknown")
    if obj["spec"].get("unschedulable"):
        state += ",SchedulingDisabled"
    labels = obj["metadata"].get("labels") or {}
    roles = sorted(k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/"))
    addresses = {str(a.get("type")): a.get("address") for a in status.get("addresses") or []}
    info = status.get("nodeInfo") or {}
    return [
        obj["metadata"]["name"],
        state,
        ",".join(roles) or "<none>",
        _created(obj, now),
        info.get("kubeletVersion", ""),
        addresses.get("InternalIP") or "<none>",
        addresses.get("ExternalIP") or "<none>",
        info.get("osImage") or "<unknown>",
        info.get("kernelVersion") or "<unknown>",
        info.get("containerRuntimeVersion") or "<unknown>",
    ]


# ---- GitOps kinds: the additionalPrinterColumns of Argo CD's and Flux's CRDs -----------


def _application(obj: K8s, now: datetime) -> list[object]:
    """Argo CD's columns: Sync Status, Health Status; Revision and Project with -o wide.
    Its CRD declares no Age column, so none is shown (as with the real one)."""
    status = obj.get("status") or {}
    return [
        obj["metadata"]["name"],
        (status.get("sync") or {}).get("status"),
        (status.get("health") or {}).get("status"),
        (status.get("sync") or {}).get("revision"),
        obj["spec"].get("project"),
    ]


def _ready(obj: K8s) -> K8s:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == "Ready"), {})


def _kustomization_row(obj: K8s, now: datetime) -> list[object]:
    ready = _ready(obj)
    return [obj["metadata"]["name"], _created(obj, now), ready.get("status"), ready.get("message")]


def _git_repository_row(obj: K8s, now: datetime) -> list[object]:
    ready = _ready(obj)
    return [
        obj["metadata"]["name"],
        obj["spec"].get("url"),
        _created(obj, now),
        ready.get("status"),
        ready.get("message"),
    ]


def _default(obj: K8s, now: datetime) -> list[object]:
    return [obj["metadata"]["name"], obj["metadata"].get("creationTimestamp")]


_NAME: Column = ("Name", "string", "name")
_AGE: Column = ("Age", "string", "")
PRINTERS: dict[str, tuple[list[Column], Cells]] = {
    "deployments": (
        [
            _NAME,
            ("Ready", "string", ""),
            ("Up-to-date", "integer", ""),
            ("Available", "integer", ""),
            _AGE,
        ],
        _deployment,
    ),
    "replicasets": (
        [
            _NAME,
            ("Desired", "integer", ""),
            ("Current", "integer", ""),
            ("Ready", "integer", ""),
            _AGE,
        ],
        _replicaset,
    ),
    "statefulsets": ([_NAME, ("Ready", "string", ""), _AGE], _statefulset),
    "daemonsets": (
        [
            _NAME,
            ("Desired", "integer", ""),
            ("Current", "integer", ""),
            ("Ready", "integer", ""),
            ("Up-to-date", "integer", ""),
            ("Available", "integer", ""),
            ("Node Selector", "string", ""),
            _AGE,
        ],
        _daemonset,
    ),
    "controllerrevisions": (
        [_NAME, ("Controller", "string", ""), ("Revision", "integer", ""), _AGE],
        _controllerrevision,
    ),
    "pods": (
        [
            _NAME,
            ("Ready", "string", ""),
            ("Status", "string", ""),
            ("Restarts", "string", ""),
            _AGE,
            ("IP", "string", ""),
            ("Node", "string", ""),
            ("Nominated Node", "string", ""),
            ("Readiness Gates", "string", ""),
        ],
        _pod,
    ),
    "events": (
        [
            ("Last Seen", "string", ""),
            ("Type", "string", ""),
            ("Reason", "string", ""),
            ("Object", "string", ""),
            ("Message", "string", ""),
        ],
        _event,
    ),
    "horizontalpodautoscalers": (
        [
            _NAME,
            ("Reference", "string", ""),
            ("Targets", "string", ""),
            ("MinPods", "string", ""),
            ("MaxPods", "integer", ""),
            ("Replicas", "integer", ""),
            _AGE,
        ],
        _hpa,
    ),
    "poddisruptionbudgets": (
        [
            _NAME,
            ("Min Available", "string", ""),
            ("Max Unavailable", "string", ""),
            ("Allowed Disruptions", "integer", ""),
            _AGE,
        ],
        _pdb,
    ),
    "leases": ([_NAME, ("Holder", "string", ""), _AGE], _lease),
    "nodes": (
        [
            _NAME,
            ("Status", "string", ""),
            ("Roles", "string", ""),
            _AGE,
            ("Version", "string", ""),
            ("Internal-IP", "string", ""),
            ("External-IP", "string", ""),
            ("OS-Image", "string", ""),
            ("Kernel-Version", "string", ""),
            ("Container-Runtime", "string", ""),
        ],
        _node,
    ),
    "applications": (
        [
            _NAME,
            ("Sync Status", "string", ""),
            ("Health Status", "string", ""),
            ("Revision", "string", ""),
            ("Project", "string", ""),
        ],
        _application,
    ),
    "kustomizations": (
        [_NAME, _AGE, ("Ready", "string", ""), ("Status", "string", "")],
        _kustomization_row,
    ),
    "gitrepositories": (
        [_NAME, ("URL", "string", ""), _AGE, ("Ready", "string", ""), ("Status", "string", "")],
        _git_repository_row,
    ),
}
WIDE = {"pods": 4, "nodes": 5, "applications": 2}
"""How many of a printer's last columns are for ``-o wide`` only (priority 1)."""


def table(
    resource: str,
    items: list[K8s],
    *,
    now: datetime,
    resource_version: str,
    include_object: str = "PartialObjectMetadata",
    printer: tuple[list[Column], Cells, list[int]] | None = None,
) -> K8s:
    """The Table a real API server answers for ``items`` of ``resource``; ``printer``:
    the columns, cells and column priorities of a custom kind (``crds.printer``)."""
    columns, cells = PRINTERS.get(resource, ([_NAME, ("Created At", "date", "")], _default))
    wide_from = len(columns) - WIDE.get(resource, 0)
    priorities = [int(i >= wide_from) for i in range(len(columns))]
    if printer is not None:
        columns, cells, priorities = printer
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": [
            {
                "name": name,
                "type": kind,
                "format": fmt,
                "description": "",
                "priority": priorities[i],
            }
            for i, (name, kind, fmt) in enumerate(columns)
        ],
        "rows": [
            {"cells": cells(item, now), "object": _row_object(item, include_object)}
            for item in items
        ],
    }


def _row_object(item: K8s, include_object: str) -> K8s | None:
    if include_object == "None":
        return None
    if include_object == "Object":
        return item
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": item["metadata"],
    }
