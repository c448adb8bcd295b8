"""Each fault shows in the right signals, yields to the right remedy and not to a wrong one.

The remedies are the requests kubectl makes (rollout restart, scale, rollout undo), sent
to the cluster's API methods directly; the loop and its HTTP path are tested elsewhere.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from healer.sim.cluster import REVISION, Cluster
from healer.sim.scenario import load_scenario
from healer.types import Signal

STRATEGIC = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"
MINUTE = 60.0


def signal(cluster: Cluster, workload: str, which: Signal, last_s: float = 120.0) -> float:
    """Mean of a signal over the last ``last_s`` seconds (NaN gaps ignored)."""
    w = [f"{r.namespace}/{r.name}" for r in cluster.workloads].index(workload)
    values = np.array(cluster.samples)[:, w, list(Signal).index(which)]
    steps = max(1, int(last_s / cluster.scenario.step_s))
    return float(np.nanmean(values[-steps:]))


def restart(cluster: Cluster, workload: str) -> None:
    ns, name = workload.split("/")
    stamp = cluster.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    patch = {
        "spec": {
            "template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": stamp}}}
        }
    }
    cluster.patch_deployment(ns, name, patch, STRATEGIC)


def scale(cluster: Cluster, workload: str, replicas: int) -> None:
    ns, name = workload.split("/")
    cluster.patch_scale(ns, name, {"spec": {"replicas": replicas}}, MERGE)


def rollback(cluster: Cluster, workload: str) -> None:
    """`kubectl rollout undo`: the previous revision's template, by JSON patch."""
    ns, name = workload.split("/")
    sets = sorted(
        cluster.list_objects("replicasets", ns, f"app={name}"),
        key=lambda rs: int(rs["metadata"]["annotations"][REVISION]),
    )
    template = copy.deepcopy(sets[-2]["spec"]["template"])
    del template["metadata"]["labels"]["pod-template-hash"]
    cluster.patch_deployment(
        ns,
        name,
        [{"op": "replace", "path": "/spec/template", "value": template}],
        "application/json-patch+json",
    )


def started(name: str, minutes_after_fault: float = 10) -> Cluster:
    cluster = Cluster(load_scenario(name))
    fault = next(e for e in cluster.scenario.events if e.expect != "none")
    cluster.advance(fault.at_s + minutes_after_fault * MINUTE)
    return cluster


def baseline(name: str, workload: str, which: Signal) -> float:
    cluster = Cluster(load_scenario(name))
    fault = next(e for e in cluster.scenario.events if e.expect != "none")
    cluster.advance(fault.at_s - MINUTE)
    return signal(cluster, workload, which, last_s=600)


# ---- memory leak ------------------------------------------------


def test_a_leak_shows_in_memory_and_a_restart_clears_it_for_a_while() -> None:
    before = baseline("memory-leak", "shop/orders", Signal.MEMORY)
    cluster = started("memory-leak", minutes_after_fault=15)
    assert signal(cluster, "shop/orders", Signal.MEMORY) > before + 0.1
    assert signal(cluster, "shop/payments", Signal.MEMORY) < 0.5
    restart(cluster, "shop/orders")
    cluster.advance(5 * MINUTE)
    assert signal(cluster, "shop/orders", Signal.MEMORY, last_s=60) < before + 0.03
    cluster.advance(2 * 3600 + 30 * MINUTE)  # the leak recurs two hours after the restart
    assert signal(cluster, "shop/orders", Signal.MEMORY, last_s=60) > before + 0.1


def test_scaling_does_not_save_leaking_pods_from_the_oom_killer() -> None:
    cluster = started("memory-leak", minutes_after_fault=5)
    scale(cluster, "shop/orders", 6)
    cluster.advance(60 * MINUTE)
    pods = cluster.pods_of("shop", "orders")
    reasons = [
        p["status"]["containerStatuses"][0].get("lastState", {}).get("terminated", {}).get("reason")
        for p in pods
    ]
    assert reasons.count("OOMKilled") == 3


# ---- overload ------------------------------------------------


def test_an_overload_shows_in_traffic_cpu_and_latency_and_scaling_absorbs_it() -> None:
    before = baseline("overload", "shop/search", Signal.LATENCY_P99)
    cluster = started("overload")
    assert signal(cluster, "shop/search", Signal.REQUEST_RATE) > 2.5 * baseline(
        "overload", "shop/search", Signal.REQUEST_RATE
    )
    assert signal(cluster, "shop/search", Signal.CPU) > 1.2
    assert signal(cluster, "shop/search", Signal.LATENCY_P99) > 2 * before
    scale(cluster, "shop/search", 10)
    cluster.advance(5 * MINUTE)
    assert signal(cluster, "shop/search", Signal.LATENCY_P99) < 1.3 * before


def test_a_restart_does_not_absorb_an_overload() -> None:
    before = baseline("overload", "shop/search", Signal.LATENCY_P99)
    cluster = started("overload")
    restart(cluster, "shop/search")
    cluster.advance(5 * MINUTE)
    assert signal(cluster, "shop/search", Signal.LATENCY_P99) > 2 * before


def test_scaling_absorbs_an_overload_only_up_to_the_downstream_capacity() -> None:
    scenario = load_scenario("overload")
    search = scenario.workloads[0].model_copy(update={"capacity_rps": 250.0})
    cluster = Cluster(scenario.model_copy(update={"workloads": [search]}))
    cluster.advance(scenario.events[0].at_s + 10 * MINUTE)
    scale(cluster, "shop/search", 30)
    cluster.advance(5 * MINUTE)
    demand = signal(cluster, "shop/search", Signal.REQUEST_RATE)
    assert demand > 250
    expected = 1 - 250 / demand
    assert signal(cluster, "shop/search", Signal.ERROR_RATIO) == pytest.approx(expected, abs=0.03)


