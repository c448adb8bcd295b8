"""The Alertmanager silences healer made, per incident, each change also on its timeline.

The silence keeper (``healer.act.silences``) records a silence once Alertmanager made it
(or once it gave up making it), and records its expiry when the incident has its
outcome. ``SilenceLog`` (``roles.py``) is this role.

Decisions:

- A row per silence asked for, the failed ones included: the incident then says why its
  alerts paged while healer worked.
- Every change is a ``silence`` step of the incident's timeline in the same
  transaction, so the timeline and the list agree.
- Only the ids in this table are ever expired: a silence people made is never here.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from healer.audit import views
from healer.audit.database import Database
from healer.audit.tables import SilenceRow, StepKind
from healer.audit.views import StoredSilence
from healer.errors import UnknownRecord
from healer.types import JsonObject, Silence, SilenceState


class SqlSilenceLog(Database):
    """Silences on the shared database (``AuditStore`` is one)."""

    def record_silence(self, incident_id: int, silence: Silence, *, at: datetime) -> int:
        """Store the silence and its step; returns its row id."""
        with self._write(f"record silence of incident {incident_id}") as session:
            views.locked_incident(session, incident_id)
            row = SilenceRow(
                incident_id=incident_id,
                silence_id=silence.silence_id,
                matchers=dict(silence.matchers),
                regex=dict(silence.regex) or None,
                starts_at=silence.starts_at,
                ends_at=silence.ends_at,
                state=silence.state,
                error=silence.error,
                created=at,
                updated=at,
            )
            session.add(row)
            session.flush()
            detail = (
                f"silenced until {silence.ends_at.isoformat()}"
                if silence.state is SilenceState.ACTIVE
                else f"not silenced: {silence.error}"
            )
            self._append(session, incident_id, StepKind.SILENCE, at, _step(row, detail))
            return row.id

    def settle_silence(
        self,
        row_id: int,
        *,
        state: SilenceState,
        at: datetime,
        detail: str,
        error: str | None = None,
    ) -> None:
        """Record the silence's new state (expired) or why it could not change (``error``,
        state unchanged), with a step on its incident's timeline."""
        with self._write(f"settle silence {row_id}") as session:
            row = session.get(SilenceRow, row_id, with_for_update=True)
            if row is None:
                raise UnknownRecord(f"silence {row_id} not found")
            row.state, row.error, row.updated = state, error, at
            self._append(session, row.incident_id, StepKind.SILENCE, at, _step(row, detail))

    def silences_of(self, incident_id: int) -> list[StoredSilence]:
        """The silences asked for on the incident, oldest first."""
        with self._read(f"read silences of incident {incident_id}") as session:
            return views.silences_of(session, incident_id)

    def active_silences(self, incident_id: int) -> list[StoredSilence]:
        """The incident's silences healer made and has not expired."""
        with self._read(f"read active silences of incident {incident_id}") as session:
            rows = session.scalars(
                select(SilenceRow)
                .where(
                    SilenceRow.incident_id == incident_id,
                    SilenceRow.state == SilenceState.ACTIVE,
                )
                .order_by(SilenceRow.id)
            )
            return [views.stored_silence(row) for row in rows]


def _step(row: SilenceRow, detail: str) -> JsonObject:
    return {
        "silence_id": row.silence_id,
        "state": str(row.state),
        "matchers": dict(row.matchers),
        "regex": dict(row.regex or {}),
        "starts_at": row.starts_at.isoformat(),
        "ends_at": row.ends_at.isoformat(),
        "detail": detail,
        "error": row.error,
    }
