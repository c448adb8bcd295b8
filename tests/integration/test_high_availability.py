"""Two and three daemons against one simulated cluster, in virtual time.

Each daemon has what a replica has: its own Kubernetes client (the official one, over
HTTP, to the simulator), its own elector on the one Lease, its own detector, and its own
connection to the shared audit store. A driver moves virtual time: the cluster steps,
every daemon tries the Lease every retry period (2 s), the leader cycles every interval.
A "killed" daemon simply stops: it neither renews nor cycles nor writes again, and a
kill in the middle of a step unwinds it before the step is recorded, as SIGKILL would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import config as kube_config

from healer.act.kube import KubeActuator
from healer.act.lease import KubeLeases
from healer.audit.store import AuditStore
from healer.config import Settings, load_settings
from healer.daemon import Healer
from healer.decide import load_playbooks
from healer.detect.streaming import StreamingDetector
from healer.leader import LeaderElector, LeaderOnlyActuator
from healer.sim.apiserver import serve_in_thread, write_kubeconfig
from healer.sim.cluster import Cluster
from healer.sim.scenario import load_scenario
from healer.sim.source import SimSource
from healer.types import ActionKind, ActionRecord, ActionStatus, OutcomeKind, Plan, WorkloadRef
from healer.types import WorkloadState as State

REPO = Path(__file__).resolve().parents[2]
ORDERS = WorkloadRef("shop", "Deployment", "orders")
PAYMENTS = WorkloadRef("shop", "Deployment", "payments")

pytestmark = pytest.mark.integration

SCENARIO = {
    "name": "two-faults",
    "description": "a leak in orders, then an overload of payments",
    "start": "2026-03-03T09:00:00Z",
    "seed": 11,
    "step_s": 15,
    "workloads": [
        {
            "name": "orders",
            "namespace": "shop",
            "replicas": 3,
            "image": "registry.local/shop/orders:3.2.0",
            "traffic": {"base_rps": 70, "peak_factor": 1.6, "noise": 0.04},
            "resources": {"cpu_seconds_per_request": 0.004, "memory_base_bytes": 220200960},
        },
        {
            "name": "payments",
            "namespace": "shop",
            "replicas": 3,
            "image": "registry.local/shop/payments:1.9.4",
            "traffic": {"base_rps": 40, "peak_factor": 1.6, "noise": 0.05},
        },
    ],
    "events": [
        {
            "at_s": 1200,
            "kind": "memory_leak",
            "workload": "shop/orders",
            "bytes_per_s": 110000,
            "expect": "restart",
        },
        {
            "at_s": 2400,
            "kind": "overload",
            "workload": "shop/payments",
            "factor": 2.8,
            "ramp_s": 120,
            "expect": "scale",
        },
    ],
}
RUN_S = 3600


class Killed(BaseException):
    """Unwinds a daemon mid-step, past every ``except HealerError``, as SIGKILL would."""


@dataclass
class Replica:
    name: str
    elector: LeaderElector
    healer: Healer
    store: AuditStore
    alive: bool = True
    term: int | None = None
    applied: list[tuple[datetime, Plan]] = field(default_factory=list)


class Recording:
    """The real actuator, noting every write and who led at that moment."""

    def __init__(self, inner: KubeActuator, world: World, name: str) -> None:
        self.inner, self.world, self.name = inner, world, name

    def read_state(self, workload: WorkloadRef) -> State:
        return self.inner.read_state(workload)

    def already_applied(self, intent: ActionRecord) -> bool:
        return self.inner.already_applied(intent)

    def apply(self, plan: Plan, *, now: datetime) -> ActionRecord:
        leaders = [r.name for r in self.world.alive() if r.elector.is_leader(now)]
        self.world.writes.append((now, self.name, leaders, plan))
        record = self.inner.apply(plan, now=now)
        if self.world.kill_after_write == self.name:
            raise Killed  # the cluster was changed; the audit store never hears of it
        return record


@dataclass
class World:
    cluster: Cluster
    replicas: list[Replica]
    settings: Settings
    writes: list[tuple[datetime, str, list[str], Plan]] = field(default_factory=list)
    kill_after_write: str | None = None
    t_s: int = 0

    def alive(self) -> list[Replica]:
        return [r for r in self.replicas if r.alive]

    def leaders(self) -> list[str]:
        now = self.now()
        return [r.name for r in self.alive() if r.elector.is_leader(now)]

    def now(self) -> datetime:
        return self.cluster.scenario.start + timedelta(seconds=self.t_s)

    def run_until(self, end_s: int, stop: Callable[[World], bool] | None = None) -> None:
        step_s = int(self.cluster.scenario.step_s)
        retry_s = int(self.settings.leader.retry_period_s)
        interval_s = int(self.settings.daemon.interval_s)
        while self.t_s < end_s:
            self.t_s += 1
            if self.t_s % step_s == 0:
                self.cluster.advance(step_s)
            now = self.now()
            for replica in self.alive():
                if self.t_s % retry_s == 0:
                    replica.elector.tick(now)
            assert len(self.leaders()) <= 1, f"two leaders at {now}: {self.leaders()}"
            if self.t_s % interval_s == 0:
                for replica in self.alive():
                    self._cycle(replica, now)
            if stop is not None and stop(self):
                return

    def _cycle(self, replica: Replica, now: datetime) -> None:
        term = replica.elector.leading_term(now)
        if term is None:
            return
        if term != replica.term:  # as run_forever's on_lead: pick up the shared store
            replica.healer.tracked.clear()
            replica.healer.detector = StreamingDetector(self.settings.detector)
            replica.healer.resume()
        replica.term = term
        try:
            replica.healer.cycle(now)
        except Killed:
            replica.alive = False


@pytest.fixture
def world_of(tmp_path: Path) -> Iterator[Callable[[int], World]]:
    scenario_file = tmp_path / "two-faults.yaml"
    scenario_file.write_text(yaml.safe_dump(SCENARIO))
    cluster = Cluster(load_scenario(str(scenario_file)))
    server = serve_in_thread(cluster)
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", server.url)
    settings = load_settings(None, guards={"mode": "auto"}, playbooks_dir=str(REPO / "playbooks"))
    playbooks = load_playbooks(settings.playbooks_dir)
    opened: list[Any] = []

    def build(count: int) -> World:
        world = World(cluster, [], settings)
        for i in range(count):
            api = kube_config.new_client_from_config(config_file=str(kubeconfig))
            store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
            opened.extend([api, store])
            name = f"healer-{i}"
            leases = KubeLeases(api, namespace="healer", name="healer")
            elector = LeaderElector(leases, identity=name, settings=settings.leader)
            actuator = LeaderOnlyActuator(
                Recording(KubeActuator(api), world, name), elector, clock=world.now
            )
            healer = Healer(
                source=SimSource(cluster),
                detector=StreamingDetector(settings.detector),
                actuator=actuator,
                store=store,
                playbooks=playbooks,
                settings=settings,
            )
            world.replicas.append(Replica(name, elector, healer, store))
        return world

    yield build
    for thing in opened:
        thing.close()
    server.stop()


def restarts_and_scales(world: World) -> list[tuple[ActionKind, WorkloadRef]]:
    return [(plan.action, plan.workload) for _, _, _, plan in world.writes]


def events_posted(world: World) -> list[str]:
    events = world.cluster.list_objects("events", "shop", None, None)
    return sorted(e["reason"] for e in events if str(e.get("reason", "")).startswith("Healer"))


def settled(world: World, workloads: tuple[WorkloadRef, ...] = (ORDERS, PAYMENTS)) -> bool:
    """These faults have an outcome (checked once per cycle interval: it reads the store)."""
    if world.t_s % int(world.settings.daemon.interval_s):
        return False
    done = {i.workload for i in world.replicas[-1].store.list_incidents() if i.outcome}
    return all(w in done for w in workloads)


def assert_only_the_leader_wrote(world: World) -> None:
    for at, writer, leaders, plan in world.writes:
        assert leaders == [writer], f"{writer} wrote {plan.action} at {at}; leaders {leaders}"


@pytest.mark.parametrize("count", [2, 3])
def test_one_daemon_acts_and_a_follower_takes_over_after_the_leader_dies(
    world_of: Callable[[int], World], count: int
) -> None:
    world = world_of(count)
    world.run_until(RUN_S, stop=lambda w: bool(w.writes))
    assert world.leaders() == ["healer-0"]
    first = world.writes[0]
    assert (first[1], first[3].action, first[3].workload) == (
        "healer-0",
        ActionKind.RESTART,
        ORDERS,
    )
    killed_at = world.t_s
    world.replicas[0].alive = False  # killed after its action was recorded
    world.run_until(RUN_S, stop=lambda w: bool(w.leaders()))
    takeover_s = world.t_s - killed_at
    assert takeover_s <= 20, f"no leader {takeover_s} s after the kill"
    successor = world.leaders()[0]
    world.run_until(RUN_S, stop=settled)

    assert_only_the_leader_wrote(world)
    # The overload may take two scale steps of at most x2 (an on_failure chain).
    assert list(dict.fromkeys(restarts_and_scales(world))) == [
        (ActionKind.RESTART, ORDERS),
        (ActionKind.SCALE, PAYMENTS),
    ]
    assert restarts_and_scales(world).count((ActionKind.SCALE, PAYMENTS)) <= 2
    assert list(dict.fromkeys(w[1] for w in world.writes)) == ["healer-0", successor]
    assert list(dict.fromkeys(events_posted(world))) == ["HealerRestart", "HealerScale"]
    store = world.replicas[1].store
    outcomes = {str(s.workload): (s.action_status, s.outcome) for s in store.list_incidents()}
    # The successor verified the restart it did not make, instead of making it again.
    assert outcomes[str(ORDERS)] == (ActionStatus.SUCCEEDED, OutcomeKind.HEALED)
    assert outcomes[str(PAYMENTS)] == (ActionStatus.SUCCEEDED, OutcomeKind.HEALED)


def test_a_leader_killed_between_its_write_and_its_record_is_not_repeated(
    world_of: Callable[[int], World],
) -> None:
    world = world_of(2)
    world.kill_after_write = "healer-0"
    world.run_until(RUN_S, stop=lambda w: not w.replicas[0].alive)
    assert world.writes and world.writes[0][1] == "healer-0"
    world.kill_after_write = None
    world.run_until(RUN_S, stop=lambda w: settled(w, (PAYMENTS,)))

    assert_only_the_leader_wrote(world)
    actions = restarts_and_scales(world)
    assert actions.count((ActionKind.RESTART, ORDERS)) == 1, actions
    assert (ActionKind.SCALE, PAYMENTS) in actions
    assert events_posted(world).count("HealerRestart") == 1
