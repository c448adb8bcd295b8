"""Approvals: actions a person approved, taken or blocked with the reason.

Each cycle, ``take_approved`` plans every approved action again on the cluster as it is
now, through the same guards (the person's approval stands for the approval mode only),
and takes it if they pass; otherwise it is recorded as blocked (so it is never taken
later) and its incident settles escalated. One that crashes (a bug) is blocked too.

Decisions:

- Planning and acting are the cycle's, the same for an approved action as for any
  other, so this module asks them of the cycle through ``Acting`` rather than owning a
  second copy; what it decides itself is store-side (which actions wait, whether one
  continues an ``on_failure`` chain, blocking one) and which stage the incident moves to.
- The guards' decision and the action are one critical section (``Acting.exclusive``,
  the cluster's acting lock), as on the automatic path: two shards taking approvals at
  once would otherwise both read a budget with one action left and both spend it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import datetime
from typing import Protocol

import structlog

from healer.audit.roles import DaemonStore
from healer.audit.views import ActionView
from healer.decide import Playbook, find_playbook
from healer.errors import HealerError
from healer.lifecycle.stages import Story, Track, Watching
from healer.lifecycle.transition import Event, Reviewed, Settled
from healer.types import (
    ActionRecord,
    ActionStatus,
    Diagnosis,
    Finding,
    Incident,
    Mode,
    Outcome,
    OutcomeKind,
    Plan,
    WorkloadRef,
)

log = structlog.get_logger("healer.daemon")


class Acting(Protocol):
    """What taking an approved action asks of the cycle, at the time it runs."""

    def watched(self, workload: WorkloadRef) -> Track | None:
        """The incident the cycle watches for ``workload``, if any."""
        ...

    def watch(self, track: Track) -> None:
        """Watch ``track`` as its workload's incident."""
        ...

    def move(self, track: Track, event: Event) -> Track:
        """Feed ``event`` to the incident and carry out the effects; its stage after."""
        ...

    def replan(
        self, diagnosis: Diagnosis, finding: Finding, chain_to: Playbook | None
    ) -> Plan | None:
        """The planner with every guard, on the cluster and the anomalies as they are
        now (the brake judges the largest event under way)."""
        ...

    def act(self, track: Track, plan: Plan) -> None:
        """Take ``plan`` for the incident, recorded before and after."""
        ...

    def exclusive(self) -> AbstractContextManager[object]:
        """The cluster's acting lock (not reentrant): planning on the shared action
        history and taking the action happen inside it, one replica at a time."""
        ...


def take_approved(
    *,
    store: DaemonStore,
    playbooks: Sequence[Playbook],
    cycle: Acting,
    now: datetime,
    owns: Callable[[str], bool] = lambda namespace: True,
) -> int:
    """Take each approved action, or block it with the reason; returns how many crashed
    (bugs: each is blocked, so that it is never taken later, and its incident escalated).
    A ``HealerError`` is logged and the action waits for the next cycle. Approvals of
    namespaces ``owns`` refuses wait for the shard that owns them."""
    crashed = 0
    for approved in store.approved_actions():
        workload = approved.workload
        if not owns(workload.namespace):
            continue
        try:
            take_one(approved.incident_id, now, store=store, playbooks=playbooks, cycle=cycle)
        except HealerError as exc:
            log.error("workload_step_failed", workload=str(workload), error=str(exc))
        except Exception as exc:  # a bug: block this approval, carry on with the rest
            crashed += 1
            log.exception("workload_step_crashed", workload=str(workload), error=repr(exc))
            _settle_crashed(approved, exc, now, store=store, cycle=cycle)
    return crashed


