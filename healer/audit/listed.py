"""Each incident's entry in the incident list, encoded once when it is written.

The incident list is the one read people send in every shape they can type, many
clients at a time, while an incident changes a few times in its life. Building a page
from the summary columns cost most of a page's CPU: the driver making fifteen values a
row, converting the times and enums, then encoding them (bench/api_incidents.py: about
0.3 ms of a 0.75 ms page at 100,000 incidents). So the incident's row also keeps its
list entry as JSON text (``incidents.listed``, migration 0011), written with the
columns it is made of; a page is then two values a row (its id, for the cursor, and
that text), joined into the page's bytes.

Decisions:

- The text is exactly the ``IncidentItem`` the API documents, as pydantic writes it
  (field order, ``Z`` for UTC, enums as values, shortest float form): a test compares
  the two.
- It is made from the row's attributes by SQLAlchemy hooks on every insert and update
  of an incident through the ORM (``tables``), which is how the store writes incidents,
  so it cannot fall behind a column. The id is the database's to assign, so a new
  incident's entry is written just after its row, in the same transaction. A row
  without it (written by an older version and not migrated, or inserted in bulk past
  the ORM) is listed from its columns instead.
- A field added to ``IncidentItem`` is added to ``entry_json`` and the text of every
  row made again by a migration, as 0011 does.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol

import orjson


class Listable(Protocol):
    """What a list entry is made of: an incident's row, or its summary columns as read."""

    @property
    def id(self) -> int: ...
    @property
    def namespace(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def status(self) -> enum.Enum: ...
    @property
    def opened(self) -> datetime: ...
    @property
    def closed(self) -> datetime | None: ...
    @property
    def score(self) -> float: ...
    @property
    def cause(self) -> enum.Enum | None: ...
    @property
    def confidence(self) -> float | None: ...
    @property
    def action(self) -> enum.Enum | None: ...
    @property
    def action_status(self) -> enum.Enum | None: ...
    @property
    def outcome(self) -> enum.Enum | None: ...
    @property
    def last_seen(self) -> datetime: ...
    @property
    def cluster(self) -> str: ...


def entry_json(row: Listable) -> str:
    """The list entry of the incident ``row`` describes."""
    item = {
        "id": row.id,
        "workload": {"namespace": row.namespace, "kind": row.kind, "name": row.name},
        "status": row.status,
        "opened": _utc(row.opened),
        "closed": None if row.closed is None else _utc(row.closed),
        "score": float(row.score),
        "cause": row.cause,
        "confidence": None if row.confidence is None else float(row.confidence),
        "action": row.action,
        "action_status": row.action_status,
        "outcome": row.outcome,
        "last_seen": _utc(row.last_seen),
        "cluster": row.cluster,
    }
    return orjson.dumps(item, option=orjson.OPT_UTC_Z).decode()


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError(f"naive datetime {at.isoformat()}: healer times are aware")
    return at if at.tzinfo is UTC else at.astimezone(UTC)


def page_json(entries: Sequence[str], next_cursor: str | None) -> bytes:
    """A page of the list (the API's ``IncidentPage``) from its incidents' entries."""
    after = "null" if next_cursor is None else orjson.dumps(next_cursor).decode()
    return f'{{"items":[{",".join(entries)}],"next_cursor":{after}}}'.encode()
