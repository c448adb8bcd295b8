"""Pages of the incident list, encoded once and kept for a moment.

The list is what the review page and every dashboard poll, often many clients at a time,
while the store changes only when the daemon records a step. So a page is read and
encoded once and its bytes kept, keyed by the query (filters, limit, cursor) and by the
store's write count (``ReviewQueue.write_count``). Any write this process commits changes
the count, so the next request reads again: a new incident shows at once.

Most requests repeat a query already answered: ``PageCacheMiddleware`` answers those
before the framework, checking the bearer token itself, because FastAPI's per-request
work (resolving dependencies, validating each query parameter) costs several times what
sending kept bytes does (bench/api_incidents.py). The key is the raw query string: a
string the full route answered with 200 is valid, and answers the same again while the
write count holds. Anything else (no or bad token, a query not kept, another path)
goes to the route, which answers, or refuses, as before.

Writes by another process on the same database (a second replica, a PostgreSQL shared
by an HA pair) do not change this process's count; a page is kept at most ``TTL_S``,
which bounds how stale such a replica's list can be.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Hashable

from starlette.types import ASGIApp, Receive, Scope, Send

from healer.api.auth import TokenTable
from healer.audit.roles import ReviewQueue

PATH = "/api/v1/incidents"
"""The path whose pages are kept."""

TTL_S = 1.0
"""Longest a page is served from memory: one second behind another replica's writes is
below what a person or a dashboard polling every few seconds notices."""

MAX_PAGES = 512
"""Pages kept at most (each is at most ~1 MB at MAX_PAGE items, typically ~20 kB); when
full, the cache is emptied: simpler than LRU and rare, since the common keys are few
(the first page of each filter)."""


class PageCache:
    """Encoded pages by query, valid for one store write count and ``ttl_s`` seconds.

    Thread-safe. ``clock`` is monotonic seconds (injected for tests).
    """

    def __init__(
        self,
        *,
        ttl_s: float = TTL_S,
        max_pages: int = MAX_PAGES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl_s = ttl_s
        self._max_pages = max_pages
        self._clock = clock
        self._pages: dict[Hashable, tuple[int, float, bytes]] = {}
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
            if len(self._pages) >= self._max_pages:
                self._pages.clear()
            self._pages[key] = (write_count, self._clock() + self._ttl_s, body)

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


class PageCacheMiddleware:
    """Answers ``GET /api/v1/incidents`` from ``pages`` when the page for its exact query
    string is kept and the request carries a valid bearer token (any role may read)."""

    def __init__(
        self, app: ASGIApp, *, pages: PageCache, store: ReviewQueue, tokens: TokenTable
    ) -> None:
        self.app, self.pages, self.store, self.tokens = app, pages, store, tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = self._kept(scope) if scope["type"] == "http" else None
        if body is None:
            await self.app(scope, receive, send)
            return
        length = str(len(body)).encode()
        headers = [(b"content-length", length), (b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _kept(self, scope: Scope) -> bytes | None:
        if scope["method"] != "GET" or scope["path"] != PATH:
            return None
        written = self.store.write_count
        body = self.pages.get(query_key(scope), write_count=written)
        if body is None or self.tokens.find(_bearer(scope)) is None:
            return None
        return body


def query_key(scope: Scope) -> Hashable:
    """The cache key of a list request: its raw query string."""
    query: bytes = scope.get("query_string", b"")
    return query


def _bearer(scope: Scope) -> str | None:
    """The token of an ``Authorization: Bearer`` header, as FastAPI's HTTPBearer reads it."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else None
    return None
