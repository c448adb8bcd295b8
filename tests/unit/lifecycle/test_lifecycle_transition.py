"""The incident lifecycle's transition function, on literals: every move, and the
events a stage refuses."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from healer.decide.paging import Resolution
from healer.lifecycle.stages import (
    Diagnosing,
    Reconciling,
    Story,
    Track,
    Verifying,
    Watching,
    resumed,
)
from healer.lifecycle.transition import (
    Acted,
    Chained,
    Diagnosed,
    Event,
    ExpirePending,
    ExpireSilences,
    NotDiagnosed,
    NoteFloor,
    Notify,
    Reconcile,
    Reconciled,
    RecordAction,
    RecordOutcome,
    RecordRollout,
    Resolve,
    Reviewed,
    RolledOut,
    Say,
    Settled,
    SilenceAlerts,
    Tick,
    UnexpectedEvent,
    Verify,
    transition,
)
from healer.types import (
    ActionKind,
    ActionRecord,
    ActionStatus,
    Cause,
    Diagnosis,
    Direction,
    Finding,
    Incident,
    IncidentStatus,
    Mode,
    Outcome,
    OutcomeKind,
    Plan,
    Signal,
    SignalDeviation,
    WorkloadRef,
)

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
CART = WorkloadRef("shop", "Deployment", "cart")
STABLE_S = 300.0
RATE = SignalDeviation(Signal.REQUEST_RATE, 300.0, 100.0, 12.0, Direction.UP)
FINDING = Finding(CART, T0, 0.97, (RATE,), T0 - timedelta(minutes=2), "test")
DIAGNOSIS = Diagnosis(CART, Cause.OVERLOAD, 0.8, "more requests than replicas")
STORY = Story(FINDING, DIAGNOSIS)
RESTART = Plan(CART, "restart", ActionKind.RESTART, {}, Mode.AUTO, (), "leak", 600.0)
SCALE_HPA = Plan(CART, "scale", ActionKind.SCALE, {"hpa": "cart"}, Mode.AUTO, (), "load", 600.0)
INTENT = ActionRecord(
    ActionKind.RESTART, CART, {"action": "restart"}, ActionStatus.INTENDED, T0, T0
)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def record(status: ActionStatus, plan: Plan = RESTART, error: str | None = None) -> ActionRecord:
    return ActionRecord(plan.action, CART, {}, status, T0, T0, error=error)


def replace_quiet(track: Track, since: datetime) -> Track:
    return replace(track, quiet_since=since)


def kinds(effects: tuple[object, ...]) -> list[str]:
    return [type(e).__name__ for e in effects]


DIAGNOSING = Diagnosing(1, CART, error="apiserver down")
WATCHING = Watching(1, CART, STORY)
VERIFYING = Verifying(1, CART, RESTART, T0, STORY)
RECONCILING = Reconciling(1, CART, RESTART, INTENT, STORY)
STAGES: list[Track] = [DIAGNOSING, WATCHING, VERIFYING, RECONCILING]


# ---- ticks: quiet, settled, verify, reconcile ----------------------------------------------


def test_a_tick_starts_and_keeps_the_quiet_clock_and_noise_resets_it() -> None:
    quiet = transition(WATCHING, Tick(at(10), True, STABLE_S)).to
    assert quiet is not None and quiet.quiet_since == at(10)
    still = transition(quiet, Tick(at(20), True, STABLE_S)).to
    assert still is not None and still.quiet_since == at(10)
    noisy = transition(still, Tick(at(30), False, STABLE_S)).to
    assert noisy is not None and noisy.quiet_since is None


def test_watching_settled_is_forgotten_and_its_pending_approval_expires() -> None:
    move = transition(replace_quiet(WATCHING, T0), Tick(at(STABLE_S), True, STABLE_S))
    assert move.to is None
    assert move.before == () and move.after == (ExpirePending(at(STABLE_S)),)


def test_a_paged_incident_closes_its_page_once_the_workload_settles() -> None:
    escalated = Outcome(OutcomeKind.ESCALATED, "no playbook", at(1))
    paged = transition(WATCHING, Settled(escalated)).to
    assert isinstance(paged, Watching) and paged.paged
    move = transition(replace_quiet(paged, T0), Tick(at(STABLE_S), True, STABLE_S))
    assert move.to is None
    expire, resolve = move.after
    assert expire == ExpirePending(at(STABLE_S))
    assert isinstance(resolve, Resolve) and not resolve.resolution.healed
    assert resolve.resolution.evidence.startswith("recovered: quiet for")
    held = transition(WATCHING, Settled(escalated, notify=False)).to
    assert isinstance(held, Watching) and not held.paged, "no page of its own to close"


def test_watching_not_yet_settled_stays_watched() -> None:
    move = transition(replace_quiet(WATCHING, T0), Tick(at(STABLE_S - 1), True, STABLE_S))
    assert isinstance(move.to, Watching) and move.after == ()


def test_diagnosing_that_passes_is_escalated_naming_why_then_forgotten() -> None:
    move = transition(replace_quiet(DIAGNOSING, T0), Tick(at(STABLE_S), True, STABLE_S))
    assert move.to is None
    assert kinds(move.before) == ["RecordOutcome", "Say"]
    assert kinds(move.after) == ["ExpireSilences", "Notify", "ExpirePending"]
    outcome = move.before[0]
    assert isinstance(outcome, RecordOutcome)
    assert outcome.outcome.kind is OutcomeKind.ESCALATED
    assert outcome.outcome.evidence.endswith("could be diagnosed: apiserver down")


def test_diagnosing_not_settled_waits() -> None:
    move = transition(DIAGNOSING, Tick(at(1), True, STABLE_S))
    assert move.to == Diagnosing(1, CART, quiet_since=at(1), error="apiserver down")
    assert move.before == move.after == ()


def test_reconciling_asks_to_read_the_cluster_each_tick() -> None:
    move = transition(RECONCILING, Tick(at(1), False, STABLE_S))
    assert isinstance(move.to, Reconciling)
    assert move.after == (Reconcile(move.to),)


def test_verifying_tracks_its_signals_and_asks_to_verify() -> None:
    move = transition(VERIFYING, Tick(at(60), True, STABLE_S, at_baseline=True))
    assert isinstance(move.to, Verifying)
    assert move.to.quiet_since == at(60) and move.to.signals_quiet_since == at(60)
    assert move.after == (Verify(move.to, overdue=False),)
    loud = transition(move.to, Tick(at(70), True, STABLE_S, at_baseline=False)).to
    assert isinstance(loud, Verifying) and loud.signals_quiet_since is None


def test_verifying_past_its_deadline_is_overdue() -> None:
    move = transition(VERIFYING, Tick(at(RESTART.verify_within_s + 1), False, STABLE_S))
    assert isinstance(move.to, Verifying)
    assert move.after == (Verify(move.to, overdue=True),)


def test_signals_at_baseline_count_only_when_the_workload_is_quiet() -> None:
    move = transition(VERIFYING, Tick(at(60), False, STABLE_S, at_baseline=True))
    assert isinstance(move.to, Verifying) and move.to.signals_quiet_since is None


# ---- diagnosis -------------------------------------------------------------------------------


def test_a_diagnosis_moves_to_watching_with_its_story() -> None:
    move = transition(replace_quiet(DIAGNOSING, T0), Diagnosed(STORY))
    assert move.to == Watching(1, CART, STORY, quiet_since=T0)


def test_a_cluster_that_cannot_be_read_keeps_it_diagnosing_with_the_error() -> None:
    move = transition(Diagnosing(1, CART), NotDiagnosed("timeout"))
    assert move.to == Diagnosing(1, CART, error="timeout")


def test_an_approval_brings_the_story_the_store_tells() -> None:
    move = transition(Watching(1, CART), Reviewed(STORY))
    assert move.to == WATCHING


# ---- acting ---------------------------------------------------------------------------------


def test_an_action_that_succeeded_is_verified_from_now_with_its_alerts_silenced() -> None:
    move = transition(WATCHING, Acted(RESTART, record(ActionStatus.SUCCEEDED), at(5)))
    assert move.to == Verifying(1, CART, RESTART, at(5), STORY)
    deadline = at(5 + RESTART.verify_within_s)
    assert kinds(move.before) == ["Say"] and move.after == (SilenceAlerts(at(5), deadline),)


def test_a_raised_hpa_floor_is_noted_with_the_load_before() -> None:
    move = transition(WATCHING, Acted(SCALE_HPA, record(ActionStatus.SUCCEEDED), at(5)))
    assert isinstance(move.to, Verifying)
    hush = SilenceAlerts(at(5), at(5 + SCALE_HPA.verify_within_s))
    assert move.after == (hush, NoteFloor(SCALE_HPA, at(5), RATE.baseline))


@pytest.mark.parametrize(
    ("status", "evidence"),
    [
        (ActionStatus.DRY_RUN, "dry run: restart validated by the API server"),
        (ActionStatus.FAILED, "restart failed: 403"),
    ],
)
def test_a_dry_run_or_failed_action_is_escalated(status: ActionStatus, evidence: str) -> None:
    move = transition(WATCHING, Acted(RESTART, record(status, error="403"), at(5)))
    assert isinstance(move.to, Watching)
    assert kinds(move.before) == ["Say", "RecordOutcome", "Say"]
    outcome = move.before[1]
    assert isinstance(outcome, RecordOutcome) and outcome.outcome.evidence.startswith(evidence)
    unsilence, notify = move.after
    assert isinstance(unsilence, ExpireSilences) and unsilence.at == at(5)
    assert isinstance(notify, Notify) and notify.escalation.cause == "overload"
    assert notify.escalation.diagnosis is not None
    assert notify.escalation.diagnosis.startswith("overload")


def test_an_action_awaiting_approval_stays_watching() -> None:
    move = transition(WATCHING, Acted(RESTART, record(ActionStatus.PENDING_APPROVAL), at(5)))
    assert move.to is WATCHING and kinds(move.before) == ["Say"] and move.after == ()


# ---- outcomes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "track",
    [DIAGNOSING, Watching(1, CART, STORY, plan=RESTART), VERIFYING, RECONCILING],
    ids=lambda t: type(t).__name__,
)
def test_every_stage_settles_into_watching_keeping_the_plan_it_acted_on(track: Track) -> None:
    outcome = Outcome(OutcomeKind.NOT_HEALED, "still leaking", at(9))
    move = transition(track, Settled(outcome))
    assert isinstance(move.to, Watching) and move.to.incident_id == 1
    assert move.before == (
        RecordOutcome(outcome),
        Say("outcome", at(9), "not_healed: still leaking"),
    )
    unsilence, notify = move.after
    assert unsilence == ExpireSilences(at(9), "not_healed: still leaking")
    assert isinstance(notify, Notify)
    expected = None if isinstance(track, Diagnosing) else "restart"
    assert notify.escalation.playbook == expected
    assert move.to.plan == (None if isinstance(track, Diagnosing) else RESTART)


def test_healed_or_unnotified_outcomes_send_no_escalation_and_expire_the_silences() -> None:
    healed = Outcome(OutcomeKind.HEALED, "back at baseline", at(9))
    unsilence, resolve = transition(VERIFYING, Settled(healed)).after
    assert unsilence == ExpireSilences(at(9), "healed: back at baseline")
    assert resolve == Resolve(
        Resolution(1, CART, at(9), "healed: back at baseline", "restart", "restart")
    )
    held = Outcome(OutcomeKind.ESCALATED, "held by anomaly_brake", at(9))
    assert transition(WATCHING, Settled(held, notify=False)).after == (
        ExpireSilences(at(9), "escalated: held by anomaly_brake"),
    )


def test_an_escalation_tells_the_finding_and_the_diagnosis() -> None:
    failed = Outcome(OutcomeKind.NOT_HEALED, "still leaking", at(9))
    [_, notify] = transition(VERIFYING, Settled(failed)).after
    assert isinstance(notify, Notify)
    assert notify.escalation.finding is not None
    assert notify.escalation.finding.startswith("score ")
    assert notify.escalation.diagnosis == f"overload (80%): {DIAGNOSIS.explanation}"


def test_not_healed_with_a_next_playbook_chains_back_to_watching() -> None:
    failed = Outcome(OutcomeKind.NOT_HEALED, "still leaking", at(9))
    move = transition(replace_quiet(VERIFYING, T0), Chained(failed, "rollback", at(9)))
    assert move.to == Watching(1, CART, STORY, quiet_since=T0)  # no plan: a new one comes
    assert move.before == (Say("verify", at(9), "not_healed: still leaking; next: rollback"),)


def test_a_rollout_read_complete_is_recorded_and_kept_on_the_stage() -> None:
    """Recorded as its own step (a chart marker), before any outcome; the stage keeps
    when, so the next cycles do not record it again (``verification._rolled_out``)."""
    verifying = replace(VERIFYING, signals_quiet_since=at(20))
    move = transition(verifying, RolledOut(at(40), "rollout complete (3/3 ready)"))
    assert move.to == replace(verifying, rollout_complete_at=at(40))
    assert move.before == (
        RecordRollout(at(40), "rollout complete (3/3 ready)"),
        Say("rollout", at(40), "rollout complete (3/3 ready)"),
    )
    assert move.after == ()
    ticked = transition(move.to, Tick(at(60), quiet=True, stable_s=STABLE_S, at_baseline=True))
    assert isinstance(ticked.to, Verifying) and ticked.to.rollout_complete_at == at(40)


# ---- an earlier run's intent ----------------------------------------------------------------


def test_an_intent_that_landed_is_recorded_and_verified_from_when_it_was_sent() -> None:
    move = transition(RECONCILING, Reconciled(True, at(30)))
    assert move.to == Verifying(1, CART, RESTART, T0, STORY)
    assert move.after == (SilenceAlerts(at(30), at(RESTART.verify_within_s)),)
    late = transition(RECONCILING, Reconciled(True, at(RESTART.verify_within_s + 1)))
    assert late.after == (), "no silence past the verification deadline"
    landed = move.before[0]
    assert isinstance(landed, RecordAction)
    assert landed.record.status is ActionStatus.SUCCEEDED and landed.record.finished == at(30)


def test_an_intent_never_sent_is_blocked_and_diagnosed_again() -> None:
    move = transition(RECONCILING, Reconciled(False, at(30)))
    assert move.to == Diagnosing(1, CART, STORY)
    blocked = move.before[0]
    assert isinstance(blocked, RecordAction) and blocked.record.status is ActionStatus.BLOCKED
    assert str(blocked.record.error).startswith("never sent")


# ---- illegal moves --------------------------------------------------------------------------

LEGAL: dict[type, set[type]] = {
    NotDiagnosed: {Diagnosing},
    Diagnosed: {Diagnosing},
    Acted: {Watching},
    Chained: {Verifying},
    Reconciled: {Reconciling},
    RolledOut: {Verifying},
}
EVENTS: list[Event] = [
    NotDiagnosed("timeout"),
    Diagnosed(STORY),
    Acted(RESTART, record(ActionStatus.SUCCEEDED), T0),
    Chained(Outcome(OutcomeKind.NOT_HEALED, "x", T0), "rollback", T0),
    Reconciled(True, T0),
    RolledOut(T0, "rollout complete (1/1 ready)"),
]


@pytest.mark.parametrize(
    ("track", "event"),
    [(t, e) for e in EVENTS for t in STAGES if type(t) not in LEGAL[type(e)]],
    ids=lambda v: type(v).__name__,
)
def test_an_event_its_stage_cannot_take_is_refused_naming_both(track: Track, event: Event) -> None:
    with pytest.raises(UnexpectedEvent, match=f"{type(track).__name__.lower()} cannot take"):
        transition(track, event)


# ---- picking up after a restart -------------------------------------------------------------


def incident(action: ActionRecord | None, diagnosis: Diagnosis | None = DIAGNOSIS) -> Incident:
    plan = RESTART if action else None
    return Incident(1, CART, IncidentStatus.OPEN, T0, FINDING, diagnosis, plan, action)


def test_a_restart_picks_each_incident_up_in_its_stage() -> None:
    sent = ActionRecord(ActionKind.RESTART, CART, {}, ActionStatus.SUCCEEDED, at(-60), at(-60))
    assert resumed(incident(INTENT)) == RECONCILING
    assert resumed(incident(sent)) == Verifying(1, CART, RESTART, at(-60), STORY)
    pending = ActionRecord(ActionKind.RESTART, CART, {}, ActionStatus.PENDING_APPROVAL, T0, T0)
    assert resumed(incident(pending)) == WATCHING
    undiagnosed = resumed(incident(None, diagnosis=None))
    assert isinstance(undiagnosed, Diagnosing) and undiagnosed.error is not None
