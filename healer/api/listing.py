"""Pages of the incident list, encoded once and kept for a moment.

The list is what the review page and every dashboard poll, often many clients at a time,
while the store changes only when the daemon records a step. So a page is read and
encoded once and its bytes kept, keyed by the query (filters, limit, cursor) and by the
store's write count (``ReviewQueue.write_count``). Any write this process commits changes
the count, so the next request reads again: a new incident shows at once.

Most requests repeat a query already answered: ``ListAnswers`` answers those
before the framework, checking the bearer token itself, because FastAPI's per-request
work (resolving dependencies, validating each query parameter) costs several times what
sending kept bytes does (bench/api_incidents.py). The key is the raw query string: a
string the full route answered with 200 is valid, and answers the same again while the
write count holds.

A query not kept is answered there too when it is plainly valid: its parameters, each
given once, validate as ``ListQuery``, whose fields are the route's parameters with the
same types and limits, and its cursor verifies. That is a person's every filter, and
the framework's work would cost as much again as reading and encoding the page. Anything
else (no or bad token, a cookie, an unknown or repeated parameter, a value out of
bounds, a forged cursor, another path) goes to the route, which answers, or refuses,
naming what is wrong, as before. A store that fails the read is answered 503 here, as
the app answers it, rather than asked again by the route. Both answer through
``load_page``,
which reads a page of a local SQLite file on the event loop itself when it is short
(``MAX_STEPS_NOW``: nearly every filter) and any other on a reader thread.

Writes by another process on the same database (a second replica, a PostgreSQL shared
by an HA pair) do not change this process's count; a page is kept at most ``TTL_S``,
which bounds how stale such a replica's list can be.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import Query
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, ValidationError
from starlette.types import Scope, Send

from healer.api.auth import TokenTable
from healer.api.cursor import BadCursor, CursorSigner
from healer.audit import listed
from healer.audit.roles import ReviewQueue
from healer.audit.views import IncidentFilter
from healer.types import Cause, IncidentStatus

PATH = "/api/v1/incidents"
"""The path whose pages are kept."""

TTL_S = 1.0
"""Longest a page is served from memory: one second behind another replica's writes is
below what a person or a dashboard polling every few seconds notices."""

MAX_PAGES = 512
"""Pages kept at most (typically ~20 kB each); when full, or holding ``MAX_BYTES``, the
cache is emptied: simpler than LRU and rare, since the common keys are few (the first
page of each filter)."""

MAX_BYTES = 32 * 1024 * 1024
"""Bytes of pages kept at most: pages of ``MAX_PAGE`` items are ~170 kB each, and a
client asking for hundreds of them must not grow every API process by ~90 MB."""


MAX_PAGE = 500
"""Largest page of incidents: a few hundred rows keep a response under ~1 MB."""


def _utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:  # year 9999 with a negative offset, and the like
        raise ValueError("out of range once converted to UTC") from exc


When = Annotated[AwareDatetime, AfterValidator(_utc)]
Namespace = Annotated[str | None, Query(max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")]
Cluster = Annotated[
    str | None,
    Query(max_length=30, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", description="cluster.name"),
]
Name = Annotated[str | None, Query(max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")]
Since = Annotated[When | None, Query(description="opened at or after (ISO 8601)")]
Until = Annotated[When | None, Query(description="opened before (ISO 8601)")]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]
Cursor = Annotated[
    str | None, Query(max_length=100, description="next_cursor of the previous page")
]


class ListQuery(BaseModel):
    """The incident list's query parameters: the route declares each with the same
    name, type and default (a test holds them equal), so a query string this model
    takes, the route takes alike. No other parameter is taken here."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: IncidentStatus | None = None
    namespace: Namespace = None
    workload: Name = None
    cause: Cause | None = None
    since: Since = None
    until: Until = None
    limit: Limit = 50
    cursor: Cursor = None
    cluster: Cluster = None

    def where(self, before_id: int | None) -> IncidentFilter:
        """The store's filter for this query, paging on from ``before_id`` (the id the
        verified cursor names)."""
        return IncidentFilter(
            status=self.status,
            namespace=self.namespace,
            workload=self.workload,
            cause=self.cause,
            since=self.since,
            until=self.until,
            before_id=before_id,
            cluster=self.cluster,
        )


def parse_query(query_string: bytes) -> ListQuery | None:
    """The query string as a ``ListQuery``, or None when the route should judge it: a
    parameter repeated, unknown, or not valid. Decoded as Starlette decodes it."""
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    given = dict(pairs)
    if len(given) != len(pairs):
        return None
    try:
        return ListQuery.model_validate(given)
    except ValidationError:
        return None


STORE_UNAVAILABLE = {"detail": "audit store unavailable"}
"""The body of the API's 503 when the store cannot answer: generic, as database errors
can quote SQL and file paths."""

