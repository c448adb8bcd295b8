"""The audit store: every step of every incident, durable before the next step starts."""

from healer.audit.store import (
    AuditStore,
    IncidentDetail,
    IncidentSummary,
    StepKind,
    TimelineStep,
)

__all__ = ["AuditStore", "IncidentDetail", "IncidentSummary", "StepKind", "TimelineStep"]
