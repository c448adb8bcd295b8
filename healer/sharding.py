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
  replicas started together take one shard each; after that it claims shards that lie
  free (their holder died or handed them over) up to its fair share, so a dead
  replica's shard is taken within about ``lease_duration_s + retry_period_s``.
- Balance through membership Leases (``healer.membership``): every replica sees the
  same members, so each computes every member's share (``fair_share``: the shares add
  up to the shard count) and only ever changes its own holdings, keeping or claiming up
  to its share and handing over what is beyond it; nobody takes a shard from another.
  A replica that starts later thus gets shards from those holding more than their share
  once it has been seen for ``sharding.settle_s``. Handing over is two-phase, so that
  no shard is acted on by two replicas: the giver stops acting on it between two
  cycles (the daemon's next ``leading_term``), releases the Lease at its next attempt
  once no write for it is in flight, and only then may another replica claim it; the
  taker resumes its incidents from the store, as after a takeover.
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

import collections
import hashlib
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import structlog

from healer.config import LeaderSettings
from healer.errors import ActionError, ConfigError
from healer.leader import Actuator, LeaderElector, LeaderOnlyActuator, LeaseClient, abandoned
from healer.membership import Membership, fair_share
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

    With a ``membership``, it holds its fair share of the shards (``fair_share`` among
    the live members) and hands the rest over. A shard to hand over goes through two
    steps: *yielding* (still renewed and acted on until the daemon next asks
    ``leading_term``, between two cycles), then *handed* (no longer in ``held``, ``owns``
    or ``confirm``; the daemon has taken over afresh without it), and is released at the
    next tick once no write for it is in flight, so its new holder can only start
    after this replica stopped.
    """

    def __init__(
        self,
        electors: Sequence[LeaderElector],
        *,
        identity: str,
        settings: LeaderSettings,
        clock: Callable[[], datetime],
        membership: Membership | None = None,
    ) -> None:
        if not electors:
            raise ValueError("ShardClaims needs one elector per shard")
        self.electors = tuple(electors)
        self.shards = len(electors)
        self.identity = identity
        self.settings = settings
        self.clock = clock
        self.membership = membership
        self._lock = threading.Lock()
        self._started: datetime | None = None
        self._seen: tuple[tuple[int, int | None], ...] = ()
        self._term = 0
        self._yielding: set[int] = set()
        """Shards to hand over, still acted on until the daemon's next term."""
        self._handed: set[int] = set()
        """Shards no longer acted on, to release at the next tick."""
        self._writing: collections.Counter[int] = collections.Counter()
        """Writes to the cluster in flight, per shard (``writing``)."""
        self.last_error: str | None = None
        self._first = int.from_bytes(hashlib.sha1(identity.encode()).digest()[:4], "big")

    # ---- the attempt every retry period ----------------------------------------------------

    def tick(self, now: datetime) -> bool:
        """Renew the shards kept, release those handed over, claim free ones up to the
        fair share (``_may_claim``), pick extras to hand over; whether any is held."""
        with self._lock:
            if self._started is None:
                self._started = now
            errors: list[str] = []
            # The share from the members seen at the last attempt (one retry period old):
            # the shard Leases are renewed first, so that slow membership calls cannot
            # hold their renewal past the renew deadline.
            share = self._share(now)
            self._release_handed(now)
            for index in self._order():
                elector = self.electors[index]
                if index in self._handed:
                    if self._writing[index]:  # renewed until its last write is done
                        elector.tick(now)
                    continue
                if elector.is_leader(now) or self._may_claim(now, share):
                    elector.tick(now)
                else:
                    elector.observe(now)
                if elector.last_error is not None:
                    errors.append(f"shard {index}: {elector.last_error}")
            self._pick_extras(now, share)
            if self.membership is not None:
                self.membership.tick(now)
                if self.membership.last_error is not None:
                    errors.append(f"membership: {self.membership.last_error}")
            self.last_error = "; ".join(errors) or None
            return bool(self._held(now))

    def _order(self) -> list[int]:
        """Shard indices from the one this replica's identity picks, around."""
        first = self._first % self.shards
        return [(first + k) % self.shards for k in range(self.shards)]

    def _share(self, now: datetime) -> int:
        """How many shards to keep: all without a membership, else the fair share."""
        if self.membership is None:
            return self.shards
        return fair_share(self.shards, self.membership.members(now), self.identity)

    def _keeping(self, now: datetime) -> list[int]:
        """The shards held and not on their way out, in this replica's order."""
        leaving = self._yielding | self._handed
        return [i for i in self._order() if i not in leaving and self.electors[i].is_leader(now)]

    def _may_claim(self, now: datetime, share: int) -> bool:
        """A free shard may be claimed below the share: one at most while the replicas
        started together spread out (the first lease duration), up to the share after."""
        assert self._started is not None
        kept = len(self._keeping(now))
        if kept >= share:
            return False
        settling = now - self._started < timedelta(seconds=self.settings.lease_duration_s)
        return not settling or kept == 0

    def _pick_extras(self, now: datetime, share: int) -> None:
        """Mark the shards beyond the share to hand over (the last in this replica's
        order); take back those still yielding if the share grew meanwhile."""
        self._yielding = {i for i in self._yielding if self.electors[i].is_leader(now)}
        kept = self._keeping(now)
        while len(kept) < share and self._yielding:
            self._yielding.discard(back := min(self._yielding))
            kept.append(back)
        extras = kept[share:] if self.membership is not None else []
        if extras:
            self._yielding.update(extras)
            log.info("shards_yielding", identity=self.identity, shards=extras, share=share)

    def _release_handed(self, now: datetime) -> None:
        """Release the shards handed over with no write in flight, as a graceful stop
        does (empty holder): a member below its share takes each at its next attempt."""
        for index in sorted(self._handed):
            if self._writing[index]:
                continue
            elector = self.electors[index]
            if not elector.is_leader(now) or elector.release(now):
                self._handed.discard(index)
                log.info("shard_handed_over", identity=self.identity, shard=index)

    def _held(self, now: datetime) -> frozenset[int]:
        return frozenset(
            i for i, e in enumerate(self.electors) if i not in self._handed and e.is_leader(now)
        )

    # ---- questions the daemon asks ----------------------------------------------------------

    def held(self, now: datetime) -> frozenset[int]:
        with self._lock:
            return self._held(now)

    def is_leader(self, now: datetime) -> bool:
        return bool(self.held(now))

    def leading_term(self, now: datetime) -> int | None:
        """None while no shard is held; else a number that moves each time the set of
        shards held changes, or one of them was lost and won back: the daemon then
        takes over afresh (another replica may have acted on them).

        The daemon asks between two cycles: the shards yielding become handed here, so
        the cycle that acted on them has ended and the next one starts without them.
        """
        with self._lock:
            if self._yielding:
                self._handed |= self._yielding
                self._yielding.clear()
            seen = tuple(
                (i, term)
                for i, e in enumerate(self.electors)
                if i not in self._handed and (term := e.leading_term(now))
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
        with self._lock:
            handed = index in self._handed
        refused = _HANDED if handed else self.electors[index].confirm(now)
        return None if refused is None else f"shard {index}: {refused}"

    @contextmanager
    def writing(self, index: int) -> Iterator[str | None]:
        """Around a write for shard ``index``: yields why it may not go out (the shard
        is handed over), else None, and the shard is not released until it is done."""
        with self._lock:
            handed = index in self._handed
            if not handed:
                self._writing[index] += 1
        if handed:
            yield f"shard {index}: {_HANDED}"
            return
        try:
            yield None
        finally:
            with self._lock:
                self._writing[index] -= 1

    @property
    def holder(self) -> str:
        """The holders seen, shard by shard (``0=a,1=b``), for readiness and status."""
        return ",".join(f"{i}={e.holder}" for i, e in enumerate(self.electors) if e.holder)

    def release(self, now: datetime) -> bool:
        """Give up every shard held and leave the membership (a graceful stop): the
        others take the shards at once and divide them among themselves."""
        released = [e.release(now) for e in self.electors]
        if self.membership is not None:
            self.membership.leave()
        return any(released)

    def status(self, now: datetime) -> JsonObject:
        held = sorted(self.held(now))
        out: JsonObject = {
            "identity": self.identity,
            "is_leader": bool(held),
            "leader": self.holder or None,
            "lease_error": self.last_error,
            "shards": self.shards,
            "shards_held": list(held),
        }
        if self.membership is not None:
            with self._lock:
                members = self.membership.members(now)
            out["members"] = list(members)
            out["fair_share"] = fair_share(self.shards, members, self.identity)
        return out


_HANDED = "handed over to another replica"


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
        with self.claims.writing(index) as refused:
            if refused is not None:
                return abandoned(plan, now, refused)
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
