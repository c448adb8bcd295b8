"""Each guard passing and blocking, with the detail an operator reads; mode resolution."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from builders import CART, NOW, revision, state

from healer.config import GuardSettings
from healer.decide import guards
from healer.decide.guards import Check, ScaleTarget
from healer.types import (
    ActionHistory,
    ActionKind,
    GuardResult,
    HpaState,
    Mode,
    Revision,
    WorkloadRef,
    WorkloadState,
)

NO_HISTORY = ActionHistory(last_action_at={}, recent_action_times=(), in_flight=0)


def check(
    action: ActionKind = ActionKind.RESTART,
    *,
    workload_state: WorkloadState | None = None,
    settings: GuardSettings | None = None,
    history: ActionHistory = NO_HISTORY,
    anomalous: int = 1,
    watched: int = 10,
) -> Check:
    return Check(
        action,
        workload_state or state(),
        settings or GuardSettings(),
        history,
        anomalous,
        watched,
        NOW,
    )


# ---- namespace --------------------------------------------------------------------------


def test_namespace_allowed_by_default() -> None:
    assert guards.namespace(check()) == GuardResult("namespace", True, "namespace shop is allowed")


def test_namespace_denied() -> None:
    kube = state(workload=WorkloadRef("kube-system", "Deployment", "coredns"))

    result = guards.namespace(check(workload_state=kube))

    assert result == GuardResult("namespace", False, "namespace kube-system is denied")


def test_namespace_not_in_allow_list() -> None:
    settings = GuardSettings(allowed_namespaces=("payments", "search"))

    result = guards.namespace(check(settings=settings))

    assert result == GuardResult(
        "namespace", False, "namespace shop is not allowed (only payments, search)"
    )


def test_deny_list_wins_over_allow_list() -> None:
    settings = GuardSettings(allowed_namespaces=("shop",), denied_namespaces=("shop",))

    assert not guards.namespace(check(settings=settings)).passed


# ---- opt_out ----------------------------------------------------------------------------


def test_opt_out_annotation_blocks() -> None:
    opted_out = state(annotations={"healer.io/enabled": "false"})

    result = guards.opt_out(check(workload_state=opted_out))

    assert result == GuardResult("opt_out", False, 'shop/cart has healer.io/enabled: "false"')


@pytest.mark.parametrize("annotations", [{}, {"healer.io/enabled": "true"}])
def test_no_opt_out_passes(annotations: dict[str, str]) -> None:
    result = guards.opt_out(check(workload_state=state(annotations=annotations)))

    assert result == GuardResult("opt_out", True, "shop/cart has not opted out")


# ---- cooldown ---------------------------------------------------------------------------


def test_cooldown_blocks_a_recent_action() -> None:
    history = replace(NO_HISTORY, last_action_at={CART: NOW - timedelta(minutes=4)})

    result = guards.cooldown(check(history=history))

    assert result == GuardResult("cooldown", False, "last action on shop/cart 4m ago, cooldown 10m")


def test_cooldown_passes_once_elapsed() -> None:
    history = replace(NO_HISTORY, last_action_at={CART: NOW - timedelta(minutes=10)})

    result = guards.cooldown(check(history=history))

    assert result == GuardResult("cooldown", True, "last action on shop/cart 10m ago, cooldown 10m")


def test_cooldown_ignores_other_workloads() -> None:
    other = WorkloadRef("shop", "Deployment", "search")
    history = replace(NO_HISTORY, last_action_at={other: NOW})

    result = guards.cooldown(check(history=history))

    assert result == GuardResult("cooldown", True, "no earlier action on shop/cart")


# ---- rate_limit -------------------------------------------------------------------------


def test_rate_limit_blocks_at_the_cap() -> None:
    times = tuple(NOW - timedelta(minutes=m) for m in (1, 5, 9))
    history = replace(NO_HISTORY, recent_action_times=times)

    result = guards.rate_limit(
        check(settings=GuardSettings(max_actions_per_window=3), history=history)
    )

    assert result == GuardResult("rate_limit", False, "3 actions in the last 10m, limit 3")


def test_rate_limit_counts_only_the_window() -> None:
    times = (NOW - timedelta(minutes=5), NOW - timedelta(minutes=11), NOW - timedelta(hours=3))
    history = replace(NO_HISTORY, recent_action_times=times)

    result = guards.rate_limit(
        check(settings=GuardSettings(max_actions_per_window=2), history=history)
    )

    assert result == GuardResult("rate_limit", True, "1 actions in the last 10m, limit 2")


# ---- in_flight --------------------------------------------------------------------------


def test_in_flight_blocks_at_the_cap() -> None:
    result = guards.in_flight(check(history=replace(NO_HISTORY, in_flight=3)))

    assert result == GuardResult("in_flight", False, "3 actions awaiting verification, limit 3")


def test_in_flight_passes_below_the_cap() -> None:
    result = guards.in_flight(check(history=replace(NO_HISTORY, in_flight=2)))

    assert result.passed


# ---- anomaly_brake ----------------------------------------------------------------------


def test_anomaly_brake_engages_when_many_workloads_turned_anomalous_together() -> None:
    result = guards.anomaly_brake(check(anomalous=3, watched=8))

    assert result == GuardResult(
        "anomaly_brake",
        False,
        "3 of 8 watched workloads (38%) turned anomalous within 15m of this one, not yet "
        "handled; brake at more than 30% and 3: upstream or monitoring fault",
    )


def test_anomaly_brake_holds_off_at_exactly_the_share() -> None:
    result = guards.anomaly_brake(check(anomalous=3, watched=10))

    assert result == GuardResult(
        "anomaly_brake",
        True,
        "3 of 10 watched workloads (30%) turned anomalous within 15m of this one, not yet "
        "handled; brake at more than 30% and 3",
    )


def test_anomaly_brake_lets_two_faults_at_once_on_a_small_cluster_through() -> None:
    """Half of four workloads, but two actions are not a mass restart."""
    assert guards.anomaly_brake(check(anomalous=2, watched=4)).passed
    assert not guards.anomaly_brake(check(anomalous=3, watched=4)).passed


def test_anomaly_brake_needs_both_the_share_and_the_count() -> None:
    few = GuardSettings(anomaly_brake_min_anomalous=5)
    assert guards.anomaly_brake(check(anomalous=4, watched=5, settings=few)).passed
    assert not guards.anomaly_brake(check(anomalous=5, watched=5, settings=few)).passed
    assert guards.anomaly_brake(check(anomalous=30, watched=100)).passed
    assert not guards.anomaly_brake(check(anomalous=31, watched=100)).passed


def test_anomaly_brake_needs_enough_watched_workloads() -> None:
    result = guards.anomaly_brake(check(anomalous=3, watched=3))

    assert result == GuardResult(
        "anomaly_brake",
        True,
        "3 of 3 watched workloads (100%) turned anomalous within 15m of this one, not yet "
        "handled; the brake needs at least 4 watched",
    )


def test_anomaly_brake_with_nothing_watched() -> None:
    assert guards.anomaly_brake(check(anomalous=0, watched=0)).passed


W = tuple(WorkloadRef("shop", "Deployment", f"w{i}") for i in range(4))


def test_correlated_counts_the_workloads_whose_anomalies_began_together() -> None:
    """A scrape gap or a slowdown: every workload's anomaly begins within minutes."""
    onsets = {W[0]: NOW, W[1]: NOW + timedelta(minutes=1), W[2]: NOW - timedelta(minutes=10)}

    assert guards.correlated(W[0], NOW, onsets, window_s=900) == 3
    assert guards.correlated(W[3], NOW + timedelta(minutes=2), onsets, window_s=900) == 4