def take_one(
    incident_id: int,
    now: datetime,
    *,
    store: DaemonStore,
    playbooks: Sequence[Playbook],
    cycle: Acting,
) -> None:
    """Plan the incident's approved action again and take it if the guards pass; block
    it and settle the incident if not, or if another incident of its workload is open
    now. Recording the action taken or blocked completes the approved one."""
    incident = store.incident(incident_id)
    if incident.diagnosis is None or incident.action is None:
        raise HealerError(f"incident {incident_id} has no diagnosis or action to take")
    workload = incident.workload
    track = cycle.watched(workload)
    if track is not None and track.incident_id != incident_id:
        why = f"incident {track.incident_id} is now open for {workload}"
        cycle.move(
            Watching(incident_id, workload), Settled(block(incident_id, why, now, store=store))
        )
        return
    if track is None:
        track = Watching(incident_id, workload)
        cycle.watch(track)
    diagnosis, finding = incident.diagnosis, incident.finding
    track = cycle.move(track, Reviewed(Story(finding, diagnosis)))
    chain_to = chain_step(incident, store=store, playbooks=playbooks)
    with cycle.exclusive():  # the budget read and the action spending it, as one step
        plan = cycle.replan(diagnosis, finding, chain_to)
        if plan is not None and plan.mode == Mode.APPROVAL:
            plan = replace(plan, mode=Mode.AUTO)
        if plan is not None:
            store.record_plan(incident_id, plan, at=now)
        if plan is None or not plan.allowed:
            why = "no playbook matches any more" if plan is None else ", ".join(plan.blocked_by)
            outcome = block(incident_id, f"blocked by {why}", now, incident.action, store=store)
            cycle.move(track, Settled(outcome))
            return
        cycle.act(track, plan)


def _settle_crashed(
    approved: ActionView, exc: Exception, now: datetime, *, store: DaemonStore, cycle: Acting
) -> None:
    """Block the ``approved`` action whose taking crashed, unless it got an end
    meanwhile, and close its incident as escalated unless it is settled already."""
    incident_id, workload = approved.incident_id, approved.workload
    try:
        outcome = block_crashed(approved, exc, now, store=store)
        if outcome is not None:
            track = cycle.watched(workload)
            if track is None or track.incident_id != incident_id:
                track = Watching(incident_id, workload)  # a stand-in, settled, not watched
            cycle.move(track, Settled(outcome))
    except Exception as again:  # the store down as well: the next cycle meets it again
        log.error("escalation_not_recorded", workload=str(workload), error=repr(again))


def chain_step(
    incident: Incident, *, store: DaemonStore, playbooks: Sequence[Playbook]
) -> Playbook | None:
    """The approved plan's playbook when it continues an ``on_failure`` chain (an
    action of the incident was taken before it), so it is planned as the chain did."""
    detail = store.get_incident(incident.id)
    taken = detail is not None and any(a.status is ActionStatus.SUCCEEDED for a in detail.actions)
    if not taken or incident.plan is None:
        return None
    try:
        return find_playbook(playbooks, incident.plan.playbook)
    except KeyError:  # the playbook is gone since: plan afresh
        return None


def block(
    incident_id: int,
    why: str,
    now: datetime,
    action: ActionRecord | None = None,
    *,
    store: DaemonStore,
) -> Outcome:
    """Record the approved ``action`` (by default the incident's) blocked for ``why``;
    the escalated outcome its incident settles on."""
    action = action or store.incident(incident_id).action
    if action is None:
        raise HealerError(f"incident {incident_id} has no approved action to block")
    blocked = replace(action, status=ActionStatus.BLOCKED, started=now, finished=now, error=why)
    store.record_action(incident_id, blocked)
    return Outcome(OutcomeKind.ESCALATED, f"approved, then {why}", now)


def block_crashed(
    approved: ActionView, exc: Exception, now: datetime, *, store: DaemonStore
) -> Outcome | None:
    """Block the ``approved`` action whose taking crashed, unless it got an end
    meanwhile; the outcome to settle its incident on, None when it has one already."""
    why = f"internal error: {type(exc).__name__}: {exc}"
    incident = store.incident(approved.incident_id)
    row = store.get_action(approved.id)
    still = row is not None and row.status is ActionStatus.APPROVED
    if still and incident.action is not None:
        blocked = replace(
            incident.action, status=ActionStatus.BLOCKED, started=now, finished=now, error=why
        )
        store.record_action(approved.incident_id, blocked)
    if incident.outcome is not None:
        return None
    return Outcome(OutcomeKind.ESCALATED, f"approved, then {why}", now)


def expire(
    incident_id: int, now: datetime, quiet_s: float, *, store: DaemonStore
) -> Outcome | None:
    """Withdraw the incident's action still awaiting approval once its workload has been
    quiet for ``quiet_s``: approving it later would act on a workload that no longer
    needs it. The outcome the incident settles on; None when nothing awaited approval."""
    outcome = Outcome(
        OutcomeKind.ESCALATED,
        f"the workload was quiet for {quiet_s:g} s before anyone reviewed the action "
        "awaiting approval; it expired and was not taken",
        now,
    )
    return outcome if store.expire_pending(incident_id, outcome) is not None else None
