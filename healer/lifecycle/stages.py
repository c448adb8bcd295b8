"""An incident's stages while the daemon watches it, each carrying only what is valid in it.

Every stage knows its incident, its workload, since when the workload has been quiet
(fresh data at baseline), and what was learned of it so far (``Story``): its finding and
its diagnosis, once known. The rest belongs to one stage only: the error that kept a
diagnosis from being made (``Diagnosing``), the action taken and when (``Verifying``),
the intent an earlier run left without an end (``Reconciling``), the last plan acted on,
which an escalation names (``Watching``).

Decisions: frozen dataclasses replaced whole by ``transition``, so a stage never holds a
field set for another one; the union ``Track`` is matched exhaustively (``assert_never``)
wherever a stage decides what happens.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from healer.types import (
    ActionRecord,
    ActionStatus,
    Diagnosis,
    Finding,
    Incident,
    Plan,
    WorkloadRef,
)


@dataclass(frozen=True)
class Story:
    """What is known of the incident so far: both None for one found a moment ago."""

    finding: Finding | None = None
    diagnosis: Diagnosis | None = None


@dataclass(frozen=True)
class Diagnosing:
    """Found; the cluster could not be read yet to diagnose it (retried every cycle)."""

    incident_id: int
    workload: WorkloadRef
    story: Story = Story()
    quiet_since: datetime | None = None
    error: str | None = None
    """Why it is not diagnosed yet, named in the escalation if the anomaly passes first."""


@dataclass(frozen=True)
class Watching:
    """Settled, or waiting for a person; waiting for the workload to be quiet again."""

    incident_id: int
    workload: WorkloadRef
    story: Story = Story()
    quiet_since: datetime | None = None
    plan: Plan | None = None
    """The last plan acted on, if any: an escalation names its playbook and action."""
    paged: bool = False
    """An escalation went out for it: once the workload is quiet again, the page closes."""


@dataclass(frozen=True)
class Verifying:
    """An action was taken at ``acted_at``; waiting for its outcome."""

    incident_id: int
    workload: WorkloadRef
    plan: Plan
    acted_at: datetime
    story: Story = Story()
    quiet_since: datetime | None = None
    signals_quiet_since: datetime | None = None
    """Since when the playbook's verify signals have been at baseline."""
    rollout_complete_at: datetime | None = None
    """When the rollout the action started was first read complete; None until then."""


@dataclass(frozen=True)
class Reconciling:
    """An action was intended by an earlier run, its end unknown: read the cluster first."""

    incident_id: int
    workload: WorkloadRef
    plan: Plan
    intent: ActionRecord
    story: Story = Story()
    quiet_since: datetime | None = None


Track = Diagnosing | Watching | Verifying | Reconciling


def last_plan(track: Track) -> Plan | None:
    """The plan an escalation of ``track`` names: the one acted on or intended."""
    return None if isinstance(track, Diagnosing) else track.plan


def acted(track: Track) -> bool:
    """Acted on and not yet verified (or perhaps acted on, by an earlier run)."""
    return isinstance(track, Verifying | Reconciling)


def resumed(incident: Incident) -> Track:
    """The stage an incident a previous run left unresolved is picked up in: an action
    taken is verified, never taken again; an intent without its end is reconciled; one
    never diagnosed waits for its workload's next finding."""
    story = Story(incident.finding, incident.diagnosis)
    action, plan = incident.action, incident.plan
    if action is not None and plan is not None:
        if action.status is ActionStatus.INTENDED:
            return Reconciling(incident.id, incident.workload, plan, action, story)
        if action.status is ActionStatus.SUCCEEDED:
            return Verifying(incident.id, incident.workload, plan, action.started, story)
    if incident.diagnosis is None:
        error = "the previous run stopped before diagnosing it"
        return Diagnosing(incident.id, incident.workload, story, error=error)
    return Watching(incident.id, incident.workload, story)
