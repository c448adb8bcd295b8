"""Shards over Leases in virtual time: spreading, takeover, count checks, the write guard."""

from __future__ import annotations

import collections
from datetime import datetime, timedelta

import pytest
from test_leader import SETTINGS, T0, FakeLeases

from healer.config import load_settings
from healer.errors import ConfigError
from healer.leader import LeaderElector
from healer.sharding import ShardClaims, ShardOnlyActuator, check_shard_count, shard_of
from healer.types import (
    ActionKind,
    ActionRecord,
    ActionStatus,
    LeaseRecord,
    Mode,
    Plan,
    WorkloadRef,
    WorkloadState,
)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def replicas(
    leases: list[FakeLeases], count: int, clock: Clock, *, shards: int | None = None
) -> list[ShardClaims]:
    return [
        ShardClaims(
            [
                LeaderElector(lease, identity=f"r{i}", settings=SETTINGS, shards=len(leases))
                for lease in leases
            ],
            identity=f"r{i}",
            settings=SETTINGS,
            clock=clock,
        )
        for i in range(count)
    ]


def run(members: list[ShardClaims], clock: Clock, *, seconds: float, alive: set[int]) -> None:
    """Each live member tries its Leases every retry period (2 s), in turn."""
    end = clock.now + timedelta(seconds=seconds)
    while clock.now < end:
        for i, member in enumerate(members):
            if i in alive:
                member.tick(clock.now)
        clock.now += timedelta(seconds=SETTINGS.retry_period_s)


def holders(members: list[ShardClaims], clock: Clock) -> dict[int, list[str]]:
    out: dict[int, list[str]] = collections.defaultdict(list)
    for member in members:
        for shard in member.held(clock.now):
            out[shard].append(member.identity)
    return dict(out)


def test_the_shard_of_a_namespace_is_stable_and_spreads_namespaces_evenly() -> None:
    # Fixed values: every replica, every Python, every restart computes the same.
    assert [shard_of(ns, 3) for ns in ("shop", "web", "payments", "kube-system")] == [
        shard_of("shop", 3),
        shard_of("web", 3),
        shard_of("payments", 3),
        shard_of("kube-system", 3),
    ]
    assert (
        shard_of("shop", 3)
        == int.from_bytes(__import__("hashlib").sha1(b"shop").digest()[:8], "big") % 3
    )
    counts = collections.Counter(shard_of(f"team-{i}", 4) for i in range(4000))
    assert set(counts) == {0, 1, 2, 3}
    assert all(900 < n < 1100 for n in counts.values()), counts


def test_three_replicas_started_together_take_one_shard_each() -> None:
    clock = Clock()
    leases = [FakeLeases() for _ in range(3)]
    members = replicas(leases, 3, clock)
    run(members, clock, seconds=60, alive={0, 1, 2})
    held = holders(members, clock)
    assert sorted(held) == [0, 1, 2]
    assert all(len(names) == 1 for names in held.values()), held
    assert sorted(n for names in held.values() for n in names) == ["r0", "r1", "r2"]
    assert all(lease.record and lease.record.shards == 3 for lease in leases)


def test_a_dead_replicas_shard_is_taken_over_within_lease_duration_plus_retry() -> None:
    clock = Clock()
    leases = [FakeLeases() for _ in range(3)]
    members = replicas(leases, 3, clock)
    run(members, clock, seconds=30, alive={0, 1, 2})
    (lost,) = members[1].held(clock.now)
    killed_at = clock.now
    run(
        members,
        clock,
        seconds=SETTINGS.lease_duration_s + 2 * SETTINGS.retry_period_s,
        alive={0, 2},
    )
    held = holders([members[0], members[2]], clock)
    assert sorted(held) == [0, 1, 2] and all(len(v) == 1 for v in held.values()), held
    record = leases[lost].record
    assert record is not None and record.holder in ("r0", "r2")
    assert record.acquired is not None
    assert record.acquired - killed_at <= timedelta(
        seconds=SETTINGS.lease_duration_s + 2 * SETTINGS.retry_period_s
    )
    assert record.transitions == 1


