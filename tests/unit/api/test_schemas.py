"""The incident list's own encoding (``healer.audit.listed``) writes what the response
model would, for rows read from their columns (``review._entries_of``)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import pytest

from healer.api.schemas import IncidentItem, IncidentPage
from healer.audit import IncidentSummary, listed
from healer.audit.review import _entries_of
from healer.audit.views import SummaryRow
from healer.types import ActionKind, ActionStatus, Cause, IncidentStatus, OutcomeKind, WorkloadRef

T0 = datetime(2025, 3, 1, 12, 30, tzinfo=UTC)


def summary(**changes: object) -> IncidentSummary:
    values: dict[str, object] = {
        "id": 7,
        "workload": WorkloadRef("shop", "Deployment", "cart"),
        "status": IncidentStatus.RESOLVED,
        "opened": T0,
        "closed": T0.replace(minute=45),
        "score": 0.97,
        "cause": Cause.MEMORY_LEAK,
        "confidence": 0.8,
        "action": ActionKind.RESTART,
        "action_status": ActionStatus.SUCCEEDED,
        "outcome": OutcomeKind.HEALED,
        "last_seen": T0.replace(minute=31),
    }
    values.update(changes)
    return IncidentSummary(**values)  # type: ignore[arg-type] # the fields, by name


def row(s: IncidentSummary) -> SummaryRow:
    ref = s.workload
    return SummaryRow(
        s.id,
        ref.namespace,
        ref.kind,
        ref.name,
        s.status,
        s.opened,
        s.closed,
        s.score,
        s.cause,
        s.confidence,
        s.action,
        s.action_status,
        s.outcome,
        s.last_seen,
    )


def encode(rows: list[SummaryRow], next_cursor: str | None) -> bytes:
    """A page as the list joins it from rows read from their columns."""
    return listed.page_json([entry for _, entry in _entries_of(rows)], next_cursor)


def by_model(items: list[IncidentSummary], next_cursor: str | None) -> bytes:
    page = IncidentPage(
        items=[IncidentItem.from_summary(s) for s in items], next_cursor=next_cursor
    )
    return page.model_dump_json().encode()


@pytest.mark.parametrize(
    "item",
    [
        summary(),
        summary(
            status=IncidentStatus.OPEN,
            closed=None,
            cause=None,
            confidence=None,
            action=None,
            action_status=None,
            outcome=None,
        ),
        summary(opened=T0.replace(microsecond=120_000), last_seen=T0.replace(microsecond=5)),
        summary(score=1.0, confidence=1e-7),
        summary(score=0.1 + 0.2, confidence=math.nan),
        summary(workload=WorkloadRef("ns-é", "Deployment", 'we"ird\\name')),
    ],
    ids=["resolved", "open", "microseconds", "float forms", "float edges", "escapes"],
)
def test_the_page_is_byte_for_byte_what_the_model_writes(item: IncidentSummary) -> None:
    assert encode([row(item)], "7.abc") == by_model([item], "7.abc")


def test_an_empty_last_page_is_what_the_model_writes() -> None:
    assert encode([], None) == by_model([], None) == b'{"items":[],"next_cursor":null}'


def test_the_encoder_writes_every_field_of_the_model() -> None:
    """A field added to ``IncidentItem`` and not to the encoder fails here."""
    [item] = json.loads(encode([row(summary())], None))["items"]
    assert list(item) == list(IncidentItem.model_fields)
