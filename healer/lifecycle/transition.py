"""The one function that moves an incident: (stage, event) -> (stage, effects).

``transition`` is pure: it reads no store, no cluster and no clock. The cycle learns a
fact (a tick of the clock with the workload quiet or not, a diagnosis, an action's
record, an outcome, whether an earlier run's intent landed), feeds it in as an event,
and carries out the effects that come back: ``before`` ones, then the move to the new
stage (None: the incident is no longer watched), then ``after`` ones. Effects that write
an outcome come before the move, so a store that fails leaves the incident in its stage
and the next cycle meets it again; a notification comes after it.

Decisions: an event a stage cannot take raises ``UnexpectedEvent`` (a bug, which the
cycle escalates like any other), instead of being ignored; the store writes that come
before an event (the action's record, the diagnosis with its features) stay with the
cycle, which needs their results, and only the writes the lifecycle decides on are
effects here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import assert_never

from healer.decide.paging import Escalation, Resolution
from healer.lifecycle.stages import (
    Diagnosing,
    Reconciling,
    Story,
    Track,
    Verifying,
    Watching,
    last_plan,
)
from healer.types import (
    ActionKind,
    ActionRecord,
    ActionStatus,
    Finding,
    Outcome,
    OutcomeKind,
    Plan,
    Signal,
)


class UnexpectedEvent(Exception):
    """An event the incident's stage cannot take: a bug in the cycle, never an input."""


# ---- events --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tick:
    """A cycle with data reached the incident at ``now``. ``quiet``: fresh data at
    baseline; ``at_baseline``: quiet and the playbook's verify signals back at their
    baseline (only read while verifying)."""

    now: datetime
    quiet: bool
    stable_s: float
    at_baseline: bool = False


@dataclass(frozen=True)
class NotDiagnosed:
    """The cluster could not be read to diagnose the incident; tried again next cycle."""

    error: str


@dataclass(frozen=True)
class Diagnosed:
    story: Story


@dataclass(frozen=True)
class Reviewed:
    """A person approved the incident's action: its story as the store tells it."""

    story: Story


@dataclass(frozen=True)
class Acted:
    """``plan``'s action was sent (or left for approval) and recorded as ``record``."""

    plan: Plan
    record: ActionRecord
    now: datetime


@dataclass(frozen=True)
class Settled:
    """The incident has its outcome; ``notify`` False when an escalation for the same
    event went out already (the anomaly brake's)."""

    outcome: Outcome
    notify: bool = True


@dataclass(frozen=True)
class Chained:
    """Not healed, and the playbook's ``on_failure`` names ``next_playbook`` to try."""

    failed: Outcome
    next_playbook: str
    now: datetime


@dataclass(frozen=True)
class Reconciled:
    """Whether the intent an earlier run left reached the cluster, read at ``now``."""

    landed: bool
    now: datetime


@dataclass(frozen=True)
class RolledOut:
    """The verifier read the rollout the action started complete, for the first time."""

    now: datetime
    detail: str
    """What it read: ready and updated replicas."""


Event = (
    Tick | NotDiagnosed | Diagnosed | Reviewed | Acted | Settled | Chained | Reconciled | RolledOut
)


# ---- effects -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordOutcome:
    outcome: Outcome


@dataclass(frozen=True)
class RecordAction:
    record: ActionRecord


@dataclass(frozen=True)
class Say:
    """One line of the incident's story for people watching (``Step``)."""

    kind: str
    at: datetime
    text: str


@dataclass(frozen=True)
class Notify:
    escalation: Escalation


@dataclass(frozen=True)
class Resolve:
    """Tell the receivers the incident healed: its page, if any, closes."""

    resolution: Resolution


@dataclass(frozen=True)
class SilenceAlerts:
    """Silence the workload's alerts from ``starts`` until ``ends``, the action's
    verification deadline: nobody is paged for what healer is fixing."""

    starts: datetime
    ends: datetime


@dataclass(frozen=True)
class ExpireSilences:
    """The incident has its outcome: expire the silences healer made on it, so that an
    alert still firing pages."""

    at: datetime
    why: str


@dataclass(frozen=True)
class ExpirePending:
    """Withdraw an action still awaiting approval: the workload settled on its own."""

    at: datetime


@dataclass(frozen=True)
class Verify:
    """Read the cluster and judge the action taken; ``overdue`` past ``verify_within_s``."""

    track: Verifying
    overdue: bool


@dataclass(frozen=True)
class Reconcile:
    """Read the cluster: did the intent of an earlier run land?"""

    track: Reconciling


