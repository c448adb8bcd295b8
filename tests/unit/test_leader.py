"""Leader election in virtual time, against an in-memory Lease with resourceVersion checks."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from healer.config import LeaderSettings, load_settings
from healer.errors import ConfigError, TransientActionError
from healer.leader import LeaderElector, LeaderOnlyActuator
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

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
SETTINGS = LeaderSettings()
SEARCH = WorkloadRef("shop", "Deployment", "search")


class FakeLeases:
    """One Lease, with the API server's optimistic concurrency: a stale write is a 409."""

    def __init__(self) -> None:
        self.record: LeaseRecord | None = None
        self.version = 0
        self.down = False
        self.writes: list[LeaseRecord] = []

    def get(self) -> LeaseRecord | None:
        if self.down:
            raise TransientActionError("Kubernetes API unreachable: connection refused")
        return self.record

    def create(self, record: LeaseRecord) -> LeaseRecord:
        if self.down:
            raise TransientActionError("Kubernetes API unreachable: connection refused")
        if self.record is not None:
            raise TransientActionError("lease: 409 Conflict: already exists")
        return self._store(record)

    def replace(self, record: LeaseRecord) -> LeaseRecord:
        if self.down:
            raise TransientActionError("Kubernetes API unreachable: connection refused")
        assert self.record is not None
        if record.resource_version != self.record.resource_version:
            raise TransientActionError("lease: 409 Conflict: the object has been modified")
        return self._store(record)

    def _store(self, record: LeaseRecord) -> LeaseRecord:
        self.version += 1
        self.record = replace(record, resource_version=str(self.version))
        self.writes.append(self.record)
        return self.record


def electors(leases: FakeLeases, count: int) -> list[LeaderElector]:
    return [LeaderElector(leases, identity=f"healer-{i}", settings=SETTINGS) for i in range(count)]


def run(
    members: list[LeaderElector],
    *,
    start: datetime,
    seconds: float,
    alive: set[int] | None = None,
    step_s: float = 0.5,
    offsets: dict[int, timedelta] | None = None,
) -> list[tuple[datetime, list[int]]]:
    """Tick every member every retry period; return who led at each half second."""
    timeline = []
    t = 0.0
    while t < seconds:
        now = start + timedelta(seconds=t)
        for i, member in enumerate(members):
            local = now + (offsets or {}).get(i, timedelta(0))
            if (alive is None or i in alive) and t % SETTINGS.retry_period_s == 0:
                member.tick(local)
        leading = [
            i
            for i, m in enumerate(members)
            if (alive is None or i in alive)
            and m.is_leader(now + (offsets or {}).get(i, timedelta(0)))
        ]
        timeline.append((now, leading))
        t += step_s
    return timeline


@pytest.mark.parametrize("count", [2, 3])
def test_exactly_one_leads_and_keeps_the_lease(count: int) -> None:
    leases = FakeLeases()
    members = electors(leases, count)
    timeline = run(members, start=T0, seconds=120)
    assert all(leading == [0] for _, leading in timeline)
    assert leases.record is not None and leases.record.holder == "healer-0"
    assert leases.record.transitions == 0


@pytest.mark.parametrize("count", [2, 3])
def test_a_follower_takes_over_after_the_lease_duration_never_two_at_once(count: int) -> None:
    leases = FakeLeases()
    members = electors(leases, count)
    run(members, start=T0, seconds=10)
    killed_at = T0 + timedelta(seconds=10)
    alive = set(range(1, count))
    timeline = run(members, start=killed_at, seconds=40, alive=alive)
    first = next(now for now, leading in timeline if leading)
    takeover_s = (first - killed_at).total_seconds()
    # The last renewal was at most one retry period before the kill; followers wait a
    # full lease duration from when they saw it, then up to one retry period more.
    assert SETTINGS.lease_duration_s - SETTINGS.retry_period_s <= takeover_s
    assert takeover_s <= SETTINGS.lease_duration_s + 2 * SETTINGS.retry_period_s
    assert all(len(leading) <= 1 for _, leading in timeline)
    assert leases.record is not None and leases.record.transitions == 1
    assert leases.record.holder in {f"healer-{i}" for i in alive}


def test_a_leader_cut_off_from_the_api_stops_before_anyone_else_starts() -> None:
    """A partitioned leader still believes for the renew deadline (10 s); the followers
    wait the lease duration (15 s): the two spans never overlap."""
    leases = FakeLeases()
    members = electors(leases, 2)
    run(members, start=T0, seconds=10)
    cut = T0 + timedelta(seconds=10)

    class Partitioned:
        def get(self) -> LeaseRecord | None:
            raise TransientActionError("Kubernetes API unreachable: no route to host")

        create = replace = get

    members[0].leases = Partitioned()  # type: ignore[assignment]  # a fake without writes
    timeline = run(members, start=cut, seconds=40)
    stepped_down = next(now for now, leading in timeline if 0 not in leading)
    took_over = next(now for now, leading in timeline if 1 in leading)
    assert stepped_down <= cut + timedelta(seconds=SETTINGS.renew_deadline_s)
    assert took_over >= cut + timedelta(seconds=SETTINGS.lease_duration_s - SETTINGS.retry_period_s)
    assert all(len(leading) <= 1 for _, leading in timeline)
    assert members[0].last_error is not None and "no route to host" in members[0].last_error


