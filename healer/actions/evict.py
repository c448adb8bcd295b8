"""Evict one pod: what ``kubectl drain`` sends for each pod it removes.

An Eviction (``POST /api/v1/namespaces/NS/pods/NAME/eviction``, a policy/v1
``Eviction`` body), never a plain DELETE, so that PodDisruptionBudgets hold: the API
server answers 429 while a budget forbids it, which the actuator retries and then
records. The Deployment's ReplicaSet replaces the pod.

Decisions:

- The pod is chosen when the plan is made, so that the plan in the audit store names
  it and a person approving it knows which one. When the diagnosis blames one pod
  (``pod_outlier``), that pod, and no other: if it is gone or already terminating by
  then, there is nothing left to evict and the plan says so. Otherwise, of the
  workload's pods not already terminating, one that is not Ready first, then the most
  restarts, then the oldest (the one a leak has had longest to grow in), then by name.
- A PodDisruptionBudget that forbids the eviction answers 429: the actuator waits as
  ``Retry-After`` says, a few times within the cycle, then records the failure and the
  incident is escalated; healer never falls back to deleting the pod, which would
  bypass the budget.
- The ``eviction_budget`` guard allows one eviction per workload per
  ``guards.evict_cooldown_s``, chained steps included.
- After a crash the eviction landed when the pod is gone or terminating; the pod is
  read from the intent's params, or from the Eviction body of a sent request.
- No pod to choose is not a plan the cluster could carry out: the request fails with
  that reason and the incident is escalated.
"""

from __future__ import annotations

from datetime import datetime

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
from healer.actions.targets import pod_path
from healer.errors import PermanentActionError
from healer.types import ActionKind, JsonObject, JsonValue, PodState, TargetKind, WorkloadRef


class EvictParams(Params):
    pod: str | None = None
    """The pod to evict; None when the workload had none to choose."""


def choose(pods: tuple[PodState, ...]) -> PodState | None:
    """The pod to evict, by the order in the module docstring; None when none is left."""
    live = [p for p in pods if not p.terminating]
    if not live:
        return None
    return min(live, key=lambda p: (p.ready, -p.restarts, p.created, p.name))


def _concrete(inputs: PlanInputs, settings: NoSettings) -> Concrete:
    if inputs.pod is not None:
        return _named(inputs.pod, inputs.state.pods)
    pod = choose(inputs.state.pods)
    if pod is None:
        return Concrete(EvictParams(), "; no pod to evict")
    why = "not ready" if not pod.ready else "ready"
    return Concrete(
        EvictParams(pod=pod.name), f"; evicting pod {pod.name} ({why}, {pod.restarts} restarts)"
    )


def _named(name: str, pods: tuple[PodState, ...]) -> Concrete:
    """The pod the diagnosis blames, if it is still there to evict."""
    if not any(p.name == name and not p.terminating for p in pods):
        return Concrete(EvictParams(), f"; pod {name}, the outlier, is already gone")
    return Concrete(EvictParams(pod=name), f"; evicting pod {name}, the outlier")


def _request(target: WorkloadRef, params: EvictParams, reads: Reads, now: datetime) -> Request:
    if params.pod is None:
        raise PermanentActionError(f"{target} has no pod to evict")
    body: JsonObject = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": params.pod, "namespace": target.namespace},
    }
    path = f"{pod_path(target.namespace, params.pod)}/eviction"
    return Request("POST", path, "application/json", body)


def _landed(target: WorkloadRef, params: EvictParams, started: datetime, reads: Reads) -> bool:
    if params.pod is None:
        return False
    pod = reads.pod(target.namespace, params.pod)
    return pod is None or path_of(pod, "metadata", "deletionTimestamp") is not None


def _params_of_request(request: JsonObject) -> dict[str, JsonValue]:
    name = path_of(request, "body", "metadata", "name")
    return {"pod": name} if isinstance(name, str) else {}


ACTION = ActionSpec(
    kind=ActionKind.EVICT,
    params=EvictParams,
    settings=NoSettings,
    guards=("eviction_budget",),
    targets=(TargetKind.DEPLOYMENT, TargetKind.STATEFULSET),
    rbac=(
        Rule("", "pods/eviction", ("create",)),
        Rule("", "pods", ("get",)),
    ),
    make_concrete=_concrete,
    make_request=_request,
    check_landed=_landed,
    params_of_request=_params_of_request,
)
