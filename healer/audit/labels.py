"""Training labels: operators' feedback and the diagnoser's rows it labels.

What ``healer train``, ``healer train-diagnoser`` and the retrain notebook read from the
store, never write. ``TrainingLabels`` (``roles.py``) is this role as training sees it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from healer.audit import views
from healer.audit.database import Database
from healer.audit.tables import FeedbackRow, IncidentRow, StepKind, StepRow
from healer.types import Feedback


class SqlTrainingLabels(Database):
    """Training labels on the shared database (``AuditStore`` is one)."""

    def feedback(self, since: datetime | None = None) -> list[Feedback]:
        """Every label given at or after ``since``, oldest first: training data."""
        query = (
            select(FeedbackRow, IncidentRow)
            .join(IncidentRow, IncidentRow.id == FeedbackRow.incident_id)
            .order_by(FeedbackRow.at, FeedbackRow.id)
        )
        if since is not None:
            query = query.where(FeedbackRow.at >= since)
        with self._read("read feedback") as session:
            return [views.feedback(label, row) for label, row in session.execute(query)]

    def diagnosis_features(self) -> dict[int, dict[str, float]]:
        """The diagnoser's feature row (column name to value) kept with each incident's
        latest diagnosis, by incident id: to pair with ``feedback()``."""
        query = (
            select(StepRow.incident_id, StepRow.data)
            .where(StepRow.kind == StepKind.DIAGNOSIS)
            .order_by(StepRow.incident_id, StepRow.seq)
        )
        rows: dict[int, dict[str, float]] = {}
        with self._read("read diagnosis features") as session:
            for incident_id, data in session.execute(query):
                kept = data.get("features") if isinstance(data, dict) else None
                if isinstance(kept, dict):
                    rows[incident_id] = {
                        str(k): float(v) for k, v in kept.items() if isinstance(v, int | float)
                    }
                else:  # the latest diagnosis kept none: an earlier row no longer holds
                    rows.pop(incident_id, None)
        return rows
