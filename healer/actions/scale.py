"""Scale up: what ``kubectl scale`` sends, or a raised floor for the autoscaler.

Without a HorizontalPodAutoscaler, a merge patch of the Deployment's (or the
StatefulSet's) ``scale`` subresource. With one, a merge patch of the HPA's
``minReplicas``: the autoscaler keeps control and will not undo the change (a plain
scale it would).

Decisions (sizing, moved here from the planner unchanged):

- Scale sizes for the larger of two needs. The measured demand, when the caller
  measured it (``Demand``): the requests expected once new replicas serve, times CPU
  per request, over the CPU per replica to aim at (the HPA's target utilisation, or
  1 / the playbook's headroom), rounded up; it looks ahead of a rising surge. And the
  CPU deviation: replicas x (cpu / baseline) x headroom, which brings CPU per replica
  back to the level the workload was healthy at (what verification checks). Either way
  at least one more than now, at most ``max_step_factor`` (the playbook's) and
  ``max_scale_factor`` (the global guard's) times now, then clamped to the global
  bounds and the HPA's maxReplicas. Without a usable CPU deviation it doubles, bounded
  the same way. With an HPA the target is its minReplicas.
"""

from __future__ import annotations

import math
from datetime import datetime

from pydantic import Field

from healer.actions.base import (
    ActionSpec,
    Concrete,
    Params,
    PlanInputs,
    Reads,
    Request,
    Rule,
    ScaleTarget,
    Settings,
    path_of,
)
from healer.actions.targets import object_path
from healer.config import GuardSettings
from healer.types import (
    ActionKind,
    Demand,
    Finding,
    JsonObject,
    Signal,
    TargetKind,
    WorkloadRef,
    WorkloadState,
)

MERGE = "application/merge-patch+json"
_EPSILON = 1e-9
"""Float noise allowance before rounding: 2 x 1.5 x 1.0 must ceil to 3, not 4."""
_FALLBACK_FACTOR = 2
"""Without a CPU deviation to size from, double: a step any overload plausibly needs."""


class ScaleSettings(Settings):
    headroom: float = Field(default=1.25, ge=1.0, le=10.0)
    """scale: replicas needed to bring CPU back to baseline, times this. 1.25 aims at 80%
    of the normal load per replica, so a little more traffic does not re-trigger."""
    max_step_factor: float = Field(default=3.0, gt=1.0, le=10.0)
    """scale: never more than this many times the current replicas in one action, so a
    wrong diagnosis cannot blow up the cluster's capacity in one step."""


class ScaleParams(Params):
    replicas: int
    """The replicas to set, or the HPA's new minReplicas (its range is the API server's
    to judge: it answers 422, as it would kubectl)."""
    from_replicas: int | None = None
    """The replicas before (the HPA's minReplicas before, with an HPA)."""
    hpa: str | None = None
    """The HorizontalPodAutoscaler whose floor is raised instead of scaling directly."""


def scale_target(
    state: WorkloadState,
    finding: Finding,
    params: ScaleSettings,
    settings: GuardSettings,
    demand: Demand | None = None,
) -> tuple[ScaleTarget, str]:
    """The replicas a scale should ask for, and a clause saying how they were sized."""
    current = state.replicas
    by_demand = _demand_replicas(demand, state, params.headroom)
    by_cpu = _wanted_replicas(current, finding, params.headroom)
    cpu_usable = finding.deviation(Signal.CPU) is not None and not by_cpu[1].startswith("no ")
    if by_demand is not None and (not cpu_usable or by_demand[0] >= by_cpu[0]):
        wanted, why = by_demand
    else:
        wanted, why = by_cpu
    factor = min(params.max_step_factor, settings.max_scale_factor)
    step_cap = max(current + 1, math.floor(current * factor + _EPSILON))
    wanted = min(max(wanted, current + 1), step_cap)
    ceiling = settings.max_replicas
    if state.hpa is not None:
        ceiling = min(ceiling, state.hpa.max_replicas)
    target = min(max(wanted, settings.min_replicas), ceiling)
    return ScaleTarget(current, target, settings.min_replicas, ceiling, state.hpa), why


