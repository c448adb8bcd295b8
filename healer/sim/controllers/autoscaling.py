"""The HorizontalPodAutoscaler controller: every HPA's sync, once a tick.

Each pod's CPU use is measured since the controller's previous pass (as metrics-server
rates a counter), compared with its requests, and the recommendation (with the
scale-down stabilisation window, ``healer.sim.hpa``) is written to the Deployment's
``spec.replicas``; the status and its conditions are written only when they changed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from healer.sim import hpa
from healer.sim.objects import K8s, rfc3339
from healer.sim.state import ClusterState, Now, pod_ready

Floats = np.ndarray[Any, np.dtype[np.float64]]


class AutoscalerController:
    def __init__(self) -> None:
        self._history: dict[str, hpa.History] = {}  # by HPA uid

    def reconcile(self, state: ClusterState, now: Now) -> None:
        now_s = now.unix_s
        t, n = state.table, state.table.size
        live = t.live()
        mark_t, cpu = t.f["hpa_t"][:n], t.f["cpu_seconds"][:n]
        measured = live & ~np.isnan(mark_t) & (now_s > mark_t)
        with np.errstate(invalid="ignore", divide="ignore"):
            usage = np.where(measured, (cpu - t.f["hpa_cpu"][:n]) / (now_s - mark_t), np.nan)
        mark_t[live] = now_s
        t.f["hpa_cpu"][:n][live] = cpu[live]
        for autoscaler in state.store.list("horizontalpodautoscalers"):
            self._sync(state, autoscaler, usage, now)

    def _sync(self, state: ClusterState, autoscaler: K8s, usage: Floats, now: Now) -> None:
        spec, meta = autoscaler["spec"], autoscaler["metadata"]
        ref = spec["scaleTargetRef"]
        resource = _SCALABLE.get(str(ref.get("kind")))
        dep = state.store.find(resource, meta["namespace"], ref["name"]) if resource else None
        at = rfc3339(now.at)
        if dep is None or resource is None:
            _write_status(state, autoscaler, None, None, None, at)
            return
        pods = [
            hpa.PodUsage(
                ready=pod_ready(p),
                cpu_cores=_usage(state, usage, p),
                request_cores=sum(
                    hpa.cpu_cores(((c.get("resources") or {}).get("requests") or {}).get("cpu"))
                    for c in p["spec"]["containers"]
                ),
            )
            for p in state.pods_of(dep)
        ]
        target = hpa.target_utilisation_pct(spec)
        current = dep["spec"]["replicas"]
        window = ((spec.get("behavior") or {}).get("scaleDown") or {}).get(
            "stabilizationWindowSeconds", hpa.DOWNSCALE_WINDOW_S
        )
        advice = hpa.recommend(
            current=current,
            pods=pods if target is not None else [],
            target_pct=target or 80,
            min_replicas=spec.get("minReplicas", 1),
            max_replicas=spec["maxReplicas"],
            now_s=now.unix_s,
            history=self._history.setdefault(meta["uid"], hpa.History()),
            window_s=float(window),
        )
        if advice.replicas != current and current > 0:
            dep["spec"]["replicas"] = advice.replicas
            state.store.update(resource, dep, spec_changed=True)
            autoscaler.setdefault("status", {})["lastScaleTime"] = at
        _write_status(state, autoscaler, dep, advice, current, at)


_SCALABLE = {"Deployment": "deployments", "StatefulSet": "statefulsets"}
"""The kinds an HPA here may scale, by ``scaleTargetRef.kind``: their resource."""


def _usage(state: ClusterState, usage: Floats, pod: K8s) -> float | None:
    slot = state.slots.get(pod["metadata"]["uid"])
    if slot is None:
        return None  # waiting for a node: no container, no usage
    value = float(usage[slot]) if slot < len(usage) else np.nan
    return None if np.isnan(value) else value


def _write_status(
    state: ClusterState,
    autoscaler: K8s,
    dep: K8s | None,
    advice: hpa.Recommendation | None,
    current: int | None,
    now: str,
) -> None:
    old = autoscaler.get("status") or {}
    metric_ok = advice is not None and advice.utilisation_pct is not None
    conditions = [
        ("AbleToScale", dep is not None, "SucceededRescale" if dep else "FailedGetScale"),
        (
            "ScalingActive",
            metric_ok,
            "ValidMetricFound" if metric_ok else "FailedGetResourceMetric",
        ),
        (
            "ScalingLimited",
            bool(advice and advice.limited),
            (advice.limited if advice and advice.limited else "DesiredWithinRange"),
        ),
    ]
    status: K8s = {
        "observedGeneration": autoscaler["metadata"]["generation"],
        "currentReplicas": (dep or {}).get("status", {}).get("replicas", current or 0),
        "desiredReplicas": advice.replicas if advice else 0,
        "conditions": [_condition(old, kind, ok, reason, now) for kind, ok, reason in conditions],
    }
    if old.get("lastScaleTime"):
        status["lastScaleTime"] = old["lastScaleTime"]
    if advice is not None and advice.utilisation_pct is not None:
        status["currentMetrics"] = [
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "current": {"averageUtilization": advice.utilisation_pct},
                },
            }
        ]
    if old != status:
        autoscaler["status"] = status
        state.store.update("horizontalpodautoscalers", autoscaler, spec_changed=False)


def _condition(old: K8s, kind: str, ok: bool, reason: str, now: str) -> K8s:
    previous = next((c for c in old.get("conditions", []) if c["type"] == kind), None)
    status = "True" if ok else "False"
    unchanged = previous is not None and previous["status"] == status
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": "",
        "lastTransitionTime": previous["lastTransitionTime"] if unchanged and previous else now,
    }
