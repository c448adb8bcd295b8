"""Drain a cordoned node, one pod at a time: the Eviction ``kubectl drain`` sends for each.

A drain is not one request but one Eviction per pod the node runs (``POST
/api/v1/namespaces/NS/pods/NAME/eviction``), so this kind's plan names the node as its
target and one of its pods in its parameters; ``lifecycle.node_watch`` plans one for
each pod still to go, every cycle, until none is left or the drain's deadline passes.

Decisions:

- Never a DELETE: PodDisruptionBudgets hold. While a budget forbids an eviction the
  API server answers 429; the actuator retries briefly and records the failure, the
  next cycle asks again, and a drain still blocked at ``nodes.drain_within_s`` is
  escalated to a person with the pods that would not go. healer never deletes a pod to
  get past a budget (``kubectl drain --disable-eviction`` is a person's decision).
- Pods a DaemonSet runs stay (they would come back at once: ``--ignore-daemonsets``),
  and so do pods already terminating; which pods go is decided by ``decide.nodes``.
- After a crash the eviction landed when the pod is gone or terminating.
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
from healer.types import ActionKind, JsonObject, JsonValue, TargetKind, WorkloadRef


class DrainParams(Params):
    namespace: str
    pod: str
    """The pod of the node to evict."""


def _concrete(inputs: PlanInputs, settings: NoSettings) -> Concrete:
    raise PermanentActionError(
        f"{inputs.finding.workload}: a drain is planned per pod by the node watch, "
        "not by a playbook"
    )


def _request(target: WorkloadRef, params: DrainParams, reads: Reads, now: datetime) -> Request:
    body: JsonObject = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": params.pod, "namespace": params.namespace},
    }
    return Request(
        "POST", f"{pod_path(params.namespace, params.pod)}/eviction", "application/json", body
    )


def _landed(target: WorkloadRef, params: DrainParams, started: datetime, reads: Reads) -> bool:
    pod = reads.pod(params.namespace, params.pod)
    return pod is None or path_of(pod, "metadata", "deletionTimestamp") is not None


def _params_of_request(request: JsonObject) -> dict[str, JsonValue]:
    name = path_of(request, "body", "metadata", "name")
    namespace = path_of(request, "body", "metadata", "namespace")
    if isinstance(name, str) and isinstance(namespace, str):
        return {"namespace": namespace, "pod": name}
    return {}


ACTION = ActionSpec(
    kind=ActionKind.DRAIN,
    params=DrainParams,
    settings=NoSettings,
    guards=(),
    targets=(TargetKind.NODE,),
    rbac=(
        Rule("", "pods/eviction", ("create",)),
        Rule("", "pods", ("get", "list")),
    ),
    make_concrete=_concrete,
    make_request=_request,
    check_landed=_landed,
    params_of_request=_params_of_request,
    retry_throttled=False,
)
