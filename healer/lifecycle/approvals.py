"""Approvals: actions a person approved, taken by the cycle or blocked with the reason.

The cycle plans an approved action again on the cluster as it is now, through the same
guards (the person's approval stands for the approval mode only). What this module
decides is store-side: which actions wait to be taken, whether one continues an
``on_failure`` chain, and blocking one (recorded as blocked, so it is never taken later)
with the outcome its incident settles on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from healer.audit.roles import DaemonStore
from healer.audit.views import ActionView
from healer.decide import Playbook, find_playbook
from healer.errors import HealerError
from healer.types import ActionRecord, ActionStatus, Incident, Outcome, OutcomeKind


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