def test_expiry_is_judged_on_the_followers_own_clock() -> None:
    """A follower whose clock runs an hour ahead still waits a full lease duration."""
    leases = FakeLeases()
    members = electors(leases, 2)
    offsets = {1: timedelta(hours=1)}
    timeline = run(members, start=T0, seconds=60, offsets=offsets)
    assert all(leading == [0] for _, leading in timeline)


def test_two_candidates_racing_for_an_expired_lease_one_wins() -> None:
    leases = FakeLeases()
    old = LeaderElector(leases, identity="gone", settings=SETTINGS)
    old.tick(T0)
    a, b = electors(leases, 2)
    a.tick(T0 + timedelta(seconds=1))
    b.tick(T0 + timedelta(seconds=1))
    later = T0 + timedelta(seconds=17)
    # Both saw the same version expire; a's write lands first, b's is a 409.
    assert a.tick(later) is True
    assert b.tick(later) is False
    assert leases.record is not None and leases.record.holder == "healer-0"


def test_release_hands_over_at_the_next_attempt() -> None:
    leases = FakeLeases()
    a, b = electors(leases, 2)
    a.tick(T0)
    b.tick(T0)
    assert a.release(T0 + timedelta(seconds=1)) is True
    assert not a.is_leader(T0 + timedelta(seconds=1))
    assert b.tick(T0 + timedelta(seconds=2)) is True
    assert b.release(T0 + timedelta(seconds=3)) is True
    assert a.release(T0 + timedelta(seconds=3)) is False  # a follower has nothing to release


def test_the_api_down_at_start_is_retried_and_reported() -> None:
    leases = FakeLeases()
    leases.down = True
    (a,) = electors(leases, 1)
    assert a.tick(T0) is False
    assert a.last_error is not None and "unreachable" in a.last_error
    leases.down = False
    assert a.tick(T0 + timedelta(seconds=2)) is True
    assert a.last_error is None


def test_confirm_refuses_once_another_daemon_wrote_the_lease() -> None:
    leases = FakeLeases()
    (a,) = electors(leases, 1)
    a.tick(T0)
    assert a.confirm(T0 + timedelta(seconds=1)) is None
    assert leases.record is not None
    leases.record = replace(leases.record, holder="intruder", resource_version="99")
    reason = a.confirm(T0 + timedelta(seconds=1))
    assert reason is not None and "intruder" in reason
    assert not a.is_leader(T0 + timedelta(seconds=1))


class CountingActuator:
    def __init__(self) -> None:
        self.applied: list[Plan] = []

    def read_state(self, workload: WorkloadRef) -> WorkloadState:
        raise AssertionError("not read here")

    def apply(self, plan: Plan, *, now: datetime) -> ActionRecord:
        self.applied.append(plan)
        return ActionRecord(plan.action, plan.workload, {}, ActionStatus.SUCCEEDED, now, now)


def test_a_daemon_that_lost_the_lease_does_not_write_and_records_why() -> None:
    leases = FakeLeases()
    a, b = electors(leases, 2)
    a.tick(T0)
    inner = CountingActuator()
    clock = [T0 + timedelta(seconds=1)]
    actuator = LeaderOnlyActuator(inner, a, clock=lambda: clock[0])
    plan = Plan(SEARCH, "scale", ActionKind.SCALE, {"replicas": 4}, Mode.AUTO, (), "test", 600.0)
    assert actuator.apply(plan, now=clock[0]).status == ActionStatus.SUCCEEDED
    # a is paused past the lease duration; b takes over; a wakes up and tries to act.
    b.tick(T0 + timedelta(seconds=2))
    b.tick(T0 + timedelta(seconds=18))
    clock[0] = T0 + timedelta(seconds=19)
    record = actuator.apply(plan, now=clock[0])
    assert record.status == ActionStatus.FAILED
    assert record.error is not None and record.error.startswith("not applied:")
    assert len(inner.applied) == 1


def test_lease_timings_out_of_order_name_the_setting() -> None:
    with pytest.raises(ConfigError, match="leader") as caught:
        load_settings(None, leader={"lease_duration_s": 5, "renew_deadline_s": 10})
    assert "renew_deadline_s must be shorter than lease_duration_s" in str(caught.value)


def test_a_new_term_only_when_leadership_is_won_again() -> None:
    leases = FakeLeases()
    a, b = electors(leases, 2)
    a.tick(T0)
    b.tick(T0)
    a.tick(T0 + timedelta(seconds=2))
    assert a.leading_term(T0 + timedelta(seconds=3)) == 1  # renewals keep the term
    assert b.leading_term(T0 + timedelta(seconds=3)) is None
    a.release(T0 + timedelta(seconds=4))
    b.tick(T0 + timedelta(seconds=4))
    b.release(T0 + timedelta(seconds=5))
    a.tick(T0 + timedelta(seconds=6))
    assert a.leading_term(T0 + timedelta(seconds=6)) == 2
