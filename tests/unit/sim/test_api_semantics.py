"""The API server's rules on literal values: autoscaling, disruption budgets, printing,
discovery, validation of the plain kinds and set-based selectors."""

from __future__ import annotations

from typing import Any

import pytest

from healer.sim import discovery, hpa
from healer.sim.disruption import budget_status, check_eviction, scaled
from healer.sim.kinds import BY_RESOURCE, default_and_validate, lookup
from healer.sim.objects import ApiError, label_selector_matches, selector_matches
from healer.sim.tables import human_duration

NOW = "2026-03-02T11:00:00Z"


def pods(n: int, cores: float, *, request: float = 0.25, unready: int = 0) -> list[hpa.PodUsage]:
    ready = [hpa.PodUsage(True, cores, request) for _ in range(n)]
    return ready + [hpa.PodUsage(False, None, request) for _ in range(unready)]


def recommend(
    current: int,
    usage: list[hpa.PodUsage],
    history: hpa.History | None = None,
    *,
    now_s: float = 0.0,
    minimum: int = 1,
    maximum: int = 100,
    target: int = 50,
) -> int:
    return hpa.recommend(
        current=current,
        pods=usage,
        target_pct=target,
        min_replicas=minimum,
        max_replicas=maximum,
        now_s=now_s,
        history=history or hpa.History(),
    ).replicas


# ---- HPA ---------------------------------------------------------------------------------


def test_hpa_desired_is_ceil_of_current_times_utilisation_over_target() -> None:
    # 4 pods at 100% of request against a 50% target: ceil(4 * 2) = 8.
    assert recommend(4, pods(4, 0.25)) == 8
    # 4 pods at 30%: ceil(4 * 0.6) = 3 (no history: nothing to stabilise on).
    assert recommend(4, pods(4, 0.075)) == 3


@pytest.mark.parametrize("cores", [0.115, 0.125, 0.135])  # 46%, 50%, 54% of 0.25
def test_hpa_does_nothing_within_the_ten_percent_tolerance(cores: float) -> None:
    assert recommend(4, pods(4, cores)) == 4


def test_hpa_counts_unready_pods_as_idle_when_scaling_up() -> None:
    # 2 ready pods at 60% and 2 starting: (0.3 / 1.0) / 0.5 = 0.6 < 1, so no scale-up.
    assert recommend(4, pods(2, 0.15, unready=2)) == 4
    # 2 ready at 200%: (1.0 / 1.0) / 0.5 = 2, ceil(2 * 4) = 8.
    assert recommend(4, pods(2, 0.5, unready=2)) == 8


def test_hpa_scale_up_is_limited_to_double_or_four_pods() -> None:
    assert recommend(2, pods(2, 2.5)) == 6  # +4 beats doubling
    assert recommend(10, pods(10, 2.5)) == 20  # doubling beats +4


def test_hpa_scale_down_waits_for_the_stabilisation_window() -> None:
    history = hpa.History()
    assert recommend(6, pods(6, 0.125), history, now_s=0) == 6
    for t in range(15, 300, 15):
        assert recommend(6, pods(6, 0.025), history, now_s=t) == 6
    assert recommend(6, pods(6, 0.025), history, now_s=300) == 2  # ceil(6 * 0.2)


def test_hpa_clamps_to_bounds_and_keeps_current_without_metrics() -> None:
    assert recommend(4, pods(4, 2.5), maximum=5) == 5
    assert recommend(4, pods(4, 0.0), minimum=3) == 3
    assert recommend(4, [], minimum=1, maximum=3) == 3
    assert recommend(0, pods(0, 0.0), minimum=2) == 0  # scaled to zero: autoscaling off


def test_hpa_reads_the_cpu_target_and_quantities() -> None:
    spec: dict[str, Any] = {
        "metrics": [
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 70},
                },
            }
        ]
    }
    assert hpa.target_utilisation_pct(spec) == 70
    assert hpa.target_utilisation_pct({"metrics": []}) is None
    assert hpa.cpu_cores("250m") == 0.25
    assert hpa.cpu_cores("2") == 2.0
    assert hpa.cpu_cores(None) == 0.0


# ---- disruption budgets ------------------------------------------------------------------


def pdb(spec: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "web", "generation": 1}, "spec": spec}


@pytest.mark.parametrize(
    ("spec", "healthy", "desired", "allowed"),
    [
        ({"minAvailable": 2}, 3, 2, 1),
        ({"minAvailable": "50%"}, 3, 2, 1),
        ({"minAvailable": "100%"}, 4, 4, 0),
        ({"maxUnavailable": 1}, 4, 3, 1),
        ({"maxUnavailable": "25%"}, 4, 3, 1),
        ({"maxUnavailable": "30%"}, 4, 2, 2),  # ceil(1.2) = 2
        ({"maxUnavailable": 1}, 2, 3, 0),  # already disrupted
        ({}, 3, 1, 2),
    ],
)
def test_budget_status(spec: dict[str, Any], healthy: int, desired: int, allowed: int) -> None:
    status = budget_status(
        pdb(spec), healthy=healthy, matched=healthy, controller_replicas=4, now=NOW
    )
    assert (status["desiredHealthy"], status["disruptionsAllowed"]) == (desired, allowed)


