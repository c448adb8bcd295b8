"""Rollout undo: what ``kubectl rollout undo --to-revision=N`` sends.

For a Deployment: the ReplicaSets it controls, the one annotated with the wanted
revision, its pod template without the ``pod-template-hash`` label, written back with a
JSON patch of ``spec.template`` and the annotations, as kubectl does.

For a StatefulSet or a DaemonSet: the ControllerRevision it controls numbered N; its
``data`` (a strategic merge patch replacing ``spec.template``) is sent as it is, as
kubectl does for both. The StatefulSet controller then rolls the pods back highest
ordinal first, at or above the ``partition`` only: the pods below it never left the
earlier revision, and the partition, the owner's choice, is left as it is. The
DaemonSet controller rolls them back node by node within its ``maxUnavailable``, a pod
that is not available (a crash-looping one) replaced at once whatever that budget.

Decisions:

- The target is the newest earlier revision whose pod template differs from the current
  one by more than a restart (``rollback_revision``): kubectl would pick the previous
  revision, which after a restart is the same release.
- A paused Deployment is refused: nothing would roll out until someone resumes it.
- After a crash the undo landed when the workload has moved off the revision it was
  rolled back from (a Deployment's revision annotation; the number of a StatefulSet's
  update revision; a DaemonSet's newest revision number, which the undo moves, as the
  controller renumbers the revision it returns to).
- A StatefulSet whose rollout got stuck (``OrderedReady``: a pod of the bad revision
  that never became Ready holds every later step) does not roll back on its own once
  its template is reverted: Kubernetes' documented forced rollback is to delete the
  pods it already tried to run with the bad configuration. So after the patch, each
  pod still at the revision rolled back from and not Ready is deleted, with a plain
  DELETE as ``kubectl delete pod`` sends it (as those docs tell people to), not an
  Eviction: such a pod serves nothing and is no available replica a
  PodDisruptionBudget protects, and a budget that counted it would block the rollback
  for good. A Ready pod of that revision is left to the controller's rolling update.
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import assert_never

from healer.actions.base import (
    ActionSpec,
    Concrete,
    NoSettings,
    Params,
    PlanInputs,
    Reads,
    Request,
    Rule,
    path_of,
)
from healer.actions.targets import kind_of, object_path, pod_path
from healer.errors import PermanentActionError
from healer.types import (
    ActionKind,
    JsonObject,
    JsonValue,
    Revision,
    TargetKind,
    WorkloadRef,
    WorkloadState,
)

REVISION = "deployment.kubernetes.io/revision"
JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
SKIPPED_ANNOTATIONS = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION,
        "deployment.kubernetes.io/revision-history",
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "deprecated.deployment.rollback.to",
    }
)
"""Annotations kubectl leaves on the Deployment when it copies a ReplicaSet's on undo."""


class RollbackParams(Params):
    to_revision: int | None = None
    """The revision to roll back to; None when there is none (the guards block it)."""
    from_revision: int | None = None
    """The revision current when the plan was made."""


def rollback_revision(state: WorkloadState) -> Revision | None:
    """The newest earlier revision whose pod template differs from the current one by
    more than a restart; what ``kubectl rollout undo`` should be pointed at (it would
    pick the previous revision, which after a restart is the same release)."""
    current = state.current_revision
    if current is None:
        return None
    for revision in state.revisions[1:]:
        if current.template and revision.template:
            if revision.template != current.template:
                return revision
        elif revision.images != current.images or not (current.template or revision.template):
            return revision
    return None


def _concrete(inputs: PlanInputs, settings: NoSettings) -> Concrete:
    state = inputs.state
    target = rollback_revision(state) or state.previous_revision
    current = state.current_revision
    return Concrete(
        RollbackParams(
            to_revision=target.number if target is not None else None,
            from_revision=current.number if current is not None else None,
        )
    )


def _annotations(obj: JsonObject) -> dict[str, JsonValue]:
    found = path_of(obj, "metadata", "annotations")
    return dict(found) if isinstance(found, dict) else {}


def _undo_patch(target: WorkloadRef, to_revision: int, reads: Reads) -> list[JsonValue]:
    """The JSON patch ``kubectl rollout undo --to-revision`` sends."""
    dep = reads.deployment(target)
    if path_of(dep, "spec", "paused"):
        raise PermanentActionError(f"{target} is paused; resume it before rolling back")
    wanted = next(
        (
            rs
            for rs in reads.replicasets(target)
            if _annotations(rs).get(REVISION) == str(to_revision)
        ),
        None,
    )
    if wanted is None:
        raise PermanentActionError(f"{target} has no revision {to_revision} to roll back to")
    template = copy.deepcopy(path_of(wanted, "spec", "template"))
    labels = path_of(template, "metadata", "labels") if isinstance(template, dict) else None
    if isinstance(labels, dict):
        labels.pop("pod-template-hash", None)
    annotations = {k: v for k, v in _annotations(dep).items() if k in SKIPPED_ANNOTATIONS}
    annotations.update(
        {k: v for k, v in _annotations(wanted).items() if k not in SKIPPED_ANNOTATIONS}
    )
    return [
        {"op": "replace", "path": "/spec/template", "value": template},
        {"op": "replace", "path": "/metadata/annotations", "value": annotations},
    ]


