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
    # from_attributes: a model reads the store's dataclasses field by field, by name.
    model_config = ConfigDict(frozen=True, extra="forbid", from_attributes=True)


class Workload(_Out):
    namespace: str
    kind: str
    name: str

    @classmethod
    def from_ref(cls, ref: WorkloadRef) -> Workload:
        return cls.model_validate(ref)


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
    def from_summary(cls, summary: IncidentSummary) -> IncidentItem:
        return cls.model_validate(summary)


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
