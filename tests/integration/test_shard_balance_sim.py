"""Shards spread over replicas through the simulated API server, in virtual time.

The replicas' shard and membership Leases are real ``coordination.k8s.io/v1`` objects
written through the official client over HTTP, with the server's resourceVersion
checks; only time is virtual, so a settle period and a lapse take no wall time.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import config as kube_config

from healer.act.lease import KubeLeases, KubeMembers
from healer.config import LeaderSettings
from healer.leader import LeaderElector
from healer.membership import Membership
from healer.sharding import ShardClaims, lease_name
from healer.sim.apiserver import serve_in_thread, write_kubeconfig
from healer.sim.cluster import Cluster
from healer.sim.scenario import load_scenario

pytestmark = pytest.mark.integration

SHARDS = 4
SETTLE_S = 20.0
SETTINGS = LeaderSettings()


class Clock:
    def __init__(self, cluster: Cluster) -> None:
        self.now = cluster.scenario.start

    def __call__(self) -> Any:
        return self.now


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Any]:
    cluster = Cluster(load_scenario("default"))
    server = serve_in_thread(cluster)
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", server.url)
    client = kube_config.new_client_from_config(config_file=str(kubeconfig))
    yield client, cluster
    client.close()
    server.stop()


def replica(api: Any, name: str, clock: Clock) -> ShardClaims:
    electors = [
        LeaderElector(
            KubeLeases(api, namespace="healer", name=lease_name("healer", i)),
            identity=name,
            settings=SETTINGS,
            shards=SHARDS,
        )
        for i in range(SHARDS)
    ]
    membership = Membership(
        KubeMembers(api, namespace="healer", group="healer"),
        identity=name,
        base="healer",
        settings=SETTINGS,
        settle_s=SETTLE_S,
    )
    return ShardClaims(
        electors, identity=name, settings=SETTINGS, clock=clock, membership=membership
    )


def run(replicas: dict[str, ShardClaims], clock: Clock, seconds: float) -> None:
    end = clock.now + timedelta(seconds=seconds)
    while clock.now < end:
        for claims in replicas.values():
            claims.tick(clock.now)
            claims.leading_term(clock.now)
            acting = collections.Counter(s for c in replicas.values() for s in c.held(clock.now))
            assert all(n == 1 for n in acting.values()), (clock.now, acting)
        clock.now += timedelta(seconds=SETTINGS.retry_period_s)


def counts(replicas: dict[str, ShardClaims], clock: Clock) -> dict[str, int]:
    return {name: len(claims.held(clock.now)) for name, claims in replicas.items()}


def test_a_later_replica_gets_its_share_and_a_dead_ones_shards_come_back(
    api: tuple[Any, Cluster],
) -> None:
    client, cluster = api
    clock = Clock(cluster)
    replicas = {"healer-a": replica(client, "healer-a", clock)}
    run(replicas, clock, 30)
    assert counts(replicas, clock) == {"healer-a": SHARDS}
    replicas["healer-b"] = replica(client, "healer-b", clock)
    run(replicas, clock, SETTLE_S + 4 * SETTINGS.retry_period_s)
    assert counts(replicas, clock) == {"healer-a": 2, "healer-b": 2}
    status = replicas["healer-a"].status(clock.now)
    assert status["members"] == ["healer-a", "healer-b"] and status["fair_share"] == 2

    replicas.pop("healer-b")  # killed: nothing renews its Leases any more
    run(replicas, clock, SETTINGS.lease_duration_s + 3 * SETTINGS.retry_period_s)
    assert counts(replicas, clock) == {"healer-a": SHARDS}
    members = KubeMembers(client, namespace="healer", group="healer").members()
    assert list(members) == ["healer-member-healer-a"]  # the dead one's was deleted


def test_a_lapsed_membership_is_deleted_only_at_the_version_seen(
    api: tuple[Any, Cluster],
) -> None:
    client, cluster = api
    clock = Clock(cluster)
    members = KubeMembers(client, namespace="healer", group="healer")
    other = replica(client, "healer-b", clock)
    other.tick(clock.now)
    seen = members.members()["healer-member-healer-b"]
    assert seen.resource_version is not None
    other.tick(clock.now + timedelta(seconds=2))  # renewed: a new version
    members.delete("healer-member-healer-b", resource_version=seen.resource_version)
    assert "healer-member-healer-b" in members.members()  # the renewal won
