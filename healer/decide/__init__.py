"""Deciding what to do: playbooks, matching and guardrails."""

from healer.decide.planner import plan
from healer.decide.playbooks import Playbook, find_playbook, load_playbooks

__all__ = ["Playbook", "find_playbook", "load_playbooks", "plan"]
