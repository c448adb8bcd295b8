"""The verifier: did the action heal the workload?

Healed means what an SRE would check: the rollout the action started has completed
(``kubectl rollout status`` would return) and the workload has stayed below the
anomaly threshold for a while since. Not healed means the verification window passed
without that. Pure: the caller supplies the cluster state and the detector's view.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from healer.types import Outcome, OutcomeKind, WorkloadState


def verify(
    *,
    state: WorkloadState,
    acted_at: datetime,
    quiet_since: datetime | None,
    stable_s: float,
    within_s: float,
    now: datetime,
) -> Outcome | None:
    """An Outcome once the question is settled, else None (check again next cycle)."""
    quiet_for = (now - quiet_since).total_seconds() if quiet_since else 0.0
    if state.rollout_complete and quiet_for >= stable_s:
        took = (now - acted_at).total_seconds() - stable_s
        return Outcome(
            OutcomeKind.HEALED,
            f"rollout complete ({state.ready_replicas}/{state.replicas} ready) and "
            f"signals at baseline for {quiet_for:.0f}s (back "
            f"{max(0.0, took):.0f}s after the action)",
            now,
        )
    if now - acted_at > timedelta(seconds=within_s):
        rollout = (
            "complete"
            if state.rollout_complete
            else (f"stuck at {state.updated_replicas}/{state.replicas} updated")
        )
        return Outcome(
            OutcomeKind.NOT_HEALED,
            f"still anomalous {within_s:.0f}s after the action (rollout {rollout})",
            now,
        )
    return None
