"""Shards: the workloads of one cluster spread over replicas through Leases.

With ``sharding.shards: N`` a namespace belongs to shard ``sha1(namespace) mod N``
(``shard_of``): a stable hash, so a namespace never moves while N stays the same, and
the same on every replica and every Python (``hash()`` is salted per process). Shard
``i`` is held by whoever holds the Lease ``<leader.name>-shard-<i>``, with the timings and
the algorithm of leader election (``healer.leader.LeaderElector``, one per shard): a
replica renews what it holds, a Lease not renewed for ``lease_duration_s`` is free for
any replica to take, and a write to the cluster re-reads its shard's Lease first.

A replica holds the workloads of its shards and nothing else: it reads only their
metrics (``ShardedSource``, the queries restricted to their namespaces), resumes only
their incidents, takes only their approvals and alerts (``ShardClaims.owns`` as the
daemon's scope) and writes only for them (``ShardOnlyActuator``). When the shards it
holds change, the daemon takes over afresh (``leading_term`` moves): it resumes the open
incidents of every shard it now holds from the shared store, where an action the dead
replica took is verified, never repeated, exactly as a new leader does.

Decisions:

- Spreading without a coordinator: for its first ``lease_duration_s`` a replica claims
  one free shard at most, starting its search at a place its identity picks, so that
  replicas started together take one shard each; after that it claims any shard that
  lies free (its holder died), so a dead replica's shard is taken within about
  ``lease_duration_s + retry_period_s``. Shards are not moved from a live replica to
  one that started later: that replica waits, as a standby, for a shard to fall free.
- The shard count is written on each shard Lease (annotation ``healer.io/shards``). A
  replica starting with another count than a live shard Lease records refuses to start
  (``check_shard_count``), since two counts would give one namespace two owners.
- Cluster-wide guards stay cluster-wide: every replica plans on the action history of
  the shared store, for the whole cluster (``cluster.name``), and plans and takes an
  action under the store's acting lock (``audit.acting``), so two shards cannot both
  spend the last action of the budget; the anomaly brake adds the other replicas'
  anomalous and watched workloads, exchanged through the store every cycle
  (``lifecycle.brake_share``), to its own.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import structlog

from healer.config import LeaderSettings
from healer.errors import ActionError, ConfigError
from healer.leader import Actuator, LeaderElector, LeaderOnlyActuator, LeaseClient
from healer.types import ActionRecord, JsonObject, Plan, WorkloadRef, WorkloadState

log = structlog.get_logger("healer.sharding")


def shard_of(namespace: str, shards: int) -> int:
    """The shard of ``namespace``: the first 8 bytes of its SHA-1, modulo ``shards``."""
    digest = hashlib.sha1(namespace.encode(), usedforsecurity=False).digest()
    return int.from_bytes(digest[:8], "big") % shards


def lease_name(base: str, index: int) -> str:
    return f"{base}-shard-{index}"


class ShardClaims:
    """This replica's claims on the ``shards`` shard Leases; thread-safe.

    Quacks like a ``LeaderElector`` where the daemon asks one (``tick``, ``is_leader``,
    ``leading_term``, ``release``, ``status``, ``last_error``, ``holder``), leading
    meaning "holds at least one shard".
    """

    def __init__(
        self,
        electors: Sequence[LeaderElector],
        *,
        identity: str,
        settings: LeaderSettings,
        clock: Callable[[], datetime],
    ) -> None:
        if not electors:
            raise ValueError("ShardClaims needs one elector per shard")
        self.electors = tuple(electors)
        self.shards = len(electors)
        self.identity = identity
        self.settings = settings
        self.clock = clock
        self._lock = threading.Lock()
        self._started: datetime | None = None
        self._seen: tuple[tuple[int, int | None], ...] = ()
        self._term = 0
        self.last_error: str | None = None
        self._first = int.from_bytes(hashlib.sha1(identity.encode()).digest()[:4], "big")

    # ---- the attempt every retry period ----------------------------------------------------

    def tick(self, now: datetime) -> bool:
        """Renew the shards held, claim free ones (``claimable``); whether any is held."""
        with self._lock:
            if self._started is None:
                self._started = now
            errors: list[str] = []
            for index in self._order():
                elector = self.electors[index]
                if elector.is_leader(now) or self._may_claim(now):
                    elector.tick(now)
                    if elector.last_error is not None:
                        errors.append(f"shard {index}: {elector.last_error}")
            self.last_error = "; ".join(errors) or None
            return bool(self._held(now))

    def _order(self) -> list[int]:
        """Shard indices from the one this replica's identity picks, around."""
        first = self._first % self.shards
        return [(first + k) % self.shards for k in range(self.shards)]

    def _may_claim(self, now: datetime) -> bool:
        """A free shard may be claimed: one at most while the replicas started together
        spread out (the first lease duration), any after."""
        assert self._started is not None
        settling = now - self._started < timedelta(seconds=self.settings.lease_duration_s)
        return not settling or not self._held(now)

    def _held(self, now: datetime) -> frozenset[int]:
        return frozenset(i for i, e in enumerate(self.electors) if e.is_leader(now))

    # ---- questions the daemon asks ----------------------------------------------------------

    def held(self, now: datetime) -> frozenset[int]:
        with self._lock:
            return self._held(now)

    def is_leader(self, now: datetime) -> bool:
        return bool(self.held(now))

    def leading_term(self, now: datetime) -> int | None:
        """None while no shard is held; else a number that moves each time the set of
        shards held changes, or one of them was lost and won back: the daemon then
        takes over afresh (another replica may have acted on them)."""
        with self._lock:
            seen = tuple(
                (i, term) for i, e in enumerate(self.electors) if (term := e.leading_term(now))
            )
            if not seen:
                self._seen = ()
                return None
            if seen != self._seen:
                self._seen = seen
                self._term += 1
                log.info("shards_held", identity=self.identity, shards=[i for i, _ in seen])
            return self._term

    def owns(self, namespace: str) -> bool:
        """Whether this replica holds the shard of ``namespace`` now (the daemon's scope).
        Cluster-scoped objects (nodes) have the empty namespace, so one shard has them."""
        return shard_of(namespace, self.shards) in self.held(self.clock())

    def confirm(self, namespace: str, now: datetime) -> str | None:
        """Before a write for ``namespace``: None when this replica may write (it holds
        the shard and its Lease still says so), else why not."""
        index = shard_of(namespace, self.shards)
        refused = self.electors[index].confirm(now)
        return None if refused is None else f"shard {index}: {refused}"

    @property
    def holder(self) -> str:
        """The holders seen, shard by shard (``0=a,1=b``), for readiness and status."""
        return ",".join(f"{i}={e.holder}" for i, e in enumerate(self.electors) if e.holder)

    def release(self, now: datetime) -> bool:
        """Give up every shard held (a graceful stop): the others take them at once."""
        released = [e.release(now) for e in self.electors]
        return any(released)

    def status(self, now: datetime) -> JsonObject:
        held = sorted(self.held(now))
        return {
            "identity": self.identity,
            "is_leader": bool(held),
            "leader": self.holder or None,
            "lease_error": self.last_error,
            "shards": self.shards,
            "shards_held": list(held),
        }