def test_scaled_rounds_as_asked() -> None:
    assert scaled("50%", 3, round_up=True) == 2
    assert scaled("50%", 3, round_up=False) == 1
    assert scaled(2, 10, round_up=True) == 2


def test_eviction_refused_with_429_and_a_cause() -> None:
    budget = pdb({"minAvailable": 3})
    budget["status"] = budget_status(budget, healthy=3, matched=3, controller_replicas=3, now=NOW)
    with pytest.raises(ApiError) as refused:
        check_eviction({}, [budget], pod_ready=True)
    assert (refused.value.code, refused.value.reason) == (429, "TooManyRequests")
    assert refused.value.status()["details"]["causes"][0]["reason"] == "DisruptionBudget"
    check_eviction({}, [budget], pod_ready=False)  # an unready pod: the budget is met
    check_eviction({}, [], pod_ready=True)
    with pytest.raises(ApiError) as two:
        check_eviction({}, [budget, budget], pod_ready=True)
    assert two.value.code == 500


# ---- selectors, printing, discovery, validation -----------------------------------------

LABELS = {"app": "web", "tier": "backend"}


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        ("app in (web,db)", True),
        ("app in (db)", False),
        ("app notin (db),tier", True),
        ("app notin (web)", False),
        ("canary notin (true)", True),
        ("tier in (backend), app=web", True),
    ],
)
def test_set_based_label_selectors(selector: str, matches: bool) -> None:
    assert label_selector_matches(selector, LABELS) is matches


def test_malformed_label_selector_is_400() -> None:
    with pytest.raises(ApiError) as bad:
        label_selector_matches("app in (web", LABELS)
    assert bad.value.code == 400


def test_structured_selectors() -> None:
    assert selector_matches({"matchLabels": {"app": "web"}}, LABELS)
    assert selector_matches({}, LABELS)
    assert not selector_matches(None, LABELS)
    expr = {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["backend"]}]}
    assert selector_matches(expr, LABELS)
    expr = {"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}
    assert not selector_matches(expr, LABELS)


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (5, "5s"),
        (119, "119s"),
        (125, "2m5s"),
        (600, "10m"),
        (3 * 3600 + 60, "3h1m"),
        (10 * 3600, "10h"),
        (3 * 86400 + 3600, "3d1h"),
        (30 * 86400, "30d"),
        (800 * 86400, "2y70d"),
    ],
)
def test_ages_print_like_kubectl(seconds: int, shown: str) -> None:
    assert human_duration(seconds) == shown


def test_discovery_names_every_group_in_both_forms() -> None:
    legacy = [g["name"] for g in discovery.api_group_list()["groups"]]
    assert legacy == [
        "apps",
        "autoscaling",
        "policy",
        "coordination.k8s.io",
        "apiextensions.k8s.io",
        "argoproj.io",
        "kustomize.toolkit.fluxcd.io",
        "source.toolkit.fluxcd.io",
    ]
    aggregated = discovery.aggregated(core=False)
    assert [i["metadata"]["name"] for i in aggregated["items"]] == legacy
    core = discovery.aggregated(core=True)["items"][0]["versions"][0]["resources"]
    assert {r["resource"] for r in core} == {"pods", "events", "nodes"}
    assert discovery.wants_aggregated(
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
    )
    assert not discovery.wants_aggregated("application/json, */*")


def test_lookup_unknown_resource_is_404() -> None:
    assert lookup("apps/v1", "deployments").kind == "Deployment"
    for gv, resource in (("apps/v1", "pods"), ("v1", "widgets")):
        with pytest.raises(ApiError) as missing:
            lookup(gv, resource)
        assert missing.value.code == 404


@pytest.mark.parametrize(
    ("resource", "spec"),
    [
        ("horizontalpodautoscalers", {"maxReplicas": 3}),
        (
            "horizontalpodautoscalers",
            {
                "scaleTargetRef": {"kind": "Deployment", "name": "w"},
                "minReplicas": 0,
                "maxReplicas": 3,
            },
        ),
        ("poddisruptionbudgets", {"minAvailable": "half"}),
        ("poddisruptionbudgets", {"minAvailable": -1}),
        ("leases", {"leaseDurationSeconds": "15"}),
    ],
)
def test_invalid_plain_objects_are_422(resource: str, spec: dict[str, Any]) -> None:
    with pytest.raises(ApiError) as invalid:
        default_and_validate(BY_RESOURCE[resource], {"metadata": {"name": "x"}, "spec": spec})
    assert (invalid.value.code, invalid.value.reason) == (422, "Invalid")


def test_hpa_defaults_to_80_percent_cpu_and_one_replica() -> None:
    obj: dict[str, Any] = {
        "metadata": {"name": "x"},
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "w"}, "maxReplicas": 3},
    }
    default_and_validate(BY_RESOURCE["horizontalpodautoscalers"], obj)
    assert obj["spec"]["minReplicas"] == 1
    assert hpa.target_utilisation_pct(obj["spec"]) == 80