def test_correlated_leaves_out_anomalies_that_began_long_before() -> None:
    """A bad release an hour and a half ago, still anomalous or held, is another event
    than a memory leak found now."""
    onsets = {W[0]: NOW - timedelta(minutes=90), W[1]: NOW}

    assert guards.correlated(W[1], NOW, onsets, window_s=900) == 1


def test_correlated_counts_the_workload_itself_once() -> None:
    assert guards.correlated(W[0], NOW, {}, window_s=900) == 1
    assert guards.correlated(W[0], NOW, {W[0]: NOW}, window_s=900) == 1


# ---- paused -----------------------------------------------------------------------------


def test_paused_blocks_a_restart() -> None:
    result = guards.paused(check(workload_state=state(paused=True)))

    assert result == GuardResult(
        "paused", False, "shop/cart is paused: a restart would not roll out until resumed"
    )


def test_not_paused_passes() -> None:
    assert guards.paused(check()) == GuardResult("paused", True, "shop/cart is not paused")


# ---- rollback_target --------------------------------------------------------------------


def test_rollback_target_exists() -> None:
    result = guards.rollback_target(check(ActionKind.ROLLBACK))

    assert result == GuardResult("rollback_target", True, "revision 4 -> 3 (cart:3)")


def test_rollback_without_previous_revision_is_blocked() -> None:
    only_one = state(revisions=(revision(1),))

    result = guards.rollback_target(check(ActionKind.ROLLBACK, workload_state=only_one))

    assert result == GuardResult("rollback_target", False, "no earlier revision to roll back to")


# ---- scale_bounds -----------------------------------------------------------------------


def test_scale_within_bounds_passes() -> None:
    result = guards.scale_bounds(check(ActionKind.SCALE), ScaleTarget(3, 8, 1, 50))

    assert result == GuardResult("scale_bounds", True, "3 -> 8 replicas within [1, 50]")


