"""plan(): which playbook, which concrete parameters, which mode, with literal inputs."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from builders import CART, NOW, revision, state

from healer.config import GuardSettings
from healer.decide import Playbook, find_playbook, load_playbooks, plan
from healer.types import (
    ActionHistory,
    ActionKind,
    Cause,
    Demand,
    Diagnosis,
    Direction,
    Finding,
    HpaState,
    Mode,
    Plan,
    Signal,
    SignalDeviation,
    WorkloadRef,
    WorkloadState,
)

PLAYBOOKS = load_playbooks(Path(__file__).resolve().parents[3] / "playbooks")
NO_HISTORY = ActionHistory(last_action_at={}, recent_action_times=(), in_flight=0)
AUTO = GuardSettings(mode=Mode.AUTO)


def up(signal: Signal, value: float, baseline: float) -> SignalDeviation:
    return SignalDeviation(signal, value, baseline, deviation=6.0, direction=Direction.UP)


def finding(*deviations: SignalDeviation, workload: WorkloadRef = CART) -> Finding:
    return Finding(workload, NOW, 0.99, deviations, NOW - timedelta(minutes=5), "test-1")


def diagnosis(cause: Cause, confidence: float = 0.8, workload: WorkloadRef = CART) -> Diagnosis:
    return Diagnosis(workload, cause, confidence, "seen in the test")


def plan_for(
    cause: Cause,
    *deviations: SignalDeviation,
    confidence: float = 0.8,
    workload_state: WorkloadState | None = None,
    guards: GuardSettings = AUTO,
    playbooks: tuple[Playbook, ...] = PLAYBOOKS,
    anomalous: int = 1,
) -> Plan | None:
    return plan(
        diagnosis(cause, confidence),
        finding(*deviations),
        workload_state or state(),
        playbooks=playbooks,
        guards=guards,
        history=NO_HISTORY,
        anomalous_workloads=anomalous,
        watched_workloads=10,
        now=NOW,
    )


def must_plan(cause: Cause, *deviations: SignalDeviation, **kwargs: object) -> Plan:
    result = plan_for(cause, *deviations, **kwargs)  # type: ignore[arg-type]  # passthrough
    assert result is not None
    return result


MEMORY = up(Signal.MEMORY, 0.92, 0.55)
ERRORS = up(Signal.ERROR_RATIO, 0.18, 0.002)


# ---- matching ---------------------------------------------------------------------------


def test_memory_leak_plans_a_restart() -> None:
    result = must_plan(Cause.MEMORY_LEAK, MEMORY)

    assert result.playbook == "restart-on-memory-leak"
    assert result.action is ActionKind.RESTART
    assert result.params == {}
    assert result.mode is Mode.AUTO
    assert result.allowed
    assert result.verify_within_s == 600.0
    assert result.workload == CART
    assert result.reason == (
        "memory_leak diagnosed at 80% confidence "
        "(playbook restart-on-memory-leak needs 60%) with memory deviating"
    )


def test_unknown_cause_has_no_plan() -> None:
    assert plan_for(Cause.UNKNOWN, MEMORY) is None


def test_a_sure_crash_loop_is_rolled_back_and_an_unsure_one_has_no_plan() -> None:
    restarts = up(Signal.RESTARTS, 0.6, 0.0)
    sure = must_plan(Cause.CRASH_LOOP, restarts, confidence=0.8)
    assert (sure.playbook, sure.action) == ("rollback-crash-loop", ActionKind.ROLLBACK)
    assert plan_for(Cause.CRASH_LOOP, restarts, confidence=0.5) is None


def test_a_cpu_hog_is_restarted() -> None:
    hog = must_plan(Cause.CPU_HOG, up(Signal.CPU, 1.6, 0.5))
    assert (hog.playbook, hog.action) == ("restart-on-cpu-hog", ActionKind.RESTART)


def test_low_confidence_has_no_plan() -> None:
    assert plan_for(Cause.MEMORY_LEAK, MEMORY, confidence=0.59) is None


def test_confidence_at_the_minimum_matches() -> None:
    assert plan_for(Cause.MEMORY_LEAK, MEMORY, confidence=0.6) is not None


def test_no_matching_signal_has_no_plan() -> None:
    assert plan_for(Cause.MEMORY_LEAK, ERRORS) is None


def test_namespace_selector() -> None:
    restart = find_playbook(PLAYBOOKS, "restart-on-memory-leak")
    payments_only = restart.model_copy(
        update={"match": restart.match.model_copy(update={"namespaces": ("payments",)})}
    )

    assert plan_for(Cause.MEMORY_LEAK, MEMORY, playbooks=(payments_only,)) is None


def test_first_matching_playbook_in_order_wins() -> None:
    restart = find_playbook(PLAYBOOKS, "restart-on-memory-leak")
    careful = restart.model_copy(update={"name": "careful-restart", "mode": Mode.APPROVAL})

    result = must_plan(Cause.MEMORY_LEAK, MEMORY, playbooks=(careful, restart))

    assert (result.playbook, result.mode) == ("careful-restart", Mode.APPROVAL)


def test_mismatched_workloads_are_a_bug() -> None:
    other = WorkloadRef("shop", "Deployment", "search")

    with pytest.raises(ValueError, match="shop/search"):
        plan(
            diagnosis(Cause.MEMORY_LEAK),
            finding(MEMORY, workload=other),
            state(),
            playbooks=PLAYBOOKS,
            guards=AUTO,
            history=NO_HISTORY,
            anomalous_workloads=1,
            watched_workloads=10,
            now=NOW,
        )


# ---- guards and mode in the plan --------------------------------------------------------


def test_blocked_plan_is_still_returned_with_every_verdict() -> None:
    result = must_plan(Cause.MEMORY_LEAK, MEMORY, workload_state=state(paused=True), anomalous=9)

    assert not result.allowed
    assert result.blocked_by == ("anomaly_brake", "paused")
    assert [g.guard for g in result.guard_results] == [
        "namespace",
        "opt_out",
        "gitops",
        "cooldown",
        "rate_limit",
        "in_flight",
        "anomaly_brake",
        "paused",
    ]


def test_a_chain_step_uses_the_named_playbook_without_matching() -> None:
    scale_book = find_playbook(PLAYBOOKS, "scale-up-on-overload")
    history = ActionHistory({CART: NOW}, (NOW,), 0)

    result = plan(
        diagnosis(Cause.MEMORY_LEAK),
        finding(MEMORY),
        state(),
        playbooks=PLAYBOOKS,
        guards=AUTO,
        history=history,
        anomalous_workloads=1,
        watched_workloads=10,
        now=NOW,
        chain_to=scale_book,
    )

    assert result is not None and result.playbook == "scale-up-on-overload"
    assert result.allowed, result.blocked_by  # the cooldown does not stop a chain


def test_a_gitops_workload_is_planned_for_approval() -> None:
    argo = state(annotations={"argocd.argoproj.io/tracking-id": "shop:apps/Deployment:shop/cart"})

    result = must_plan(Cause.MEMORY_LEAK, MEMORY, workload_state=argo)

    assert result.mode is Mode.APPROVAL
    assert "Argo CD" in next(g.detail for g in result.guard_results if g.guard == "gitops")


def test_default_settings_keep_everything_dry_run() -> None:
    assert must_plan(Cause.MEMORY_LEAK, MEMORY, guards=GuardSettings()).mode is Mode.DRY_RUN


def test_workload_annotation_asks_for_approval() -> None:
    annotated = state(annotations={"healer.io/mode": "approval"})

    assert must_plan(Cause.MEMORY_LEAK, MEMORY, workload_state=annotated).mode is Mode.APPROVAL


# ---- rollback ---------------------------------------------------------------------------


def test_bad_release_plans_a_rollback_to_the_previous_revision() -> None:
    result = must_plan(Cause.BAD_RELEASE, ERRORS)

    assert result.playbook == "rollback-bad-release"
    assert result.params == {"to_revision": 3, "from_revision": 4}
    assert result.allowed
    assert [g.guard for g in result.guard_results][-2:] == ["rollback_target", "flip_back"]


def test_rollback_with_no_previous_revision_is_blocked() -> None:
    result = must_plan(Cause.BAD_RELEASE, ERRORS, workload_state=state(revisions=(revision(1),)))

    assert result.params == {"from_revision": 1}
    assert result.blocked_by == ("rollback_target",)


# ---- scale ------------------------------------------------------------------------------


def scale(*deviations: SignalDeviation, guards: GuardSettings = AUTO, **changes: object) -> Plan:
    return must_plan(
        Cause.OVERLOAD,
        up(Signal.LATENCY_P99, 0.8, 0.2),
        *deviations,
        guards=guards,
        workload_state=state(**changes),
    )


def test_scale_target_from_cpu_growth_with_headroom() -> None:
    # 3 replicas x (1.6 / 0.8) x 1.25 headroom = 7.5 -> 8, over the x2 step cap: 6
    result = scale(up(Signal.CPU, 1.6, 0.8))

    assert result.params == {"replicas": 6, "from_replicas": 3}
    assert result.allowed
    assert result.reason.endswith("; CPU at 2.00x its baseline with 1.25x headroom: 3 -> 6")
    bigger = scale(
        up(Signal.CPU, 1.6, 0.8), guards=GuardSettings(mode=Mode.AUTO, max_scale_factor=3)
    )
    assert bigger.params["replicas"] == 6  # the playbook's own factor (2.0) still holds


def test_scale_target_is_exact_without_float_noise() -> None:
    # 4 x (0.9 / 0.6) x 1.25 = 7.5 -> 8; 2 x (0.6 / 0.5) x 1.25 = 3.0 exactly -> 3, not 4
    assert scale(up(Signal.CPU, 0.9, 0.6), replicas=4).params["replicas"] == 8
    assert scale(up(Signal.CPU, 0.6, 0.5), replicas=2).params["replicas"] == 3


def test_scale_adds_at_least_one_replica() -> None:
    # 3 x (0.5 / 0.5) x 1.25 = 3.75 -> 4; CPU below baseline still asks for one more
    assert scale(up(Signal.CPU, 0.5, 0.5)).params["replicas"] == 4
    assert scale(up(Signal.CPU, 0.2, 0.5)).params["replicas"] == 4


def test_scale_step_is_capped_by_max_step_factor() -> None:
    # 3 x 10 x 1.25 = 37.5 wanted; at most 3 x 2.0 = 6 in one step
    assert scale(up(Signal.CPU, 5.0, 0.5)).params["replicas"] == 6
    careful = GuardSettings(mode=Mode.AUTO, max_scale_factor=1.5)
    assert scale(up(Signal.CPU, 5.0, 0.5), guards=careful, replicas=4).params["replicas"] == 6


def test_scale_without_cpu_deviation_doubles() -> None:
    result = scale()

    assert result.params == {"replicas": 6, "from_replicas": 3}
    assert "no CPU deviation to size from, so doubling: 3 -> 6" in result.reason


def test_scale_with_zero_cpu_baseline_doubles() -> None:
    assert scale(up(Signal.CPU, 0.9, 0.0)).params["replicas"] == 6


def test_scale_is_clamped_to_max_replicas_and_still_passes() -> None:
    bounded = GuardSettings(mode=Mode.AUTO, max_replicas=5)

    result = scale(up(Signal.CPU, 1.6, 0.8), guards=bounded)

    assert result.params == {"replicas": 5, "from_replicas": 3}
    assert result.allowed


def test_scale_at_max_replicas_is_blocked() -> None:
    result = scale(up(Signal.CPU, 1.6, 0.8), guards=GuardSettings(mode=Mode.AUTO, max_replicas=3))

    assert result.params == {"replicas": 3, "from_replicas": 3}
    assert result.blocked_by == ("scale_bounds",)


def test_scale_is_raised_to_min_replicas() -> None:
    # 1 replica x (0.6 / 0.5) x 1.25 = 1.5 -> 2, but the floor is 4
    result = scale(
        up(Signal.CPU, 0.6, 0.5), guards=GuardSettings(mode=Mode.AUTO, min_replicas=4), replicas=1
    )

    assert result.params["replicas"] == 4
    assert result.allowed


def test_scale_with_an_hpa_raises_its_min_replicas() -> None:
    hpa = HpaState("cart", min_replicas=2, max_replicas=20)

    result = scale(up(Signal.CPU, 1.6, 0.8), hpa=hpa)

    assert result.params == {"replicas": 6, "from_replicas": 2, "hpa": "cart"}
    assert result.allowed


def test_scale_with_an_hpa_is_clamped_to_its_max_replicas() -> None:
    hpa = HpaState("cart", min_replicas=2, max_replicas=6)

    result = scale(up(Signal.CPU, 1.6, 0.8), hpa=hpa)

    assert result.params == {"replicas": 6, "from_replicas": 2, "hpa": "cart"}
    assert result.allowed


def test_scale_with_an_hpa_at_its_max_is_blocked() -> None:
    hpa = HpaState("cart", min_replicas=2, max_replicas=3)

    result = scale(up(Signal.CPU, 1.6, 0.8), hpa=hpa)

    assert result.blocked_by == ("scale_bounds",)
    assert "HPA cart maxReplicas 3" in result.guard_results[-1].detail


def scale_for(demand: Demand, cpu: tuple[float, float] = (0.5, 0.48), **changes: object) -> Plan:
    result = plan(
        diagnosis(Cause.OVERLOAD),
        finding(up(Signal.CPU, *cpu)),
        state(**changes),
        playbooks=PLAYBOOKS,
        guards=AUTO,
        history=NO_HISTORY,
        anomalous_workloads=1,
        watched_workloads=10,
        now=NOW,
        demand=demand,
    )
    assert result is not None
    return result


def test_scale_sizes_from_demand_at_the_hpa_target() -> None:
    # 330 requests/s expected x 1.2% of a replica's request each = 3.96 requests' worth
    # of CPU, at the HPA's 80% per replica: 4.95 -> 5 (CPU per replica, 1.04x its
    # baseline with 1.25x headroom, asks for 4 only)
    hpa = HpaState("cart", min_replicas=3, max_replicas=9, target_cpu_utilisation=0.8)
    demand = Demand(rps=175.0, projected_rps=330.0, cpu_per_rps=0.012)

    result = scale_for(demand, hpa=hpa)

    assert result.params == {"replicas": 5, "from_replicas": 3, "hpa": "cart"}
    assert result.allowed
    assert "330 requests/s expected (175 now)" in result.reason
    assert "80% per replica (the HPA's target): 3 -> 5" in result.reason


def test_scale_from_demand_without_an_hpa_aims_at_the_playbook_headroom() -> None:
    # 300 x 0.012 = 3.6, at 1 / 1.25 = 80% per replica: 4.5 -> 5
    result = scale_for(Demand(rps=300.0, projected_rps=300.0, cpu_per_rps=0.012))

    assert result.params == {"replicas": 5, "from_replicas": 3}
    assert "(headroom)" in result.reason


def test_scale_from_demand_keeps_the_step_cap_and_one_more_at_least() -> None:
    big = scale_for(Demand(rps=300.0, projected_rps=900.0, cpu_per_rps=0.012))
    small = scale_for(Demand(rps=100.0, projected_rps=100.0, cpu_per_rps=0.012))

    assert big.params["replicas"] == 6  # 13.5 wanted, at most x2 in one step
    assert small.params["replicas"] == 4  # 1.5 wanted, but a scale-up adds one at least


def test_scale_without_usable_demand_sizes_from_cpu() -> None:
    result = scale_for(Demand(rps=0.0, projected_rps=0.0, cpu_per_rps=0.0), cpu=(0.7, 0.48))

    assert "CPU at 1.46x its baseline" in result.reason


def test_scale_takes_the_cpu_sizing_when_it_asks_for_more() -> None:
    # demand: 300 x 0.012 / 0.8 = 4.5 -> 5; CPU: 3 x 1.46 x 1.25 = 5.5 -> 6, which brings
    # CPU per replica back to where the workload was healthy (what verification checks)
    result = scale_for(Demand(rps=300.0, projected_rps=300.0, cpu_per_rps=0.012), cpu=(0.7, 0.48))

    assert result.params["replicas"] == 6
    assert "CPU at 1.46x its baseline" in result.reason


def test_scale_ignores_paused() -> None:
    result = scale(up(Signal.CPU, 1.6, 0.8), paused=True)

    assert result.allowed
    assert "paused" not in [g.guard for g in result.guard_results]


# ---- target kinds -----------------------------------------------------------------------

DAEMON = WorkloadRef("shop", "DaemonSet", "agent")


def test_a_playbook_naming_kinds_matches_only_workloads_of_those_kinds() -> None:
    for_statefulsets = tuple(
        book.model_copy(update={"match": book.match.model_copy(update={"kinds": ("StatefulSet",)})})
        for book in PLAYBOOKS
    )
    assert plan_for(Cause.MEMORY_LEAK, MEMORY, playbooks=for_statefulsets) is None
    assert plan_for(Cause.MEMORY_LEAK, MEMORY) is not None  # the same without kinds


def test_no_playbook_matches_a_kind_its_action_does_not_support() -> None:
    # An overloaded DaemonSet: its one pod a node cannot be scaled.
    result = plan(
        diagnosis(Cause.OVERLOAD, workload=DAEMON),
        finding(up(Signal.CPU, 1.6, 0.8), workload=DAEMON),
        state(workload=DAEMON),
        playbooks=PLAYBOOKS,
        guards=AUTO,
        history=NO_HISTORY,
        anomalous_workloads=1,
        watched_workloads=10,
        now=NOW,
    )
    assert result is None
