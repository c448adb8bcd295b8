"""The one engine and session factory every role of the audit store shares.

``Database`` opens the engine, runs the migrations and hands out short sessions: one
per method call, from a sessionmaker, so the daemon thread writes while API threads
read. The roles (``log.py``, ``review.py``, ``labels.py``, ``kept.py``) are written over
it, and ``AuditStore`` (``store.py``) is all of them on one ``Database``.

Decisions:

- On SQLite, WAL lets readers run beside the writer; pysqlite's own transaction
  handling is switched off so that reads see one snapshot and writes begin with
  ``BEGIN IMMEDIATE`` (take the write lock first, wait up to ``busy_timeout``) instead of
  failing with "database is locked" when upgrading a read lock.
- Database errors become ``StoreError`` here, naming what was being done, with the
  database's own message on one line.
- A database server that is down or restarting is waited for, up to ``unavailable_s``,
  before a read or a write starts (``_session``): its connection is taken, with a
  retry, before any statement of the call runs, so retrying can never apply a write
  twice. A restart of PostgreSQL during a cycle therefore pauses the cycle instead of
  failing it, and every step recorded before is on the server's disk already (each
  write committed before the next step). A connection lost in the middle of a write
  rolls that write back and fails it (StoreError): the cycle is retried as a whole,
  from what the store holds.
- Every step row carries ``actor``: the identity of the daemon that wrote it (by default
  ``hostname:pid``; under leader election, the Lease holder identity) or, for reviews
  and feedback, the person's token name.
"""

from __future__ import annotations

import os
import socket
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

import structlog
from sqlalchemy import Select, create_engine, event, func, select
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import PoolProxiedConnection, StaticPool
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from healer.audit import migrate
from healer.audit.keyset import Prepared
from healer.audit.tables import StepKind, StepRow
from healer.errors import StoreError
from healer.types import JsonObject

STORE_UNAVAILABLE_S = 60.0
"""How long a read or write waits for a database server that does not answer: a
PostgreSQL restart or fail-over takes seconds to tens of seconds. Past it the call
fails (StoreError) and the cycle is tried again at its next interval."""

SQLITE_BUSY_TIMEOUT_MS = 5000
"""How long a SQLite writer waits for another writer's lock. Writes are single short
transactions (milliseconds), so five seconds means something is stuck, not busy."""

SQLITE_MMAP_BYTES = 1 << 30
"""How much of a SQLite file each connection reads through a memory map rather than
``read`` calls. A page of the incident list touches a page of the file per incident
(a filter's matches lie far apart), and each connection keeps only ~2 MB of pages of
its own: read through calls, those pages cost half the page's read time at 100,000
incidents (bench/api_incidents.py). Mapped, every connection of every API process
reads the one copy the kernel caches. Address space, not memory: only pages touched
are resident, and the kernel can drop them. As SQLite warns, a file that cannot be read
(a disk error, a file cut short under it) then stops the process (SIGBUS) rather than
failing the read: the store is a local file, as a database's is."""

log = structlog.get_logger("healer.audit")
_T = TypeVar("_T")

_BEGIN_OPTION = "healer_sqlite_begin"
"""Execution option read by the SQLite ``begin`` hook: the statement that opens a transaction."""


