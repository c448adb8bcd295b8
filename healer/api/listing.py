"""Pages of the incident list, encoded once and kept for a moment.

The list is what the review page and every dashboard poll, often many clients at a time,
while the store changes only when the daemon records a step. So a page is read and
encoded once and its bytes kept, keyed by the query (filters, limit, cursor) and by the
store's write count (``AuditStore.write_count``). Any write this process commits changes
the count, so the next request reads again: a new incident shows at once.

Writes by another process on the same database (a second replica, a PostgreSQL shared
by an HA pair) do not change this process's count; a page is kept at most ``TTL_S``,
which bounds how stale such a replica's list can be.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable

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