def _demand_replicas(
    demand: Demand | None, state: WorkloadState, headroom: float
) -> tuple[int, str] | None:
    """Replicas for the expected requests at the CPU per replica to aim at; None when
    there is no usable demand."""
    if demand is None or not (demand.cpu_per_rps > 0 and demand.projected_rps > 0):
        return None
    if not (math.isfinite(demand.cpu_per_rps) and math.isfinite(demand.projected_rps)):
        return None
    hpa_target = state.hpa.target_cpu_utilisation if state.hpa else None
    aim, source = (hpa_target, "the HPA's target") if hpa_target else (1 / headroom, "headroom")
    wanted = math.ceil(demand.projected_rps * demand.cpu_per_rps / aim - _EPSILON)
    why = (
        f"{demand.projected_rps:.0f} requests/s expected ({demand.rps:.0f} now) at "
        f"{demand.cpu_per_rps:.2%} of a replica's CPU request each, {aim:.0%} per "
        f"replica ({source})"
    )
    return wanted, why


def _wanted_replicas(current: int, finding: Finding, headroom: float) -> tuple[int, str]:
    cpu = finding.deviation(Signal.CPU)
    if cpu is None or not (math.isfinite(cpu.value) and math.isfinite(cpu.baseline)):
        return current * _FALLBACK_FACTOR, "no CPU deviation to size from, so doubling"
    if cpu.baseline <= 0:
        return current * _FALLBACK_FACTOR, "no CPU baseline to size from, so doubling"
    growth = cpu.value / cpu.baseline
    wanted = math.ceil(current * growth * headroom - _EPSILON)
    return wanted, f"CPU at {growth:.2f}x its baseline with {headroom:g}x headroom"


def _concrete(inputs: PlanInputs, settings: ScaleSettings) -> Concrete:
    scale, why = scale_target(inputs.state, inputs.finding, settings, inputs.guards, inputs.demand)
    if scale.hpa is None:
        params = ScaleParams(replicas=scale.target, from_replicas=scale.current)
    else:
        params = ScaleParams(
            replicas=scale.target, from_replicas=scale.hpa.min_replicas, hpa=scale.hpa.name
        )
    return Concrete(params, f"; {why}: {scale.current} -> {scale.target}", scale)


def _hpa_path(namespace: str, name: str) -> str:
    return f"/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers/{name}"


def _request(target: WorkloadRef, params: ScaleParams, reads: Reads, now: datetime) -> Request:
    if params.hpa:
        # Raise the autoscaler's floor rather than fight it: it would undo a plain scale.
        body: JsonObject = {"spec": {"minReplicas": params.replicas}}
        return Request("PATCH", _hpa_path(target.namespace, params.hpa), MERGE, body)
    body = {"spec": {"replicas": params.replicas}}
    return Request("PATCH", f"{object_path(target)}/scale", MERGE, body)


def _landed(target: WorkloadRef, params: ScaleParams, started: datetime, reads: Reads) -> bool:
    if params.hpa:
        hpa = reads.hpa(target.namespace, params.hpa)
        return path_of(hpa, "spec", "minReplicas") == params.replicas
    return path_of(reads.workload(target), "spec", "replicas") == params.replicas


ACTION = ActionSpec(
    kind=ActionKind.SCALE,
    params=ScaleParams,
    settings=ScaleSettings,
    guards=("scale_bounds",),
    targets=(TargetKind.DEPLOYMENT, TargetKind.STATEFULSET),
    rbac=(
        Rule("apps", "deployments/scale", ("patch",)),
        Rule("apps", "statefulsets/scale", ("patch",)),
        Rule("autoscaling", "horizontalpodautoscalers", ("get", "patch")),
    ),
    make_concrete=_concrete,
    make_request=_request,
    check_landed=_landed,
)
