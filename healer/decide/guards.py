"""Guardrails: every check an action must pass, each with a verdict people can read.

A guard is a pure function of the plan's inputs (settings, workload state, action history,
how many workloads are anomalous, the time passed in) returning a ``GuardResult``. Their
names (``namespace``, ``opt_out``, ``gitops``, ``policy``, ``cooldown``, ``rate_limit``,
``in_flight``, ``anomaly_brake``, ``paused``, ``scale_bounds``, ``rollback_target``,
``flip_back``, ``eviction_budget``) are API: the audit store, the review page and
alerts key on them.

Decisions:

- Every applicable guard is evaluated, never stopping at the first failure, so the audit
  trail shows the whole picture. Guards that cannot apply to an action (``paused`` for a
  scale, which Kubernetes performs on a paused Deployment; ``scale_bounds`` for a
  restart) are left out rather than recorded as a vacuous pass: each action kind's
  module (``healer.actions``) names the kind-specific guards it needs, after the common
  ones every action passes.
- The namespace deny list wins over the allow list.
- The mode is resolved here too, since it is a guardrail: the most cautious of the global,
  the playbook's and the workload's ``healer.io/mode`` wins, and a workload that Argo CD
  or Flux manages gets at least ``gitops_mode`` (approval): their next sync would undo
  an in-cluster change, so it belongs in the repository. The ``gitops`` guard records
  that verdict; it never blocks on its own.
- A step of an ``on_failure`` chain continues its incident: the cooldown, which stops
  repeated attempts across incidents, does not apply to it; every other guard does.
- An annotation value that is not a mode counts as ``dry_run``: whoever wrote it wanted
  caution, not the default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import assert_never

from healer.actions import handler
from healer.actions.base import GuardName
from healer.actions.base import ScaleTarget as ScaleTarget  # re-exported: guards judge it
from healer.actions.rollback import rollback_revision as rollback_revision  # re-exported
from healer.config import GuardSettings
from healer.decide.policies import Governance, verdict
from healer.types import (
    ActionHistory,
    ActionKind,
    GuardResult,
    Mode,
    WorkloadRef,
    WorkloadState,
)

ENABLED_ANNOTATION = "healer.io/enabled"
"""``"false"`` on a workload opts it out of every action."""
MODE_ANNOTATION = "healer.io/mode"
"""auto, approval, dry-run or dry_run: a workload may ask for more caution, never less."""

_CAUTION = {Mode.AUTO: 0, Mode.APPROVAL: 1, Mode.DRY_RUN: 2}

GITOPS_MARKERS: tuple[tuple[str, str, str], ...] = (
    ("annotation", "argocd.argoproj.io/tracking-id", "Argo CD"),
    ("label", "argocd.argoproj.io/instance", "Argo CD"),
    ("annotation", "argocd.argoproj.io/instance", "Argo CD"),
    ("label", "kustomize.toolkit.fluxcd.io/name", "Flux"),
    ("label", "helm.toolkit.fluxcd.io/name", "Flux"),
)
"""Where Argo CD (annotation or label tracking) and Flux (kustomize and helm
controllers) mark the objects they apply. ``app.kubernetes.io/instance``, Argo CD's
default tracking label, is left out: Helm sets it on everything it installs."""


@dataclass(frozen=True)
class Check:
    """The inputs every guard may read; built once per plan."""

    action: ActionKind
    state: WorkloadState
    settings: GuardSettings
    history: ActionHistory
    anomalous_workloads: int
    """The workloads of this anomaly's event, itself included: see ``correlated``."""
    watched_workloads: int
    now: datetime
    chained: bool = False
    """A step of an ``on_failure`` chain, continuing the incident's earlier action."""
    silenced: str | None = None
    """Why people silenced healer on the workload for now (an opt-out in the audit
    store, made from the review page); None: they have not."""
    governance: Governance | None = None
    """What the policy objects matching the workload say (``decide.policies``); None
    when healer watches none (the CRDs not installed, or a caller without a watch):
    the ``policy`` guard is then left out. ``settings`` has their limits applied."""


def check_all(check: Check, scale: ScaleTarget | None = None) -> tuple[GuardResult, ...]:
    """Every guard that applies to ``check.action``, in a fixed order, all evaluated."""
    results = [
        namespace(check),
        opt_out(check),
        gitops(check),
        *(
            [verdict(check.governance, check.action, check.settings.mode)]
            if check.governance
            else []
        ),
        cooldown(check),
        rate_limit(check),
        in_flight(check),
        anomaly_brake(check),
    ]
    results.extend(_specific(name, check, scale) for name in handler(check.action).guards)
    return tuple(results)