class ShardOnlyActuator:
    """Writes to the cluster only for workloads of a shard this replica holds, after
    re-reading that shard's Lease; reads pass through (``LeaderOnlyActuator`` per shard)."""

    def __init__(
        self, inner: Actuator, claims: ShardClaims, *, clock: Callable[[], datetime]
    ) -> None:
        self.inner = inner
        self.claims = claims
        self.clock = clock
        self._per_shard = [
            LeaderOnlyActuator(inner, elector, clock=clock) for elector in claims.electors
        ]

    def read_state(self, workload: WorkloadRef) -> WorkloadState:
        return self.inner.read_state(workload)

    def already_applied(self, intent: ActionRecord) -> bool:
        return self.inner.already_applied(intent)

    def owner_of_pod(self, namespace: str, pod: str) -> WorkloadRef | None:
        return self._per_shard[0].owner_of_pod(namespace, pod)

    def apply(self, plan: Plan, *, now: datetime) -> ActionRecord:
        index = shard_of(plan.workload.namespace, self.claims.shards)
        return self._per_shard[index].apply(plan, now=now)


def check_shard_count(leases: Sequence[LeaseClient], *, shards: int, now: datetime) -> None:
    """Refuse to start beside live replicas that run with another shard count.

    ``leases``: the shard Leases 0..``shards`` (one more than this replica uses, so that
    replicas with more shards are seen too). A Lease counts as live when its holder
    renewed it within its duration, judged on this machine's clock: a one-time check at
    start, where a clock skew of seconds matters only for a Lease that just lapsed.
    Raises ConfigError naming ``sharding.shards``; a Lease that cannot be read is
    skipped (the Kubernetes API may still be starting; the Leases are checked again as
    they are claimed, and a shard never has two holders).
    """
    for lease in leases:
        try:
            record = lease.get()
        except ActionError as exc:
            log.warning("shard_lease_unreadable", error=str(exc))
            continue
        if record is None or not record.holder or record.renewed is None:
            continue
        live = record.renewed + timedelta(seconds=record.lease_duration_s) > now.astimezone(UTC)
        if live and record.shards is not None and record.shards != shards:
            raise ConfigError(
                f"setting sharding.shards: {shards}, but replica {record.holder} holds a "
                f"shard Lease with {record.shards} shards; every replica of a cluster must "
                "use the same count (stop the others first to change it)"
            )
