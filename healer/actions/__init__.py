"""Action kinds: one module each, found through ``handler``.

``handler`` is the one place that maps an ``ActionKind`` to its module. Its ``match``
ends in ``assert_never``, so ``mypy --strict`` reports a kind added to ``ActionKind``
without a module; ``REGISTRY`` is built from it at import, so a kind without a handler
also fails at start-up. Playbook validation refuses a kind that is not in ``REGISTRY``.

Adding a kind: a module beside ``restart.py`` exporting ``ACTION`` (an ``ActionSpec``),
its member in ``ActionKind``, its ``case`` below, and a playbook that uses it. The
planner, the guards and the actuator stay as they are.
"""

from __future__ import annotations

from typing import assert_never

from healer.actions import cordon, drain, evict, restart, rollback, scale, uncordon
from healer.actions.base import Action, Rule
from healer.types import ActionKind


def handler(kind: ActionKind) -> Action:
    """The module that carries out ``kind``."""
    match kind:
        case ActionKind.RESTART:
            return restart.ACTION
        case ActionKind.SCALE:
            return scale.ACTION
        case ActionKind.ROLLBACK:
            return rollback.ACTION
        case ActionKind.EVICT:
            return evict.ACTION
        case ActionKind.CORDON:
            return cordon.ACTION
        case ActionKind.DRAIN:
            return drain.ACTION
        case ActionKind.UNCORDON:
            return uncordon.ACTION
        case _:
            assert_never(kind)


REGISTRY: dict[ActionKind, Action] = {kind: handler(kind) for kind in ActionKind}
"""Every kind with its module, in ``ActionKind`` order."""

COMMON_RBAC = (
    Rule("apps", "deployments", ("get",)),
    Rule("apps", "replicasets", ("list",)),
    Rule("apps", "statefulsets", ("get",)),
    Rule("apps", "daemonsets", ("get",)),
    Rule("apps", "controllerrevisions", ("list",)),
    Rule("autoscaling", "horizontalpodautoscalers", ("list",)),
    Rule("", "events", ("create",)),
)
"""What the actuator needs whatever the kind: reading a workload's state (its
Deployment and ReplicaSets, or its StatefulSet or DaemonSet and ControllerRevisions,
and its HPA)
and posting an Event on it after acting."""


def rbac_rules() -> tuple[Rule, ...]:
    """Every rule any registered kind, or the actuator itself, needs."""
    return COMMON_RBAC + tuple(rule for action in REGISTRY.values() for rule in action.rbac)


__all__ = ["REGISTRY", "Action", "handler", "rbac_rules"]