def _specific(name: GuardName, check: Check, scale: ScaleTarget | None) -> GuardResult:
    """The kind-specific guard called ``name``."""
    match name:
        case "paused":
            return paused(check)
        case "rollback_target":
            return rollback_target(check)
        case "flip_back":
            return flip_back(check)
        case "eviction_budget":
            return eviction_budget(check)
        case "scale_bounds":
            if scale is None:
                raise ValueError(f"a {check.action} check needs its ScaleTarget")
            return scale_bounds(check, scale)
        case _:
            assert_never(name)


def namespace(check: Check) -> GuardResult:
    return namespace_verdict(check.state.workload.namespace, check.settings)


def namespace_verdict(ns: str, g: GuardSettings) -> GuardResult:
    """The namespace guard on its own: the cycle asks it of an alert's namespace before
    it reads the cluster."""
    if ns in g.denied_namespaces:
        return GuardResult("namespace", False, f"namespace {ns} is denied")
    if g.allowed_namespaces and ns not in g.allowed_namespaces:
        allowed = ", ".join(g.allowed_namespaces)
        return GuardResult("namespace", False, f"namespace {ns} is not allowed (only {allowed})")
    return GuardResult("namespace", True, f"namespace {ns} is allowed")


def opt_out(check: Check) -> GuardResult:
    """Blocks a workload whose annotation opts it out, or that people silenced healer
    on from the review page for a while."""
    if check.silenced:
        return GuardResult("opt_out", False, check.silenced)
    value = check.state.annotations.get(ENABLED_ANNOTATION)
    if value is not None and value.strip().lower() == "false":
        detail = f'{check.state.workload} has {ENABLED_ANNOTATION}: "{value}"'
        return GuardResult("opt_out", False, detail)
    return GuardResult("opt_out", True, f"{check.state.workload} has not opted out")


def gitops(check: Check) -> GuardResult:
    manager = gitops_manager(check.state)
    if manager is None:
        return GuardResult("gitops", True, f"{check.state.workload} is not managed by GitOps")
    detail = (
        f"{check.state.workload} is managed by {manager}: {check.settings.gitops_mode} "
        "mode at least, since the next sync would revert an in-cluster change; "
        f"{syncer_verdict(check.action, check.state)}"
    )
    return GuardResult("gitops", True, detail)


def syncer_verdict(action: ActionKind, state: WorkloadState) -> str:
    """Whether the syncer would fight ``action`` on a GitOps-owned workload, and what
    keeps it from doing so (docs/gitops.md has the ``ignoreDifferences`` snippets)."""
    match action:
        case ActionKind.ROLLBACK:
            return (
                "a rollback lands as a commit in its repository when gitops.enabled; an "
                "in-cluster undo alone is reverted by the next sync"
            )
        case ActionKind.RESTART:
            return (
                "the restart stamp (kubectl.kubernetes.io/restartedAt in the pod template) "
                "is drift that Argo CD self-heal reverts unless the Application's "
                "ignoreDifferences covers it; Flux's server-side apply leaves it alone"
            )
        case ActionKind.SCALE if state.hpa is not None:
            return (
                f"the scale raises HPA {state.hpa.name} minReplicas: if Git owns that "
                "HPA, the sync lowers it again unless ignoreDifferences covers /spec/minReplicas"
            )
        case ActionKind.SCALE:
            return (
                "the scale sets spec.replicas: if the manifest in Git sets replicas, the "
                "sync sets them back unless ignoreDifferences covers /spec/replicas"
            )
        case ActionKind.EVICT | ActionKind.CORDON | ActionKind.DRAIN | ActionKind.UNCORDON:
            return f"a {action} acts on pods or nodes, which Git does not own"
        case _:
            assert_never(action)


def gitops_manager(state: WorkloadState) -> str | None:
    """``"Argo CD (annotation argocd.argoproj.io/tracking-id)"`` or None."""
    for where, key, tool in GITOPS_MARKERS:
        found = state.annotations if where == "annotation" else state.labels
        if key in found:
            return f"{tool} ({where} {key})"
    return None