_UNAVAILABLE = bytes(JSONResponse(STORE_UNAVAILABLE).body)
"""``STORE_UNAVAILABLE`` as the app's 503 writes it."""


READ_THREADS = 4
"""Threads that read pages not kept and too long to read at once (``MAX_STEPS_NOW``),
and every such page of a store across the network (the store is synchronous). Fewer
than the five connections SQLAlchemy's pool keeps: with more threads than that (the
framework's pool has 40), reads beyond five open and close a connection each, and
under 100 clients they spent more time waiting for the pool's lock than reading. On a
few cores more threads only contend for the interpreter, while SQLite reads with it
released."""


def read_threads() -> Executor:
    return ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="incident-list")


MAX_STEPS_NOW = 20_000
"""SQLite instructions a page may take to be read on the event loop itself: a page of
any filter takes ~430 to ~1,100, a window of a day to a month ~2,000 to ~12,000 (read a
day at a time; a namespace's, whose incidents of each day are looked up one by one, up to
~21,000), at 100,000 incidents. A read that runs longer (a window of over a
month, filters that together match nothing and scan an index to its end) is stopped
there, ~0.5 ms in, and read again on a reader thread, so the loop is never held up for
long."""


async def load_page(
    query: ListQuery,
    key: Hashable,
    *,
    store: ReviewQueue,
    cursors: CursorSigner,
    pages: PageCache,
    readers: Executor,
) -> bytes:
    """The page ``query`` asks for, as JSON bytes (an ``IncidentPage``): kept, or read
    once for all who ask meanwhile: at once when the store can answer it quickly
    (``MAX_STEPS_NOW``), else on one of ``readers``.

    Read at once, a page costs a third less CPU than handed to a thread: the thread's
    wake-up, and the interpreter's lock passed to and fro, cost more than a local
    SQLite read of fifty rows (bench/api_incidents.py).

    Raises BadCursor for a cursor this server did not sign, before reading anything.
    """
    where = query.where(cursors.load(query.cursor) if query.cursor is not None else None)
    count = store.write_count  # read before the query: see PageCache.put
    body = pages.get(key, write_count=count)
    if body is None and not pages.loading(key, write_count=count):
        # Read here, without a task: nothing else runs on the loop meanwhile, so no
        # other request can be waiting for this page.
        body = _read_page(store, cursors, where, query.limit, max_steps=MAX_STEPS_NOW)
        if body is not None:
            pages.put(key, body, write_count=count)
    if body is not None:
        return body

    async def load() -> bytes:
        read = functools.partial(_read_page, store, cursors, where, query.limit, max_steps=None)
        loaded = await asyncio.get_running_loop().run_in_executor(readers, read)
        assert loaded is not None  # no budget on a reader thread
        return loaded

    return await pages.get_or_load(key, write_count=count, load=load)


def _read_page(
    store: ReviewQueue,
    cursors: CursorSigner,
    where: IncidentFilter,
    limit: int,
    *,
    max_steps: int | None,
) -> bytes | None:
    """The page's bytes; None when ``max_steps`` is given and the store cannot read
    the page within them on this thread."""
    more = limit + 1  # one more than asked tells whether a next page exists
    entries: list[tuple[int, str]] | None
    if max_steps is None:
        entries = store.list_incident_entries(where, limit=more)
    else:
        entries = store.list_incident_entries_now(where, limit=more, max_steps=max_steps)
    if entries is None:
        return None
    page = entries[:limit]
    next_cursor = cursors.dump(page[-1][0]) if len(entries) > limit else None
    return listed.page_json([entry for _, entry in page], next_cursor)


