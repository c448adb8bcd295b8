"""A shard handed over to a replica that joined later: its incident goes along.

Two daemons (each a ``Healer`` with its own store connection to one SQLite file), their
shard claims over in-memory Leases, driven in virtual time as ``healer run`` drives
them: claims tick every retry period, and between two cycles the daemon asks its term
and, when it moved, takes over afresh (forgets what it tracked, resumes the store's open
incidents of the shards it holds now).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from test_daemon import OVERLOAD, SEARCH, SIGNALS, T0, FakeActuator, ScriptedDetector
from test_leader import SETTINGS, FakeLeases
from test_shard_balance import FakeMembers

from healer.audit import AuditStore
from healer.config import load_settings
from healer.daemon import Healer
from healer.decide import load_playbooks
from healer.leader import LeaderElector
from healer.membership import Membership
from healer.sharding import ShardClaims, ShardOnlyActuator, shard_of
from healer.types import Frame, OutcomeKind, WorkloadRef

REPO = Path(__file__).resolve().parents[2]
WEB = WorkloadRef("web", "Deployment", "storefront")
SHARDS = 2
INTERVAL_S = 30


class OwnedSource:
    """The two workloads, each read only by the replica holding its namespace's shard."""

    def __init__(self, claims: ShardClaims) -> None:
        self.claims = claims

    def fetch(self, *, until: datetime, window_s: float) -> Frame:
        workloads = tuple(w for w in (SEARCH, WEB) if self.claims.owns(w.namespace))
        values = np.zeros((len(workloads), len(SIGNALS), 1))
        return Frame(np.array([until.timestamp()]), workloads, SIGNALS, values)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Replica:
    claims: ShardClaims
    healer: Healer
    detector: ScriptedDetector
    actuator: FakeActuator
    store: AuditStore
    term: int | None = None
    resumed: list[int] = field(default_factory=list)

    def between_cycles(self, now: datetime) -> None:
        term = self.claims.leading_term(now)
        if term is None:
            return
        if term != self.term:  # as run_forever's on_lead: the runner's take_over
            self.healer.tracked.clear()
            self.resumed.append(self.healer.resume())
        self.term = term
        self.healer.cycle(now)


@dataclass
class World:
    path: Path
    clock: Clock = field(default_factory=Clock)
    members: FakeMembers = field(default_factory=FakeMembers)
    leases: list[FakeLeases] = field(default_factory=lambda: [FakeLeases() for _ in range(SHARDS)])
    replicas: dict[str, Replica] = field(default_factory=dict)

    def join(self, name: str) -> Replica:
        clock = self.clock
        electors = [
            LeaderElector(lease, identity=name, settings=SETTINGS, shards=SHARDS)
            for lease in self.leases
        ]
        membership = Membership(
            self.members, identity=name, base="healer", settings=SETTINGS, settle_s=30
        )
        claims = ShardClaims(
            electors, identity=name, settings=SETTINGS, clock=clock, membership=membership
        )
        store = AuditStore(f"sqlite:///{self.path / 'audit.db'}")
        detector, actuator = ScriptedDetector(), FakeActuator()
        healer = Healer(
            source=OwnedSource(claims),
            detector=detector,
            actuator=ShardOnlyActuator(actuator, claims, clock=clock),
            store=store,
            playbooks=load_playbooks(REPO / "playbooks"),
            settings=load_settings(None, guards={"mode": "auto"}),
            scope=claims.owns,
        )
        self.replicas[name] = Replica(claims, healer, detector, actuator, store)
        return self.replicas[name]

    def run(self, seconds: int) -> None:
        end = self.clock.now + timedelta(seconds=seconds)
        while self.clock.now < end:
            now = self.clock.now
            elapsed_s = int((now - T0).total_seconds())
            for replica in self.replicas.values():
                if elapsed_s % SETTINGS.retry_period_s == 0:
                    replica.claims.tick(now)
                if elapsed_s % INTERVAL_S == 0:
                    replica.between_cycles(now)
                acting = [s for r in self.replicas.values() for s in r.claims.held(now)]
                assert len(acting) == len(set(acting)), f"a shard acted on twice at {now}"
            self.clock.now += timedelta(seconds=1)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    built = World(tmp_path)
    yield built
    for replica in built.replicas.values():
        replica.store.close()


def test_the_incident_of_a_shard_handed_over_is_resumed_by_its_new_holder(world: World) -> None:
    assert shard_of(SEARCH.namespace, SHARDS) != shard_of(WEB.namespace, SHARDS)
    first = world.join("r0")
    world.run(60)
    assert first.claims.held(world.clock.now) == frozenset({0, 1})
    first.detector.anomalous = {SEARCH: OVERLOAD, WEB: OVERLOAD}
    world.run(INTERVAL_S)
    first.detector.anomalous = {}
    assert sorted(p.workload.namespace for p in first.actuator.applied) == ["shop", "web"]

    second = world.join("r1")
    world.run(120)  # settle, hand over at r0's next cycle, taken at r1's next attempt
    (moved,) = second.claims.held(world.clock.now)
    assert first.claims.held(world.clock.now) == frozenset({1 - moved})
    assert second.resumed == [1]  # the moved shard's open incident, from the store

    world.run(600)  # both incidents stay quiet for the stable time: healed
    outcomes = [i.outcome for i in first.store.list_incidents()]
    assert outcomes == [OutcomeKind.HEALED, OutcomeKind.HEALED]
    assert second.actuator.applied == []  # verified, never taken twice
    assert len(first.actuator.applied) == 2
