"""Policy objects: parsed, judged when they contradict themselves, combined (the most
cautious wins, field by field, naming who decided), and turned into guard verdicts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from healer.config import GuardSettings
from healer.decide.guards import Check, check_all, resolve_mode
from healer.decide.policies import Policy, Rejected, govern, governed, parse, verdict
from healer.types import ActionHistory, ActionKind, Mode, WorkloadRef, WorkloadState

WEB = WorkloadRef("shop", "Deployment", "web")
DB = WorkloadRef("shop", "StatefulSet", "db")
BLOG = WorkloadRef("blog", "Deployment", "web")
# A Saturday, 01:30 UTC: 02:30 in Berlin (winter time).
SATURDAY = datetime(2026, 1, 10, 1, 30, tzinfo=UTC)


def obj(spec: dict[str, Any], name: str = "p", namespace: str | None = "shop") -> dict[str, Any]:
    kind = "HealingPolicy" if namespace else "ClusterHealingPolicy"
    meta: dict[str, Any] = {"name": name, "generation": 1}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": "healer.io/v1alpha1", "kind": kind, "metadata": meta, "spec": spec}


def policy(spec: dict[str, Any], name: str = "p", namespace: str | None = "shop") -> Policy:
    parsed = parse(obj(spec, name, namespace))
    assert isinstance(parsed, Policy), parsed
    return parsed


def state(workload: WorkloadRef = WEB, labels: dict[str, str] | None = None) -> WorkloadState:
    return WorkloadState(workload, 3, 3, 3, 3, 1, 1, False, (), labels=labels or {})


def test_a_namespaced_policy_applies_in_its_namespace_only() -> None:
    p = policy({"mode": "approval"})
    assert p.ref == "HealingPolicy shop/p"
    assert p.matches(WEB, {}) and not p.matches(BLOG, {})


def test_labels_expressions_and_kinds_select() -> None:
    p = policy(
        {
            "selector": {
                "matchLabels": {"tier": "front"},
                "matchExpressions": [{"key": "canary", "operator": "DoesNotExist"}],
            },
            "kinds": ["Deployment"],
        }
    )
    assert p.matches(WEB, {"tier": "front"})
    assert not p.matches(WEB, {"tier": "front", "canary": "yes"})
    assert not p.matches(WEB, {"tier": "back"})
    assert not p.matches(DB, {"tier": "front"})


def test_a_cluster_policy_applies_in_its_namespaces_or_everywhere() -> None:
    everywhere = policy({}, namespace=None)
    assert everywhere.ref == "ClusterHealingPolicy p"
    assert everywhere.matches(BLOG, {}) and everywhere.matches(WEB, {})
    assert not policy({"namespaces": ["blog"]}, namespace=None).matches(WEB, {})


@pytest.mark.parametrize(
    ("spec", "reason", "message"),
    [
        (
            {"limits": {"minReplicas": 5, "maxReplicas": 2}},
            "MinReplicasAboveMax",
            "spec.limits.minReplicas (5) is above spec.limits.maxReplicas (2)",
        ),
        (
            {
                "maintenanceWindows": [
                    {"start": "01:00", "end": "02:00", "timeZone": "Mars/Olympus"}
                ]
            },
            "InvalidMaintenanceWindow",
            "spec.maintenanceWindows[0].timeZone: 'Mars/Olympus' is not an IANA time zone",
        ),
        (
            {"maintenanceWindows": [{"start": "01:00"}]},
            "InvalidMaintenanceWindow",
            "spec.maintenanceWindows[0]: start and end (HH:MM), or from and until",
        ),
        (
            {
                "maintenanceWindows": [
                    {"from": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}
                ]
            },
            "InvalidMaintenanceWindow",
            "spec.maintenanceWindows[0]: from must be before until",
        ),
    ],
)
def test_a_policy_that_contradicts_itself_is_rejected_with_the_reason(
    spec: dict[str, Any], reason: str, message: str
) -> None:
    assert parse(obj(spec)) == Rejected("HealingPolicy shop/p", reason, message)


def test_a_window_past_midnight_in_its_time_zone() -> None:
    p = policy(
        {
            "maintenanceWindows": [
                {"days": ["Fri"], "start": "23:00", "end": "03:00", "timeZone": "Europe/Berlin"}
            ]
        }
    )
    [window] = p.windows
    assert window.open_at(SATURDAY)  # Friday's window, 02:30 Saturday in Berlin
    assert not window.open_at(SATURDAY + timedelta(hours=1))  # 03:30
    assert not window.open_at(SATURDAY + timedelta(days=1))  # Sunday: Saturday has none
    assert window.describe() == "Fri 23:00-03:00 Europe/Berlin"


def test_a_one_off_window() -> None:
    p = policy(
        {"maintenanceWindows": [{"from": "2026-01-10T00:00:00Z", "until": "2026-01-10T02:00:00Z"}]}
    )
    assert p.windows[0].open_at(SATURDAY)
    assert not p.windows[0].open_at(SATURDAY + timedelta(hours=1))


def test_the_most_cautious_wins_field_by_field_and_names_who_decided() -> None:
    team = policy(
        {
            "mode": "approval",
            "allowedActions": ["restart", "scale"],
            "limits": {"cooldownSeconds": 60},
        },
        name="team",
    )
    strict = policy(
        {
            "allowedActions": ["scale"],
            "limits": {"cooldownSeconds": 1800, "minReplicas": 2, "maxReplicas": 6},
        },
        name="strict",
        namespace=None,
    )
    gov = govern([team, strict], WEB, {}, SATURDAY)
    assert gov.policies == ("HealingPolicy shop/team", "ClusterHealingPolicy strict")
    assert gov.mode is not None and (gov.mode.value, gov.mode.by) == (
        Mode.APPROVAL,
        "HealingPolicy shop/team",
    )
    assert gov.allowed is not None and gov.allowed.value == {ActionKind.SCALE}
    assert gov.cooldown_s is not None and gov.cooldown_s.value == 1800
    guards = governed(GuardSettings(cooldown_s=600, max_replicas=50), gov)
    assert (guards.cooldown_s, guards.min_replicas, guards.max_replicas) == (1800, 2, 6)
    assert (
        governed(GuardSettings(cooldown_s=7200), gov).cooldown_s == 7200
    )  # settings more cautious


def test_a_policy_never_loosens_the_settings_or_the_annotation() -> None:
    loose = policy({"mode": "auto"})
    gov = govern([loose], WEB, {}, SATURDAY)
    annotated = WorkloadState(
        WEB, 3, 3, 3, 3, 1, 1, False, (), annotations={"healer.io/mode": "approval"}
    )
    mode = gov.mode.value if gov.mode else None
    assert resolve_mode(Mode.DRY_RUN, Mode.AUTO, state(), policy_mode=mode) is Mode.DRY_RUN
    assert resolve_mode(Mode.AUTO, Mode.AUTO, annotated, policy_mode=mode) is Mode.APPROVAL


def test_an_open_window_is_dry_run_named_in_the_verdict() -> None:
    p = policy(
        {
            "mode": "approval",
            "maintenanceWindows": [{"days": ["Sat"], "start": "00:00", "end": "06:00"}],
        },
        name="night",
    )
    gov = govern([p], WEB, {}, SATURDAY)
    assert gov.mode is not None and gov.mode.value is Mode.DRY_RUN
    result = verdict(gov, ActionKind.RESTART, Mode.AUTO)
    assert result.passed
    assert (
        result.detail
        == "dry-run: maintenance window of HealingPolicy shop/night (Sat 00:00-06:00 UTC)"
    )
    later = govern([p], WEB, {}, SATURDAY + timedelta(hours=6))
    assert verdict(later, ActionKind.RESTART, Mode.AUTO).detail == (
        "approval required by HealingPolicy shop/night"
    )


def test_the_policy_guard_blocks_what_is_not_allowed() -> None:
    p = policy(
        {"allowedActions": ["scale"], "notify": {"receivers": ["shop-oncall"]}}, name="only-scale"
    )
    gov = govern([p], WEB, {}, SATURDAY)
    check = Check(
        ActionKind.RESTART,
        state(),
        GuardSettings(mode=Mode.AUTO),
        ActionHistory({}, (), 0),
        1,
        10,
        SATURDAY,
        governance=gov,
    )
    results = {r.guard: r for r in check_all(check)}
    assert not results["policy"].passed
    assert results["policy"].detail == (
        "restart not allowed by HealingPolicy shop/only-scale (allowed: scale)"
    )
    scale = verdict(gov, ActionKind.SCALE, Mode.AUTO)
    assert scale.passed and scale.detail == "escalations to shop-oncall"


def test_no_watch_no_policy_guard() -> None:
    check = Check(
        ActionKind.RESTART, state(), GuardSettings(), ActionHistory({}, (), 0), 1, 10, SATURDAY
    )
    assert "policy" not in {r.guard for r in check_all(check)}