def default_identity() -> str:
    """``hostname:pid``: tells apart two daemons on one host and two hosts."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Database:
    """An opened, migrated database with reading and writing sessions.

    Thread-safe: each ``_read`` or ``_write`` is its own session. ``identity`` is written
    as the ``actor`` of every step recorded for the daemon.
    """

    def __init__(
        self,
        url: str,
        *,
        identity: str | None = None,
        cluster: str = "default",
        unavailable_s: float = STORE_UNAVAILABLE_S,
    ) -> None:
        self.identity = identity or default_identity()
        self.unavailable_s = unavailable_s
        self.cluster = cluster
        """``cluster.name``: written on the incidents, actions and alerts recorded here;
        the daemon's reads (unresolved incidents, the action budget, approvals, alerts,
        kept state) see this cluster's rows only, people's reads see every cluster's."""
        try:
            self._engine = _create_engine(url)
            # Take SQLite's write lock first: two processes opening one new file at once
            # then migrate one after the other instead of failing on a lock upgrade.
            migrate.upgrade(self._engine.execution_options(**{_BEGIN_OPTION: "BEGIN IMMEDIATE"}))
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot open audit store: {_brief(exc)}") from exc
        self._reader = sessionmaker(self._engine, expire_on_commit=False)
        writer_bind = self._engine.execution_options(**{_BEGIN_OPTION: "BEGIN IMMEDIATE"})
        self._writer = sessionmaker(writer_bind, expire_on_commit=False)
        self._writes = 0
        self._count_lock = threading.Lock()
        self._prepared: dict[Select[Any], Prepared] = {}
        self._owned = threading.local()
        """``connection``: the thread's own connection for reads at once (``_own_connection``)."""
        self._owned_all: list[PoolProxiedConnection] = []

    @property
    def write_count(self) -> int:
        """How many writes this store has committed: a reader that saw the same count
        before and after reading saw no write of this process in between. Caches of
        what was read key on it (``healer.api.listing``); writes by other processes
        sharing the database do not count."""
        return self._writes

    def close(self) -> None:
        with self._count_lock:
            owned = list(self._owned_all)
            self._owned_all.clear()  # in place: the threads' finalizers hold this list
        for connection in owned:
            _close_quietly(connection)
        self._engine.dispose()

    def _append(
        self,
        session: Session,
        incident_id: int,
        kind: StepKind,
        at: datetime,
        data: JsonObject,
        *,
        actor: str | None = None,
    ) -> StepRow:
        """Add a step at the end of the incident's timeline, in the write under way."""
        last = session.scalar(
            select(func.max(StepRow.seq)).where(StepRow.incident_id == incident_id)
        )
        step = StepRow(
            incident_id=incident_id,
            seq=(last or 0) + 1,
            kind=kind,
            at=at,
            data=data,
            actor=actor or self.identity,
        )
        session.add(step)
        return step

    @contextmanager
    def _write(self, what: str) -> Iterator[Session]:
        """A session that commits on success; database errors become StoreError."""
        try:
            with self._session(self._writer, what) as session:
                yield session
                session.commit()
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot {what}: {_brief(exc)}") from exc
        finally:
            # Counted after the commit (or a rollback, which is harmless to count): a
            # reader reads the count before its query, so a page it caches under the old
            # count is never served after the write became visible.
            with self._count_lock:
                self._writes += 1

    @contextmanager
    def _read(self, what: str) -> Iterator[Session]:
        try:
            with self._session(self._reader, what) as session:
                yield session
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot {what}: {_brief(exc)}") from exc

    @contextmanager
    def _read_rows(self, what: str) -> Iterator[Connection]:
        """A read transaction on a bare connection, for reads of columns only: no
        session, identity map or ORM result machinery, which cost more than the query
        itself on a page of the incident list (bench/api_incidents.py)."""
        try:
            with self._connected(what) as connection, connection.begin():
                yield connection
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot {what}: {_brief(exc)}") from exc

    def _session(self, factory: sessionmaker[Session], what: str) -> Session:
        """A new session in a transaction on a live connection, taken with ``_waiting``:
        no statement of the caller's has run yet, so a retry cannot repeat one. Closing
        it without ``commit`` rolls the transaction back."""

        def attempt() -> Session:
            session = factory()
            try:
                session.connection()
            except BaseException:
                session.close()
                raise
            return session

        return self._waiting(attempt, what)

    def _connected(self, what: str) -> Connection:
        return self._waiting(self._engine.connect, what)

    def _waiting(self, connect: Callable[[], _T], what: str) -> _T:
        """``connect()``, tried again while the database server does not answer (a
        restart), for up to ``unavailable_s``; SQLite, a file, is never waited for."""
        if self._engine.dialect.name == "sqlite":
            return connect()
        retrying = Retrying(
            retry=retry_if_exception_type((OperationalError, InterfaceError)),
            wait=wait_exponential(multiplier=0.25, max=4.0),
            stop=stop_after_delay(self.unavailable_s),
            before_sleep=lambda state: log.warning(
                "store_unavailable",
                doing=what,
                attempt=state.attempt_number,
                error=str(state.outcome.exception()) if state.outcome else None,
            ),
            reraise=True,
        )
        return retrying(connect)

    def _fetch_all(
        self, what: str, statement: Select[Any], values: Mapping[str, object]
    ) -> Sequence[Sequence[Any]]:
        """The rows of ``statement`` with ``values`` bound, read on a bare driver cursor
        in one statement, no transaction opened around it (``keyset.py`` says why).

        For a statement run many times a second: it is compiled once per store. Driver
        errors become StoreError naming ``what``; a connection found broken is dropped
        from the pool, not handed out again.
        """
        rows = self._fetch(what, statement, values, max_steps=None)
        assert rows is not None  # only a budget makes it give up
        return rows

    def _fetch_now(
        self, what: str, statement: Select[Any], values: Mapping[str, object], *, max_steps: int
    ) -> Sequence[Sequence[Any]] | None:
        """``_fetch_all`` on the calling thread when that cannot hold it up: the rows
        if the database is a SQLite file and the statement finishes within
        ``max_steps`` of SQLite's virtual machine instructions; None otherwise (a server
        across the network, or a read that turned out long, stopped after
        ``max_steps``), and the caller reads on a thread of its own.

        For an event loop: a page of the incident list costs a few hundred to a few
        thousand instructions, and less CPU read here than handed to a thread and back
        (bench/api_incidents.py).
        Read on the thread's own connection (``_own_connection``).
        """
        in_memory = isinstance(self._engine.pool, StaticPool)  # one connection, shared
        if self._engine.dialect.name != "sqlite" or in_memory:
            return None
        return self._fetch(what, statement, values, max_steps=max_steps, own=True)

    def _own_connection(self) -> PoolProxiedConnection:
        """The calling thread's own connection, kept out of the pool until ``close``.

        For the reads an event loop makes at once: taking a connection from the pool
        and giving it back (its lock, its events, the rollback that resets it) cost a
        third of what reading a page of the incident list does."""
        connection: PoolProxiedConnection | None = getattr(self._owned, "connection", None)
        if connection is not None and connection.dbapi_connection is None:
            connection = None  # closed by close(): the store opens again, as its pool does
        if connection is None:
            connection = self._engine.raw_connection()
            connection.detach()  # closed by close(), after an error or with its thread
            self._owned.connection = connection
            with self._count_lock:
                self._owned_all.append(connection)
            # A thread that ends (a test client's, an executor's) takes its connection
            # with it, rather than leaving it open until close(); the store itself is
            # not held by the thread for as long.
            thread = threading.current_thread()
            weakref.finalize(thread, _forget, self._owned_all, self._count_lock, connection)
        return connection

    def _drop_own_connection(self, connection: PoolProxiedConnection) -> None:
        self._owned.connection = None
        _forget(self._owned_all, self._count_lock, connection)

    def _fetch(
        self,
        what: str,
        statement: Select[Any],
        values: Mapping[str, object],
        *,
        max_steps: int | None,
        own: bool = False,
    ) -> Sequence[Sequence[Any]] | None:
        prepared = self._prepared.get(statement)
        if prepared is None:
            prepared = Prepared.compile(statement, self._engine.dialect)
            self._prepared[statement] = prepared
        try:
            connection = (
                self._own_connection() if own else self._waiting(self._engine.raw_connection, what)
            )
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot {what}: {_brief(exc)}") from exc
        dialect = self._engine.dialect
        # A detached connection has no driver_connection: for sqlite3 it is the DB-API one.
        budget = _Budget(connection.driver_connection or connection.dbapi_connection, max_steps)
        try:
            cursor = connection.cursor()
            try:
                cursor.execute(prepared.sql, prepared.parameters(values))
                return cursor.fetchall()
            finally:
                cursor.close()
                budget.close()
        except dialect.loaded_dbapi.Error as exc:
            if budget.spent:
                return None
            if own:
                self._drop_own_connection(connection)  # the next read opens another
            elif dialect.is_disconnect(exc, connection.dbapi_connection, None):
                connection.invalidate(exc)
            raise StoreError(f"cannot {what}: {_brief(exc)}") from exc
        finally:
            if not own:
                connection.close()


