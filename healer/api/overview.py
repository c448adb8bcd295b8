"""The overview: what waits for a person, what is open, and what healer did lately.

One value (``Overview``) read from the store's roles, shown by the review page at ``/``
and by ``GET /api/v1/overview``: pending approvals and unacknowledged escalations first
(what a person must do), then the open incidents and the workloads people silenced
healer on, then the last 24 hours and 7 days (``Tally``), and when the daemon was last
seen cycling.

Decisions:

- The tallies are kept for a minute of the clock and until the store's next write
  (``TallyCache``): they group every incident of a week, the rest of the overview is a
  few indexed reads, and the page asks again every few seconds while it is open.
- "Last seen cycling" is the daemon's own last cycle with data, in the clock the API
  stamps reviews with (the simulated one in the demo), so its age is meaningful.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from healer.audit.roles import Attention, ReviewQueue
from healer.audit.views import ActionView, IncidentFilter, IncidentSummary, OptOut, Tally
from healer.types import ActionStatus, IncidentStatus, JsonObject

WINDOWS: tuple[tuple[str, timedelta], ...] = (
    ("last 24 hours", timedelta(hours=24)),
    ("last 7 days", timedelta(days=7)),
)
"""The review windows: the night just past, and the week (a Monday's review)."""

OPEN_ROWS = 50
"""Open incidents listed; more than this many open at once is itself the news."""

_OPEN = (IncidentStatus.PENDING_APPROVAL, IncidentStatus.OPEN, IncidentStatus.VERIFYING)

TALLY_TTL = timedelta(minutes=1)
"""How long the clock may move before the tallies are counted again without a write."""


@dataclass(frozen=True)
class Overview:
    now: datetime
    pending: Sequence[ActionView]
    escalations: Sequence[IncidentSummary]
    """The newest escalated incidents nobody acknowledged."""
    escalations_total: int
    open: Sequence[IncidentSummary]
    opt_outs: Sequence[OptOut]
    windows: Sequence[tuple[str, Tally]]
    last_cycle: datetime | None
    """The daemon's last cycle with data; None: not seen cycling (or not in this process)."""

    @property
    def waiting(self) -> int:
        """How many things wait for a person."""
        return len(self.pending) + self.escalations_total

    @property
    def last_cycle_age_s(self) -> float | None:
        if self.last_cycle is None:
            return None
        return max((self.now - self.last_cycle).total_seconds(), 0.0)


class TallyCache:
    """The windows' tallies, counted again after a write or once ``TALLY_TTL`` passed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: tuple[tuple[int, datetime], list[tuple[str, Tally]]] | None = None

    def get(self, attention: Attention, *, writes: int, now: datetime) -> list[tuple[str, Tally]]:
        with self._lock:
            kept = self._kept
        if kept is not None:
            (count, at), tallies = kept
            if count == writes and at <= now < at + TALLY_TTL:
                return tallies
        tallies = [(label, attention.tally(since=now - span)) for label, span in WINDOWS]
        with self._lock:
            self._kept = ((writes, now), tallies)
        return tallies


def read_overview(
    store: ReviewQueue,
    attention: Attention | None,
    *,
    now: datetime,
    status: Callable[[], JsonObject] | None,
    cache: TallyCache,
) -> Overview:
    """The overview at ``now``. Without ``attention`` (a store that keeps no
    acknowledgements or opt-outs) only the pending approvals and open incidents show."""
    writes = store.write_count  # read before the reads: a write during them counts again
    pending = store.actions(status=ActionStatus.PENDING_APPROVAL)
    opened = [
        i for s in _OPEN for i in store.list_incidents(IncidentFilter(status=s), limit=OPEN_ROWS)
    ]
    opened.sort(key=lambda i: i.id, reverse=True)
    escalations: list[IncidentSummary] = []
    total, opt_outs, windows = 0, [], []
    if attention is not None:
        escalations, total = attention.unacknowledged()
        opt_outs = attention.opt_outs(now=now)
        windows = cache.get(attention, writes=writes, now=now)
    return Overview(
        now=now,
        pending=pending,
        escalations=escalations,
        escalations_total=total,
        open=opened[:OPEN_ROWS],
        opt_outs=opt_outs,
        windows=windows,
        last_cycle=last_cycle(status),
    )


def last_cycle(status: Callable[[], JsonObject] | None) -> datetime | None:
    """When the daemon serving beside this API last cycled with data, from its status."""
    value = status().get("last_cycle") if status is not None else None
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