def test_scale_at_the_ceiling_is_blocked() -> None:
    result = guards.scale_bounds(check(ActionKind.SCALE), ScaleTarget(50, 50, 1, 50))

    assert result == GuardResult(
        "scale_bounds", False, "shop/cart already has 50 replicas, bounds [1, 50]"
    )


def test_scale_below_the_floor_is_blocked() -> None:
    # A misconfiguration: min_replicas above the HPA's maxReplicas leaves no valid target.
    hpa = HpaState("cart", min_replicas=1, max_replicas=2)

    result = guards.scale_bounds(check(ActionKind.SCALE), ScaleTarget(1, 2, 3, 2, hpa))

    assert not result.passed
    assert result.detail == "2 replicas is outside [3, 2] (HPA cart maxReplicas 2)"


def test_scale_through_the_hpa() -> None:
    hpa = HpaState("cart", min_replicas=2, max_replicas=10)

    result = guards.scale_bounds(check(ActionKind.SCALE), ScaleTarget(3, 6, 1, 10, hpa))

    assert result == GuardResult(
        "scale_bounds",
        True,
        "HPA cart minReplicas 2 -> 6 (3 replicas now) within [1, 10] (HPA cart maxReplicas 10)",
    )


def test_raising_hpa_min_to_its_current_value_is_blocked() -> None:
    hpa = HpaState("cart", min_replicas=4, max_replicas=10)

    result = guards.scale_bounds(check(ActionKind.SCALE), ScaleTarget(2, 4, 1, 10, hpa))

    assert not result.passed


# ---- all guards -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "specific"),
    [
        (ActionKind.RESTART, ("paused",)),
        (ActionKind.ROLLBACK, ("paused", "rollback_target", "flip_back")),
        (ActionKind.SCALE, ("scale_bounds",)),
        (ActionKind.EVICT, ("eviction_budget",)),
    ],
)
def test_check_all_evaluates_every_applicable_guard(
    action: ActionKind, specific: tuple[str, ...]
) -> None:
    results = guards.check_all(check(action), ScaleTarget(3, 6, 1, 50))

    common = (
        "namespace",
        "opt_out",
        "gitops",
        "cooldown",
        "rate_limit",
        "in_flight",
        "anomaly_brake",
    )
    assert tuple(r.guard for r in results) == common + specific
    assert all(r.passed for r in results)


def test_check_all_does_not_stop_at_the_first_block() -> None:
    blocked = state(
        workload=WorkloadRef("kube-system", "Deployment", "cart"),
        paused=True,
        annotations={"healer.io/enabled": "false"},
    )

    results = guards.check_all(check(workload_state=blocked, anomalous=9, watched=10))

    assert [r.guard for r in results if not r.passed] == [
        "namespace",
        "opt_out",
        "anomaly_brake",
        "paused",
    ]


# ---- flip-back, GitOps, chains ----------------------------------------------------------


def test_a_second_rollback_within_the_window_is_blocked() -> None:
    history = ActionHistory({}, (), 0, last_rollback_at={CART: NOW - timedelta(minutes=20)})

    result = guards.flip_back(check(ActionKind.ROLLBACK, history=history))

    assert not result.passed
    assert "rolled back 20m ago; no second rollback within 1h" in result.detail


def test_a_rollback_after_the_window_or_of_another_workload_passes() -> None:
    other = WorkloadRef("shop", "Deployment", "search")
    for last in ({CART: NOW - timedelta(hours=2)}, {other: NOW - timedelta(minutes=5)}):
        history = ActionHistory({}, (), 0, last_rollback_at=last)
        assert guards.flip_back(check(ActionKind.ROLLBACK, history=history)).passed


@pytest.mark.parametrize(
    ("labels", "annotations", "tool"),
    [
        ({}, {"argocd.argoproj.io/tracking-id": "shop:apps/Deployment:shop/cart"}, "Argo CD"),
        ({"argocd.argoproj.io/instance": "shop"}, {}, "Argo CD"),
        ({"kustomize.toolkit.fluxcd.io/name": "apps"}, {}, "Flux"),
        ({"helm.toolkit.fluxcd.io/name": "cart"}, {}, "Flux"),
    ],
)
def test_a_gitops_managed_workload_gets_approval_mode(
    labels: dict[str, str], annotations: dict[str, str], tool: str
) -> None:
    managed = state(labels=labels, annotations=annotations)

    verdict = guards.gitops(check(workload_state=managed))

    assert verdict.passed and tool in verdict.detail and "approval" in verdict.detail
    assert guards.resolve_mode(Mode.AUTO, Mode.AUTO, managed) is Mode.APPROVAL
    assert guards.resolve_mode(Mode.DRY_RUN, Mode.AUTO, managed) is Mode.DRY_RUN


