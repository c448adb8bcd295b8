"""What the daemon keeps across restarts: named values, and where it left off.

The incidents a previous run left unresolved, the time of the newest step (a simulated
clock resumes after it), and named values such as the HPA floors raised and not yet
handed back. ``DaemonState`` (``roles.py``) is this role as the daemon sees it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select

from healer.audit import views
from healer.audit.database import Database
from healer.audit.tables import GuardStateRow, IncidentRow, StepRow
from healer.types import Incident, IncidentStatus, JsonObject, OutcomeKind


class SqlDaemonState(Database):
    """The daemon's kept state on the shared database (``AuditStore`` is one)."""

    def save_state(self, key: str, value: JsonObject, *, at: datetime) -> None:
        """Keep a named value across restarts (last cycle, leader); replaces the old one."""
        key = self._state_key(key)
        with self._write(f"save state {key}") as session:
            row = session.get(GuardStateRow, key, with_for_update=True)
            if row is None:
                session.add(GuardStateRow(key=key, value=value, updated=at, actor=self.identity))
            else:
                row.value, row.updated, row.actor = value, at, self.identity

    def load_state(self, key: str) -> JsonObject | None:
        key = self._state_key(key)
        with self._read(f"read state {key}") as session:
            row = session.get(GuardStateRow, key)
            return dict(row.value) if row is not None else None

    def unresolved(self) -> list[Incident]:
        """Incidents not yet RESOLVED, oldest first, rebuilt for a restarted daemon.

        ``finding`` is the peak finding; the other fields are the latest of their kind.
        """
        query = select(IncidentRow).where(
            IncidentRow.status != IncidentStatus.RESOLVED, IncidentRow.cluster == self.cluster
        )
        with self._read("read unresolved incidents") as session:
            rows = session.scalars(query.order_by(IncidentRow.id)).all()
            return [views.rebuild(row, views.steps_of(session, row.id)) for row in rows]

    def latest_resolved(
        self, *, since: datetime, outcome: OutcomeKind | None = None
    ) -> list[Incident]:
        """Each workload's newest resolved incident, when it was last seen at or after
        ``since`` (and settled on ``outcome``, if given); newest first, rebuilt as
        ``unresolved`` rebuilds them. A restarted daemon reads these to hold again the
        workloads the anomaly brake held: exactly those, however long the history."""
        newest = (
            select(func.max(IncidentRow.id))
            .where(IncidentRow.status == IncidentStatus.RESOLVED)
            .where(IncidentRow.cluster == self.cluster)
            .group_by(IncidentRow.namespace, IncidentRow.kind, IncidentRow.name)
        )
        query = select(IncidentRow).where(
            IncidentRow.id.in_(newest), IncidentRow.last_seen >= since
        )
        if outcome is not None:
            query = query.where(IncidentRow.outcome == outcome)
        with self._read("read the latest resolved incidents") as session:
            rows = session.scalars(query.order_by(IncidentRow.id.desc())).all()
            return [views.rebuild(row, views.steps_of(session, row.id)) for row in rows]

    def load_states(self, prefix: str) -> dict[str, tuple[JsonObject, datetime]]:
        """Every kept value whose key starts with ``prefix``, with when it was saved
        (the shards' shares of the anomaly brake, ``lifecycle.brake_share``)."""
        stored = self._state_key(prefix)
        start = len(stored) - len(prefix)
        query = select(GuardStateRow).where(GuardStateRow.key.startswith(stored, autoescape=True))
        with self._read(f"read states {prefix}*") as session:
            return {
                row.key[start:]: (dict(row.value), row.updated) for row in session.scalars(query)
            }

    def _state_key(self, key: str) -> str:
        """Kept values are per cluster; the default cluster's keep their old names."""
        return key if self.cluster == "default" else f"{self.cluster}/{key}"

    def latest_at(self) -> datetime | None:
        """When the newest step of any incident happened; None for an empty store. A
        simulated clock resumes after it (``healer demo`` on an earlier ``--db``)."""
        with self._read("read the time of the latest step") as session:
            latest: datetime | None = session.scalar(select(func.max(StepRow.at)))
            return latest
