"""The audit store: every step of every incident, durable before the next step starts."""

from healer.audit.store import (
    ActionView,
    AuditStore,
    FeedbackInput,
    IncidentDetail,
    IncidentSummary,
    TimelineStep,
)
from healer.audit.tables import StepKind

__all__ = [
    "ActionView",
    "AuditStore",
    "FeedbackInput",
    "IncidentDetail",
    "IncidentSummary",
    "StepKind",
    "TimelineStep",
]