# ---- bad release ------------------------------------------------


def test_a_bad_release_shows_in_errors_and_latency_and_a_rollback_ends_it() -> None:
    cluster = started("bad-release")
    assert signal(cluster, "shop/cart", Signal.ERROR_RATIO) > 0.15
    assert signal(cluster, "shop/checkout", Signal.ERROR_RATIO) < 0.01
    rollback(cluster, "shop/cart")
    cluster.advance(5 * MINUTE)
    assert signal(cluster, "shop/cart", Signal.ERROR_RATIO) < 0.01


def test_a_restart_does_not_fix_a_bad_release() -> None:
    cluster = started("bad-release")
    restart(cluster, "shop/cart")
    cluster.advance(5 * MINUTE)
    assert signal(cluster, "shop/cart", Signal.ERROR_RATIO) > 0.15


# ---- crash loop ------------------------------------------------


def test_a_crash_loop_shows_in_restarts_and_stalls_the_rollout() -> None:
    cluster = started("crash-loop")
    assert signal(cluster, "shop/profile", Signal.RESTARTS, last_s=600) > 0
    assert signal(cluster, "shop/profile", Signal.READY_RATIO) == 1.0  # the old pods serve
    dep = cluster.get_object("deployments", "shop", "profile")
    assert dep["status"]["updatedReplicas"] < dep["spec"]["replicas"]
    crashing = [
        p
        for p in cluster.pods_of("shop", "profile")
        if "waiting" in p["status"]["containerStatuses"][0]["state"]
        or p["status"]["containerStatuses"][0]["restartCount"] > 0
    ]
    assert crashing
    waiting = crashing[0]["status"]["containerStatuses"][0]
    assert waiting["lastState"]["terminated"]["reason"] == "Error"


def test_a_rollback_ends_a_crash_loop_and_a_restart_does_not() -> None:
    fixed, restarted = started("crash-loop"), started("crash-loop")
    rollback(fixed, "shop/profile")
    restart(restarted, "shop/profile")
    # The restarts signal counts over ten minutes: the last five of fifteen are clear.
    fixed.advance(15 * MINUTE)
    restarted.advance(15 * MINUTE)
    assert signal(fixed, "shop/profile", Signal.RESTARTS, last_s=300) == 0
    assert fixed.get_object("deployments", "shop", "profile")["status"]["updatedReplicas"] == 3
    assert signal(restarted, "shop/profile", Signal.RESTARTS, last_s=600) > 0


# ---- CPU hog ------------------------------------------------


def test_a_cpu_hog_shows_in_cpu_and_latency_with_steady_traffic_and_a_restart_clears_it() -> None:
    cpu = baseline("cpu-hog", "shop/recommend", Signal.CPU)
    rate = baseline("cpu-hog", "shop/recommend", Signal.REQUEST_RATE)
    cluster = started("cpu-hog")
    assert signal(cluster, "shop/recommend", Signal.CPU) > cpu + 1.0
    assert signal(cluster, "shop/recommend", Signal.REQUEST_RATE) == pytest.approx(rate, rel=0.2)
    restart(cluster, "shop/recommend")
    cluster.advance(5 * MINUTE)
    assert signal(cluster, "shop/recommend", Signal.CPU) < cpu + 0.15


def test_scaling_leaves_the_hogged_pods_burning() -> None:
    cpu = baseline("cpu-hog", "shop/recommend", Signal.CPU)
    cluster = started("cpu-hog")
    scale(cluster, "shop/recommend", 6)
    cluster.advance(5 * MINUTE)
    burning = [
        p for p in cluster.pods_of("shop", "recommend") if cluster.container(p).burn_cores > 0
    ]
    assert len(burning) == 3
    assert signal(cluster, "shop/recommend", Signal.CPU) > cpu + 0.3


# ---- benign events ------------------------------------------------


def test_a_scrape_gap_leaves_no_samples_and_metrics_unavailable() -> None:
    cluster = Cluster(load_scenario("benign-day"))
    gap = next(e for e in cluster.scenario.events if e.kind == "scrape_gap")
    cluster.advance(gap.at_s + 60)
    assert not cluster.metrics_available()
    assert np.isnan(cluster.samples[-1]).all()
    cluster.advance(gap.duration_s or 0)
    assert cluster.metrics_available()
    assert np.isfinite(cluster.samples[-1]).all()


def test_a_slowdown_raises_every_workloads_latency_for_its_duration() -> None:
    cluster = Cluster(load_scenario("benign-day"))
    slow = next(e for e in cluster.scenario.events if e.kind == "slowdown")
    cluster.advance(slow.at_s - 2 * MINUTE)
    before = {
        f"{r.namespace}/{r.name}": signal(cluster, f"{r.namespace}/{r.name}", Signal.LATENCY_P99)
        for r in cluster.workloads
    }
    cluster.advance(5 * MINUTE)
    for workload, latency in before.items():
        assert signal(cluster, workload, Signal.LATENCY_P99, last_s=60) > 2 * latency
    cluster.advance(10 * MINUTE)
    for workload, latency in before.items():
        assert signal(cluster, workload, Signal.LATENCY_P99, last_s=60) < 1.5 * latency


def test_weekend_traffic_is_lower_than_on_a_weekday() -> None:
    cluster = Cluster(load_scenario("weekend"))  # starts Friday 18:00
    cluster.advance(2 * 3600)
    friday = signal(cluster, "web/storefront", Signal.REQUEST_RATE, last_s=600)
    cluster.advance(24 * 3600)  # Saturday 20:00, the same time of day
    saturday = signal(cluster, "web/storefront", Signal.REQUEST_RATE, last_s=600)
    assert saturday == pytest.approx(0.6 * friday, rel=0.15)
