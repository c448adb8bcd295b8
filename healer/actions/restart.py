"""Rollout restart: what ``kubectl rollout restart deployment/NAME`` (or
``statefulset/NAME``, ``daemonset/NAME``) sends.

A strategic merge patch that stamps ``kubectl.kubernetes.io/restartedAt`` on the pod
template, so the Deployment controller rolls every pod (the StatefulSet controller,
every pod at or above its ``partition``, highest ordinal first; the DaemonSet
controller, node by node within its ``maxUnavailable``). It takes no parameters.

Decisions:

- A paused Deployment is refused (the ``paused`` guard, and again at request time from
  a fresh read): nothing would roll out until someone resumes it.
- The stamp is the action's start time to the second, as kubectl writes it; after a
  crash the action landed exactly when the template carries that stamp.
"""

from __future__ import annotations

from datetime import UTC, datetime

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
from healer.actions.targets import object_path
from healer.errors import PermanentActionError
from healer.types import ActionKind, JsonObject, TargetKind, WorkloadRef

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
STRATEGIC = "application/strategic-merge-patch+json"


class RestartParams(Params):
    """A restart has no parameters."""


def stamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _concrete(inputs: PlanInputs, settings: NoSettings) -> Concrete:
    return Concrete(RestartParams())


def refuse_paused(target: WorkloadRef, reads: Reads, doing: str) -> None:
    """PermanentActionError when the Deployment is paused now (a StatefulSet or a
    DaemonSet never is)."""
    if path_of(reads.workload(target), "spec", "paused"):
        raise PermanentActionError(
            f"{target} is paused: resume it before {doing}; nothing would roll out"
        )


def _request(target: WorkloadRef, params: RestartParams, reads: Reads, now: datetime) -> Request:
    refuse_paused(target, reads, "restarting")
    body: JsonObject = {
        "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp(now)}}}}
    }
    return Request("PATCH", object_path(target), STRATEGIC, body)


def _landed(target: WorkloadRef, params: RestartParams, started: datetime, reads: Reads) -> bool:
    annotations = path_of(reads.workload(target), "spec", "template", "metadata", "annotations")
    return isinstance(annotations, dict) and annotations.get(RESTARTED_AT) == stamp(started)


ACTION = ActionSpec(
    kind=ActionKind.RESTART,
    params=RestartParams,
    settings=NoSettings,
    guards=("paused",),
    rbac=(
        Rule("apps", "deployments", ("get", "patch")),
        Rule("apps", "statefulsets", ("get", "patch")),
        Rule("apps", "daemonsets", ("get", "patch")),
    ),
    targets=(TargetKind.DEPLOYMENT, TargetKind.STATEFULSET, TargetKind.DAEMONSET),
    make_concrete=_concrete,
    make_request=_request,
    check_landed=_landed,
)
