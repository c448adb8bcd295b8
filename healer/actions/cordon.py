"""Cordon a node: mark it unschedulable, the request ``kubectl cordon`` sends.

``PATCH /api/v1/nodes/NAME`` with the strategic merge patch ``{"spec":
{"unschedulable": true}}``: the scheduler places no new pod there, and the pods it runs
keep running until a drain evicts them. ``uncordon.py`` sends the opposite.

Decisions:

- A node is a target like a workload (``TargetKind.NODE``, a ``WorkloadRef`` with an
  empty namespace), so plans, action records, incidents and the audit store carry it
  without a type of their own; what is particular to nodes (the cap on cordoned nodes,
  when to drain and uncordon) is decided by ``decide.nodes`` from ``NodeState`` values.
- Idempotent: cordoning a cordoned node changes nothing. After a crash the cordon
  landed when the node is unschedulable, whoever made it so.
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
from healer.actions.targets import object_path
from healer.errors import PermanentActionError
from healer.types import ActionKind, JsonValue, TargetKind, WorkloadRef

STRATEGIC_MERGE = "application/strategic-merge-patch+json"


class NodeParams(Params):
    """Cordon and uncordon take nothing but the node they name."""


def concrete(inputs: PlanInputs, settings: NoSettings) -> Concrete:
    return Concrete(NodeParams())


def unschedulable_patch(target: WorkloadRef, value: JsonValue) -> Request:
    """The patch of ``spec.unschedulable`` kubectl sends; ``None`` removes the field, as
    ``kubectl uncordon``'s two-way merge patch does (false is Go's zero value)."""
    if target.kind != TargetKind.NODE.value:
        raise PermanentActionError(f"{target}: only a Node can be cordoned or uncordoned")
    body: dict[str, JsonValue] = {"spec": {"unschedulable": value}}
    return Request("PATCH", object_path(target), STRATEGIC_MERGE, body)


def is_cordoned(target: WorkloadRef, reads: Reads) -> bool:
    """Whether the node is unschedulable now; PermanentActionError when it is gone."""
    node = reads.node(target.name)
    if node is None:
        raise PermanentActionError(f"{target} does not exist")
    return path_of(node, "spec", "unschedulable") is True


def _request(target: WorkloadRef, params: NodeParams, reads: Reads, now: datetime) -> Request:
    return unschedulable_patch(target, True)


def _landed(target: WorkloadRef, params: NodeParams, started: datetime, reads: Reads) -> bool:
    return is_cordoned(target, reads)


NODE_RBAC = (Rule("", "nodes", ("get", "patch")),)
"""Reading a node (whether a cordon landed) and patching its ``spec.unschedulable``."""

ACTION = ActionSpec(
    kind=ActionKind.CORDON,
    params=NodeParams,
    settings=NoSettings,
    guards=(),
    targets=(TargetKind.NODE,),
    rbac=NODE_RBAC,
    make_concrete=concrete,
    make_request=_request,
    check_landed=_landed,
)
