"""Verification: did the action heal the workload, and did an earlier run's intent land?

``judge`` reads the cluster for an incident being verified and answers with the event
the lifecycle takes next: settled (healed, not healed with nothing left to try, or
unverifiable), chained to the playbook's ``on_failure``, or nothing yet. ``reconcile``
reads back whether an intent left by an earlier run reached the cluster.

Remediation is verified against the playbook: healed once the rollout completed, the
workload is quiet and the playbook's ``verify.signals`` are back at their baseline
(less than ``BASELINE_SIGMA`` spreads on their harmful side) for ``verify_stable_s``;
not healed after its ``verify.within_s``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from healer.act.verify import verify
from healer.config import Settings
from healer.decide import Playbook, find_playbook
from healer.decide.playbooks import ESCALATE
from healer.detect.signals import POLARITY
from healer.detect.streaming import Detection
from healer.errors import PermanentActionError, TransientActionError
from healer.lifecycle.stages import Reconciling, Verifying
from healer.lifecycle.transition import Chained, Reconciled, RolledOut, Settled
from healer.types import (
    ActionRecord,
    Outcome,
    OutcomeKind,
    Plan,
    WorkloadRef,
    WorkloadState,
)

BASELINE_SIGMA = 3.0
"""A verify signal counts as back at its baseline below this many learned spreads on its
harmful side: the size of ordinary noise, well under the deviations findings have."""


class Cluster(Protocol):
    def read_state(self, workload: WorkloadRef) -> WorkloadState: ...

    def already_applied(self, intent: ActionRecord) -> bool: ...


@dataclass(frozen=True)
class Verdict:
    """What verifying found: the next event, if any, and the state it was read from
    (a chain step is planned on it)."""

    event: Settled | Chained | None
    state: WorkloadState | None = None
    rolled_out: RolledOut | None = None
    """The rollout the action started, read complete for the first time: moved before
    ``event``, so that its step comes before the outcome's."""


def at_baseline(
    plan: Plan,
    workload: WorkloadRef,
    detection: Detection,
    *,
    settings: Settings,
    playbooks: Sequence[Playbook],
) -> bool:
    """The playbook's verify signals are fresh and within BASELINE_SIGMA of baseline."""
    try:
        signals = find_playbook(playbooks, plan.playbook).verify.signals
    except KeyError:  # the playbook is gone since the action: judge on the whole score
        signals = ()
    if not detection.observed(workload):
        return False
    w = detection.workload_rows[workload]
    if not signals:
        return detection.score_of(workload) < settings.detector.score_threshold
    for signal in signals:
        if signal not in detection.signals:
            return False
        deviation = float(detection.deviations[w, detection.signals.index(signal)])
        harm = POLARITY[signal] * deviation if POLARITY[signal] else abs(deviation)
        if not harm < BASELINE_SIGMA:  # NaN (no data) is not baseline either
            return False
    return True


def judge(
    track: Verifying,
    *,
    overdue: bool,
    now: datetime,
    settings: Settings,
    playbooks: Sequence[Playbook],
    cluster: Cluster,
) -> Verdict:
    """Read the workload and judge the action; a TransientActionError before the
    deadline goes up (tried again next cycle)."""
    try:
        state = cluster.read_state(track.workload)
    except PermanentActionError as exc:  # the workload is gone, or we may not read it
        return Verdict(Settled(Outcome(OutcomeKind.ESCALATED, f"cannot verify: {exc}", now)))
    except TransientActionError as exc:
        if overdue:
            why = f"could not be verified in time: {exc}"
            return Verdict(Settled(Outcome(OutcomeKind.NOT_HEALED, why, now)))
        raise
    outcome = verify(
        state=state,
        acted_at=track.acted_at,
        quiet_since=track.signals_quiet_since,
        stable_s=settings.daemon.verify_stable_s,
        within_s=track.plan.verify_within_s,
        now=now,
    )
    rolled_out = _rolled_out(track, state, now)
    if outcome is None:
        return Verdict(None, state, rolled_out)
    if outcome.kind is not OutcomeKind.NOT_HEALED:
        return Verdict(Settled(outcome), state, rolled_out)
    return Verdict(_next_in_chain(track, outcome, now, playbooks), state, rolled_out)


def _rolled_out(track: Verifying, state: WorkloadState, now: datetime) -> RolledOut | None:
    """The rollout read complete now and not before: ``kubectl rollout status`` would
    return (the outcome's text said so only in words)."""
    if track.rollout_complete_at is not None or not state.rollout_complete:
        return None
    return RolledOut(now, f"rollout complete ({state.ready_replicas}/{state.replicas} ready)")


def _next_in_chain(
    track: Verifying, failed: Outcome, now: datetime, playbooks: Sequence[Playbook]
) -> Settled | Chained:
    """Not healed: the playbook's ``on_failure`` playbook, or escalation."""
    try:
        next_name = find_playbook(playbooks, track.plan.playbook).on_failure
    except KeyError:
        next_name = ESCALATE
    story = track.story
    if next_name == ESCALATE or story.diagnosis is None or story.finding is None:
        return Settled(failed)
    return Chained(failed, next_name, now)


def reconcile(track: Reconciling, *, now: datetime, cluster: Cluster) -> Settled | Reconciled:
    """Did the intent an earlier run left reach the cluster? A TransientActionError
    (the cluster unreadable) goes up: tried again next cycle."""
    try:
        landed = cluster.already_applied(track.intent)
    except PermanentActionError as exc:  # no read can tell: a person must look
        kind = track.intent.kind
        reason = f"cannot tell whether the {kind} of an earlier run landed: {exc}"
        return Settled(Outcome(OutcomeKind.ESCALATED, reason, now))
    return Reconciled(landed, now)
