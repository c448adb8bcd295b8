"""Response models of the HTTP API (pydantic v2).

They are the API's contract, kept apart from the store's dataclasses so that the store
can change without changing what clients see. Times are ISO 8601 in UTC; enums are their
string values. Each model is built from the store's result by a ``from_*`` class method.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, JsonValue

from healer.audit import IncidentDetail, IncidentSummary, StepKind, TimelineStep
from healer.types import ActionKind, ActionStatus, Cause, IncidentStatus, OutcomeKind, WorkloadRef


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Workload(_Out):
    namespace: str
    kind: str
    name: str

    @classmethod
    def from_ref(cls, ref: WorkloadRef) -> Workload:
        return cls(namespace=ref.namespace, kind=ref.kind, name=ref.name)


class IncidentItem(_Out):
    id: int
    workload: Workload
    status: IncidentStatus
    opened: datetime
    closed: datetime | None
    score: float
    """Peak anomaly score, 0..1."""
    cause: Cause | None
    confidence: float | None
    action: ActionKind | None
    action_status: ActionStatus | None
    outcome: OutcomeKind | None
    last_seen: datetime

    @classmethod
    def from_summary(cls, s: IncidentSummary) -> IncidentItem:
        return cls(
            id=s.id,
            workload=Workload.from_ref(s.workload),
            status=s.status,
            opened=s.opened,
            closed=s.closed,
            score=s.score,
            cause=s.cause,
            confidence=s.confidence,
            action=s.action,
            action_status=s.action_status,
            outcome=s.outcome,
            last_seen=s.last_seen,
        )


class IncidentPage(_Out):
    items: list[IncidentItem]
    next_cursor: int | None
    """Pass as ``cursor`` to get the next page; null on the last page."""


class Step(_Out):
    kind: StepKind
    at: datetime
    data: dict[str, JsonValue]

    @classmethod
    def from_step(cls, step: TimelineStep) -> Step:
        return cls(kind=step.kind, at=step.at, data=step.data)


class IncidentDetailOut(IncidentItem):
    timeline: list[Step]
    """Every recorded step, oldest first."""

    @classmethod
    def from_detail(cls, detail: IncidentDetail) -> IncidentDetailOut:
        item = IncidentItem.from_summary(detail.summary)
        timeline = [Step.from_step(s) for s in detail.timeline]
        return cls(**dict(item), timeline=timeline)


class Health(_Out):
    status: str
