"""What the simulated Git syncer writes and judges: Argo CD's and Flux's status fields,
conditions and Events, the health of a live object, and Go durations.

Split from the syncer (``healer.sim.controllers.gitsync``) so that the controller reads
as the loop it is; everything here is a pure function of its arguments, or a write of
one status or one Event to the store.
"""

from __future__ import annotations

import re
from typing import Any

from healer.sim.gitrender import split_image
from healer.sim.objects import K8s, copy_json, rfc3339
from healer.sim.state import ClusterState, Now

WORKLOADS = ("deployments", "statefulsets", "daemonsets")
_HEALTH_ORDER = ("Healthy", "Suspended", "Progressing", "Missing", "Degraded", "Unknown")
_HISTORY_LIMIT = 10  # Argo CD's default revisionHistoryLimit
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def subset(wanted: Any, live: Any) -> bool:
    """Whether ``live`` has every field ``wanted`` sets, with its value (lists position
    by position)."""
    if isinstance(wanted, dict):
        return isinstance(live, dict) and all(
            key in live and subset(value, live[key]) for key, value in wanted.items()
        )
    if isinstance(wanted, list):
        return (
            isinstance(live, list)
            and len(live) == len(wanted)
            and all(subset(w, v) for w, v in zip(wanted, live, strict=True))
        )
    if isinstance(wanted, int | float) and isinstance(live, int | float):
        return bool(wanted == live) and isinstance(wanted, bool) == isinstance(live, bool)
    return bool(wanted == live)


def health(resource: str, live: K8s | None) -> str:
    """Argo CD's health of one live object of ``resource``: Missing, Progressing,
    Degraded or Healthy (a workload by its rollout, anything else Healthy)."""
    if live is None:
        return "Missing"
    if resource not in WORKLOADS:
        return "Healthy"
    spec, status = live["spec"], live.get("status") or {}
    if status.get("observedGeneration", 0) < live["metadata"].get("generation", 1):
        return "Progressing"
    conditions = status.get("conditions") or []
    if any(c.get("reason") == "ProgressDeadlineExceeded" for c in conditions):
        return "Degraded"
    if resource == "daemonsets":
        wanted = status.get("desiredNumberScheduled", 0)
        updated, ready = status.get("updatedNumberScheduled", 0), status.get("numberAvailable", 0)
    else:
        wanted = spec.get("replicas", 1)
        updated, ready = status.get("updatedReplicas", 0), status.get("availableReplicas", 0)
        if resource == "statefulsets":
            ready = status.get("readyReplicas", 0)
        if status.get("replicas", 0) > updated:
            return "Progressing"  # old replicas pending termination
    return "Healthy" if updated >= wanted and ready >= updated else "Progressing"


def worst(healths: list[str]) -> str:
    return max(healths, key=_HEALTH_ORDER.index, default="Healthy")


def images(manifests: list[K8s]) -> list[str]:
    """The images the manifests' pod templates run, sorted (Argo CD's summary)."""
    found = set()
    for manifest in manifests:
        pod = ((manifest.get("spec") or {}).get("template") or {}).get("spec") or {}
        for container in (pod.get("containers") or []) + (pod.get("initContainers") or []):
            if isinstance(container, dict) and isinstance(container.get("image"), str):
                found.add(container["image"])
    return sorted(found, key=split_image)


def condition(kind: str, message: str, status: K8s, now: Now) -> K8s:
    """An Argo CD condition, keeping its transition time while it holds."""
    for old in status.get("conditions") or []:
        if old.get("type") == kind and old.get("message") == message:
            return dict(old)
    return {"type": kind, "message": message, "lastTransitionTime": rfc3339(now.at)}


def ready(ok: bool, reason: str, message: str, status: K8s, now: Now) -> K8s:
    """Flux's Ready condition, keeping its transition time while its status holds."""
    value = "True" if ok else "False"
    old: K8s = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    since = old.get("lastTransitionTime") if old.get("status") == value else None
    return {
        "type": "Ready",
        "status": value,
        "reason": reason,
        "message": message,
        "observedGeneration": status.get("observedGeneration", 0),
        "lastTransitionTime": since or rfc3339(now.at),
    }


def record_history(status: K8s, revision: str, source: K8s, now: Now) -> None:
    history = status.setdefault("history", [])
    at = rfc3339(now.at)
    entry_id = (history[-1]["id"] + 1) if history else 0
    history.append(
        {
            "revision": revision,
            "deployedAt": at,
            "deployStartedAt": at,
            "id": entry_id,
            "source": copy_json(source),
        }
    )
    del history[:-_HISTORY_LIMIT]


def parse_duration(text: str) -> float:
    """A Go duration (``1m``, ``5m0s``, ``1h30m``), seconds; 60 s when unreadable, so
    that a bad interval slows the reconcile down rather than stopping it."""
    parts = _DURATION.findall(text)
    if not parts or "".join(a + b for a, b in parts) != text:
        return 60.0
    return max(1.0, sum(float(value) * _UNIT_S[unit] for value, unit in parts))


def announce(state: ClusterState, app: K8s, operation: K8s, now: Now) -> None:
    """The Events Argo CD's controller posts on the Application after a sync."""
    revision = operation["operation"]["sync"]["revision"]
    event(state, app, "OperationStarted", f"Initiated automated sync to '{revision}'", now)
    ok = operation["phase"] == "Succeeded"
    outcome = "succeeded" if ok else f"failed: {operation['message']}"
    message = f"Sync operation to {revision} {outcome}"
    event(state, app, "OperationCompleted", message, now, warning=not ok)


def event(
    state: ClusterState, owner: K8s, reason: str, message: str, now: Now, *, warning: bool = False
) -> None:
    """A core/v1 Event on ``owner``, named as the API server's clients name them (the
    object's name, a dot, a hexadecimal time)."""
    meta = owner["metadata"]
    stamp = rfc3339(now.at)
    stamp_ns = int(now.unix_s * 1e9)
    name = f"{meta['name']}.{stamp_ns:x}"
    while state.store.find("events", meta["namespace"], name) is not None:
        stamp_ns += 1  # two events in one instant: the next nanosecond
        name = f"{meta['name']}.{stamp_ns:x}"
    source = "argocd-application-controller"
    if owner["kind"] != "Application":
        source = "kustomize-controller"
    body = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": owner["apiVersion"],
            "kind": owner["kind"],
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta.get("resourceVersion"),
        },
        "reason": reason,
        "message": message,
        "type": "Warning" if warning else "Normal",
        "source": {"component": source},
        "reportingComponent": source,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
    state.store.create("events", body, now=now.at)


def write_status(state: ClusterState, resource: str, obj: K8s, status: K8s) -> None:
    """Write ``status`` when it changed (an unchanged one makes no new resourceVersion)."""
    if obj.get("status") != status:
        obj["status"] = status
        state.store.update(resource, obj, spec_changed=False)
