"""One action at a time per cluster, across every replica writing to the store.

The action budget (``guards.max_actions_per_window``, ``max_in_flight``) is counted from
the store's action history of the cluster. With shards, several replicas plan at once;
two of them reading the history before either recorded its action could both spend the
budget's last action. ``acting()`` makes "read the history, plan, record the intent,
send the request, record the result" one critical section for the cluster:

- on PostgreSQL, a session-level advisory lock (``pg_advisory_lock``) on a connection
  of its own, keyed by the cluster's name: replicas on any machine wait for each other,
  and a replica that dies loses its connection and with it the lock;
- on a SQLite file, an exclusive ``flock`` on ``<file>.acting``: the replicas sharing a
  file share a machine, and the kernel drops the lock of a process that dies;
- on an in-memory SQLite database (one process), a thread lock.

Decisions:

- The lock does not cover the cycle, only the planning and taking of one action: an
  action is one HTTP request, so shards wait milliseconds for each other, and their
  reads of metrics and detection run side by side.
- Its key comes from SHA-1 of the cluster's name, never Python's salted ``hash()``, so
  every replica of a cluster computes the same key.
"""

from __future__ import annotations

import fcntl
import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from healer.audit.database import Database, _brief
from healer.errors import StoreError


class SqlActingLock(Database):
    """``acting()`` on the shared database (``AuditStore`` is one)."""

    _thread_lock = threading.Lock()

    @contextmanager
    def acting(self) -> Iterator[None]:
        """Hold the cluster's acting lock for the ``with`` block (blocks until free)."""
        dialect = self._engine.dialect.name
        if dialect == "postgresql":
            with self._advisory():
                yield
            return
        database = make_url(str(self._engine.url)).database
        if dialect == "sqlite" and database not in (None, "", ":memory:"):
            with _flocked(Path(f"{database}.acting")):
                yield
            return
        with self._thread_lock:
            yield

    @contextmanager
    def _advisory(self) -> Iterator[None]:
        key = int.from_bytes(hashlib.sha1(f"healer-acting/{self.cluster}".encode()).digest()[:8])
        key -= 1 << 63 if key >= 1 << 63 else 0  # PostgreSQL's bigint is signed
        try:
            connection = self._connected("take the acting lock")
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot take the acting lock: {_brief(exc)}") from exc
        with connection:
            try:
                connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
                connection.commit()
            except SQLAlchemyError as exc:
                raise StoreError(f"cannot take the acting lock: {_brief(exc)}") from exc
            try:
                yield
            finally:
                try:
                    connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                    connection.commit()
                except SQLAlchemyError:
                    connection.invalidate()  # a closed session drops its locks too


@contextmanager
def _flocked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
