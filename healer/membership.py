"""Who is running: one membership Lease per replica, so shards can be spread fairly.

A shard Lease says who holds a shard, not who could: a replica that holds none is
invisible there. So every sharded replica also keeps a Lease of its own,
``<leader.name>-member-<identity>`` (labelled ``healer.io/member-of: <leader.name>``),
renewed every retry period like a shard Lease. Each replica lists the group's
membership Leases at the same period; the live ones are the members the shards are
divided among (``healer.sharding``).

Decisions:

- A membership Lease is live while the version last seen is younger than its
  ``leaseDurationSeconds`` on this replica's clock, from when this replica first saw
  that version: the rule leader election uses, so skewed clocks still agree, and a
  member that stops renewing drops out about ``lease_duration_s`` later, when its shard
  Leases lapse too.
- Whoever finds a lapsed membership Lease deletes it (on the version it saw, so a
  renewal in between wins), so a dead replica does not count for ever.
- A newcomer counts only once it has been seen for ``settle_s``, and any member only
  while it renewed within ``renew_deadline_s``: the others give a newcomer shards only
  after that, so a replica in a crash loop (one that lives less than
  ``settle_s - renew_deadline_s``), or a listing that briefly shows one more member,
  moves nothing. Members already there when this
  replica first looked count at once: from here, this replica is the newcomer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from healer.config import LeaderSettings
from healer.errors import ActionError
from healer.types import LeaseRecord

log = structlog.get_logger("healer.membership")

_NOT_IN_A_NAME = re.compile(r"[^a-z0-9-]+")
_NAME_MAX = 253  # an object name is a DNS subdomain: at most 253 characters


class MemberLeases(Protocol):
    """The membership Leases of one group (``act.lease.KubeMembers``)."""

    def members(self) -> Mapping[str, LeaseRecord]:
        """Every membership Lease of the group, by name."""
        ...

    def create(self, name: str, record: LeaseRecord) -> LeaseRecord: ...

    def replace(self, name: str, record: LeaseRecord) -> LeaseRecord: ...

    def delete(self, name: str, *, resource_version: str) -> None:
        """Delete the Lease if it is still at ``resource_version``; gone is fine."""
        ...


def member_lease_name(base: str, identity: str) -> str:
    """``<base>-member-<identity>``, the identity lower-cased and every run of
    characters an object name may not hold (``_`` of ``<hostname>_<random>``) made ``-``."""
    slug = _NOT_IN_A_NAME.sub("-", identity.lower()).strip("-") or "replica"
    return f"{base}-member-{slug}"[:_NAME_MAX].rstrip("-")


@dataclass(frozen=True)
class _Seen:
    """One membership Lease as this replica observed it."""

    holder: str
    version: str | None
    version_seen_at: datetime
    """When this replica first saw that version (its liveness is judged from here)."""
    first_seen_at: datetime
    """When this replica first saw the member at all (its settling runs from here)."""
    duration_s: int


class Membership:
    """This replica's membership Lease and its view of the group's others.

    Not thread-safe on its own: ``ShardClaims`` calls it under its lock.
    """

    def __init__(
        self,
        leases: MemberLeases,
        *,
        identity: str,
        base: str,
        settings: LeaderSettings,
        settle_s: float,
    ) -> None:
        self.leases = leases
        self.identity = identity
        self.name = member_lease_name(base, identity)
        self.settings = settings
        self.settle_s = settle_s
        self._seen: dict[str, _Seen] = {}
        self._looked = False
        self._mine: LeaseRecord | None = None
        self.last_error: str | None = None

    def tick(self, now: datetime) -> None:
        """List the group, renew this replica's Lease, delete lapsed ones. API errors
        are kept in ``last_error``; the view stays as last seen, ageing."""
        try:
            listed = self.leases.members()
            self._observe(listed, now)
            self._renew(listed.get(self.name), now)
            self._delete_lapsed(now)
            self.last_error = None
        except ActionError as exc:
            self.last_error = str(exc)
            log.warning("membership_attempt_failed", identity=self.identity, error=str(exc))

    def _observe(self, listed: Mapping[str, LeaseRecord], now: datetime) -> None:
        established = not self._looked
        self._looked = True
        for name, record in listed.items():
            if name == self.name or not record.holder:
                continue
            seen = self._seen.get(name)
            if seen is None or seen.holder != record.holder:
                first = now - timedelta(seconds=self.settle_s) if established else now
                seen = _Seen(record.holder, None, now, first, record.lease_duration_s)
            if seen.version != record.resource_version:
                seen = replace(
                    seen,
                    version=record.resource_version,
                    version_seen_at=now,
                    duration_s=record.lease_duration_s,
                )
            self._seen[name] = seen
        for gone in self._seen.keys() - listed.keys():
            del self._seen[gone]

    def _renew(self, current: LeaseRecord | None, now: datetime) -> None:
        duration_s = self.settings.lease_duration_s
        if current is None:
            mine = LeaseRecord(self.identity, duration_s, now, now, 0)
            self._mine = self.leases.create(self.name, mine)
            return
        renewed = replace(current, holder=self.identity, renewed=now, lease_duration_s=duration_s)
        self._mine = self.leases.replace(self.name, renewed)

    def leave(self) -> None:
        """Delete this replica's Lease on a graceful stop, so that the others stop
        counting it at once rather than after ``lease_duration_s``."""
        mine, self._mine = self._mine, None
        if mine is None or mine.resource_version is None:
            return
        try:
            self.leases.delete(self.name, resource_version=mine.resource_version)
        except ActionError as exc:
            log.warning("membership_leave_failed", identity=self.identity, error=str(exc))

    def _delete_lapsed(self, now: datetime) -> None:
        for name, seen in list(self._seen.items()):
            if self._live(seen, now) or seen.version is None:
                continue
            self.leases.delete(name, resource_version=seen.version)
            del self._seen[name]
            log.info("member_lapsed", identity=self.identity, member=seen.holder)

    @staticmethod
    def _live(seen: _Seen, now: datetime) -> bool:
        return seen.version_seen_at + timedelta(seconds=seen.duration_s) > now

    def members(self, now: datetime) -> tuple[str, ...]:
        """The identities the shards are divided among, sorted: this replica, and every
        other seen for ``settle_s`` that renewed its Lease within the renew deadline
        (as a shard holder must to act: one that did not has stopped, or soon will)."""
        settled = timedelta(seconds=self.settle_s)
        fresh = timedelta(seconds=self.settings.renew_deadline_s)
        others = {
            seen.holder
            for seen in self._seen.values()
            if now - seen.version_seen_at < fresh and now - seen.first_seen_at >= settled
        }
        return tuple(sorted(others | {self.identity}))


def fair_share(shards: int, members: tuple[str, ...], identity: str) -> int:
    """How many shards ``identity`` should hold: ``shards // len(members)``, one more
    for the first ``shards % len(members)`` members in sorted order, so that replicas
    with the same view ask for shares adding up to exactly ``shards``."""
    count = len(members)
    rank = members.index(identity)
    return shards // count + (1 if rank < shards % count else 0)
