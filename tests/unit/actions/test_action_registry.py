"""The registry: every kind has a module, and each module's parts fit together."""

from __future__ import annotations

from typing import get_args

import pytest

from healer.actions import REGISTRY, handler, rbac_rules
from healer.actions.base import GuardName
from healer.types import ActionKind


@pytest.mark.parametrize("kind", list(ActionKind))
def test_every_kind_has_a_handler_of_that_kind(kind: ActionKind) -> None:
    assert handler(kind).kind is kind
    assert REGISTRY[kind] is handler(kind)


@pytest.mark.parametrize("kind", list(ActionKind))
def test_every_kind_names_known_guards_once_and_needs_some_rights(kind: ActionKind) -> None:
    action = handler(kind)
    assert set(action.guards) <= set(get_args(GuardName))
    assert len(set(action.guards)) == len(action.guards)
    assert action.rbac and all(rule.verbs for rule in action.rbac)


def test_the_rules_include_what_the_actuator_itself_needs() -> None:
    granted = {(r.group, r.resource, verb) for r in rbac_rules() for verb in r.verbs}
    assert ("", "events", "create") in granted
    assert ("apps", "deployments", "get") in granted
