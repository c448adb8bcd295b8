"""Pod faults hit one pod, the per-pod view shows it, and evicting that pod ends it."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from healer.diagnose.outliers import find
from healer.sim.cluster import Cluster
from healer.sim.scenario import Scenario, load_scenario
from healer.sim.source import SimSource
from healer.types import Signal, WorkloadRef

MINUTE = 60.0
CART = WorkloadRef("shop", "Deployment", "cart")
SEARCH = WorkloadRef("shop", "Deployment", "search")


def names(cluster: Cluster, workload: WorkloadRef) -> list[str]:
    return sorted(p["metadata"]["name"] for p in cluster.pods_of("shop", workload.name))


def view(cluster: Cluster, *workloads: WorkloadRef) -> dict[str, dict[Signal, float]]:
    frame = SimSource(cluster).fetch_pods(until=cluster.clock.now(), workloads=workloads)
    return {
        pod: dict(zip(frame.signals, map(float, frame.values[p]), strict=True))
        for p, pod in enumerate(frame.pods)
    }


def test_a_slow_pod_is_slow_alone_and_its_eviction_ends_it() -> None:
    cluster = Cluster(load_scenario("outlier-pod"))
    cluster.advance(5400 + 10 * MINUTE)
    pods = view(cluster, SEARCH)
    slow = names(cluster, SEARCH)[0]  # the event's pod 0, by name
    assert set(pods) == set(names(cluster, SEARCH))
    others = [v[Signal.LATENCY_P99] for p, v in pods.items() if p != slow]
    assert pods[slow][Signal.LATENCY_P99] > 4 * max(others)
    frame = SimSource(cluster).fetch_pods(until=cluster.clock.now(), workloads=(SEARCH,))
    assert find(frame)[SEARCH].pod == slow

    eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": slow}}
    cluster.evict_pod("shop", slow, eviction, dry_run=False)
    cluster.advance(5 * MINUTE)
    assert slow not in names(cluster, SEARCH)
    latencies = [v[Signal.LATENCY_P99] for v in view(cluster, SEARCH).values()]
    assert max(latencies) < 2 * min(latencies)


def test_a_leaking_pod_grows_alone_and_the_view_reads_its_trend() -> None:
    cluster = Cluster(load_scenario("outlier-pod"))
    cluster.advance(1800 + 8 * MINUTE)
    frame = SimSource(cluster).fetch_pods(until=cluster.clock.now(), workloads=(CART,))
    leaking = names(cluster, CART)[2]
    memory = frame.values[:, frame.signals.index(Signal.MEMORY)]
    row = frame.pods.index(leaking)
    assert memory[row] > 1.2 * np.median(memory)
    assert frame.memory_slope[row] > 0.0002  # 200 kB/s of a 512 MiB limit: 0.037%/s
    assert all(abs(frame.memory_slope[p]) < 0.00005 for p in range(4) if p != row)
    assert frame.workloads == (CART,) and frame.ready.all()


def test_the_view_holds_only_the_workloads_asked_for_and_nothing_before_the_first_step() -> None:
    cluster = Cluster(load_scenario("outlier-pod"))
    source = SimSource(cluster)
    assert source.fetch_pods(until=cluster.clock.now(), workloads=(CART,)).pods == ()
    cluster.advance(3 * MINUTE)
    frame = source.fetch_pods(until=cluster.clock.now(), workloads=(SEARCH,))
    assert sorted(frame.pods) == names(cluster, SEARCH)
    earlier = source.fetch_pods(until=cluster.clock.now() - timedelta(hours=1), workloads=(SEARCH,))
    assert earlier.pods == ()


def test_a_pod_fault_names_a_pod_the_workload_has() -> None:
    scenario = load_scenario("outlier-pod").model_dump()
    scenario["events"][1]["pod"] = 3
    with pytest.raises(ValueError, match=r"events\[1\]: pod 3 of shop/search, which has 3"):
        Scenario.model_validate(scenario)
    scenario["events"][1].pop("pod")
    with pytest.raises(ValueError, match="a pod_slow event needs pod"):
        Scenario.model_validate(scenario)
