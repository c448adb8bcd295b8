"""Release events: stored as received, read back by workload and time.

The API stores each event before it answers (``record_release``); an incident's page
reads its workload's releases over the incident's span (``views.releases_around``), and
the daemon, diagnosing a bad release, those around the rollout it blames
(``releases_of``). ``ReleaseLog`` (``roles.py``) is this role.

Decisions:

- Every event is a row of its own, never merged: a forge tells of a deployment twice
  (``running``, then ``success``), and both are part of the story. The reader that needs
  one picks it (the diagnoser takes the newest that matches).
- A release for a workload healer does not watch is stored all the same, marked
  ``known = False``: a pipeline must never fail because healer was not told of a
  workload yet, and the row says so to whoever looks.
"""

from __future__ import annotations

from datetime import datetime

from healer.audit import views
from healer.audit.database import Database
from healer.audit.tables import ReleaseRow
from healer.audit.views import StoredRelease
from healer.types import Release, WorkloadRef


class SqlReleaseLog(Database):
    """Releases on the shared database (``AuditStore`` is one)."""

    def record_release(
        self, release: Release, *, known: bool | None, sender: str, at: datetime
    ) -> StoredRelease:
        """Store one event, committed before this returns; ``at`` is when it arrived. It
        belongs to this store's cluster: a pipeline tells the healer of its own cluster."""
        with self._write("record release") as session:
            row = _row(release, known=known, sender=sender, at=at)
            row.cluster = self.cluster
            session.add(row)
            session.flush()
            return views.stored_release(row)

    def releases_of(
        self, workload: WorkloadRef, *, since: datetime, until: datetime
    ) -> list[StoredRelease]:
        """The workload's releases in this store's cluster from ``since`` to ``until``,
        oldest first."""
        with self._read(f"read releases of {workload}") as session:
            return views.releases_between(
                session, workload, since=since, until=until, cluster=self.cluster
            )


def _row(release: Release, *, known: bool | None, sender: str, at: datetime) -> ReleaseRow:
    w = release.workload
    return ReleaseRow(
        namespace=w.namespace,
        kind=w.kind,
        name=w.name,
        at=release.at,
        source=release.source.value,
        revision=release.revision,
        image=release.image,
        commit=release.commit,
        author=release.author,
        pipeline=release.pipeline,
        pipeline_url=release.pipeline_url,
        environment=release.environment,
        status=release.status,
        report_url=release.report_url,
        known=known,
        received=at,
        sender=sender,
    )
