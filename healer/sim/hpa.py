"""The HorizontalPodAutoscaler controller's algorithm, on CPU utilisation.

It follows the Kubernetes controller (pkg/controller/podautoscaler) for the one metric
the simulator measures, CPU against the pods' requests:

1. Utilisation is the ready pods' CPU usage over the last sync period divided by their
   CPU request, averaged. ``ratio = utilisation / target``.
2. Within the 10% tolerance (``|1 - ratio| <= 0.1``) nothing changes.
3. Otherwise ``desired = ceil(ratio * ready_pods)``. When scaling up while some pods are
   not ready yet, those pods count as using nothing and the ratio is recomputed, so a
   rollout's starting pods do not cause a second scale-up; if that recomputed ratio
   falls inside the tolerance or turns the decision around, nothing changes.
4. Scale-down is stabilised: the recommendation used is the highest of the last
   5 minutes (``behavior.scaleDown.stabilizationWindowSeconds``, default 300), so a
   dip does not shed replicas that the next peak needs.
5. Scale-up is rate limited by the default policies: per 15 s at most double, or add 4
   pods, whichever is more.
6. The result is clamped to ``[minReplicas, maxReplicas]``. A target whose
   ``spec.replicas`` is 0 is left alone (autoscaling is disabled, as in Kubernetes).

With no usable metric the current count is kept, clamped to the bounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

TOLERANCE = 0.1
"""Kubernetes' --horizontal-pod-autoscaler-tolerance default."""
DOWNSCALE_WINDOW_S = 300.0
"""Default scale-down stabilisation window (behavior.scaleDown.stabilizationWindowSeconds)."""
SCALE_UP_PERIOD_S = 15.0
SCALE_UP_PODS = 4
SCALE_UP_PERCENT = 100
"""Default scale-up policies: 4 pods or 100% per 15 s, whichever allows more."""


@dataclass(frozen=True)
class PodUsage:
    ready: bool
    cpu_cores: float | None
    """Average CPU usage over the last period, cores; None when not measured yet."""
    request_cores: float


@dataclass
class Recommendation:
    replicas: int
    utilisation_pct: int | None
    limited: str | None = None
    """Why the bounds or rate limits changed the recommendation, if they did."""


@dataclass
class History:
    """What the controller remembers of one HPA between syncs."""

    recommendations: list[tuple[float, int]] = field(default_factory=list)
    scale_ups: list[tuple[float, int]] = field(default_factory=list)
    """(time, replicas added), for the scale-up rate limit."""


def utilisation_pct(pods: list[PodUsage]) -> int | None:
    """Average CPU utilisation of ready, measured pods, percent of request."""
    measured = [p for p in pods if p.ready and p.cpu_cores is not None and p.request_cores > 0]
    if not measured:
        return None
    usage = sum(p.cpu_cores or 0.0 for p in measured)
    requested = sum(p.request_cores for p in measured)
    return math.floor(usage / requested * 100)


def raw_desired(current: int, pods: list[PodUsage], target_pct: int) -> int:
    """Steps 1 to 3 above: the count the metric asks for, before stabilisation and limits."""
    measured = [p for p in pods if p.ready and p.cpu_cores is not None and p.request_cores > 0]
    if not measured:
        return current
    usage = sum(p.cpu_cores or 0.0 for p in measured)
    requested = sum(p.request_cores for p in measured)
    ratio = usage / requested * 100 / target_pct
    if abs(1.0 - ratio) <= TOLERANCE:
        return current
    waiting = [p for p in pods if p not in measured]
    if ratio > 1.0 and waiting:
        requested += sum(p.request_cores for p in waiting)
        new_ratio = usage / requested * 100 / target_pct
        if abs(1.0 - new_ratio) <= TOLERANCE or new_ratio < 1.0:
            return current
        return math.ceil(new_ratio * (len(measured) + len(waiting)))
    return math.ceil(ratio * len(measured))


def recommend(
    *,
    current: int,
    pods: list[PodUsage],
    target_pct: int,
    min_replicas: int,
    max_replicas: int,
    now_s: float,
    history: History,
    window_s: float = DOWNSCALE_WINDOW_S,
) -> Recommendation:
    """One sync of one HPA; records its recommendation in ``history``."""
    utilisation = utilisation_pct(pods)
    if current == 0:
        return Recommendation(0, utilisation)
    desired = raw_desired(current, pods, target_pct) if utilisation is not None else current
    history.recommendations = [
        (t, r) for t, r in history.recommendations if now_s - t < window_s
    ] + [(now_s, desired)]
    limited = None
    if desired < current:
        # Stabilise: never go below the highest recommendation of the window.
        desired = min(current, max(r for _, r in history.recommendations))
    history.scale_ups = [(t, n) for t, n in history.scale_ups if now_s - t < SCALE_UP_PERIOD_S]
    if desired > current:
        base = current - sum(n for _, n in history.scale_ups)
        ceiling = max(base * (100 + SCALE_UP_PERCENT) // 100, base + SCALE_UP_PODS)
        if desired > ceiling:
            desired, limited = max(current, ceiling), "ScaleUpLimit"
    if desired > max_replicas:
        desired, limited = max_replicas, "TooManyReplicas"
    elif desired < min_replicas:
        desired, limited = min_replicas, "TooFewReplicas"
    if desired > current:
        history.scale_ups.append((now_s, desired - current))
    return Recommendation(desired, utilisation, limited)


def target_utilisation_pct(spec: dict[str, object]) -> int | None:
    """The CPU averageUtilization target of an autoscaling/v2 spec, if it has one."""
    metrics = spec.get("metrics")
    for metric in metrics if isinstance(metrics, list) else []:
        resource = metric.get("resource") if isinstance(metric, dict) else None
        if metric.get("type") == "Resource" and isinstance(resource, dict):
            target = resource.get("target") or {}
            value = target.get("averageUtilization") if isinstance(target, dict) else None
            if resource.get("name") == "cpu" and isinstance(value, int):
                return value
    return None


def cpu_cores(quantity: object) -> float:
    """A CPU quantity (``250m``, ``0.5``, ``1``) in cores; 0 when absent or unparsable."""
    text = str(quantity or "0")
    try:
        return float(text[:-1]) / 1000.0 if text.endswith("m") else float(text)
    except ValueError:
        return 0.0