def test_the_gitops_verdict_says_whether_the_syncer_would_fight_the_action() -> None:
    tracked = {"argocd.argoproj.io/tracking-id": "shop:apps/Deployment:shop/cart"}
    managed = state(annotations=tracked)
    with_hpa = state(annotations=tracked, hpa=HpaState("cart", 2, 10))

    def detail(action: ActionKind, workload: WorkloadState) -> str:
        return guards.gitops(check(action, workload_state=workload)).detail

    assert "restartedAt" in detail(ActionKind.RESTART, managed)
    assert "ignoreDifferences" in detail(ActionKind.RESTART, managed)
    assert "/spec/replicas" in detail(ActionKind.SCALE, managed)
    assert "HPA cart minReplicas" in detail(ActionKind.SCALE, with_hpa)
    assert "/spec/minReplicas" in detail(ActionKind.SCALE, with_hpa)
    assert "commit in its repository" in detail(ActionKind.ROLLBACK, managed)
    assert "Git does not own" in detail(ActionKind.EVICT, managed)
    assert "restartedAt" not in guards.gitops(check(ActionKind.RESTART)).detail


def test_helms_instance_label_alone_is_not_gitops() -> None:
    helm = state(labels={"app.kubernetes.io/instance": "cart"})

    assert guards.resolve_mode(Mode.AUTO, Mode.AUTO, helm) is Mode.AUTO
    assert "not managed" in guards.gitops(check(workload_state=helm)).detail


def test_a_chain_step_is_exempt_from_the_cooldown_only() -> None:
    history = ActionHistory({CART: NOW - timedelta(minutes=3)}, (NOW,), 3)
    chained = Check(ActionKind.SCALE, state(), GuardSettings(), history, 1, 10, NOW, chained=True)

    results = {r.guard: r for r in guards.check_all(chained, ScaleTarget(3, 6, 1, 50))}

    assert results["cooldown"].passed and "on_failure chain" in results["cooldown"].detail
    assert not results["in_flight"].passed  # every other guard still holds


def test_scale_needs_its_target() -> None:
    with pytest.raises(ValueError, match="ScaleTarget"):
        guards.check_all(check(ActionKind.SCALE))


# ---- mode -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings_mode", "playbook_mode", "annotation", "expected"),
    [
        (Mode.AUTO, Mode.AUTO, None, Mode.AUTO),
        (Mode.AUTO, Mode.APPROVAL, None, Mode.APPROVAL),
        (Mode.DRY_RUN, Mode.AUTO, None, Mode.DRY_RUN),
        (Mode.AUTO, Mode.AUTO, "approval", Mode.APPROVAL),
        (Mode.AUTO, Mode.APPROVAL, "dry-run", Mode.DRY_RUN),
        (Mode.AUTO, Mode.AUTO, "dry_run", Mode.DRY_RUN),
        (Mode.APPROVAL, Mode.AUTO, "auto", Mode.APPROVAL),
        (Mode.AUTO, Mode.AUTO, "Approval ", Mode.APPROVAL),
        (Mode.AUTO, Mode.AUTO, "yolo", Mode.DRY_RUN),
    ],
)
def test_most_cautious_mode_wins(
    settings_mode: Mode, playbook_mode: Mode, annotation: str | None, expected: Mode
) -> None:
    annotations = {} if annotation is None else {"healer.io/mode": annotation}

    mode = guards.resolve_mode(settings_mode, playbook_mode, state(annotations=annotations))

    assert mode is expected


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (45, "45s"), (240, "4m"), (270, "4m30s"), (3600, "1h"), (5400, "1h30m")],
)
def test_duration(seconds: float, text: str) -> None:
    assert guards.duration(seconds) == text


# ---- rollback target over restart-only revisions -----------------------------------------


def _rev(number: int, template: str, image: str = "cart:1") -> Revision:
    return Revision(number, f"cart-{number}", NOW - timedelta(days=number), (image,), template)


def test_restart_only_revisions_are_skipped_for_the_rollback_target() -> None:
    history = state(_rev(4, "bad"), _rev(3, "bad"), _rev(2, "good"), _rev(1, "good"))

    target = guards.rollback_revision(history)
    verdict = guards.rollback_target(check(ActionKind.ROLLBACK, workload_state=history))

    assert target is not None and target.number == 2
    assert verdict.passed and "4 -> 2" in verdict.detail and "skipping" in verdict.detail


def test_only_restarts_in_history_block_the_rollback() -> None:
    restarts = state(_rev(3, "same"), _rev(2, "same"), _rev(1, "same"))

    verdict = guards.rollback_target(check(ActionKind.ROLLBACK, workload_state=restarts))

    assert not verdict.passed and "only by a restart" in verdict.detail


def test_without_fingerprints_the_previous_revision_is_the_target() -> None:
    assert guards.rollback_revision(state()) == revision(3)
