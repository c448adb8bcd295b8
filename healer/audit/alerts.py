"""Alertmanager's alerts: stored as delivered, each firing once, and settled by the daemon.

The API stores a delivery whole before it answers (``record_alerts``); the daemon reads
the firing alerts it has not looked at (``pending_alerts``) and records what it made of
each (``settle_alert``): joined to an incident, or why not. ``AlertInbox``
(``roles.py``) is this role.

Decisions:

- A firing is named by its fingerprint and start. A repeated delivery of a firing alert
  changes nothing; a resolved one records its end once; an alert that fires again after
  it resolved has a new start, so it is a new row the daemon looks at afresh.
- A delivery is one transaction: all of its alerts are stored, or none (the API then
  answers 503 and Alertmanager sends it again).
- Two deliveries of one new alert racing on two replicas: the second meets the unique
  constraint, fails as a whole and is retried by Alertmanager, finding the row then.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select

from healer.audit import views
from healer.audit.database import Database
from healer.audit.tables import AlertRow, IncidentRow
from healer.audit.views import AlertsRecorded, StoredAlert
from healer.errors import UnknownRecord
from healer.types import Alert, AlertDisposition, AlertStatus


class SqlAlertInbox(Database):
    """Alerts on the shared database (``AuditStore`` is one)."""

    def record_alerts(self, alerts: Sequence[Alert], *, at: datetime) -> AlertsRecorded:
        """Store one delivery in one transaction; idempotent (see the module's decisions).

        One query finds the rows the delivery already has, by fingerprint; new rows are
        inserted together (a delivery of 200 alerts is one read and one insert)."""
        new = resolved = unchanged = 0
        with self._write("record alerts") as session:
            fingerprints = {a.fingerprint for a in alerts}
            rows = session.scalars(select(AlertRow).where(AlertRow.fingerprint.in_(fingerprints)))
            known = {(r.fingerprint, r.starts_at): r for r in rows}
            for alert in alerts:
                row = known.get((alert.fingerprint, alert.starts_at))
                if row is None:
                    known[(alert.fingerprint, alert.starts_at)] = row = _row(alert, at)
                    row.cluster = self.cluster
                    session.add(row)
                    new += 1
                elif alert.status is AlertStatus.RESOLVED and row.status is AlertStatus.FIRING:
                    row.status, row.ends_at, row.updated = AlertStatus.RESOLVED, alert.ends_at, at
                    resolved += 1
                else:
                    unchanged += 1
        return AlertsRecorded(new, resolved, unchanged)

    def pending_alerts(self, *, limit: int = 1000) -> list[StoredAlert]:
        """Firing alerts the daemon has not settled, oldest delivery first."""
        with self._read("read pending alerts") as session:
            rows = session.scalars(
                select(AlertRow)
                .where(AlertRow.status == AlertStatus.FIRING, AlertRow.disposition.is_(None))
                .where(AlertRow.cluster == self.cluster)
                .order_by(AlertRow.id)
                .limit(limit)
            )
            return [views.stored_alert(row) for row in rows]

    def settle_alert(
        self,
        alert_id: int,
        disposition: AlertDisposition,
        *,
        detail: str,
        at: datetime,
        incident_id: int | None = None,
    ) -> None:
        """Record what the daemon made of the alert; an incident it joins must exist."""
        with self._write(f"settle alert {alert_id}") as session:
            row = session.get(AlertRow, alert_id, with_for_update=True)
            if row is None:
                raise UnknownRecord(f"alert {alert_id} not found")
            if incident_id is not None and session.get(IncidentRow, incident_id) is None:
                raise UnknownRecord(f"incident {incident_id} not found")
            row.disposition, row.detail, row.updated = disposition.value, detail, at
            row.incident_id = incident_id

    def alerts_of(self, incident_id: int) -> list[StoredAlert]:
        """The alerts joined to the incident, in the order they arrived."""
        with self._read(f"read alerts of incident {incident_id}") as session:
            return views.alerts_of(session, incident_id)


def _row(alert: Alert, at: datetime) -> AlertRow:
    return AlertRow(
        fingerprint=alert.fingerprint,
        starts_at=alert.starts_at,
        name=alert.name,
        status=alert.status,
        ends_at=alert.ends_at if alert.status is AlertStatus.RESOLVED else None,
        labels=dict(alert.labels),
        annotations=dict(alert.annotations),
        generator_url=alert.generator_url,
        receiver=alert.receiver,
        received=at,
        updated=at,
    )
