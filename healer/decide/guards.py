"""Guardrails: every check an action must pass, each with a verdict people can read.

All guards are evaluated every time (not just until the first failure), so the audit
trail shows the full picture of why an action was or was not taken. Pure functions of
the plan's inputs and the action history: no clock, no I/O.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from healer.config import GuardSettings
from healer.types import ActionHistory, ActionKind, GuardResult, WorkloadState

ENABLED_ANNOTATION = "healer.io/enabled"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f}m"


def namespace(state: WorkloadState, g: GuardSettings) -> GuardResult:
    ns = state.workload.namespace
    if ns in g.denied_namespaces:
        return GuardResult("namespace", False, f"namespace {ns} is denied")
    if g.allowed_namespaces and ns not in g.allowed_namespaces:
        return GuardResult("namespace", False, f"namespace {ns} is not in the allowed list")
    return GuardResult("namespace", True, f"namespace {ns} allowed")


def opt_out(state: WorkloadState) -> GuardResult:
    if state.annotations.get(ENABLED_ANNOTATION, "true").lower() == "false":
        return GuardResult("opt_out", False, f"{state.workload} has {ENABLED_ANNOTATION}=false")
    return GuardResult("opt_out", True, "workload not opted out")


def cooldown(state: WorkloadState, g: GuardSettings, history: ActionHistory,
             now: datetime) -> GuardResult:
    last = history.last_action_at.get(state.workload)
    if last is not None and now - last < timedelta(seconds=g.cooldown_s):
        ago = (now - last).total_seconds()
        return GuardResult("cooldown", False, f"last action on {state.workload} "
                           f"{_minutes(ago)} ago, cooldown {_minutes(g.cooldown_s)}")
    return GuardResult("cooldown", True, "no recent action on this workload")


def rate_limit(g: GuardSettings, history: ActionHistory, now: datetime) -> GuardResult:
    since = now - timedelta(seconds=g.rate_limit_window_s)
    recent = sum(1 for t in history.recent_action_times if t > since)
    ok = recent < g.max_actions_per_window
    return GuardResult("rate_limit", ok, f"{recent} actions in the last "
                       f"{_minutes(g.rate_limit_window_s)}, limit {g.max_actions_per_window}")


def in_flight(g: GuardSettings, history: ActionHistory) -> GuardResult:
    ok = history.in_flight < g.max_in_flight
    return GuardResult("in_flight", ok, f"{history.in_flight} actions being verified, "
                       f"limit {g.max_in_flight}")


def anomaly_brake(g: GuardSettings, anomalous: int, watched: int) -> GuardResult:
    share = anomalous / watched if watched else 0.0
    engaged = watched >= g.anomaly_brake_min_workloads and share > g.anomaly_brake_share
    detail = (f"{anomalous}/{watched} workloads anomalous at once"
              + (": the cause is upstream or in monitoring" if engaged else ""))
    return GuardResult("anomaly_brake", not engaged, detail)


def paused(state: WorkloadState, action: ActionKind) -> GuardResult:
    if state.paused and action in (ActionKind.RESTART, ActionKind.ROLLBACK):
        return GuardResult("paused", False, f"{state.workload} rollout is paused")
    return GuardResult("paused", True, "rollout not paused")


def scale_bounds(state: WorkloadState, g: GuardSettings, target: int, current: int) -> GuardResult:
    ceiling = min(g.max_replicas, state.hpa.max_replicas) if state.hpa else g.max_replicas
    if target <= current:
        return GuardResult("scale_bounds", False,
                           f"already at {current} replicas, the ceiling is {ceiling}")
    if not g.min_replicas <= target <= ceiling:
        return GuardResult("scale_bounds", False,
                           f"{target} replicas is outside [{g.min_replicas}, {ceiling}]")
    return GuardResult("scale_bounds", True, f"{current} -> {target} replicas within "
                       f"[{g.min_replicas}, {ceiling}]")


def rollback_target(state: WorkloadState) -> GuardResult:
    previous = state.previous_revision
    if previous is None:
        return GuardResult("rollback_target", False, "no earlier revision to roll back to")
    return GuardResult("rollback_target", True,
                       f"revision {previous.number} ({', '.join(previous.images)}) exists")
