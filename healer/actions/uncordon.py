"""Uncordon a node: mark it schedulable again, the request ``kubectl uncordon`` sends.

The same patch as ``cordon.py`` with ``spec.unschedulable`` removed. healer uncordons
only a node it cordoned itself, once the node has been healthy for
``nodes.uncordon_after_s`` (``decide.nodes``): a node a person cordoned is theirs.
After a crash the uncordon landed when the node is schedulable.
"""

from __future__ import annotations

from datetime import datetime

from healer.actions.base import ActionSpec, NoSettings, Reads, Request
from healer.actions.cordon import NODE_RBAC, NodeParams, concrete, is_cordoned, unschedulable_patch
from healer.types import ActionKind, TargetKind, WorkloadRef


def _request(target: WorkloadRef, params: NodeParams, reads: Reads, now: datetime) -> Request:
    return unschedulable_patch(target, None)


def _landed(target: WorkloadRef, params: NodeParams, started: datetime, reads: Reads) -> bool:
    return not is_cordoned(target, reads)


ACTION = ActionSpec(
    kind=ActionKind.UNCORDON,
    params=NodeParams,
    settings=NoSettings,
    guards=(),
    targets=(TargetKind.NODE,),
    rbac=NODE_RBAC,
    make_concrete=concrete,
    make_request=_request,
    check_landed=_landed,
)
