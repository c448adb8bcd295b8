"""What lets the simulator run thousands of pods: columns, work queues, no idle writes."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from scipy.special import ndtr

from healer.sim.cluster import Cluster
from healer.sim.containers import ContainerTable
from healer.sim.objects import MERGE_PATCH, STRATEGIC_MERGE_PATCH, copy_json
from healer.sim.scenario import Scenario, Traffic, WorkloadSpec
from healer.sim.workloads import LATENCY_BUCKETS_S, LATENCY_SIGMA, _below_buckets

STEP_S = 15.0


def fleet(*, copies: int = 3, seed: int = 5) -> Scenario:
    return Scenario(
        name="fleet",
        description="a few identical Deployments",
        start=datetime(2026, 3, 2, 9, 0, tzinfo=UTC),
        seed=seed,
        workloads=[
            WorkloadSpec(
                name="api",
                namespace="shop",
                replicas=3,
                copies=copies,
                image="registry.local/shop/api:1.0",
                traffic=Traffic(base_rps=40, bursts_per_h=2),
            )
        ],
    )


def test_a_settled_cluster_writes_nothing_while_time_passes() -> None:
    cluster = Cluster(fleet())
    cluster.advance(4 * STEP_S)
    version = cluster.store.resource_version
    deployment = cluster.get_object("deployments", "shop", "api-0001")
    cluster.advance(40 * STEP_S)
    assert cluster.store.resource_version == version
    assert cluster.get_object("deployments", "shop", "api-0001") == deployment


def test_a_change_through_the_api_is_still_acted_on_after_a_quiet_spell() -> None:
    cluster = Cluster(fleet())
    cluster.advance(20 * STEP_S)
    cluster.patch_deployment("shop", "api-0002", {"spec": {"replicas": 5}}, MERGE_PATCH)
    cluster.advance(3 * STEP_S)
    dep = cluster.get_object("deployments", "shop", "api-0002")
    assert len(cluster.pods_of("shop", "api-0002")) == 5
    assert dep["status"]["observedGeneration"] == dep["metadata"]["generation"]
    assert dep["status"]["availableReplicas"] == 5
    assert len(cluster.pods_of("shop", "api-0001")) == 3  # the others left alone


def test_unchanged_conditions_keep_their_update_time_and_changed_ones_move() -> None:
    cluster = Cluster(fleet(copies=1))
    before = {
        c["type"]: c
        for c in cluster.get_object("deployments", "shop", "api")["status"]["conditions"]
    }
    cluster.advance(10 * STEP_S)
    after = {
        c["type"]: c
        for c in cluster.get_object("deployments", "shop", "api")["status"]["conditions"]
    }
    assert after == before
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "api", "image": "v2"}]}}}}
    cluster.patch_deployment("shop", "api", patch, STRATEGIC_MERGE_PATCH)
    cluster.advance(STEP_S)
    rolling = {
        c["type"]: c
        for c in cluster.get_object("deployments", "shop", "api")["status"]["conditions"]
    }
    assert rolling["Progressing"]["reason"] == "ReplicaSetUpdated"
    assert rolling["Progressing"]["lastUpdateTime"] > before["Progressing"]["lastUpdateTime"]


def test_the_same_seed_gives_the_same_run_and_another_seed_another() -> None:
    runs = []
    for seed in (5, 5, 6):
        cluster = Cluster(fleet(seed=seed))
        cluster.advance(30 * STEP_S)
        names = [p["metadata"]["name"] for p in cluster.list_objects("pods", "shop")]
        runs.append((np.stack(cluster.samples), names))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1]
    assert not np.array_equal(runs[0][0], runs[2][0])


def test_a_deleted_pod_frees_its_slot_for_the_next_one() -> None:
    cluster = Cluster(fleet(copies=1))
    cluster.advance(4 * STEP_S)
    pod = cluster.pods_of("shop", "api")[0]
    slot = cluster.container(pod).slot
    cluster.delete_object("pods", "shop", pod["metadata"]["name"])
    cluster.advance(STEP_S)
    replacement = next(
        p for p in cluster.pods_of("shop", "api") if cluster.container(p).slot == slot
    )
    assert replacement["metadata"]["name"] != pod["metadata"]["name"]
    veteran = next(
        p
        for p in cluster.pods_of("shop", "api")
        if p["metadata"]["name"] != replacement["metadata"]["name"]
    )
    # The new pod's counters start from zero, not from the deleted pod's.
    assert cluster.container(replacement).requests_ok < cluster.container(veteran).requests_ok
    assert cluster.container(replacement).cpu_seconds < cluster.container(veteran).cpu_seconds


def test_container_table_grows_and_reuses_the_lowest_free_slot() -> None:
    table = ContainerTable(buckets=3, capacity=2)
    slots = [table.allocate(pod=f"p{i}", workload=0) for i in range(5)]
    assert slots == [0, 1, 2, 3, 4] and table.capacity >= 5
    table.f["cpu_seconds"][1] = 7.0
    table.free(3)
    table.free(1)
    assert table.allocate(pod="again", workload=2) == 1
    assert table.f["cpu_seconds"][1] == 0.0  # a fresh container starts from zero
    assert table.pods[1] == "again" and table.workload[1] == 2
    assert list(table.live()) == [True, True, True, False, True]


@pytest.mark.parametrize("median_s", [1e-4, 0.003, 0.02, 0.08, 0.4, 1.7, 40.0])
def test_the_latency_histogram_shares_match_the_normal_cdf(median_s: float) -> None:
    exact = ndtr((np.log(LATENCY_BUCKETS_S) - np.log(median_s)) / LATENCY_SIGMA)
    table = _below_buckets(np.array([np.log(median_s)]))[0]
    np.testing.assert_allclose(table, exact, atol=2e-7)
    assert np.all(np.diff(table) >= 0)


def test_copy_json_is_deep() -> None:
    doc = {"a": [{"b": 1}, 2], "c": {"d": None}}
    copied = copy_json(doc)
    assert copied == doc
    copied["a"][0]["b"] = 9
    copied["c"]["d"] = "x"
    assert doc == {"a": [{"b": 1}, 2], "c": {"d": None}}
