"""From a diagnosis to a plan: the matching playbook, concrete parameters, guard verdicts.

``plan`` is a pure function: it reads no clock (``now`` is passed) and does no I/O, so
every rule is testable with literal values.

Decisions:

- The first playbook, in file order, whose match accepts the diagnosis wins; none
  matching returns None and the caller escalates.
- Parameters are made concrete here (how many replicas, which revision), so that the
  plan in the audit store says exactly what will be asked of the cluster, and guards
  judge that exact request. How is the action kind's business: its module in
  ``healer.actions`` (scale sizing is described in ``healer.actions.scale``); the
  planner only calls it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from healer.actions import REGISTRY, handler
from healer.actions.base import PlanInputs
from healer.config import GuardSettings
from healer.decide.guards import Check, check_all, resolve_mode
from healer.decide.playbooks import Playbook
from healer.decide.policies import Governance
from healer.types import (
    ActionHistory,
    Demand,
    Diagnosis,
    Finding,
    Plan,
    WorkloadState,
)


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
    alerts: frozenset[str] = frozenset(),
    silenced: str | None = None,
    governance: Governance | None = None,
) -> Plan | None:
    """The plan for ``diagnosis`` on ``state.workload``, or None when no playbook matches.

    A plan is returned even when guards block it: ``plan.allowed`` and ``plan.blocked_by``
    say so, and the caller records and escalates it. ``chain_to`` is the next playbook
    of an ``on_failure`` chain: named by the failed one, it applies without matching.
    ``demand``, when measured, sizes a scale-up. ``alerts`` are the names of the
    Alertmanager alerts firing on the workload that the cycle took as evidence.
    ``silenced`` says why people silenced healer on the workload: the ``opt_out``
    guard then blocks the plan. ``governance`` is what the matching policy objects
    say (``guards`` has their limits applied already, ``policies.governed``): their
    mode joins the most cautious, and the ``policy`` guard judges the action.
    """
    _check_same_workload(diagnosis, finding, state)
    book = chain_to or next((b for b in playbooks if _matches(b, diagnosis, finding, alerts)), None)
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
        silenced=silenced,
        governance=governance,
    )
    action = handler(book.action.kind)
    inputs = PlanInputs(finding, state, guards, demand, pod=diagnosis.pod)
    concrete = action.concrete(inputs, book.action.params)
    return Plan(
        workload=state.workload,
        playbook=book.name,
        action=book.action.kind,
        params=concrete.params.to_json(),
        mode=resolve_mode(
            guards.mode,
            book.mode,
            state,
            guards.gitops_mode,
            policy_mode=governance.mode.value if governance and governance.mode else None,
        ),
        guard_results=check_all(check, concrete.scale),
        reason=_reason(book, diagnosis, finding) + concrete.sizing,
        verify_within_s=book.verify.within_s,
    )


def _matches(
    book: Playbook, diagnosis: Diagnosis, finding: Finding, alerts: frozenset[str]
) -> bool:
    """Cause, confidence, namespace, a kind the action supports (and the playbook names,
    if it names any), and (if the playbook names any) a firing alert and a deviating
    signal."""
    m = book.match
    kind = diagnosis.workload.kind
    if not REGISTRY[book.action.kind].supports(kind) or (m.kinds and kind not in m.kinds):
        return False
    if m.causes and diagnosis.cause not in m.causes:
        return False
    if diagnosis.confidence < m.min_confidence:
        return False
    if m.alerts and alerts.isdisjoint(m.alerts):
        return False
    if m.namespaces and diagnosis.workload.namespace not in m.namespaces:
        return False
    return not m.signals or any(d.signal in m.signals for d in finding.signals)


def _reason(book: Playbook, diagnosis: Diagnosis, finding: Finding) -> str:
    wanted = book.match.signals
    seen = [str(d.signal) for d in finding.signals if not wanted or d.signal in wanted]
    deviating = f"{', '.join(seen)} deviating" if seen else "no signal named"
    if book.match.alerts and not book.match.causes:
        names = ", ".join(book.match.alerts)
        return f"alert firing (playbook {book.name} matches {names}) with {deviating}"
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