def _forget(
    owned: list[PoolProxiedConnection], lock: threading.Lock, connection: PoolProxiedConnection
) -> None:
    """Close one of the threads' own connections and strike it from ``owned``."""
    with lock:
        if connection in owned:
            owned.remove(connection)
    _close_quietly(connection)


def _close_quietly(connection: PoolProxiedConnection) -> None:
    """Close a connection, from whichever thread, whatever state it is in."""
    try:
        connection.close()
    except Exception as exc:  # a connection closing on its way out: nothing to keep
        log.debug("own_connection_close_failed", error=str(exc))


PROGRESS_EVERY = 1_000
"""SQLite instructions between two calls of a budget's progress handler: the budget
counts the calls, so a statement stops within this many instructions of its budget."""


class _Budget:
    """Interrupts the statement running on a SQLite connection after about ``max_steps``
    virtual machine instructions (its progress handler; None: no limit). The driver
    then raises OperationalError("interrupted") and ``spent`` says why.

    The handler is called every ``PROGRESS_EVERY`` instructions and counts them, rather
    than once after ``max_steps``: SQLite places its first call by the instructions a
    prepared statement ran in all its executions, and the driver reuses prepared
    statements, so a limit of ``max_steps`` stopped a statement anywhere from its first
    instruction on (every other one-day window of bench/api_incidents.py, cut short
    and read again on a thread)."""

    def __init__(self, driver: Any, max_steps: int | None) -> None:
        # Any: the driver's connection is untyped behind SQLAlchemy's pool (sqlite3 here).
        self._driver = driver if max_steps is not None else None
        self.spent = False
        every = min(PROGRESS_EVERY, max_steps or PROGRESS_EVERY)
        self._calls_left = -(-(max_steps or 0) // every)  # rounded up
        if self._driver is not None:
            self._driver.set_progress_handler(self._tick, every)

    def _tick(self) -> bool:
        self._calls_left -= 1
        if self._calls_left > 0:
            return False
        self.spent = True  # max_steps have run: stop the statement
        return True

    def close(self) -> None:
        if self._driver is not None:
            self._driver.set_progress_handler(None, 0)


def _brief(exc: Exception) -> str:
    """The database's own message, on one line (SQLAlchemy appends a help link)."""
    original = getattr(exc, "orig", None) or exc
    return str(original).strip().splitlines()[0] if str(original).strip() else repr(exc)


def _create_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True)
    in_memory = parsed.database in (None, "", ":memory:")
    # An in-memory database lives in one connection: share it between threads.
    extra: dict[str, Any] = (
        {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}} if in_memory else {}
    )
    engine = create_engine(parsed, **extra)
    event.listen(engine, "connect", _on_sqlite_connect)
    event.listen(engine, "begin", _on_sqlite_begin)
    return engine


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Any: the DB-API connection is untyped (sqlite3.Connection behind SQLAlchemy's proxy).
    dbapi_connection.isolation_level = None  # we emit BEGIN ourselves, see _on_sqlite_begin
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute(f"PRAGMA mmap_size={SQLITE_MMAP_BYTES}")
    cursor.close()


def _on_sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql(conn.get_execution_options().get(_BEGIN_OPTION, "BEGIN"))