def cooldown(check: Check) -> GuardResult:
    workload, limit_s = check.state.workload, check.settings.cooldown_s
    last = check.history.last_action_at.get(workload)
    if check.chained:
        return GuardResult("cooldown", True, f"continues the on_failure chain on {workload}")
    if last is None:
        return GuardResult("cooldown", True, f"no earlier action on {workload}")
    ago_s = max(0.0, (check.now - last).total_seconds())
    detail = f"last action on {workload} {duration(ago_s)} ago, cooldown {duration(limit_s)}"
    return GuardResult("cooldown", ago_s >= limit_s, detail)


def rate_limit(check: Check) -> GuardResult:
    g = check.settings
    window_s = g.rate_limit_window_s
    # An action stamped after ``now`` (clock skew between replicas) still counts.
    since = check.now - timedelta(seconds=window_s)
    recent = sum(1 for t in check.history.recent_action_times if t > since)
    detail = f"{recent} actions in the last {duration(window_s)}, limit {g.max_actions_per_window}"
    return GuardResult("rate_limit", recent < g.max_actions_per_window, detail)


def in_flight(check: Check) -> GuardResult:
    count, limit = check.history.in_flight, check.settings.max_in_flight
    detail = f"{count} actions awaiting verification, limit {limit}"
    return GuardResult("in_flight", count < limit, detail)


def anomaly_brake(check: Check) -> GuardResult:
    """Hold when many workloads turned sick together: a monitoring fault or an upstream
    outage, which no action on a workload fixes.

    ``check.anomalous_workloads`` counts the workloads of one event (``correlated``):
    this one and those whose anomaly began within ``anomaly_brake_window_s`` of its
    onset and that nobody has handled yet (or that were acted on and are not yet
    verified: a mass event in waves is one event). It holds when that is both more than
    ``anomaly_brake_share`` of the watched workloads and at least
    ``anomaly_brake_min_anomalous`` of them: the share keeps a large cluster's
    scattered incidents apart from a mass fault, the count keeps two faults at once on
    a small cluster (two actions, not a mass restart) from looking like one.
    """
    return brake(check.anomalous_workloads, check.watched_workloads, check.settings)


def brake(anomalous: int, watched: int, g: GuardSettings) -> GuardResult:
    """The anomaly brake's verdict on one event of ``anomalous`` workloads, for the
    daemon to consult without a plan too: a mass event whose workloads no playbook
    handles is still escalated once, not once per workload."""
    share = anomalous / watched if watched else 0.0
    seen = (
        f"{anomalous} of {watched} watched workloads ({share:.0%}) turned anomalous within "
        f"{duration(g.anomaly_brake_window_s)} of this one, not yet handled"
    )
    if watched < g.anomaly_brake_min_workloads:
        detail = f"{seen}; the brake needs at least {g.anomaly_brake_min_workloads} watched"
        return GuardResult("anomaly_brake", True, detail)
    rule = f"brake at more than {g.anomaly_brake_share:.0%} and {g.anomaly_brake_min_anomalous}"
    if share > g.anomaly_brake_share and anomalous >= g.anomaly_brake_min_anomalous:
        detail = f"{seen}; {rule}: upstream or monitoring fault"
        return GuardResult("anomaly_brake", False, detail)
    return GuardResult("anomaly_brake", True, f"{seen}; {rule}")


def correlated(
    workload: WorkloadRef,
    onset: datetime,
    onsets: Mapping[WorkloadRef, datetime],
    *,
    window_s: float,
) -> int:
    """The workloads the anomaly brake counts for an anomaly of ``workload`` that began
    at ``onset``: itself, and those of ``onsets`` (the anomalous workloads not yet
    handled, with their onsets) that began within ``window_s`` of it.

    Onsets, not the present: a workload anomalous since an hour ago (an escalated
    incident nobody fixed, a workload the brake held earlier) is a different event from
    one that just began, and must not hold its fix.
    """
    window = timedelta(seconds=window_s)
    near = {w for w, began in onsets.items() if abs(began - onset) <= window}
    return len(near | {workload})


def paused(check: Check) -> GuardResult:
    workload = check.state.workload
    if check.state.paused:
        detail = f"{workload} is paused: a {check.action} would not roll out until resumed"
        return GuardResult("paused", False, detail)
    return GuardResult("paused", True, f"{workload} is not paused")