@dataclass(frozen=True)
class RecordRollout:
    """Note in the store when the action's rollout completed (a chart marker)."""

    at: datetime
    detail: str


@dataclass(frozen=True)
class NoteFloor:
    """An HPA floor was raised by ``plan``: keep it to hand back once the load settles."""

    plan: Plan
    at: datetime
    baseline_rps: float | None


Effect = (
    RecordOutcome
    | RecordAction
    | Say
    | Notify
    | Resolve
    | SilenceAlerts
    | ExpireSilences
    | ExpirePending
    | Verify
    | Reconcile
    | NoteFloor
    | RecordRollout
)


@dataclass(frozen=True)
class Move:
    """Where ``transition`` takes the incident and what to do around the move."""

    to: Track | None
    before: tuple[Effect, ...] = ()
    after: tuple[Effect, ...] = field(default=())


# ---- the function --------------------------------------------------------------------------


def transition(track: Track, event: Event) -> Move:
    """Move ``track`` on ``event``; raises UnexpectedEvent for an event its stage
    cannot take."""
    match event:
        case Tick():
            return _tick(track, event)
        case NotDiagnosed(error=error):
            if not isinstance(track, Diagnosing):
                raise _unexpected(track, event)
            return Move(replace(track, error=error))
        case Diagnosed(story=story):
            if not isinstance(track, Diagnosing):
                raise _unexpected(track, event)
            return Move(Watching(track.incident_id, track.workload, story, track.quiet_since))
        case Reviewed(story=story):
            return Move(replace(track, story=story))
        case Acted():
            if not isinstance(track, Watching):
                raise _unexpected(track, event)
            return _acted(track, event)
        case Settled(outcome=outcome, notify=notify):
            return settle(track, outcome, notify=notify)
        case Chained(failed=failed, next_playbook=name, now=now):
            if not isinstance(track, Verifying):
                raise _unexpected(track, event)
            say = Say("verify", now, f"{failed.kind}: {failed.evidence}; next: {name}")
            to = Watching(track.incident_id, track.workload, track.story, track.quiet_since)
            return Move(to, before=(say,))
        case RolledOut(now=now, detail=detail):
            if not isinstance(track, Verifying):
                raise _unexpected(track, event)
            rolled = replace(track, rollout_complete_at=now)
            return Move(rolled, before=(RecordRollout(now, detail), Say("rollout", now, detail)))
        case Reconciled(landed=landed, now=now):
            if not isinstance(track, Reconciling):
                raise _unexpected(track, event)
            return _reconciled(track, landed, now)
        case _:
            assert_never(event)


def settle(track: Track, outcome: Outcome, *, notify: bool = True) -> Move:
    """The outcome recorded and told, then watched until quiet; an outcome other than
    healed is escalated unless ``notify`` is False."""
    before: tuple[Effect, ...] = (
        RecordOutcome(outcome),
        Say("outcome", outcome.at, f"{outcome.kind}: {outcome.evidence}"),
    )
    plan = last_plan(track)
    to = Watching(track.incident_id, track.workload, track.story, track.quiet_since, plan)
    said = f"{outcome.kind}: {outcome.evidence}"
    unsilence = ExpireSilences(outcome.at, said)
    playbook = plan.playbook if plan else None
    action = str(plan.action) if plan else None
    if outcome.kind is OutcomeKind.HEALED:
        healed = Resolution(track.incident_id, track.workload, outcome.at, said, playbook, action)
        return Move(to, before, (unsilence, Resolve(healed)))
    if not notify:
        return Move(to, before, (unsilence,))
    to = replace(to, paged=True)
    finding, diagnosis = track.story.finding, track.story.diagnosis
    escalation = Escalation(
        incident_id=track.incident_id,
        workload=track.workload,
        at=outcome.at,
        reason=said,
        cause=str(diagnosis.cause) if diagnosis else None,
        playbook=playbook,
        action=action,
        finding=found(finding) if finding else None,
        diagnosis=(
            f"{diagnosis.cause} ({diagnosis.confidence:.0%}): {diagnosis.explanation}"
            if diagnosis
            else None
        ),
    )
    return Move(to, before, (unsilence, Notify(escalation)))


def found(finding: Finding) -> str:
    """A finding as people read it: its score and the signals that deviated most."""
    top = ", ".join(
        f"{d.signal} {d.direction} {abs(d.deviation):.0f}σ" for d in finding.signals[:3]
    )
    where = f": {top}" if top else f" ({finding.model_version})"
    return f"score {finding.score:.2f} since {finding.onset.isoformat()}{where}"


