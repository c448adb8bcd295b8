"""Handing an HPA's raised floor back once the surge that called for it has settled.

To scale a workload an HPA manages, healer raises the HPA's ``minReplicas`` (the
autoscaler would undo a plain scale). Left there, that floor would pin the replicas long
after the surge, costing money and drifting from the manifests. So each raise is noted
(``FLOORS_KEY`` in the audit store's state, which survives restarts) with the floor it
replaced, and handed back when:

* ``hold_s`` have passed since the last raise: a surge rarely ends sooner, and lowering
  the floor during a rise would hand the HPA back the lag healer stepped in for;
* the surge is over: requests are back within ``SETTLED`` of their rate before it (when
  that was measured), and not climbing. A surge that became the new normal keeps its
  floor: the HPA's CPU average would otherwise settle the replicas at its target, where
  the latency that made healer act returns with the next burst;
* no incident of the workload is open;
* the HPA's ``minReplicas`` is still the floor healer set. A person (or a deploy) who
  changed it since owns it now: the note is dropped and nothing is changed;
* the workload has not opted out and its mode is auto: in approval or dry-run mode the
  floor stays until a person lowers it.

Lowering the floor sheds nothing at once: the HPA keeps the replicas its CPU target
asks for and scales down only through its stabilisation window. Handing back is a scale
action like any other, audited as such (``playbook`` ``HAND_BACK``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from healer.config import GuardSettings
from healer.decide.guards import ENABLED_ANNOTATION, duration, resolve_mode
from healer.types import (
    ActionKind,
    GuardResult,
    JsonObject,
    JsonValue,
    Mode,
    Plan,
    WorkloadRef,
    WorkloadState,
)

FLOORS_KEY = "hpa_floors"
"""The audit store state under which raised floors are kept."""
HAND_BACK = "hand-back-hpa-floor"
"""The plan's playbook name for a hand-back (no file: it follows every raise)."""
SETTLED = 1.25
"""Requests within a quarter of their rate before the surge: the daily cycle moves them
that much in a couple of hours, a surge several times more."""
VERIFY_S = 600.0
"""A hand-back is verified like a scale: the HPA settles within its 5-minute window."""


@dataclass(frozen=True)
class Floor:
    """An HPA minReplicas healer raised, and the value it replaced."""

    workload: WorkloadRef
    hpa: str
    original: int
    raised_to: int
    at: datetime
    """When it was last raised."""
    rps_before: float | None = None
    """Requests per second before the surge, when the finding measured it."""


def noted(
    floors: dict[str, Floor], plan: Plan, at: datetime, rps_before: float | None = None
) -> dict[str, Floor]:
    """``floors`` with the raise ``plan`` made; a second raise keeps the first original
    (and the first rate before the surge)."""
    hpa, target = plan.params.get("hpa"), plan.params.get("replicas")
    if not isinstance(hpa, str) or not isinstance(target, int) or plan.playbook == HAND_BACK:
        return floors
    key = str(plan.workload)
    earlier = floors.get(key)
    before = plan.params.get("from_replicas")
    original = earlier.original if earlier else before if isinstance(before, int) else None
    if original is None:
        return floors
    before_rps = earlier.rps_before if earlier else rps_before
    return {**floors, key: Floor(plan.workload, hpa, original, target, at, before_rps)}


def still_ours(floor: Floor, state: WorkloadState) -> bool:
    """The HPA is there and its minReplicas is still the floor healer set."""
    hpa = state.hpa
    return hpa is not None and hpa.name == floor.hpa and hpa.min_replicas == floor.raised_to


def hand_back(
    floor: Floor,
    state: WorkloadState,
    *,
    now: datetime,
    hold_s: float,
    climbing: bool,
    guards: GuardSettings,
    rps: float | None = None,
    policy_mode: Mode | None = None,
) -> Plan | None:
    """The plan that lowers ``floor`` back (still ours, see ``still_ours``); None when it
    is not due yet, or not healer's to do unasked: the workload opted out, or its mode
    (global, annotation, GitOps, its policies' ``policy_mode``) is more cautious than
    auto."""
    held_s = (now - floor.at).total_seconds()
    if held_s < hold_s or climbing:
        return None
    if floor.rps_before is not None and (rps is None or rps > floor.rps_before * SETTLED):
        return None
    if state.annotations.get(ENABLED_ANNOTATION, "").strip().lower() == "false":
        return None
    mode = resolve_mode(guards.mode, Mode.AUTO, state, guards.gitops_mode, policy_mode=policy_mode)
    if mode is not Mode.AUTO:
        return None
    params: dict[str, JsonValue] = {
        "replicas": floor.original,
        "from_replicas": floor.raised_to,
        "hpa": floor.hpa,
    }
    detail = (
        f"HPA {floor.hpa} minReplicas raised to {floor.raised_to} {duration(held_s)} ago, "
        f"hold {duration(hold_s)}; requests not climbing"
        + (
            f", {rps:.0f}/s (before the surge {floor.rps_before:.0f}/s)"
            if rps and floor.rps_before
            else ""
        )
        + f"; {state.replicas} replicas now"
    )
    return Plan(
        workload=floor.workload,
        playbook=HAND_BACK,
        action=ActionKind.SCALE,
        params=params,
        mode=Mode.AUTO,
        guard_results=(GuardResult("hand_back", True, detail),),
        reason=(
            f"the surge has settled: HPA {floor.hpa} minReplicas back from "
            f"{floor.raised_to} to {floor.original}; the HPA keeps what its CPU target needs"
        ),
        verify_within_s=VERIFY_S,
    )


def to_json(floors: dict[str, Floor]) -> JsonObject:
    return {
        key: {
            "namespace": f.workload.namespace,
            "kind": f.workload.kind,
            "name": f.workload.name,
            "hpa": f.hpa,
            "original": f.original,
            "raised_to": f.raised_to,
            "at": f.at.isoformat(),
            "rps_before": f.rps_before,
        }
        for key, f in floors.items()
    }


def from_json(value: JsonObject | None) -> dict[str, Floor]:
    out: dict[str, Floor] = {}
    for key, row in (value or {}).items():
        if not isinstance(row, dict):
            continue
        out[key] = Floor(
            WorkloadRef(str(row["namespace"]), str(row["kind"]), str(row["name"])),
            str(row["hpa"]),
            int(str(row["original"])),
            int(str(row["raised_to"])),
            datetime.fromisoformat(str(row["at"])),
            float(str(row["rps_before"])) if row.get("rps_before") is not None else None,
        )
    return out