class PageCache:
    """Encoded pages by query, valid for one store write count and ``ttl_s`` seconds.

    Thread-safe. ``clock`` is monotonic seconds (injected for tests).
    """

    def __init__(
        self,
        *,
        ttl_s: float = TTL_S,
        max_pages: int = MAX_PAGES,
        max_bytes: int = MAX_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl_s = ttl_s
        self._max_pages, self._max_bytes = max_pages, max_bytes
        self._clock = clock
        self._pages: dict[Hashable, tuple[int, float, bytes]] = {}
        self._bytes = 0
        self._lock = threading.Lock()
        self._loading: dict[tuple[Hashable, int], asyncio.Task[bytes]] = {}

    def get(self, key: Hashable, *, write_count: int) -> bytes | None:
        """The page kept for ``key`` if nothing was written since and it is fresh."""
        entry = self._pages.get(key)
        if entry is None:
            return None
        count, expires, body = entry
        if count != write_count or self._clock() >= expires:
            return None
        return body

    def put(self, key: Hashable, body: bytes, *, write_count: int) -> None:
        """Keep ``body``; ``write_count`` must be the count read *before* the query, so
        that a write committed during the query makes the page stale, never current."""
        with self._lock:
            replaced = self._pages.pop(key, None)
            if replaced is not None:
                self._bytes -= len(replaced[2])
            if len(self._pages) >= self._max_pages or self._bytes + len(body) > self._max_bytes:
                self._pages.clear()
                self._bytes = 0
            self._pages[key] = (write_count, self._clock() + self._ttl_s, body)
            self._bytes += len(body)

    def loading(self, key: Hashable, *, write_count: int) -> bool:
        """Whether ``get_or_load`` is loading this page now."""
        return (key, write_count) in self._loading

    async def get_or_load(
        self, key: Hashable, *, write_count: int, load: Callable[[], Awaitable[bytes]]
    ) -> bytes:
        """The kept page, or the one ``load`` makes, loaded once for all the requests
        that ask for it meanwhile: when a page expires under a hundred clients, one
        store read answers them all instead of a hundred reads queueing for the thread
        pool (which showed as p99 of hundreds of milliseconds).

        Call from one event loop (the server's); ``load`` runs as a task of its own, so
        a request that goes away does not cancel it for the others.
        """
        body = self.get(key, write_count=write_count)
        if body is not None:
            return body
        loading = self._loading.get((key, write_count))
        if loading is None:
            loading = asyncio.ensure_future(self._load(key, write_count, load))
            self._loading[key, write_count] = loading
        return await asyncio.shield(loading)

    async def _load(
        self, key: Hashable, write_count: int, load: Callable[[], Awaitable[bytes]]
    ) -> bytes:
        try:
            body = await load()
            self.put(key, body, write_count=write_count)
            return body
        finally:
            del self._loading[key, write_count]


class ListAnswers:
    """Answers ``GET /api/v1/incidents`` ahead of the framework when the request carries
    a valid bearer token (any role may read) and its page is kept, or its query is
    plainly valid (``parse_query``); ``page`` is None for any other request, which goes
    on to the app and its route.

    The app (``app.HealerApi``) asks it before its own middleware stack: the layers a
    request passes there (error pages, body limits, security headers) cost as much as
    answering a kept page does, and none of them has work to do on a GET without a body
    (one with a body goes to the route), whose answer carries the security headers
    every answer does (``headers``).
    """

    def __init__(
        self,
        *,
        pages: PageCache,
        store: ReviewQueue,
        tokens: TokenTable,
        cursors: CursorSigner,
        readers: Executor,
        headers: Sequence[tuple[bytes, bytes]],
    ) -> None:
        self.pages, self.store, self.tokens = pages, store, tokens
        self.cursors, self.readers = cursors, readers
        self.headers = [(b"content-type", b"application/json"), *headers]

    async def page(self, scope: Scope) -> bytes | None:
        """The page the request asks for, or None when the app should answer it.

        Raises StoreError when the store cannot answer (``send_unavailable``)."""
        return await self._answer(scope) if _is_list(scope) else None

    async def send(self, body: bytes, send: Send, *, status: int = 200) -> None:
        """Answer with ``body``, a ``page``."""
        headers = [(b"content-length", str(len(body)).encode()), *self.headers]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def send_unavailable(self, send: Send) -> None:
        """Answer as the app does a store that cannot answer (503, ``STORE_UNAVAILABLE``):
        after ``page`` raised StoreError, the route would only wait for the store again
        (up to ``store.unavailable_s``) to give the same answer."""
        await self.send(_UNAVAILABLE, send, status=503)

    async def _answer(self, scope: Scope) -> bytes | None:
        key = query_key(scope)
        body = self.pages.get(key, write_count=self.store.write_count)
        if self.tokens.find(_bearer(scope)) is None:
            return None
        if body is not None:
            return body
        query = parse_query(scope.get("query_string", b""))
        if query is None:
            return None
        try:
            return await load_page(
                query,
                key,
                store=self.store,
                cursors=self.cursors,
                pages=self.pages,
                readers=self.readers,
            )
        except BadCursor:
            return None  # the route refuses it with 400, saying why


def _is_list(scope: Scope) -> bool:
    # bool(): the scope's values are untyped (Any)
    return bool(scope["type"] == "http" and scope["method"] == "GET" and scope["path"] == PATH)


def query_key(scope: Scope) -> Hashable:
    """The cache key of a list request: its raw query string."""
    query: bytes = scope.get("query_string", b"")
    return query


def _bearer(scope: Scope) -> str | None:
    """The token of an ``Authorization: Bearer`` header, as FastAPI's HTTPBearer reads it;
    None also when the request declares a body, which the app's body limit judges."""
    token, seen = None, False
    for name, value in scope["headers"]:
        if name == b"authorization" and not seen:  # the first, as Starlette reads it
            scheme, _, given = value.decode("latin-1").partition(" ")
            token, seen = (given.strip() if scheme.lower() == "bearer" else None), True
        elif name in (b"content-length", b"transfer-encoding"):
            return None
    return token
