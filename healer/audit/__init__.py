"""The audit store: every step of every incident, durable before the next step starts.

``AuditStore`` opens one; ``roles`` holds the interfaces its clients are typed against
(the daemon's log and kept state, the review queue, training labels).
"""

from healer.audit.roles import (
    AlertInbox,
    DaemonLog,
    DaemonState,
    DaemonStore,
    ReviewQueue,
    TrainingLabels,
)
from healer.audit.store import (
    ActionView,
    AlertsRecorded,
    AuditStore,
    FeedbackInput,
    IncidentDetail,
    IncidentSummary,
    TimelineStep,
)
from healer.audit.tables import StepKind
from healer.audit.views import IncidentFilter

__all__ = [
    "ActionView",
    "AlertInbox",
    "AlertsRecorded",
    "AuditStore",
    "DaemonLog",
    "DaemonState",
    "DaemonStore",
    "FeedbackInput",
    "IncidentDetail",
    "IncidentFilter",
    "IncidentSummary",
    "ReviewQueue",
    "StepKind",
    "TimelineStep",
    "TrainingLabels",
]