def test_the_term_moves_when_the_shards_held_change_so_the_daemon_takes_over_afresh() -> None:
    clock = Clock()
    leases = [FakeLeases() for _ in range(2)]
    members = replicas(leases, 2, clock)
    run(members, clock, seconds=30, alive={0, 1})
    first = members[0].leading_term(clock.now)
    assert first is not None and members[0].leading_term(clock.now) == first
    run(members, clock, seconds=30, alive={0})  # r1 died: r0 now holds both
    assert members[0].held(clock.now) == frozenset({0, 1})
    assert members[0].leading_term(clock.now) == first + 1
    assert members[1].leading_term(clock.now) is None  # not renewed: holds nothing


def test_owns_and_confirm_follow_the_shard_of_the_namespace() -> None:
    clock = Clock()
    leases = [FakeLeases() for _ in range(2)]
    (member,) = replicas(leases, 1, clock)
    run([member], clock, seconds=1, alive={0})  # settling: one shard only
    (mine,) = member.held(clock.now)
    ours = next(f"ns-{i}" for i in range(100) if shard_of(f"ns-{i}", 2) == mine)
    theirs = next(f"ns-{i}" for i in range(100) if shard_of(f"ns-{i}", 2) != mine)
    assert member.owns(ours) and not member.owns(theirs)
    assert member.confirm(ours, clock.now) is None
    refused = member.confirm(theirs, clock.now)
    assert refused is not None and refused.startswith(f"shard {1 - mine}:")


class Recording:
    def __init__(self) -> None:
        self.applied: list[WorkloadRef] = []

    def read_state(self, workload: WorkloadRef) -> WorkloadState:
        raise AssertionError("not read here")

    def already_applied(self, intent: ActionRecord) -> bool:
        return False

    def apply(self, plan: Plan, *, now: datetime) -> ActionRecord:
        self.applied.append(plan.workload)
        request = {"action": plan.action.value}
        return ActionRecord(plan.action, plan.workload, request, ActionStatus.SUCCEEDED, now, now)


def plan_for(workload: WorkloadRef) -> Plan:
    return Plan(workload, "restart", ActionKind.RESTART, {}, Mode.AUTO, (), "test", 300.0)


def test_writes_go_out_only_for_the_shards_held() -> None:
    clock = Clock()
    leases = [FakeLeases() for _ in range(2)]
    (member,) = replicas(leases, 1, clock)
    run([member], clock, seconds=1, alive={0})
    (mine,) = member.held(clock.now)
    ours = WorkloadRef(
        next(f"a{i}" for i in range(99) if shard_of(f"a{i}", 2) == mine), "Deployment", "x"
    )
    theirs = WorkloadRef(
        next(f"a{i}" for i in range(99) if shard_of(f"a{i}", 2) != mine), "Deployment", "y"
    )
    inner = Recording()
    actuator = ShardOnlyActuator(inner, member, clock=clock)
    assert actuator.apply(plan_for(ours), now=clock.now).status is ActionStatus.SUCCEEDED
    refused = actuator.apply(plan_for(theirs), now=clock.now)
    assert refused.status is ActionStatus.FAILED
    assert refused.error is not None and "does not hold the lease" in refused.error
    assert inner.applied == [ours]


def held_lease(shards: int, *, renewed: datetime) -> FakeLeases:
    lease = FakeLeases()
    lease.record = LeaseRecord("other-replica", 15, renewed, renewed, 0, "1", shards=shards)
    return lease


def test_a_live_lease_with_another_shard_count_refuses_the_start_with_the_reason() -> None:
    live = held_lease(4, renewed=T0 - timedelta(seconds=3))
    with pytest.raises(ConfigError) as raised:
        check_shard_count([FakeLeases(), live], shards=3, now=T0)
    message = str(raised.value)
    assert "sharding.shards: 3" in message and "other-replica" in message
    assert "4 shards" in message


def test_an_expired_lease_or_the_same_count_does_not_refuse() -> None:
    expired = held_lease(4, renewed=T0 - timedelta(seconds=60))
    same = held_lease(3, renewed=T0)
    check_shard_count([expired, same, FakeLeases()], shards=3, now=T0)


def test_the_shard_count_is_a_setting_and_refuses_nonsense() -> None:
    assert load_settings(sharding={"shards": 4}).sharding.shards == 4
    assert load_settings().sharding.shards == 0
    with pytest.raises(ConfigError, match=r"sharding\.shards"):
        load_settings(sharding={"shards": -1})
    with pytest.raises(ConfigError, match=r"cluster\.name"):
        load_settings(cluster={"name": "Not A Label"})
