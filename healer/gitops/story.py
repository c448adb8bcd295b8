"""What a rollback through Git tells: the images it pins again, the incident in words,
and the JSON the action's record keeps (the review page shows it).

Pure functions over healer's values; ``healer.gitops.actuator`` does the I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from healer.actions.rollback import RollbackParams
from healer.errors import PermanentActionError
from healer.gitops.forge import Review
from healer.gitops.owner import Owner
from healer.gitops.pins import Change
from healer.gitops.rollback import Landed, Story
from healer.types import (
    ActionRecord,
    ActionStatus,
    Diagnosis,
    Incident,
    JsonObject,
    Plan,
    WorkloadState,
)


def story_of(incident: Incident, diagnosis: Diagnosis, link: str | None) -> Story:
    """The incident as the commit message and the pull request tell it."""
    evidence = ", ".join(
        f"{d.signal} {d.direction} {abs(d.deviation):.0f}σ ({d.value:.3g} against {d.baseline:.3g})"
        for d in incident.finding.signals
    )
    workload = incident.workload
    return Story(
        incident_id=incident.id,
        workload=f"{workload.kind} {workload.namespace}/{workload.name}",
        cause=str(diagnosis.cause),
        explanation=diagnosis.explanation,
        evidence=f"anomaly score {incident.finding.score:.2f}; {evidence or 'none'}",
        link=link,
    )


def image_changes(state: WorkloadState, plan: Plan) -> tuple[Change, ...]:
    """Each container's image now against the one of the revision rolled back to;
    PermanentActionError when that revision is unknown or changes no image (a rollback
    of configuration only, which Git cannot express as an image pin)."""
    params = RollbackParams.model_validate(dict(plan.params))
    current = state.current_revision
    target = next((r for r in state.revisions if r.number == params.to_revision), None)
    if current is None or target is None:
        raise PermanentActionError(f"{state.workload} has no revision {params.to_revision}")
    changes = tuple(
        Change(bad, good)
        for bad, good in zip(current.images, target.images, strict=False)
        if bad != good
    )
    if not changes:
        raise PermanentActionError(
            f"{state.workload}: revision {target.number} runs the same images as "
            f"{current.number}; no image to pin in Git"
        )
    return changes


def tool_name(owner: Owner) -> str:
    """The syncer's name as people write it."""
    return "Argo CD" if owner.tool == "argocd" else "Flux"


def source_json(owner: Owner, redact: Callable[[str], str]) -> JsonObject:
    """Where the rollback lands, for the record (the URL's user info masked)."""
    return {
        "owner": str(owner.ref),
        "repository": redact(owner.source.url),
        "revision": owner.source.revision,
        "path": owner.source.path,
    }


def landed_json(landed: Landed) -> JsonObject:
    """The commit, for the record."""
    return {
        "sha": landed.commit,
        "branch": landed.branch,
        "files": list(landed.files),
        "reverted": landed.reverted,
        "already": landed.already,
        "rebased": landed.rebased,
    }


def review_json(review: Review) -> JsonObject:
    """The pull request, for the record (the review page links it)."""
    return {"number": review.number, "url": review.url, "state": review.state}


def request_body(story: Story, changes: Sequence[Change], landed: Landed) -> str:
    """The pull or merge request's description."""
    images = "\n".join(f"- `{c.bad}` -> `{c.good}`" for c in changes)
    link = f"\n\nIncident: {story.link}" if story.link else ""
    return (
        f"healer diagnosed {story.cause} on {story.workload}: {story.explanation}\n\n"
        f"Evidence: {story.evidence}\n\n{images}\n\nApproving the action in healer merges "
        f"this request; merging it here counts as approval.{link}"
    )


def record(
    plan: Plan,
    request: JsonObject,
    status: ActionStatus,
    now: datetime,
    *,
    error: str | None = None,
) -> ActionRecord:
    return ActionRecord(plan.action, plan.workload, request, status, now, now, error=error)