def _revision_numbered(target: WorkloadRef, number: int, reads: Reads) -> JsonObject | None:
    """The ControllerRevision of the StatefulSet numbered ``number``, if it still exists."""
    return next((r for r in reads.revisions(target) if r.get("revision") == number), None)


def _revision_undo(target: WorkloadRef, to_revision: int, reads: Reads) -> JsonObject:
    """The strategic merge patch ``kubectl rollout undo statefulset|daemonset
    --to-revision`` sends: the revision's own ``data``."""
    wanted = _revision_numbered(target, to_revision, reads)
    data = wanted.get("data") if wanted is not None else None
    if not isinstance(data, dict):
        raise PermanentActionError(f"{target} has no revision {to_revision} to roll back to")
    return copy.deepcopy(data)


def _request(target: WorkloadRef, params: RollbackParams, reads: Reads, now: datetime) -> Request:
    if params.to_revision is None:
        raise PermanentActionError(f"{target} has no earlier revision to roll back to")
    match kind_of(target):
        case TargetKind.DEPLOYMENT:
            patch = _undo_patch(target, params.to_revision, reads)
            return Request("PATCH", object_path(target), JSON_PATCH, patch)
        case TargetKind.STATEFULSET | TargetKind.DAEMONSET:
            body = _revision_undo(target, params.to_revision, reads)
            return Request("PATCH", object_path(target), STRATEGIC, body)
        case TargetKind.NODE:
            raise PermanentActionError(f"{target}: rollback does not support a {target.kind}")
        case _:
            assert_never(kind_of(target))


def _landed(target: WorkloadRef, params: RollbackParams, started: datetime, reads: Reads) -> bool:
    match kind_of(target):
        case TargetKind.DEPLOYMENT:
            current = _annotations(reads.deployment(target)).get(REVISION)
        case TargetKind.STATEFULSET:
            name = path_of(reads.workload(target), "status", "updateRevision")
            found = next(
                (r for r in reads.revisions(target) if path_of(r, "metadata", "name") == name),
                None,
            )
            current = str(found.get("revision")) if found is not None else None
        case TargetKind.DAEMONSET:
            numbers = [r.get("revision") for r in reads.revisions(target)]
            newest = max((n for n in numbers if isinstance(n, int)), default=None)
            current = str(newest) if newest is not None else None
        case TargetKind.NODE:
            return False
        case _:
            assert_never(kind_of(target))
    return current is not None and current != str(params.from_revision)


REVISION_LABEL = "controller-revision-hash"
"""The label naming the ControllerRevision a StatefulSet's pod was made from."""


def _stuck_pods(
    target: WorkloadRef, params: RollbackParams, reads: Reads, now: datetime
) -> tuple[Request, ...]:
    """The DELETE of each pod of a StatefulSet still at the revision rolled back from
    and not Ready (see the module docstring); none for a Deployment."""
    if kind_of(target) is not TargetKind.STATEFULSET or params.from_revision is None:
        return ()
    bad = _revision_numbered(target, params.from_revision, reads)
    name = path_of(bad, "metadata", "name") if bad is not None else None
    if not isinstance(name, str):
        return ()
    return tuple(
        Request(
            "DELETE",
            pod_path(target.namespace, str(path_of(pod, "metadata", "name"))),
            "application/json",
            None,
        )
        for pod in reads.pods_of(target)
        if _labels(pod).get(REVISION_LABEL) == name
        and not _ready(pod)
        and path_of(pod, "metadata", "deletionTimestamp") is None
    )


def _labels(obj: JsonObject) -> dict[str, JsonValue]:
    found = path_of(obj, "metadata", "labels")
    return dict(found) if isinstance(found, dict) else {}


def _ready(pod: JsonObject) -> bool:
    conditions = path_of(pod, "status", "conditions")
    return isinstance(conditions, list) and any(
        isinstance(c, dict) and c.get("type") == "Ready" and c.get("status") == "True"
        for c in conditions
    )


ACTION = ActionSpec(
    kind=ActionKind.ROLLBACK,
    params=RollbackParams,
    settings=NoSettings,
    guards=("paused", "rollback_target", "flip_back"),
    rbac=(
        Rule("apps", "deployments", ("get", "patch")),
        Rule("apps", "replicasets", ("list",)),
        Rule("apps", "statefulsets", ("get", "patch")),
        Rule("apps", "controllerrevisions", ("list",)),
        Rule("", "pods", ("list", "delete")),
        Rule("apps", "daemonsets", ("get", "patch")),
    ),
    targets=(TargetKind.DEPLOYMENT, TargetKind.STATEFULSET, TargetKind.DAEMONSET),
    make_concrete=_concrete,
    make_request=_request,
    check_landed=_landed,
    make_follow_up=_stuck_pods,
)
