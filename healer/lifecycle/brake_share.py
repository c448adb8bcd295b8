"""The anomaly brake across shards: each replica's anomalous workloads, shared through
the store, so that the brake judges the whole cluster's share, not one shard's.

Every cycle a shard replica writes, under a key of its own, how many workloads it
watched and the onsets of those the brake counts (``BrakeWatch.onsets``), then reads the
other replicas' entries: their onsets join the count of the event a finding belongs to,
their watched workloads the total it is a share of. An entry not written for
``fresh_s`` (a replica that died, or lost its shards) is left out.

Decisions:

- Kept values of the store (``save_state``), not a table of their own: one small row per
  replica, replaced each cycle, scoped to the cluster like the rest of the kept state.
- A shard cycling first in a mass event sees the others' workloads only from their
  previous cycle: the brake counts workloads that are anomalous but not yet findings
  (``persistence_s``), so every shard's share is in the store before anyone acts on it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from healer.lifecycle.brake_watch import BrakeWatch
from healer.types import JsonObject, JsonValue, WorkloadRef

PREFIX = "brake/"


@runtime_checkable
class SharedState(Protocol):
    def save_state(self, key: str, value: JsonObject, *, at: datetime) -> None: ...

    def load_states(self, prefix: str) -> dict[str, tuple[JsonObject, datetime]]: ...


@dataclass
class BrakeShare:
    """This replica's entry and what it read of the others' (``peer_watched``)."""

    store: SharedState
    identity: str
    fresh_s: float
    """Entries older than this are a replica's that stopped: left out."""
    peer_watched: int = 0
    """Workloads the other replicas watched at their last cycle."""

    @property
    def key(self) -> str:
        return PREFIX + hashlib.sha1(self.identity.encode()).hexdigest()[:16]

    def exchange(self, brake: BrakeWatch, *, watched: int, now: datetime) -> None:
        """Write this replica's count, then add the others' onsets to ``brake.onsets``."""
        onsets: dict[str, JsonValue] = {
            _ref(w): onset.isoformat() for w, onset in brake.onsets.items()
        }
        self.store.save_state(self.key, {"watched": watched, "onsets": onsets}, at=now)
        oldest = now - timedelta(seconds=self.fresh_s)
        total = 0
        for key, (value, at) in self.store.load_states(PREFIX).items():
            if key == self.key or at < oldest:
                continue
            total += int(str(value.get("watched", 0)))
            theirs = value.get("onsets")
            for ref, onset in (theirs if isinstance(theirs, dict) else {}).items():
                brake.onsets.setdefault(_workload(ref), datetime.fromisoformat(str(onset)))
        self.peer_watched = total


def _ref(workload: WorkloadRef) -> str:
    return f"{workload.namespace}/{workload.kind}/{workload.name}"


def _workload(ref: str) -> WorkloadRef:
    namespace, kind, name = ref.split("/", 2)
    return WorkloadRef(namespace, kind, name)
