"""Deciding what to do: playbook loading and validation, matching, guardrails.

The public surface is small on purpose: the daemon loads playbooks once at start-up,
calls ``plan`` per diagnosis, and looks a playbook up by name to verify or fall back.
"""

from healer.decide.planner import plan
from healer.decide.playbooks import Playbook, find_playbook, load_playbooks

__all__ = ["Playbook", "find_playbook", "load_playbooks", "plan"]
