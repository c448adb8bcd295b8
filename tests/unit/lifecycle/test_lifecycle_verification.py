"""Verification's reading of the rollout: marked once, when first read complete."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from healer.config import Settings
from healer.lifecycle.stages import Verifying
from healer.lifecycle.transition import RolledOut, Settled
from healer.lifecycle.verification import Verdict, judge
from healer.types import (
    ActionKind,
    ActionRecord,
    Mode,
    OutcomeKind,
    Plan,
    WorkloadRef,
    WorkloadState,
)

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
CART = WorkloadRef("shop", "Deployment", "cart")
RESTART = Plan(CART, "restart", ActionKind.RESTART, {}, Mode.AUTO, (), "leak", 600.0)
SETTINGS = Settings()


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class Cluster:
    def __init__(self, updated: int) -> None:
        self.state = WorkloadState(CART, 3, 3, updated, 3, 2, 2, False, ())

    def read_state(self, workload: WorkloadRef) -> WorkloadState:
        return self.state

    def already_applied(self, intent: ActionRecord) -> bool:
        return True


def verdict_at(track: Verifying, seconds: float, cluster: Cluster) -> Verdict:
    return judge(
        track, overdue=False, now=at(seconds), settings=SETTINGS, playbooks=(), cluster=cluster
    )


def test_a_rollout_in_progress_is_not_marked() -> None:
    verdict = verdict_at(Verifying(1, CART, RESTART, T0), 30, Cluster(updated=1))
    assert verdict.rolled_out is None and verdict.event is None


def test_a_rollout_first_read_complete_is_marked_then_never_again() -> None:
    track = Verifying(1, CART, RESTART, T0)
    verdict = verdict_at(track, 30, Cluster(updated=3))
    assert verdict.rolled_out == RolledOut(at(30), "rollout complete (3/3 ready)")
    assert verdict.event is None  # not yet quiet for verify_stable_s
    marked = replace(track, rollout_complete_at=at(30))
    assert verdict_at(marked, 60, Cluster(updated=3)).rolled_out is None


def test_a_rollout_read_complete_as_it_heals_is_marked_beside_the_outcome() -> None:
    """Quiet long enough already: the rollout marker comes with the outcome, not lost."""
    stable_s = SETTINGS.daemon.verify_stable_s
    track = Verifying(1, CART, RESTART, T0, signals_quiet_since=T0, quiet_since=T0)
    verdict = verdict_at(track, stable_s + 1, Cluster(updated=3))
    assert verdict.rolled_out == RolledOut(at(stable_s + 1), "rollout complete (3/3 ready)")
    assert isinstance(verdict.event, Settled)
    assert verdict.event.outcome.kind is OutcomeKind.HEALED
