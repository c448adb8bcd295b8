"""The audit store: the record of truth for every incident, step by step.

Two tables. ``incidents`` holds one row per incident with the columns people filter and
sort on (workload, status, peak score, cause, last action, outcome); ``incident_steps``
holds the timeline, one row per recorded value with its JSON form (``serialize.py``).
The summary columns are a cache of the steps, updated in the same transaction.

``AuditStore`` is the store's roles (``roles.py``) on one database: the daemon's
log (``log.py``), the state it keeps across restarts (``kept.py``), the review queue
(``review.py``), training labels (``labels.py``), Alertmanager's alerts (``alerts.py``),
the silences healer made there (``silences.py``), what waits for a person with people's
opt-outs (``attention.py``), and release events (``releases.py``). Composition roots
(``healer run``, ``healer demo``, the test harness, the benchmarks) open one; each
client is typed against the role it uses.

Decisions:

- Every ``record_*`` commits before it returns, so a crash loses nothing and a
  restarted daemon, reading ``unresolved()``, never repeats an action it already took.
- One short session per method call, from one sessionmaker (``database.py``): the
  daemon thread writes while API threads read.
- Datetimes are stored in UTC. SQLite drops the offset, so values read back are made
  UTC-aware again; a naive datetime is refused.
- The schema comes from the Alembic migrations, run when the store opens
  (``migrate.py``); the table classes live in ``tables.py``.
- Incident status changes in one place, ``status.py``, for the daemon's records and
  people's reviews alike.
"""

from __future__ import annotations

from healer.audit.acting import SqlActingLock
from healer.audit.alerts import SqlAlertInbox
from healer.audit.attention import SqlAttention
from healer.audit.database import SQLITE_BUSY_TIMEOUT_MS, default_identity
from healer.audit.kept import SqlDaemonState
from healer.audit.labels import SqlTrainingLabels
from healer.audit.log import SqlDaemonLog
from healer.audit.releases import SqlReleaseLog
from healer.audit.review import SqlReviewQueue
from healer.audit.silences import SqlSilenceLog
from healer.audit.tables import StepKind
from healer.audit.views import (
    ActionView,
    AlertsRecorded,
    FeedbackInput,
    IncidentDetail,
    IncidentSummary,
    TimelineStep,
)

__all__ = [
    "SQLITE_BUSY_TIMEOUT_MS",
    "ActionView",
    "AlertsRecorded",
    "AuditStore",
    "FeedbackInput",
    "IncidentDetail",
    "IncidentSummary",
    "StepKind",
    "TimelineStep",
    "default_identity",
]


class AuditStore(
    SqlDaemonLog,
    SqlDaemonState,
    SqlReviewQueue,
    SqlTrainingLabels,
    SqlAlertInbox,
    SqlSilenceLog,
    SqlAttention,
    SqlReleaseLog,
    SqlActingLock,
):
    """Incidents and their timelines in a SQL database (SQLite by default).

    ``AuditStore(url, identity=...)`` opens and migrates the database. Thread-safe: each
    method opens and closes its own session. ``identity`` is written as the ``actor`` of
    every step this store records for the daemon.
    """
