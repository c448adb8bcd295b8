"""From a diagnosis to a plan: the matching playbook, concrete parameters, guard verdicts.

``plan`` is a pure function: it reads no clock (``now`` is passed) and does no I/O, so
every rule is testable with literal values.

Decisions:

- The first playbook, in file order, whose match accepts the diagnosis wins; none
  matching returns None and the caller escalates.
- Parameters are made concrete here (how many replicas, which revision), so that the
  plan in the audit store says exactly what will be asked of the cluster, and guards
  judge that exact request.
- Scale sizes for the larger of two needs. The measured demand, when the caller
  measured it (``Demand``): the requests expected once new replicas serve, times CPU
  per request, over the CPU per replica to aim at (the HPA's target utilisation, or
  1 / the playbook's headroom), rounded up; it looks ahead of a rising surge. And the
  CPU deviation: replicas x (cpu / baseline) x headroom, which brings CPU per replica
  back to the level the workload was healthy at (what verification checks). Either way
  at least one more than now, at most
  ``max_step_factor`` (the playbook's) and ``max_scale_factor`` (the global guard's)
  times now, then clamped to the global bounds and the HPA's maxReplicas. Without a
  usable CPU deviation it doubles, bounded the same way. With an HPA the target is its
  minReplicas: the autoscaler keeps control and will not undo the change.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

from healer.config import GuardSettings
from healer.decide.guards import (
    Check,
    ScaleTarget,
    check_all,
    resolve_mode,
    rollback_revision,
)
from healer.decide.playbooks import ActionParams, Playbook
from healer.types import (
    ActionHistory,
    ActionKind,
    Demand,
    Diagnosis,
    Finding,
    JsonValue,
    Plan,
    Signal,
    WorkloadState,
)

_EPSILON = 1e-9
"""Float noise allowance before rounding: 2 x 1.5 x 1.0 must ceil to 3, not 4."""
_FALLBACK_FACTOR = 2
"""Without a CPU deviation to size from, double: a step any overload plausibly needs."""


def plan(
    diagnosis: Diagnosis,
    finding: Finding,
    state: WorkloadState,
    *,
    playbooks: Sequence[Playbook],
    guards: GuardSettings,
    history: ActionHistory,
    anomalous_workloads: int,
    watched_workloads: int,
    now: datetime,
    chain_to: Playbook | None = None,
    demand: Demand | None = None,
) -> Plan | None:
    """The plan for ``diagnosis`` on ``state.workload``, or None when no playbook matches.

    A plan is returned even when guards block it: ``plan.allowed`` and ``plan.blocked_by``
    say so, and the caller records and escalates it. ``chain_to`` is the next playbook
    of an ``on_failure`` chain: named by the failed one, it applies without matching.
    ``demand``, when measured, sizes a scale-up.
    """
    _check_same_workload(diagnosis, finding, state)
    book = chain_to or next((b for b in playbooks if _matches(b, diagnosis, finding)), None)
    if book is None:
        return None
    check = Check(
        book.action.kind,
        state,
        guards,
        history,
        anomalous_workloads,
        watched_workloads,
        now,
        chained=chain_to is not None,
    )
    params, scale, sizing = _concrete(book, finding, state, guards, demand)
    return Plan(
        workload=state.workload,
        playbook=book.name,
        action=book.action.kind,
        params=params,
        mode=resolve_mode(guards.mode, book.mode, state, guards.gitops_mode),
        guard_results=check_all(check, scale),
        reason=_reason(book, diagnosis, finding) + sizing,
        verify_within_s=book.verify.within_s,
    )


def _matches(book: Playbook, diagnosis: Diagnosis, finding: Finding) -> bool:
    """Cause, confidence, namespace and (if the playbook names any) a deviating signal."""
    m = book.match
    if diagnosis.cause not in m.causes or diagnosis.confidence < m.min_confidence:
        return False
    if m.namespaces and diagnosis.workload.namespace not in m.namespaces:
        return False
    return not m.signals or any(d.signal in m.signals for d in finding.signals)


def _scale_target(
    state: WorkloadState,
    finding: Finding,
    params: ActionParams,
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


def _concrete(
    book: Playbook,
    finding: Finding,
    state: WorkloadState,
    settings: GuardSettings,
    demand: Demand | None = None,
) -> tuple[dict[str, JsonValue], ScaleTarget | None, str]:
    """Params for the actuator, the scale decision if any, and a sizing clause for the
    reason."""
    kind = book.action.kind
    if kind is ActionKind.SCALE:
        scale, why = _scale_target(state, finding, book.action.params, settings, demand)
        return _scale_params(scale), scale, f"; {why}: {scale.current} -> {scale.target}"
    if kind is ActionKind.ROLLBACK:
        return _rollback_params(state), None, ""
    return {}, None, ""


def _scale_params(scale: ScaleTarget) -> dict[str, JsonValue]:
    if scale.hpa is None:
        return {"replicas": scale.target, "from_replicas": scale.current}
    return {
        "replicas": scale.target,
        "from_replicas": scale.hpa.min_replicas,
        "hpa": scale.hpa.name,
    }


def _rollback_params(state: WorkloadState) -> dict[str, JsonValue]:
    params: dict[str, JsonValue] = {}
    target = rollback_revision(state) or state.previous_revision
    if target is not None:
        params["to_revision"] = target.number
    if state.current_revision is not None:
        params["from_revision"] = state.current_revision.number
    return params


def _reason(book: Playbook, diagnosis: Diagnosis, finding: Finding) -> str:
    wanted = book.match.signals
    seen = [str(d.signal) for d in finding.signals if not wanted or d.signal in wanted]
    deviating = f"{', '.join(seen)} deviating" if seen else "no signal named"
    return (
        f"{diagnosis.cause} diagnosed at {diagnosis.confidence:.0%} confidence "
        f"(playbook {book.name} needs {book.match.min_confidence:.0%}) with {deviating}"
    )


def _check_same_workload(diagnosis: Diagnosis, finding: Finding, state: WorkloadState) -> None:
    if not diagnosis.workload == finding.workload == state.workload:
        raise ValueError(
            f"plan() got diagnosis of {diagnosis.workload}, finding of {finding.workload} "
            f"and state of {state.workload}"
        )