def _tick(track: Track, tick: Tick) -> Move:
    now = tick.now
    quiet_since = (track.quiet_since or now) if tick.quiet else None
    settled = quiet_since is not None and now - quiet_since >= timedelta(seconds=tick.stable_s)
    match track:
        case Diagnosing() if settled:
            passed = Outcome(
                OutcomeKind.ESCALATED,
                f"the anomaly passed before it could be diagnosed: {track.error}",
                now,
            )
            closed = settle(replace(track, quiet_since=quiet_since), passed)
            return Move(None, closed.before, (*closed.after, ExpirePending(now)))
        case Diagnosing():
            return Move(replace(track, quiet_since=quiet_since))
        case Watching() if settled and track.paged:
            plan = track.plan
            back = Resolution(
                track.incident_id,
                track.workload,
                now,
                f"recovered: quiet for {tick.stable_s:.0f} s since the escalation",
                plan.playbook if plan else None,
                str(plan.action) if plan else None,
                healed=False,
            )
            return Move(None, after=(ExpirePending(now), Resolve(back)))
        case Watching() if settled:
            return Move(None, after=(ExpirePending(now),))
        case Watching():
            return Move(replace(track, quiet_since=quiet_since))
        case Reconciling():
            reconciling = replace(track, quiet_since=quiet_since)
            return Move(reconciling, after=(Reconcile(reconciling),))
        case Verifying():
            at_baseline = tick.quiet and tick.at_baseline
            signals = (track.signals_quiet_since or now) if at_baseline else None
            overdue = now - track.acted_at > timedelta(seconds=track.plan.verify_within_s)
            moved = replace(track, quiet_since=quiet_since, signals_quiet_since=signals)
            return Move(moved, after=(Verify(moved, overdue),))
        case _:
            assert_never(track)


def _acted(track: Watching, acted: Acted) -> Move:
    plan, record, now = acted.plan, acted.record, acted.now
    said = Say(
        "action",
        now,
        f"{record.kind} {record.status}" + (f": {record.error}" if record.error else ""),
    )
    if record.status == ActionStatus.SUCCEEDED:
        to = Verifying(track.incident_id, track.workload, plan, now, track.story, track.quiet_since)
        hush = SilenceAlerts(now, now + timedelta(seconds=plan.verify_within_s))
        if plan.action is not ActionKind.SCALE or "hpa" not in plan.params:
            return Move(to, (said,), (hush,))
        finding = track.story.finding
        rate = finding.deviation(Signal.REQUEST_RATE) if finding else None
        before_rps = rate.baseline if rate is not None else None
        return Move(to, (said,), (hush, NoteFloor(plan, now, before_rps)))
    if record.status == ActionStatus.DRY_RUN:
        outcome = Outcome(
            OutcomeKind.ESCALATED,
            f"dry run: {plan.action} validated by the API server "
            "but not applied; a person must act",
            now,
        )
    elif record.status == ActionStatus.FAILED:
        outcome = Outcome(OutcomeKind.ESCALATED, f"{plan.action} failed: {record.error}", now)
    else:  # waiting for a person: still watched
        return Move(track, (said,))
    closed = settle(track, outcome)
    return Move(closed.to, (said, *closed.before), closed.after)


def _reconciled(track: Reconciling, landed: bool, now: datetime) -> Move:
    intent = track.intent
    if landed:
        record = ActionRecord(
            intent.kind, intent.target, intent.request, ActionStatus.SUCCEEDED, intent.started, now
        )
        said = Say("action", now, f"{record.kind} found applied after a restart")
        to: Track = Verifying(
            track.incident_id,
            track.workload,
            track.plan,
            intent.started,
            track.story,
            track.quiet_since,
        )
        deadline = intent.started + timedelta(seconds=track.plan.verify_within_s)
        hush = (SilenceAlerts(now, deadline),) if deadline > now else ()
        return Move(to, (RecordAction(record), said), hush)
    record = ActionRecord(
        intent.kind,
        intent.target,
        intent.request,
        ActionStatus.BLOCKED,  # nothing reached the cluster: no cooldown starts
        intent.started,
        now,
        error="never sent: the previous run stopped before sending it",
    )
    said = Say("action", now, f"{record.kind} was never sent; diagnosing again")
    to = Diagnosing(track.incident_id, track.workload, track.story, track.quiet_since)
    return Move(to, (RecordAction(record), said))


def _unexpected(track: Track, event: Event) -> UnexpectedEvent:
    stage = type(track).__name__.lower()
    return UnexpectedEvent(
        f"incident {track.incident_id} ({track.workload}): {stage} cannot take "
        f"{type(event).__name__}"
    )