def scale_bounds(check: Check, scale: ScaleTarget) -> GuardResult:
    bounds = f"[{scale.floor}, {scale.ceiling}]"
    if scale.hpa is not None:
        bounds += f" (HPA {scale.hpa.name} maxReplicas {scale.hpa.max_replicas})"
    if scale.current >= scale.ceiling:
        detail = f"{check.state.workload} already has {scale.current} replicas, bounds {bounds}"
        return GuardResult("scale_bounds", False, detail)
    if not scale.floor <= scale.target <= scale.ceiling:
        return GuardResult("scale_bounds", False, f"{scale.target} replicas is outside {bounds}")
    return _scale_up_result(scale, bounds)


def _scale_up_result(scale: ScaleTarget, bounds: str) -> GuardResult:
    if scale.hpa is None:
        ok = scale.target > scale.current
        detail = f"{scale.current} -> {scale.target} replicas within {bounds}"
        return GuardResult("scale_bounds", ok, detail)
    # Raising minReplicas to or below its value, or below the replicas the HPA already
    # runs, changes nothing: that is not a scale-up.
    ok = scale.target > max(scale.current, scale.hpa.min_replicas)
    detail = (
        f"HPA {scale.hpa.name} minReplicas {scale.hpa.min_replicas} -> {scale.target} "
        f"({scale.current} replicas now) within {bounds}"
    )
    return GuardResult("scale_bounds", ok, detail)


def rollback_target(check: Check) -> GuardResult:
    current, target = check.state.current_revision, rollback_revision(check.state)
    if current is None or check.state.previous_revision is None:
        return GuardResult("rollback_target", False, "no earlier revision to roll back to")
    if target is None:
        detail = (
            f"every earlier revision of {check.state.workload} differs from revision "
            f"{current.number} only by a restart: a rollback would change nothing"
        )
        return GuardResult("rollback_target", False, detail)
    images = ", ".join(target.images) or "no images"
    skipped = target.number != check.state.previous_revision.number
    note = " (skipping restart-only revisions)" if skipped else ""
    detail = f"revision {current.number} -> {target.number} ({images}){note}"
    return GuardResult("rollback_target", True, detail)


def flip_back(check: Check) -> GuardResult:
    workload, window_s = check.state.workload, check.settings.flip_back_window_s
    last = check.history.last_rollback_at.get(workload)
    if last is None:
        return GuardResult("flip_back", True, f"no earlier rollback of {workload}")
    ago_s = max(0.0, (check.now - last).total_seconds())
    detail = (
        f"{workload} was rolled back {duration(ago_s)} ago; no second rollback within "
        f"{duration(window_s)}: it would restore the revision just judged bad"
    )
    return GuardResult("flip_back", ago_s >= window_s, detail)


def eviction_budget(check: Check) -> GuardResult:
    """At most one pod of a workload evicted per ``evict_cooldown_s``, chained steps
    included: a second bad pod so soon is not one bad pod any more, and evicting pod
    after pod is a rolling restart nobody asked for."""
    workload, window_s = check.state.workload, check.settings.evict_cooldown_s
    last = check.history.last_eviction_at.get(workload)
    if last is None:
        return GuardResult("eviction_budget", True, f"no pod of {workload} evicted lately")
    ago_s = max(0.0, (check.now - last).total_seconds())
    detail = (
        f"a pod of {workload} was evicted {duration(ago_s)} ago; at most one eviction "
        f"per workload within {duration(window_s)}"
    )
    return GuardResult("eviction_budget", ago_s >= window_s, detail)


def resolve_mode(
    settings_mode: Mode,
    playbook_mode: Mode,
    state: WorkloadState,
    gitops_mode: Mode = Mode.APPROVAL,
    policy_mode: Mode | None = None,
) -> Mode:
    """The most cautious of the global, playbook and workload modes (dry_run > approval >
    auto), ``gitops_mode`` for a workload Argo CD or Flux manages, and the policies'
    (``policy_mode``, a maintenance window's dry_run included)."""
    modes = [settings_mode, playbook_mode]
    if policy_mode is not None:
        modes.append(policy_mode)
    if gitops_manager(state) is not None:
        modes.append(gitops_mode)
    wanted = state.annotations.get(MODE_ANNOTATION)
    if wanted is not None:
        normal = wanted.strip().lower().replace("-", "_")
        modes.append(Mode(normal) if normal in _MODE_VALUES else Mode.DRY_RUN)
    return max(modes, key=_CAUTION.__getitem__)


_MODE_VALUES = frozenset(m.value for m in Mode)


def duration(seconds: float) -> str:
    """``45s``, ``4m``, ``4m30s``, ``1h``, ``1h30m``: short enough for a one-line detail."""
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m{secs}s" if secs else f"{minutes}m"
    return f"{secs}s"
