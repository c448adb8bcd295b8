"""The actuator for GitOps-owned workloads: a rollback lands in Git, the rest as before.

``GitOpsActuator`` wraps the Kubernetes actuator. For a rollback of a workload that an
Argo CD Application or a Flux Kustomization applies, it reads that object, commits the
previous healthy revision's image to the repository (``healer.gitops.rollback``) and
asks the syncer to sync now; every other plan, and a rollback of a workload no syncer
owns, goes to the wrapped actuator unchanged.

- auto mode: push to the tracked branch (or merge the incident's pull request, when one
  is open: approving in healer merges it), then annotate the syncer's objects.
- approval mode: with a forge, push ``{branch_prefix}incident-N`` and open a pull or
  merge request; the pending action's record carries its link. Without one, nothing is
  pushed until approval.
- ``undo_first``: after the push succeeded, also undo in the cluster at once.

Decisions:

- Bad input never reaches the cluster: an unreachable repository, refused credentials,
  a path that pins no such image, a conflict, all fail the action with the reason
  (the incident escalates) before any in-cluster undo, which the syncer would silently
  revert. The in-cluster undo of ``undo_first`` comes only after the commit is pushed.
- The images to pin come from the workload's revisions, as the rollback action would
  restore them: the current revision's images against those of the revision the plan
  rolls back to, container by container.
- A merge in the forge counts as approval: ``watch_merges`` (each cycle) approves the
  pending action whose pull request was merged, and the cycle takes it as any approved
  action: the merge is found already done, and the syncer is asked to sync. A request
  closed without a merge rejects the action, as a rejection in healer would; a
  rejection in healer (or an action that expired unreviewed) closes the request.
- Asking for a sync is best effort: the syncer polls on its own interval anyway, so a
  refused annotation is recorded on the action, not a failure of it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol, runtime_checkable

import structlog

from healer.audit.roles import ActionReviews
from healer.audit.views import ActionView
from healer.config import GitOpsSettings
from healer.errors import ActionError, PermanentActionError
from healer.gitops.forge import Forge, Review
from healer.gitops.owner import (
    Mark,
    Owner,
    from_application,
    from_kustomization,
    mark_of,
    refuse_helm_release,
    repository_of,
    sync_annotations,
)
from healer.gitops.pins import Change
from healer.gitops.rollback import GitRollback, Story
from healer.gitops.story import (
    image_changes,
    landed_json,
    record,
    request_body,
    review_json,
    source_json,
    story_of,
    tool_name,
)
from healer.types import (
    ActionKind,
    ActionRecord,
    ActionStatus,
    Incident,
    JsonObject,
    JsonValue,
    Mode,
    NodePod,
    ObjectRef,
    Plan,
    WorkloadRef,
    WorkloadState,
)

log = structlog.get_logger("healer.gitops")

DECLINED_LOOKBACK = 50
"""Rejected (and expired) actions looked at each cycle, newest first: a rejection is
acted on within a cycle or two, so older ones were seen already."""


class Cluster(Protocol):
    """The wrapped actuator (the daemon's ``Actuator``)."""

    def read_state(self, workload: WorkloadRef) -> WorkloadState: ...

    def apply(self, plan: Plan, *, now: datetime) -> ActionRecord: ...

    def already_applied(self, intent: ActionRecord) -> bool: ...


class Objects(Protocol):
    """Custom objects as JSON (``healer.act.customobjects.CustomObjects``)."""

    def get(self, ref: ObjectRef) -> JsonObject: ...

    def annotate(self, ref: ObjectRef, annotations: Mapping[str, str]) -> None: ...


Reviews = ActionReviews
"""The audit store's review queue, as the forge watch uses it."""


@runtime_checkable
class _PodOwners(Protocol):
    def owner_of_pod(self, namespace: str, pod: str) -> WorkloadRef | None: ...


@runtime_checkable
class _NodePods(Protocol):
    def pods_on_node(self, node: str) -> tuple[NodePod, ...]: ...


@dataclass(frozen=True)
class _Work:
    """One rollback through Git, resolved: who owns the workload, what to pin, why."""

    owner: Owner
    changes: tuple[Change, ...]
    story: Story


class GitOpsActuator:
    """See the module docstring."""

    def __init__(
        self,
        cluster: Cluster,
        *,
        objects: Objects,
        settings: GitOpsSettings,
        incident_of: Callable[[WorkloadRef], Incident | None],
        link: Callable[[int], str | None] = lambda _: None,
        git: GitRollback | None = None,
        forges: Callable[[str], Forge | None] = lambda _: None,
        reviews: Reviews | None = None,
    ) -> None:
        self._cluster = cluster
        self._objects = objects
        self._settings = settings
        self._incident_of = incident_of
        self._link = link
        self.git = git or GitRollback(settings)
        self._forges = forges
        """The forge serving a repository URL's pull requests; None: no forge."""
        self._reviews = reviews
        self._declined: set[int] = set()
        """Rejected or expired actions whose pull request was looked at (and closed)."""

    def read_state(self, workload: WorkloadRef) -> WorkloadState:
        return self._cluster.read_state(workload)

    def already_applied(self, intent: ActionRecord) -> bool:
        """Whether an intended action landed: for a rollback of a GitOps-owned workload,
        its commit (found by its trailers) on the tracked branch or the incident's pull
        request branch, which the syncer applies whether or not healer asked it to sync
        before the crash; for anything else, as the cluster says."""
        if not self._settings.enabled or intent.kind is not ActionKind.ROLLBACK:
            return self._cluster.already_applied(intent)
        owner = self.owner(self._cluster.read_state(intent.target))
        incident = self._incident_of(intent.target)
        if owner is None or incident is None:
            return self._cluster.already_applied(intent)
        git = self.git.checkout(owner.source.url)
        branches = (self.git.branch_of(git, owner.source), self._branch_of(incident.id))
        return self.git.find_own(git, incident.id, branches) is not None or (
            self._cluster.already_applied(intent)
        )

    def owner_of_pod(self, namespace: str, pod: str) -> WorkloadRef | None:
        """A read: passes through (None when the wrapped actuator cannot resolve pods)."""
        inner = self._cluster
        return inner.owner_of_pod(namespace, pod) if isinstance(inner, _PodOwners) else None

    def pods_on_node(self, node: str) -> tuple[NodePod, ...]:
        """A read: passes through; the daemon's node watch asks it."""
        inner = self._cluster
        if not isinstance(inner, _NodePods):
            raise PermanentActionError(f"node {node}: the cluster cannot list its pods")
        return inner.pods_on_node(node)

    def owner(self, state: WorkloadState) -> Owner | None:
        """The syncer that applies the workload; None when none marks it.
        PermanentActionError when the mark names an object that cannot be read."""
        mark = mark_of(state.workload, state.annotations, state.labels)
        if mark is None:
            return None
        return self._resolve(mark)

    def _resolve(self, mark: Mark) -> Owner:
        refuse_helm_release(mark)
        found = self._get(mark.ref)
        if mark.tool == "argocd":
            return from_application(mark, found)
        return from_kustomization(mark, found, self._get(repository_of(mark, found)))

    def _get(self, ref: ObjectRef) -> JsonObject:
        return self._objects.get(ref)

    def apply(self, plan: Plan, *, now: datetime) -> ActionRecord:
        """A rollback through Git for a GitOps-owned workload (see the module
        docstring); any other plan as the wrapped actuator takes it."""
        if not self._settings.enabled or plan.action is not ActionKind.ROLLBACK:
            return self._cluster.apply(plan, now=now)
        intent: JsonObject = {"action": plan.action.value, "params": dict(plan.params)}
        try:
            state = self._cluster.read_state(plan.workload)
            owner = self.owner(state)
            if owner is None:
                return self._cluster.apply(plan, now=now)
            work = _Work(owner, image_changes(state, plan), self._story(plan))
        except ActionError as exc:
            why = f"rollback through Git not possible, nothing changed in the cluster: {exc}"
            return record(plan, intent, ActionStatus.FAILED, now, error=why)
        request: JsonObject = {**intent, "git": source_json(work.owner, self.git.redact)}
        try:
            match plan.mode:
                case Mode.DRY_RUN:
                    return record(plan, request, ActionStatus.DRY_RUN, now)
                case Mode.APPROVAL:
                    return self._propose(plan, work, request, now)
                case Mode.AUTO:
                    return self._push(plan, work, request, now)
        except ActionError as exc:
            why = (
                f"rollback through Git ({work.owner.label}) failed, nothing changed in "
                f"the cluster: {exc}"
            )
            return record(plan, request, ActionStatus.FAILED, now, error=why)

    def review(self, workload: WorkloadRef, incident_id: int) -> Review | None:
        """The incident's pull request on ``workload``, as the forge has it now; None
        when no forge serves its repository or no request was opened."""
        owner = self.owner(self._cluster.read_state(workload))
        forge = self._forges(owner.source.url) if owner is not None else None
        return forge.find(self._branch_of(incident_id)) if forge is not None else None

    def watch_merges(self, now: datetime) -> int:
        """Settle each pending rollback whose pull request people settled in the forge:
        a merge there approves it (the cycle then takes it like an approval made in
        healer), a close without merging rejects it. The number settled; a forge or
        cluster that cannot be read is logged and asked again next cycle."""
        if self._reviews is None or not self._settings.enabled:
            return 0
        self._close_declined()
        settled = 0
        for action in self._reviews.actions(status=ActionStatus.PENDING_APPROVAL):
            if "pull_request" not in action.request:
                continue
            try:
                review = self.review(action.workload, action.incident_id)
            except ActionError as exc:
                log.warning("forge_unread", workload=str(action.workload), error=str(exc))
                continue
            if review is None or review.state == "open":
                continue
            if review.state == "merged":
                why = f"pull request {review.url} merged in the forge"
                self._reviews.approve_action(action.id, by="forge", reason=why, at=now)
            else:
                why = f"pull request {review.url} closed in the forge without merging"
                self._reviews.reject_action(action.id, by="forge", reason=why, at=now)
            settled += 1
        return settled

    def _close_declined(self) -> None:
        """Close the pull request of each rollback people rejected in healer, or that
        expired unreviewed, when it is still open: nobody should merge what healer no
        longer proposes. Each is looked at once per process (``_declined``)."""
        assert self._reviews is not None
        for status in (ActionStatus.REJECTED, ActionStatus.EXPIRED):
            for action in self._reviews.actions(status=status, limit=DECLINED_LOOKBACK):
                if action.id in self._declined or "pull_request" not in action.request:
                    continue
                try:
                    self._close(action)
                except ActionError as exc:
                    log.warning("forge_unread", workload=str(action.workload), error=str(exc))
                    continue
                self._declined.add(action.id)

    def _close(self, action: ActionView) -> None:
        owner = self.owner(self._cluster.read_state(action.workload))
        forge = self._forges(owner.source.url) if owner is not None else None
        review = forge.find(self._branch_of(action.incident_id)) if forge else None
        if forge is not None and review is not None and review.state == "open":
            forge.close(review.number)
            log.info("pull_request_closed", url=review.url, status=str(action.status))

    def _story(self, plan: Plan) -> Story:
        incident = self._incident_of(plan.workload)
        if incident is None or incident.diagnosis is None:
            raise PermanentActionError(f"{plan.workload}: no open incident to tell in the commit")
        return story_of(incident, incident.diagnosis, self._link(incident.id))

    def _branch(self, story: Story) -> str:
        return self._branch_of(story.incident_id)

    def _branch_of(self, incident_id: int) -> str:
        """The branch of the incident's pull request."""
        return f"{self._settings.branch_prefix}incident-{incident_id}"

    def _propose(self, plan: Plan, work: _Work, request: JsonObject, now: datetime) -> ActionRecord:
        """Approval mode: a pull request when a forge is set, else only the intent."""
        forge = self._forges(work.owner.source.url)
        if forge is None:
            return record(plan, request, ActionStatus.PENDING_APPROVAL, now)
        landed = self.git.land(
            work.owner.source, work.changes, work.story, tool=tool_name(work.owner),
            branch=self._branch(work.story),
        )  # fmt: skip
        subject = f"Roll back {work.story.workload} (incident {work.story.incident_id})"
        review = forge.open(
            head=landed.branch,
            base=landed.base,
            title=subject,
            body=request_body(work.story, work.changes, landed),
        )
        request = {**request, "commit": landed_json(landed), "pull_request": review_json(review)}
        return record(plan, request, ActionStatus.PENDING_APPROVAL, now)

    def _push(self, plan: Plan, work: _Work, request: JsonObject, now: datetime) -> ActionRecord:
        """Auto mode (or approved): merge the incident's pull request if there is one,
        else push to the tracked branch; then undo (``undo_first``) and ask for a sync."""
        forge = self._forges(work.owner.source.url)
        review = forge.find(self._branch(work.story)) if forge is not None else None
        if forge is not None and review is not None and review.state != "closed":
            merged = review if review.state == "merged" else forge.merge(review.number)
            request = {**request, "pull_request": review_json(merged)}
        else:
            landed = self.git.land(
                work.owner.source, work.changes, work.story, tool=tool_name(work.owner)
            )
            request = {**request, "commit": landed_json(landed)}
        if self._settings.undo_first:
            undone = self._cluster.apply(replace(plan, mode=Mode.AUTO), now=now)
            request = {**request, "undo": {"status": str(undone.status), "error": undone.error}}
        request = {**request, "sync": self._sync(work.owner, now)}
        return record(plan, request, ActionStatus.SUCCEEDED, now)

    def _sync(self, owner: Owner, now: datetime) -> list[JsonValue]:
        """Annotate each of the syncer's objects; what was asked and how it went."""
        asked: list[JsonValue] = []
        annotations = sync_annotations(owner, now)
        for ref in owner.sync:
            done: dict[str, JsonValue] = {"object": str(ref), "annotations": dict(annotations)}
            try:
                self._objects.annotate(ref, annotations)
            except ActionError as exc:
                done["error"] = str(exc)
            asked.append(done)
        return asked
