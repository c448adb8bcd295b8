"""From a diagnosis to a plan: the matching playbook, concrete parameters, guard verdicts.

The first playbook (in file order) whose match accepts the diagnosis wins. Parameters
are made concrete here (how many replicas, which revision), so that the plan recorded
in the audit store says exactly what will be asked of the cluster. The mode is the most
cautious of the global mode, the playbook's and the workload's annotation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

from healer.config import GuardSettings
from healer.decide import guards
from healer.decide.playbooks import Playbook
from healer.types import (
    ActionHistory,
    ActionKind,
    Diagnosis,
    Finding,
    GuardResult,
    JsonValue,
    Mode,
    Plan,
    Signal,
    WorkloadState,
)

MODE_ANNOTATION = "healer.io/mode"
_CAUTION = {Mode.AUTO: 0, Mode.APPROVAL: 1, Mode.DRY_RUN: 2}


def _matches(book: Playbook, diagnosis: Diagnosis, finding: Finding) -> bool:
    m = book.match
    if diagnosis.cause not in m.causes or diagnosis.confidence < m.min_confidence:
        return False
    if m.namespaces and diagnosis.workload.namespace not in m.namespaces:
        return False
    return not m.signals or any(d.signal in m.signals for d in finding.signals)


def effective_mode(global_mode: Mode, book: Playbook, state: WorkloadState) -> Mode:
    modes = [global_mode, book.mode]
    wanted = state.annotations.get(MODE_ANNOTATION, "").replace("-", "_")
    if wanted in Mode._value2member_map_:
        modes.append(Mode(wanted))
    return max(modes, key=lambda m: _CAUTION[m])


def _scale_target(book: Playbook, finding: Finding, current: int) -> int:
    headroom = float(book.action.params.get("headroom", 1.25))
    max_step = float(book.action.params.get("max_step_factor", 3.0))
    cpu = finding.deviation(Signal.CPU)
    if cpu is not None and cpu.baseline > 0 and cpu.value > 0:
        wanted = math.ceil(current * cpu.value / cpu.baseline * headroom)
    else:
        wanted = current * 2
    return max(current + 1, min(wanted, math.floor(current * max_step)))


def _params(book: Playbook, finding: Finding, state: WorkloadState,
            g: GuardSettings) -> tuple[dict[str, JsonValue], list[GuardResult]]:
    kind = book.action.kind
    if kind == ActionKind.SCALE:
        current = state.hpa.min_replicas if state.hpa else state.replicas
        ceiling = min(g.max_replicas, state.hpa.max_replicas) if state.hpa else g.max_replicas
        target = min(_scale_target(book, finding, max(current, 1)), ceiling)
        params: dict[str, JsonValue] = {"replicas": target, "from_replicas": current}
        if state.hpa:
            params["hpa"] = state.hpa.name
        return params, [guards.scale_bounds(state, g, target, current)]
    if kind == ActionKind.ROLLBACK:
        check = guards.rollback_target(state)
        prev, cur = state.previous_revision, state.current_revision
        params = {"to_revision": prev.number, "from_revision": cur.number} if prev and cur else {}
        return params, [check]
    return {}, []


def plan(diagnosis: Diagnosis, finding: Finding, state: WorkloadState, *,
         playbooks: Sequence[Playbook], guards: GuardSettings, history: ActionHistory,
         anomalous_workloads: int, watched_workloads: int, now: datetime) -> Plan | None:
    """The plan for ``diagnosis``, or None when no playbook matches (escalate)."""
    book = next((b for b in playbooks if _matches(b, diagnosis, finding)), None)
    if book is None:
        return None
    return _plan_for(book, diagnosis, finding, state, g=guards, history=history,
                     anomalous=anomalous_workloads, watched=watched_workloads, now=now)


def _plan_for(book: Playbook, diagnosis: Diagnosis, finding: Finding, state: WorkloadState, *,
              g: GuardSettings, history: ActionHistory, anomalous: int, watched: int,
              now: datetime) -> Plan:
    params, specific = _params(book, finding, state, g)
    results = [guards.namespace(state, g), guards.opt_out(state),
               guards.cooldown(state, g, history, now), guards.rate_limit(g, history, now),
               guards.in_flight(g, history), guards.anomaly_brake(g, anomalous, watched),
               guards.paused(state, book.action.kind), *specific]
    signals = ", ".join(str(d.signal) for d in finding.signals[:3])
    return Plan(workload=state.workload, playbook=book.name, action=book.action.kind,
                params=params, mode=effective_mode(g.mode, book, state),
                guard_results=tuple(results),
                reason=f"{diagnosis.cause} at {diagnosis.confidence:.0%} confidence "
                       f"({signals}) matches playbook {book.name}",
                verify_within_s=book.verify.within_s)
