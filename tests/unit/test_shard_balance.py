"""Shards spread over the live replicas, in virtual time, against in-memory Leases.

Each replica has its shard electors, its membership Lease and a daemon that asks
``leading_term`` between two cycles (here: right after each of its ticks). After every
single tick the test checks that no shard is acted on by two live replicas at once.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field, replace
from datetime import timedelta

import pytest
from test_leader import SETTINGS, FakeLeases
from test_sharding import Clock, Recording, plan_for

from healer.errors import PermanentActionError, TransientActionError
from healer.leader import LeaderElector
from healer.membership import Membership, fair_share, member_lease_name
from healer.sharding import ShardClaims, ShardOnlyActuator, shard_of
from healer.types import ActionStatus, LeaseRecord, WorkloadRef

SETTLE_S = 30.0


class FakeMembers:
    """The group's membership Leases, with the API server's resourceVersion checks."""

    def __init__(self) -> None:
        self.leases: dict[str, LeaseRecord] = {}
        self.version = 0
        self.deleted: list[str] = []

    def members(self) -> dict[str, LeaseRecord]:
        return dict(self.leases)

    def create(self, name: str, record: LeaseRecord) -> LeaseRecord:
        if name in self.leases:
            raise TransientActionError("lease: 409 Conflict: already exists")
        return self._store(name, record)

    def replace(self, name: str, record: LeaseRecord) -> LeaseRecord:
        current = self.leases.get(name)
        if current is None:
            raise PermanentActionError("lease: 404 Not Found")
        if current.resource_version != record.resource_version:
            raise TransientActionError("lease: 409 Conflict: the object has been modified")
        return self._store(name, record)

    def delete(self, name: str, *, resource_version: str) -> None:
        current = self.leases.get(name)
        if current is not None and current.resource_version == resource_version:
            del self.leases[name]
            self.deleted.append(name)

    def _store(self, name: str, record: LeaseRecord) -> LeaseRecord:
        self.version += 1
        self.leases[name] = replace(record, resource_version=str(self.version))
        return self.leases[name]


@dataclass
class Group:
    """Replicas sharing shard Leases and membership Leases, driven by one clock."""

    shards: int
    clock: Clock = field(default_factory=Clock)
    members: FakeMembers = field(default_factory=FakeMembers)
    leases: list[FakeLeases] = field(default_factory=list)
    replicas: dict[str, ShardClaims] = field(default_factory=dict)
    alive: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.leases = [FakeLeases() for _ in range(self.shards)]

    def join(self, name: str) -> ShardClaims:
        electors = [
            LeaderElector(lease, identity=name, settings=SETTINGS, shards=self.shards)
            for lease in self.leases
        ]
        membership = Membership(
            self.members, identity=name, base="healer", settings=SETTINGS, settle_s=SETTLE_S
        )
        claims = ShardClaims(
            electors, identity=name, settings=SETTINGS, clock=self.clock, membership=membership
        )
        self.replicas[name] = claims
        self.alive.add(name)
        return claims

    def run(self, seconds: float, *, cycling: bool = True) -> None:
        """Every retry period each live replica ticks, then (``cycling``) its daemon,
        between two cycles, asks its term."""
        end = self.clock.now + timedelta(seconds=seconds)
        while self.clock.now < end:
            for name in sorted(self.alive):
                claims = self.replicas[name]
                claims.tick(self.clock.now)
                if cycling:
                    claims.leading_term(self.clock.now)
                self.assert_one_actor_per_shard()
            self.clock.now += timedelta(seconds=SETTINGS.retry_period_s)

    def acting(self) -> dict[int, list[str]]:
        out: dict[int, list[str]] = collections.defaultdict(list)
        for name in sorted(self.alive):
            for shard in self.replicas[name].held(self.clock.now):
                out[shard].append(name)
        return dict(out)

    def counts(self) -> dict[str, int]:
        acting = self.acting()
        return {n: sum(n in names for names in acting.values()) for n in sorted(self.alive)}

    def assert_one_actor_per_shard(self) -> None:
        doubled = {s: names for s, names in self.acting().items() if len(names) > 1}
        assert not doubled, f"two replicas act on one shard at {self.clock.now}: {doubled}"

    def transitions(self) -> list[int]:
        return [lease.record.transitions if lease.record else 0 for lease in self.leases]


def test_one_replica_holds_every_shard() -> None:
    group = Group(shards=4)
    group.join("r0")
    group.run(SETTINGS.lease_duration_s + 2 * SETTINGS.retry_period_s)
    assert group.counts() == {"r0": 4}
    assert set(group.members.leases) == {"healer-member-r0"}


def test_a_second_replica_gets_half_the_shards_after_the_settle_period() -> None:
    group = Group(shards=4)
    group.join("r0")
    group.run(60)
    group.join("r1")
    group.run(SETTLE_S - SETTINGS.retry_period_s)
    assert group.counts() == {"r0": 4, "r1": 0}  # not yet: r1 is still settling
    # Seen at r0's next tick, settled, yielded, released after r0's next cycle, taken.
    group.run(4 * SETTINGS.retry_period_s)
    assert group.counts() == {"r0": 2, "r1": 2}
    moved = [lease.record for lease in group.leases if lease.record and lease.record.transitions]
    assert len(moved) == 2 and all(r.holder == "r1" for r in moved)
    # Each moved Lease was released (empty holder) before r1 wrote it: never two holders.
    for lease in group.leases:
        holders = [w.holder for w in lease.writes]
        if "r1" in holders:
            first = holders.index("r1")
            assert holders[first - 1] == "", holders


def test_a_dead_replicas_shards_go_to_the_survivors_and_its_membership_is_deleted() -> None:
    group = Group(shards=6)
    for name in ("r0", "r1", "r2"):
        group.join(name)
    group.run(120)
    assert group.counts() == {"r0": 2, "r1": 2, "r2": 2}
    group.alive.discard("r1")  # killed: it neither renews nor acts any more
    group.run(SETTINGS.lease_duration_s + 3 * SETTINGS.retry_period_s)
    assert group.counts() == {"r0": 3, "r2": 3}
    assert group.members.deleted == [member_lease_name("healer", "r1")]
    assert set(group.members.leases) == {"healer-member-r0", "healer-member-r2"}


def test_steady_membership_moves_no_shard() -> None:
    group = Group(shards=4)
    for name in ("r0", "r1", "r2"):
        group.join(name)
    group.run(120)
    assert sorted(group.counts().values()) == [1, 1, 2]
    before, held = group.transitions(), group.acting()
    group.run(600)
    assert group.transitions() == before and group.acting() == held


def test_a_replica_that_dies_while_settling_moves_nothing() -> None:
    group = Group(shards=4)
    for name in ("r0", "r1"):
        group.join(name)
    group.run(120)
    before = group.transitions()
    group.join("r2")
    group.run(SETTLE_S / 2)  # a crash loop: it dies long before it settled
    group.alive.discard("r2")
    group.run(120)
    assert group.transitions() == before
    assert group.counts() == {"r0": 2, "r1": 2}


def test_a_gracefully_stopped_replica_leaves_at_once() -> None:
    group = Group(shards=2)
    for name in ("r0", "r1"):
        group.join(name)
    group.run(120)
    group.replicas["r1"].release(group.clock.now)
    group.alive.discard("r1")
    group.run(2 * SETTINGS.retry_period_s)
    assert group.counts() == {"r0": 2}
    assert set(group.members.leases) == {"healer-member-r0"}


def test_a_shard_is_released_only_after_the_daemons_cycle_and_its_writes() -> None:
    group = Group(shards=2)
    r0 = group.join("r0")
    group.run(60)
    r1 = group.join("r1")
    # r0 yields one shard but still acts on it: its daemon is in a long cycle.
    group.run(SETTLE_S + 3 * SETTINGS.retry_period_s, cycling=False)
    clock = group.clock
    assert r0.held(clock.now) == frozenset({0, 1}) and not r1.held(clock.now)
    (leaving,) = r0._yielding
    namespace = next(f"ns-{i}" for i in range(99) if shard_of(f"ns-{i}", 2) == leaving)
    workload = WorkloadRef(namespace, "Deployment", "api")
    inner = Recording()
    actuator = ShardOnlyActuator(inner, r0, clock=clock)
    assert actuator.apply(plan_for(workload), now=clock.now).status is ActionStatus.SUCCEEDED

    with r0.writing(leaving) as refused:  # a write of r0's cycle is under way
        assert refused is None
        r0.leading_term(clock.now)  # between two cycles: no longer r0's to act on
        assert leaving not in r0.held(clock.now)
        assert not r0.owns(namespace) and r0.confirm(namespace, clock.now) is not None
        refused_record = actuator.apply(plan_for(workload), now=clock.now)
        assert refused_record.status is ActionStatus.FAILED
        assert refused_record.error is not None and "handed over" in refused_record.error
        for _ in range(10):  # a slow write, longer than the renew deadline
            clock.now += timedelta(seconds=SETTINGS.retry_period_s)
            r0.tick(clock.now)  # the write is in flight: the Lease stays r0's, renewed
            r1.tick(clock.now)
            assert not r1.held(clock.now)
    clock.now += timedelta(seconds=SETTINGS.retry_period_s)
    r0.tick(clock.now)  # released
    r1.tick(clock.now)
    assert r1.held(clock.now) == frozenset({leaving})
    assert actuator.apply(plan_for(workload), now=clock.now).status is ActionStatus.FAILED
    assert inner.applied == [workload]


@pytest.mark.parametrize("shards", [1, 2, 3, 4, 7, 16])
@pytest.mark.parametrize("count", [1, 2, 3, 5])
def test_fair_shares_add_up_to_the_shard_count(shards: int, count: int) -> None:
    members = tuple(f"r{i}" for i in range(count))
    shares = [fair_share(shards, members, m) for m in members]
    assert sum(shares) == shards and max(shares) - min(shares) <= 1


def test_the_membership_lease_name_is_a_valid_object_name() -> None:
    assert member_lease_name("healer", "Pod-7f9_ab12CD") == "healer-member-pod-7f9-ab12cd"
    assert member_lease_name("healer", "___") == "healer-member-replica"
    assert len(member_lease_name("healer", "x" * 400)) == 253
