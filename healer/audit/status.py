"""Incident status: the one place it changes, and the moves its lifecycle allows.

::

    move              from                                to
    TAKEN             open, verifying                     verifying
    AWAITS_APPROVAL   open, verifying                     pending_approval
    APPROVED          pending_approval                    open
    CLOSED            open, verifying, pending_approval   resolved

Every change of ``incidents.status`` goes through ``move``: the daemon's records
(an action taken or awaiting approval, an outcome) and people's reviews (an approval,
a rejection) alike. A move the lifecycle does not allow raises ``IllegalTransition``
naming the incident and both statuses, inside the write that asked for it, so that
write changes nothing.

Decisions:

- A resolved incident stays resolved: its outcome is never overwritten, and an action
  of a closed incident is never approved, rejected or taken. A workload anomalous again
  opens a new incident.
- An action is taken only from ``open`` (a first action, or an approved one) or
  ``verifying`` (the next step of an ``on_failure`` chain); never while it awaits a
  person: ``pending_approval`` goes to ``open`` by an approval first.
- ``open`` is where an incident starts (``AuditStore.open_incident``), not a move; the
  one move into it is an approval. ``verifying`` to ``verifying`` and to
  ``pending_approval`` are the next step of a chain, taken or awaiting a person.
- The daemon's own stages (``healer.daemon.Stage``) are its working memory of what to do
  next; the status is what the store, people and a restarted daemon see. Only this
  module changes the latter.
"""

from __future__ import annotations

import enum

from healer.audit.tables import IncidentRow
from healer.errors import IllegalTransition
from healer.types import IncidentStatus, Outcome

__all__ = ["ALLOWED", "Move", "allowed", "close", "move"]


class Move(enum.StrEnum):
    """Why an incident's status changes; each names the status it leads to."""

    TAKEN = "an action taken"
    """An action succeeded or ran as a dry run: verify it next."""
    AWAITS_APPROVAL = "an action awaiting approval"
    APPROVED = "an approval"
    """A person approved the pending action: the daemon takes it on its next cycle."""
    CLOSED = "an outcome"
    """Healed, not healed or escalated, rejected or expired: the incident is over."""

    @property
    def to(self) -> IncidentStatus:
        return _TARGET[self]


_TARGET = {
    Move.TAKEN: IncidentStatus.VERIFYING,
    Move.AWAITS_APPROVAL: IncidentStatus.PENDING_APPROVAL,
    Move.APPROVED: IncidentStatus.OPEN,
    Move.CLOSED: IncidentStatus.RESOLVED,
}

_OPEN, _VERIFYING = IncidentStatus.OPEN, IncidentStatus.VERIFYING
_PENDING, _RESOLVED = IncidentStatus.PENDING_APPROVAL, IncidentStatus.RESOLVED

ALLOWED: dict[Move, frozenset[IncidentStatus]] = {
    Move.TAKEN: frozenset({_OPEN, _VERIFYING}),
    Move.AWAITS_APPROVAL: frozenset({_OPEN, _VERIFYING}),
    Move.APPROVED: frozenset({_PENDING}),
    Move.CLOSED: frozenset({_OPEN, _VERIFYING, _PENDING}),
}
"""The statuses each move may start from; every other start is refused."""


def allowed(current: IncidentStatus, change: Move) -> bool:
    return current in ALLOWED[change]


def move(row: IncidentRow, change: Move) -> None:
    """Set the incident's status for ``change``, in the caller's write; raises
    IllegalTransition, changing nothing, when its lifecycle does not allow it."""
    if not allowed(row.status, change):
        starts = ", ".join(sorted(ALLOWED[change]))
        raise IllegalTransition(
            f"incident {row.id} is {row.status}: {change} cannot move it to {change.to} "
            f"(only from {starts})"
        )
    row.status = change.to


def close(row: IncidentRow, outcome: Outcome) -> None:
    """Resolve the incident with ``outcome`` (its kind and time), in the caller's write;
    the caller appends the outcome's step. Refused for an incident already resolved."""
    move(row, Move.CLOSED)
    row.outcome, row.closed = outcome.kind, outcome.at
