"""The cycle: metrics -> findings -> diagnoses -> plans -> actions -> outcomes, audited.

``Healer.cycle(now)`` is the whole loop once. It reads a Frame, updates the detector,
moves every open incident forward (verifying actions taken earlier) and opens
incidents for new findings. Each step is written to the audit store before the next one
starts. Time comes in as ``now``; the daemon never reads a clock, so the same code runs
in virtual time (tests, benchmarks) and in real time (the demo, a cluster).

An incident is one anomalous episode of one workload. While it is open, further
findings for that workload join it instead of opening new ones, so a workload that stays
anomalous is acted on once, not once per cycle. After its outcome, an incident is still
watched until the workload has been quiet for ``verify_stable_s``; only then can a new
incident open for that workload.

Remediation is verified against the playbook: healed once the rollout completed, the
workload is quiet and the playbook's ``verify.signals`` are back at their baseline
(less than ``BASELINE_SIGMA`` spreads on their harmful side) for ``verify_stable_s``;
not healed after its ``verify.within_s``, when the playbook's ``on_failure`` names the
next playbook to try (without its cooldown, with every other guard) or escalates.
Escalations go to the configured webhooks, through a queue delivered beside the cycle.

Nothing one workload brings stops the cycle: a ``HealerError`` is logged and retried next
cycle; any other exception is a bug, logged with its traceback, recorded on the incident
as an escalated outcome (with the action it was taking marked failed, so a restart has
nothing to reconcile) and counted (``incident_errors``). A cycle that fails as a whole
(the audit store down) is logged, counted (``cycle_failures``) and followed by the next.

An action is recorded as intended before its request is sent and as done after. A
restarted daemon that finds an intent without its end reads the cluster first: done
means verify it, not done means plan afresh; it is never sent twice blindly.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Protocol

import numpy as np
import structlog

from healer import decide
from healer.act.verify import verify
from healer.audit.roles import DaemonStore
from healer.audit.views import ActionView
from healer.collect.source import MetricsSource
from healer.config import Settings
from healer.decide import Playbook, find_playbook, handback
from healer.decide.escalation import Escalation, EscalationQueue, WebhookNotifier
from healer.decide.guards import brake, correlated
from healer.decide.playbooks import ESCALATE
from healer.detect.signals import POLARITY
from healer.detect.streaming import Detection
from healer.diagnose import surge
from healer.diagnose.features import FEATURES, features
from healer.diagnose.learned import Diagnose, LearnedDiagnoser, diagnoser
from healer.errors import (
    CollectError,
    HealerError,
    PermanentActionError,
    TransientActionError,
)
from healer.types import (
    ActionKind,
    ActionRecord,
    ActionStatus,
    Cause,
    Demand,
    Diagnosis,
    Finding,
    Frame,
    Incident,
    IncidentStatus,
    JsonObject,
    Mode,
    Outcome,
    OutcomeKind,
    Plan,
    Signal,
    WorkloadRef,
    WorkloadState,
)

log = structlog.get_logger("healer.daemon")

CLIMBING = 1.1
"""Requests count as still climbing when their trend carried over the surge lead time
adds more than a tenth: an HPA floor is not handed back then."""

BASELINE_SIGMA = 3.0
"""A verify signal counts as back at its baseline below this many learned spreads on its
harmful side: the size of ordinary noise, well under the deviations findings have."""


class Detector(Protocol):
    def update(self, frame: Frame) -> Detection: ...


class Actuator(Protocol):
    def read_state(self, workload: WorkloadRef) -> WorkloadState: ...

    def apply(self, plan: Plan, *, now: datetime) -> ActionRecord: ...

    def already_applied(self, intent: ActionRecord) -> bool: ...


class Notifier(Protocol):
    def notify(self, escalation: Escalation) -> list[str]: ...


class Stage(enum.Enum):
    DIAGNOSING = "diagnosing"
    """Found; the cluster could not be read yet to diagnose it (retried every cycle)."""
    VERIFYING = "verifying"
    """An action was taken; waiting for its outcome."""
    WATCHING = "watching"
    """Settled (or waiting for a person); waiting for the workload to be quiet again."""
    RECONCILING = "reconciling"
    """An action was intended by an earlier run, its end unknown: read the cluster first."""


@dataclass
class Tracked:
    incident_id: int
    workload: WorkloadRef
    stage: Stage
    plan: Plan | None = None
    acted_at: datetime | None = None
    quiet_since: datetime | None = None
    error: str | None = None
    diagnosis: Diagnosis | None = None
    finding: Finding | None = None
    intent: ActionRecord | None = None
    signals_quiet_since: datetime | None = None
    """Since when the playbook's verify signals have been at baseline."""


@dataclass(frozen=True)
class Step:
    """One line of the incident story, for people watching the daemon."""

    kind: str
    incident_id: int
    workload: WorkloadRef
    at: datetime
    text: str


Reporter = Callable[[Step], None]


@dataclass
class Healer:
    """The loop and the incidents it is tracking."""

    source: MetricsSource
    detector: Detector
    actuator: Actuator
    store: DaemonStore
    playbooks: Sequence[Playbook]
    settings: Settings
    report: Reporter = lambda step: None
    tracked: dict[WorkloadRef, Tracked] = field(default_factory=dict)
    last_cycle: datetime | None = None
    """When the last cycle with data ran."""
    last_attempt: datetime | None = None
    last_error: str | None = None
    """Why the last cycle had no data, if it had none."""
    cycles: int = 0
    notifier: Notifier | None = None
    """Where escalations go; built from ``settings.escalation`` when not given."""
    _brake_notified_onset: datetime | None = None
    """The onset of the last anomaly the brake held and notified: one escalation per
    event, however many workloads and cycles it holds."""
    _brake_onsets: dict[WorkloadRef, datetime] = field(default_factory=dict)
    """This cycle's anomalous workloads the brake counts, with their onsets; taken once
    per cycle, before any is handled, so that every workload of a cycle is judged alike."""
    _held: dict[WorkloadRef, datetime] = field(default_factory=dict)
    """Workloads the brake held, with the onset of the event it held them for."""
    _frame: Frame | None = None
    """This cycle's frame: an overload's scale-up is sized from the demand it measures."""
    _floor_notes: dict[str, handback.Floor] | None = None
    """The HPA floors raised and not yet handed back, read from the store once, then kept
    in step with it (a read every cycle would cost more than the rest of a small cycle)."""
    diagnose: Diagnose | None = None
    """Finding and context to a diagnosis; when not given, the learned diagnoser of
    ``settings.diagnosis_model`` (if any) with the rules behind it."""

    def __post_init__(self) -> None:
        if self.diagnose is None:
            path = self.settings.diagnosis_model
            self.diagnose = diagnoser(LearnedDiagnoser.load(path) if path else None)
        hooks = self.settings.escalation
        if self.notifier is None and (hooks.webhook_urls or hooks.slack_webhook_urls):
            self.notifier = EscalationQueue(WebhookNotifier(hooks), capacity=hooks.queue_size)

    findings: int = 0
    """Findings the detector reported, over all cycles."""
    cycle_seconds_sum: float = 0.0
    """Wall-clock seconds spent in cycles with data (for healer_cycle_seconds)."""
    last_cycle_s: float | None = None
    cycle_failures: int = 0
    """Cycles that ended in an exception (the store down, a bug), over all cycles."""
    incident_errors: int = 0
    """Unexpected exceptions (bugs) while handling one workload, each escalated."""

    def resume(self) -> int:
        """Pick up the incidents a previous run left unresolved; returns how many.

        An action already taken is verified, never taken again; an incident still to be
        diagnosed is diagnosed when its workload is next found anomalous. The workloads
        the anomaly brake held and still watched are held again (``_resume_held``), so a
        restart neither lets their event through nor escalates it twice. Call once,
        before the first cycle.
        """
        for incident in self.store.unresolved():
            acted = incident.action is not None and incident.action.status in (
                ActionStatus.SUCCEEDED,
            )
            intended = (
                incident.action is not None and incident.action.status is ActionStatus.INTENDED
            )
            if intended and incident.plan is not None:
                track = Tracked(
                    incident.id,
                    incident.workload,
                    Stage.RECONCILING,
                    plan=incident.plan,
                    intent=incident.action,
                )
            elif acted and incident.plan is not None and incident.action is not None:
                track = Tracked(
                    incident.id,
                    incident.workload,
                    Stage.VERIFYING,
                    plan=incident.plan,
                    acted_at=incident.action.started,
                )
            elif incident.diagnosis is None:
                track = Tracked(
                    incident.id,
                    incident.workload,
                    Stage.DIAGNOSING,
                    error="the previous run stopped before diagnosing it",
                )
            else:
                track = Tracked(incident.id, incident.workload, Stage.WATCHING)
            track.diagnosis, track.finding = incident.diagnosis, incident.finding
            self.tracked[incident.workload] = track
        self._resume_held()
        return len(self.tracked)

    def _resume_held(self) -> None:
        """Watch again the workloads whose latest incident the anomaly brake held and
        that were still anomalous within ``verify_stable_s`` of the store's latest step
        (a running daemon was still watching them), held at their finding's onset."""
        latest = self.store.latest_at()
        if latest is None:
            return
        watched_since = latest - timedelta(seconds=self.settings.daemon.verify_stable_s)
        seen: set[WorkloadRef] = set(self.tracked)
        for summary in self.store.list_incidents(status=IncidentStatus.RESOLVED, limit=500):
            if summary.workload in seen:
                continue  # only its latest incident tells whether it is held now
            seen.add(summary.workload)
            if summary.outcome != OutcomeKind.ESCALATED or summary.last_seen < watched_since:
                continue
            incident = self.store.incident(summary.id)
            if incident.outcome is None or "anomaly_brake" not in incident.outcome.evidence:
                continue
            track = Tracked(incident.id, incident.workload, Stage.WATCHING)
            track.diagnosis, track.finding = incident.diagnosis, incident.finding
            self.tracked[incident.workload] = track
            self._held[incident.workload] = incident.finding.onset
            last = self._brake_notified_onset
            if last is None or incident.finding.onset > last:
                self._brake_notified_onset = incident.finding.onset

    def cycle(self, now: datetime) -> Detection | None:
        """Run the loop once at simulated or real time ``now``; times it (wall clock)."""
        started = time.perf_counter()
        detection = self._cycle(now)
        if detection is not None:
            self.last_cycle_s = time.perf_counter() - started
            self.cycle_seconds_sum += self.last_cycle_s
        return detection

    def _cycle(self, now: datetime) -> Detection | None:
        self.last_attempt = now
        try:
            frame = self.source.fetch(until=now, window_s=self.settings.daemon.window_s)
        except CollectError as exc:
            log.warning("no_metrics", error=str(exc))  # never act on missing data
            self.last_error = str(exc)
            return None
        self.last_error = None
        self._frame = frame
        detection = self.detector.update(frame)
        self.cycles += 1
        self.last_cycle = now
        findings = {f.workload: f for f in detection.findings}
        self.findings += len(findings)
        self._brake_onsets = self._unhandled_onsets(detection)
        self._take_approved(detection, now)
        for tracked in list(self.tracked.values()):
            self._guarded(tracked.workload, self._progress, tracked, detection, frame_now=now)
        for workload, finding in findings.items():
            track = self.tracked.get(workload)
            if track is not None:
                self.store.record_finding(track.incident_id, finding)
                if track.stage == Stage.DIAGNOSING:
                    self._guarded(workload, self._diagnose, track, finding, detection, frame, now)
            else:
                self._guarded(workload, self._open, finding, detection, frame, now)
        surges = (
            surge.find_surges(frame, self.settings.surge) if self.settings.surge.enabled else []
        )
        for early in surges:
            if early.finding.workload not in self.tracked:
                workload = early.finding.workload
                self._guarded(workload, self._open_surge, early, detection, frame, now)
        self._hand_back_floors(frame, {s.finding.workload for s in surges}, now)
        return detection

    def _guarded(
        self, workload: WorkloadRef, fn: Callable[..., None], *args: object, **kwargs: object
    ) -> None:
        """One workload's trouble (an API error, a bad value) never stops the cycle."""
        try:
            fn(*args, **kwargs)
        except HealerError as exc:
            log.error("workload_step_failed", workload=str(workload), error=str(exc))
        except Exception as exc:  # a bug: escalate this incident, carry on with the rest
            self.incident_errors += 1
            log.exception("workload_step_crashed", workload=str(workload), error=repr(exc))
            self._escalate_crash(workload, exc)

    def _escalate_crash(self, workload: WorkloadRef, exc: Exception) -> None:
        """Close the workload's incident as escalated, naming the exception."""
        track = self.tracked.get(workload)
        if track is None or self.last_attempt is None:
            return  # it failed before an incident opened: the log is all there is
        reason = f"internal error while handling the incident: {type(exc).__name__}: {exc}"
        try:
            if self.store.incident(track.incident_id).outcome is not None:
                return  # settled already: an outcome is never overwritten
            self._close(track, Outcome(OutcomeKind.ESCALATED, reason, self.last_attempt))
        except Exception as again:  # the store down as well: the next cycle meets it again
            log.error("escalation_not_recorded", workload=str(workload), error=repr(again))

    # ---- a new incident ------------------------------------------------------------------

    def _open(self, finding: Finding, detection: Detection, frame: Frame, now: datetime) -> None:
        incident = self.store.open_incident(finding, frame=frame)
        track = Tracked(incident, finding.workload, Stage.DIAGNOSING)
        self.tracked[finding.workload] = track
        top = ", ".join(
            f"{d.signal} {d.direction} {abs(d.deviation):.0f}σ" for d in finding.signals[:3]
        )
        self._say("finding", track, now, f"score {finding.score:.2f}: {top}")
        self._diagnose(track, finding, detection, frame, now)

    def _open_surge(
        self, early: surge.Surge, detection: Detection, frame: Frame, now: datetime
    ) -> None:
        """A surge heading past capacity opens an overload incident before the detector
        reports; a surge the replicas absorb opens nothing."""
        state = self.actuator.read_state(early.finding.workload)
        lead_s = self.settings.surge.lead_s
        demand = surge.demand_of(frame, early.workload_index, state.replicas, lead_s)
        diagnosis = surge.diagnose(early, demand, state, self.settings.surge)
        if diagnosis is None:
            return
        finding = early.finding
        incident = self.store.open_incident(finding, frame=frame)
        track = Tracked(incident, finding.workload, Stage.WATCHING)
        self.tracked[finding.workload] = track
        top = ", ".join(
            f"{d.signal} {d.direction} {abs(d.deviation):.0f}σ" for d in finding.signals
        )
        self._say("finding", track, now, f"request surge: {top}")
        share = detection.anomalous_count / max(1, len(detection.workloads))
        self._record_diagnosis(track, diagnosis, finding, frame, state, share, now)
        self._say("diagnosis", track, now, f"{diagnosis.cause}: {diagnosis.explanation}")
        self._plan_and_act(track, diagnosis, finding, state, detection, now)

    def _diagnose(
        self, track: Tracked, finding: Finding, detection: Detection, frame: Frame, now: datetime
    ) -> None:
        """Diagnose and act; if the cluster cannot be read, the next cycle tries again."""
        try:
            state = self.actuator.read_state(finding.workload)
        except HealerError as exc:
            track.error = str(exc)
            raise
        share = detection.anomalous_count / max(1, len(detection.workloads))
        assert self.diagnose is not None  # set in __post_init__
        diagnosis = self.diagnose(finding, frame, state, share)
        track.stage = Stage.WATCHING
        self._record_diagnosis(track, diagnosis, finding, frame, state, share, now)
        self._say(
            "diagnosis",
            track,
            now,
            f"{diagnosis.cause} ({diagnosis.confidence:.0%}): {diagnosis.explanation}",
        )
        self._plan_and_act(track, diagnosis, finding, state, detection, now)

    def _record_diagnosis(
        self,
        track: Tracked,
        diagnosis: Diagnosis,
        finding: Finding,
        frame: Frame,
        state: WorkloadState,
        share: float,
        now: datetime,
    ) -> None:
        """Keep the diagnosis on the track and in the store, with the diagnoser's feature
        row, which operators' labels later turn into training data."""
        track.diagnosis, track.finding = diagnosis, finding
        row = features(finding, frame, state, share)
        self.store.record_diagnosis(
            track.incident_id,
            diagnosis,
            at=now,
            features=dict(zip(FEATURES, row.tolist(), strict=True)),
        )

    def _plan_and_act(
        self,
        track: Tracked,
        diagnosis: Diagnosis,
        finding: Finding,
        state: WorkloadState,
        detection: Detection,
        now: datetime,
        chain_to: Playbook | None = None,
    ) -> None:
        size, onset = self._event(finding, live=chain_to is not None)
        plan = self._plan(diagnosis, finding, state, detection, now, size, chain_to)
        held = brake(size, len(detection.workloads), self.settings.guards)
        if plan is None and not held.passed:  # part of a mass event all the same
            outcome = Outcome(OutcomeKind.ESCALATED, f"held by anomaly_brake: {held.detail}", now)
            self._close(track, outcome, notify=self._hold(finding.workload, onset))
            return
        if plan is None:
            self._close(
                track,
                Outcome(
                    OutcomeKind.ESCALATED,
                    f"no playbook handles {diagnosis.cause} at "
                    f"{diagnosis.confidence:.0%} confidence; a person "
                    "must look",
                    now,
                ),
            )
            return
        self.store.record_plan(track.incident_id, plan, at=now)
        if not plan.allowed:
            details = "; ".join(g.detail for g in plan.guard_results if not g.passed)
            self._say("plan", track, now, f"{plan.playbook}: {plan.action} blocked: {details}")
            notify = True
            if "anomaly_brake" in plan.blocked_by:  # one notification says it all
                notify = self._hold(finding.workload, onset)
            self._close(
                track,
                Outcome(
                    OutcomeKind.ESCALATED,
                    f"{plan.action} blocked by {', '.join(plan.blocked_by)}: {details}",
                    now,
                ),
                notify=notify,
            )
            return
        self._say(
            "plan", track, now, f"{plan.playbook}: {plan.action} {dict(plan.params)} ({plan.mode})"
        )
        self._act(track, plan, now)

    def _act(self, track: Tracked, plan: Plan, now: datetime) -> None:
        if plan.mode is not Mode.APPROVAL:  # written before the request, so never lost
            intent: JsonObject = {"action": plan.action.value, "params": dict(plan.params)}
            self.store.record_action(
                track.incident_id,
                ActionRecord(plan.action, plan.workload, intent, ActionStatus.INTENDED, now, now),
            )
        try:
            record = self.actuator.apply(plan, now=now)
        except HealerError:
            raise
        except Exception as exc:  # a bug: end the intent, so a restart has none to reconcile
            failed = f"internal error: {type(exc).__name__}: {exc}"
            intent = {"action": plan.action.value, "params": dict(plan.params)}
            record = ActionRecord(
                plan.action, plan.workload, intent, ActionStatus.FAILED, now, now, error=failed
            )
            self.store.record_action(track.incident_id, record)
            raise
        self.store.record_action(track.incident_id, record)
        self._say(
            "action",
            track,
            now,
            f"{record.kind} {record.status}" + (f": {record.error}" if record.error else ""),
        )
        if record.status == ActionStatus.SUCCEEDED:
            track.stage, track.plan, track.acted_at = Stage.VERIFYING, plan, now
            if plan.action is ActionKind.SCALE and "hpa" in plan.params:
                rate = track.finding.deviation(Signal.REQUEST_RATE) if track.finding else None
                before = rate.baseline if rate is not None else None
                self._save_floors(handback.noted(self._floors(), plan, now, before), now)
        elif record.status == ActionStatus.DRY_RUN:
            self._close(
                track,
                Outcome(
                    OutcomeKind.ESCALATED,
                    f"dry run: {plan.action} validated by the API server "
                    "but not applied; a person must act",
                    now,
                ),
            )
        elif record.status == ActionStatus.FAILED:
            self._close(
                track, Outcome(OutcomeKind.ESCALATED, f"{plan.action} failed: {record.error}", now)
            )

    # ---- open incidents --------------------------------------------------------------------

    def _progress(self, track: Tracked, detection: Detection, frame_now: datetime) -> None:
        now = frame_now
        # Quiet means fresh data at baseline: missing data is never taken for health.
        quiet = (
            track.workload not in {f.workload for f in detection.findings}
            and detection.observed(track.workload)
            and detection.score_of(track.workload) < self.settings.detector.score_threshold
        )
        track.quiet_since = (track.quiet_since or now) if quiet else None
        stable = timedelta(seconds=self.settings.daemon.verify_stable_s)
        settled = track.quiet_since is not None and now - track.quiet_since >= stable
        if track.stage == Stage.DIAGNOSING and settled:
            self._close(
                track,
                Outcome(
                    OutcomeKind.ESCALATED,
                    f"the anomaly passed before it could be diagnosed: {track.error}",
                    now,
                ),
            )
        if track.stage == Stage.WATCHING:
            if settled:
                del self.tracked[track.workload]
                self._expire_unreviewed(track, now)
            return
        if track.stage == Stage.RECONCILING:
            self._reconcile(track, now)
            return
        if track.stage == Stage.DIAGNOSING:
            return
        at_baseline = quiet and (track.plan is None or self._at_baseline(track, detection))
        track.signals_quiet_since = (track.signals_quiet_since or now) if at_baseline else None
        assert track.plan is not None and track.acted_at is not None
        overdue = now - track.acted_at > timedelta(seconds=track.plan.verify_within_s)
        try:
            state = self.actuator.read_state(track.workload)
        except PermanentActionError as exc:  # the workload is gone, or we may not read it
            self._close(track, Outcome(OutcomeKind.ESCALATED, f"cannot verify: {exc}", now))
            return
        except TransientActionError as exc:
            if overdue:
                self._close(
                    track,
                    Outcome(OutcomeKind.NOT_HEALED, f"could not be verified in time: {exc}", now),
                )
                return
            raise
        outcome = verify(
            state=state,
            acted_at=track.acted_at,
            quiet_since=track.signals_quiet_since,
            stable_s=self.settings.daemon.verify_stable_s,
            within_s=track.plan.verify_within_s,
            now=now,
        )
        if outcome is not None and outcome.kind is OutcomeKind.NOT_HEALED:
            self._next_in_chain(track, outcome, state, detection, now)
        elif outcome is not None:
            self._close(track, outcome)

    def _at_baseline(self, track: Tracked, detection: Detection) -> bool:
        """The playbook's verify signals are fresh and within BASELINE_SIGMA of baseline."""
        assert track.plan is not None
        try:
            signals = find_playbook(self.playbooks, track.plan.playbook).verify.signals
        except KeyError:  # the playbook is gone since the action: judge on the whole score
            signals = ()
        if not detection.observed(track.workload):
            return False
        w = detection.workloads.index(track.workload)
        if not signals:
            return detection.score_of(track.workload) < self.settings.detector.score_threshold
        for signal in signals:
            if signal not in detection.signals:
                return False
            deviation = float(detection.deviations[w, detection.signals.index(signal)])
            harm = POLARITY[signal] * deviation if POLARITY[signal] else abs(deviation)
            if not harm < BASELINE_SIGMA:  # NaN (no data) is not baseline either
                return False
        return True

    def _next_in_chain(
        self,
        track: Tracked,
        failed: Outcome,
        state: WorkloadState,
        detection: Detection,
        now: datetime,
    ) -> None:
        """Not healed: the playbook's ``on_failure`` playbook, or escalation."""
        assert track.plan is not None
        try:
            next_name = find_playbook(self.playbooks, track.plan.playbook).on_failure
        except KeyError:
            next_name = ESCALATE
        if next_name == ESCALATE or track.diagnosis is None or track.finding is None:
            self._close(track, failed)
            return
        self._say("verify", track, now, f"{failed.kind}: {failed.evidence}; next: {next_name}")
        track.stage, track.plan, track.acted_at = Stage.WATCHING, None, None
        track.signals_quiet_since = None
        chained = find_playbook(self.playbooks, next_name)
        self._plan_and_act(
            track, track.diagnosis, track.finding, state, detection, now, chain_to=chained
        )

    def _reconcile(self, track: Tracked, now: datetime) -> None:
        """An intent without an end, left by an earlier run: did it reach the cluster?"""
        assert track.intent is not None and track.plan is not None
        try:
            done = self.actuator.already_applied(track.intent)
        except PermanentActionError as exc:  # no read can tell: a person must look
            reason = f"cannot tell whether the {track.intent.kind} of an earlier run landed: {exc}"
            self._close(track, Outcome(OutcomeKind.ESCALATED, reason, now))
            return
        # A TransientActionError (the cluster unreadable) goes up: tried again next cycle.
        if done:
            record = ActionRecord(
                track.intent.kind,
                track.intent.target,
                track.intent.request,
                ActionStatus.SUCCEEDED,
                track.intent.started,
                now,
            )
            self.store.record_action(track.incident_id, record)
            self._say("action", track, now, f"{record.kind} found applied after a restart")
            track.stage, track.acted_at = Stage.VERIFYING, track.intent.started
            return
        record = ActionRecord(
            track.intent.kind,
            track.intent.target,
            track.intent.request,
            ActionStatus.BLOCKED,  # nothing reached the cluster: no cooldown starts
            track.intent.started,
            now,
            error="never sent: the previous run stopped before sending it",
        )
        self.store.record_action(track.incident_id, record)
        self._say("action", track, now, f"{record.kind} was never sent; diagnosing again")
        track.stage, track.plan, track.intent = Stage.DIAGNOSING, None, None

    def _expire_unreviewed(self, track: Tracked, now: datetime) -> None:
        """An action still awaiting approval once its workload has settled on its own is
        withdrawn: approving it later would act on a workload that no longer needs it."""
        quiet_s = self.settings.daemon.verify_stable_s
        outcome = Outcome(
            OutcomeKind.ESCALATED,
            f"the workload was quiet for {quiet_s:g} s before anyone reviewed the action "
            "awaiting approval; it expired and was not taken",
            now,
        )
        expired = self.store.expire_pending(track.incident_id, outcome)
        if expired is not None:
            self._say("outcome", track, now, f"{outcome.kind}: {outcome.evidence}")

    def _close(self, track: Tracked, outcome: Outcome, *, notify: bool = True) -> None:
        self.store.record_outcome(track.incident_id, outcome)
        self._say("outcome", track, outcome.at, f"{outcome.kind}: {outcome.evidence}")
        track.stage = Stage.WATCHING
        if notify and outcome.kind is not OutcomeKind.HEALED and self.notifier is not None:
            plan = track.plan
            self.notifier.notify(
                Escalation(
                    incident_id=track.incident_id,
                    workload=track.workload,
                    at=outcome.at,
                    reason=f"{outcome.kind}: {outcome.evidence}",
                    cause=str(track.diagnosis.cause) if track.diagnosis else None,
                    playbook=plan.playbook if plan else None,
                    action=str(plan.action) if plan else None,
                )
            )

    def _say(self, kind: str, track: Tracked, at: datetime, text: str) -> None:
        log.info(
            f"incident_{kind}",
            incident_id=track.incident_id,
            workload=str(track.workload),
            detail=text,
        )
        self.report(Step(kind, track.incident_id, track.workload, at, text))

    # ---- actions a person approved --------------------------------------------------------

    def _take_approved(self, detection: Detection, now: datetime) -> None:
        """Take each approved action; one that crashes (a bug) is blocked, so that it is
        never taken later, and its incident escalated."""
        for approved in self.store.approved_actions():
            workload = approved.workload
            try:
                self._take_one_approved(approved.incident_id, detection, now)
            except HealerError as exc:
                log.error("workload_step_failed", workload=str(workload), error=str(exc))
            except Exception as exc:  # a bug: block this approval, carry on with the rest
                self.incident_errors += 1
                log.exception("workload_step_crashed", workload=str(workload), error=repr(exc))
                self._block_crashed(approved, exc, now)

    def _block_crashed(self, approved: ActionView, exc: Exception, now: datetime) -> None:
        """Block the ``approved`` action whose taking crashed, unless it got an end
        meanwhile, and close its incident as escalated unless it is settled already."""
        why = f"internal error: {type(exc).__name__}: {exc}"
        incident_id, workload = approved.incident_id, approved.workload
        try:
            incident = self.store.incident(incident_id)
            track = self.tracked.get(workload)
            if track is None or track.incident_id != incident_id:
                track = Tracked(incident_id, workload, Stage.WATCHING)
            row = self.store.get_action(approved.id)
            still = row is not None and row.status is ActionStatus.APPROVED
            if still and incident.action is not None:
                blocked = replace(
                    incident.action,
                    status=ActionStatus.BLOCKED,
                    started=now,
                    finished=now,
                    error=why,
                )
                self.store.record_action(incident_id, blocked)
            if incident.outcome is None:
                self._close(track, Outcome(OutcomeKind.ESCALATED, f"approved, then {why}", now))
        except Exception as again:  # the store down as well: the next cycle meets it again
            log.error("escalation_not_recorded", workload=str(workload), error=repr(again))

    def _take_one_approved(self, incident_id: int, detection: Detection, now: datetime) -> None:
        """Plan again on the cluster as it is now, through the same guards; take the
        action if they pass (the person's approval stands for the approval mode), record
        it blocked and escalate if not. Recording it completes the approved action."""
        incident = self.store.incident(incident_id)
        if incident.diagnosis is None or incident.action is None:
            raise HealerError(f"incident {incident_id} has no diagnosis or action to take")
        track = self.tracked.get(incident.workload)
        if track is not None and track.incident_id != incident_id:
            why = f"incident {track.incident_id} is now open for {incident.workload}"
            self._block_approved(Tracked(incident_id, incident.workload, Stage.WATCHING), why, now)
            return
        if track is None:
            track = self.tracked[incident.workload] = Tracked(
                incident_id, incident.workload, Stage.WATCHING
            )
        track.diagnosis, track.finding = incident.diagnosis, incident.finding
        state = self.actuator.read_state(incident.workload)
        chain_to = self._approved_chain_step(incident)
        size, _ = self._event(incident.finding, live=True)
        diagnosis, finding = incident.diagnosis, incident.finding
        plan = self._plan(diagnosis, finding, state, detection, now, size, chain_to)
        if plan is not None and plan.mode == Mode.APPROVAL:
            plan = replace(plan, mode=Mode.AUTO)
        if plan is not None:
            self.store.record_plan(incident_id, plan, at=now)
        if plan is None or not plan.allowed:
            why = "no playbook matches any more" if plan is None else ", ".join(plan.blocked_by)
            self._block_approved(track, f"blocked by {why}", now, action=incident.action)
            return
        self._act(track, plan, now)

    def _approved_chain_step(self, incident: Incident) -> Playbook | None:
        """The approved plan's playbook when it continues an ``on_failure`` chain (an
        action of the incident was taken before it), so it is planned as the chain did."""
        detail = self.store.get_incident(incident.id)
        taken = detail is not None and any(
            a.status is ActionStatus.SUCCEEDED for a in detail.actions
        )
        if not taken or incident.plan is None:
            return None
        try:
            return find_playbook(self.playbooks, incident.plan.playbook)
        except KeyError:  # the playbook is gone since: plan afresh
            return None

    def _block_approved(
        self, track: Tracked, why: str, now: datetime, action: ActionRecord | None = None
    ) -> None:
        action = action or self.store.incident(track.incident_id).action
        assert action is not None  # an approved action has its pending record
        blocked = replace(action, status=ActionStatus.BLOCKED, started=now, finished=now, error=why)
        self.store.record_action(track.incident_id, blocked)
        self._close(track, Outcome(OutcomeKind.ESCALATED, f"approved, then {why}", now))

    def _plan(
        self,
        diagnosis: Diagnosis,
        finding: Finding,
        state: WorkloadState,
        detection: Detection,
        now: datetime,
        anomalous: int,
        chain_to: Playbook | None = None,
    ) -> Plan | None:
        """The planner with every guard, on the store's action history as of ``now``;
        ``anomalous`` is the size of the event the anomaly brake judges (``_event``)."""
        history = self.store.action_history(
            now=now, window_s=self.settings.guards.rate_limit_window_s
        )
        demand = self._demand(diagnosis, state)
        return decide.plan(
            diagnosis,
            finding,
            state,
            playbooks=self.playbooks,
            guards=self.settings.guards,
            history=history,
            anomalous_workloads=anomalous,
            watched_workloads=len(detection.workloads),
            now=now,
            chain_to=chain_to,
            demand=demand,
        )

    def _unhandled_onsets(self, detection: Detection) -> dict[WorkloadRef, datetime]:
        """The anomalous workloads the anomaly brake counts, with their onsets: those
        nobody has handled yet (no incident, or one still to diagnose), those the brake
        held, at the onset of the event it held them for, and those acted on and not yet
        verified, at their finding's onset (a mass event arriving in waves is one event,
        not one small event per wave). A workload awaiting approval, healed, or
        escalated for its own reasons has been handled and does not count."""
        self._held = {w: began for w, began in self._held.items() if w in self.tracked}
        # A workload anomalous for less than ``persistence_s`` is no finding yet, but
        # already part of its event: a shared cause reaches some workloads a scrape or
        # two before others, and the first to become a finding must see them.
        threshold = self.settings.detector.score_threshold
        hot = detection.fresh & (detection.scores >= threshold)
        began = {detection.workloads[w]: detection.at for w in np.flatnonzero(hot)}
        began |= {f.workload: f.onset for f in detection.findings}
        out = {}
        for workload, onset in began.items():
            track = self.tracked.get(workload)
            if workload in self._held:
                out[workload] = self._held[workload]
            elif track is None or track.stage is Stage.DIAGNOSING:
                out[workload] = onset
        for workload, track in self.tracked.items():
            acted = track.stage in (Stage.VERIFYING, Stage.RECONCILING)
            if acted and track.finding is not None:  # anomalous this cycle or not
                out.setdefault(workload, self._held.get(workload, track.finding.onset))
        return out

    def _event(self, finding: Finding, *, live: bool = False) -> tuple[int, datetime]:
        """The workloads of ``finding``'s event the anomaly brake counts (itself too),
        and the event's onset. ``live`` is for an action decided earlier (an approved
        one, a chain step): the largest event under way now, with the workload in it,
        so that a mass event that began since the incident holds that action too."""
        window_s = self.settings.guards.anomaly_brake_window_s
        onsets = {finding.onset, *self._brake_onsets.values()} if live else {finding.onset}
        sizes = {
            began: correlated(finding.workload, began, self._brake_onsets, window_s=window_s)
            for began in onsets
        }
        onset = max(sizes, key=lambda began: (sizes[began], began == finding.onset))
        return sizes[onset], onset

    def _hold(self, workload: WorkloadRef, onset: datetime) -> bool:
        """The brake held ``workload``'s action for the event that began at ``onset``:
        hold every workload of that event (they keep counting for its stragglers, and
        for nothing later). True when the event is new, so that its one escalation is
        sent."""
        window = timedelta(seconds=self.settings.guards.anomaly_brake_window_s)
        for held, began in {**self._brake_onsets, workload: onset}.items():
            if abs(began - onset) <= window:
                self._held.setdefault(held, began)
        last = self._brake_notified_onset
        if last is not None and abs(onset - last) <= window:
            return False
        self._brake_notified_onset = onset
        return True

    def _floors(self) -> dict[str, handback.Floor]:
        if self._floor_notes is None:
            self._floor_notes = handback.from_json(self.store.load_state(handback.FLOORS_KEY))
        return self._floor_notes

    def _save_floors(self, floors: dict[str, handback.Floor], now: datetime) -> None:
        self.store.save_state(handback.FLOORS_KEY, handback.to_json(floors), at=now)
        self._floor_notes = floors

    def _hand_back_floors(self, frame: Frame, surging: set[WorkloadRef], now: datetime) -> None:
        """Lower the HPA floors raised for overloads that have settled (decide.handback)."""
        floors = self._floors()
        hold_s = self.settings.surge.hand_back_after_s
        for key, floor in list(floors.items()):
            workload = floor.workload
            waited = (now - floor.at).total_seconds() >= hold_s
            if waited and workload not in self.tracked and workload not in surging:
                self._guarded(workload, self._hand_back, key, floor, frame, now)

    def _hand_back(self, key: str, floor: handback.Floor, frame: Frame, now: datetime) -> None:
        state = self.actuator.read_state(floor.workload)
        if handback.still_ours(floor, state):
            demand = None
            if floor.workload in frame.workloads:
                index = frame.workloads.index(floor.workload)
                demand = surge.demand_of(frame, index, state.replicas, self.settings.surge.lead_s)
            climbing = demand is not None and demand.projected_rps > CLIMBING * demand.rps
            hold_s = self.settings.surge.hand_back_after_s
            plan = handback.hand_back(
                floor,
                state,
                now=now,
                hold_s=hold_s,
                climbing=climbing,
                guards=self.settings.guards,
                rps=demand.rps if demand is not None else None,
            )
            if plan is None:
                return
            finding = Finding(floor.workload, now, 0.0, (), floor.at, handback.HAND_BACK)
            incident = self.store.open_incident(finding)
            self.store.record_plan(incident, plan, at=now)
            record = self.actuator.apply(plan, now=now)
            self.store.record_action(incident, record)
            log.info("hpa_floor_handed_back", workload=str(floor.workload), status=record.status)
            if record.status is not ActionStatus.SUCCEEDED:
                outcome = Outcome(OutcomeKind.ESCALATED, f"hand-back failed: {record.error}", now)
                self.store.record_outcome(incident, outcome)
                return
            self.store.record_outcome(incident, Outcome(OutcomeKind.HEALED, plan.reason, now))
        self._save_floors({k: f for k, f in self._floors().items() if k != key}, now)

    def _demand(self, diagnosis: Diagnosis, state: WorkloadState) -> Demand | None:
        """An overload's demand as this cycle's frame measures it, to size the scale-up."""
        frame = self._frame
        if diagnosis.cause is not Cause.OVERLOAD or frame is None:
            return None
        if state.workload not in frame.workloads:
            return None
        index = frame.workloads.index(state.workload)
        return surge.demand_of(frame, index, state.replicas, self.settings.surge.lead_s)

    def status(self) -> JsonObject:
        return {
            "findings": self.findings,
            "cycle_seconds_sum": self.cycle_seconds_sum,
            "last_cycle_seconds": self.last_cycle_s,
            "cycles": self.cycles,
            "last_cycle": self.last_cycle.isoformat() if self.last_cycle else None,
            "last_error": self.last_error,
            "cycle_failures": self.cycle_failures,
            "incident_errors": self.incident_errors,
            "escalations_dropped": (
                self.notifier.dropped if isinstance(self.notifier, EscalationQueue) else 0
            ),
            "mode": str(self.settings.guards.mode),
            "model_version": getattr(self.detector, "model_version", None),
            "tracked_incidents": len(self.tracked),
        }

    def readiness(self, now: datetime) -> list[str]:
        """Why the loop is not doing its job right now; empty when it is.

        Not ready: no cycle with data yet, the last one too long ago (three intervals:
        one slow cycle is not an outage), or the metrics could not be read last time.
        """
        reasons = []
        if self.last_error is not None:
            reasons.append(f"metrics unavailable: {self.last_error}")
        stale_s = 3 * self.settings.daemon.interval_s
        if self.last_cycle is None:
            reasons.append("no cycle with metrics yet")
        elif (now - self.last_cycle).total_seconds() > stale_s:
            age_s = (now - self.last_cycle).total_seconds()
            reasons.append(f"last cycle with metrics {age_s:.0f}s ago (more than {stale_s:.0f}s)")
        return reasons


class Leadership(Protocol):
    def leading_term(self, now: datetime) -> int | None:
        """Which spell of leadership this is, or None while not leading."""
        ...


def run_forever(
    healer: Healer,
    *,
    interval_s: float,
    stop: threading.Event,
    now: Callable[[], datetime],
    cycles: int | None = None,
    leadership: Leadership | None = None,
    on_lead: Callable[[], None] | None = None,
    poll_s: float = 1.0,
    backoff_max_s: float | None = None,
) -> None:
    """Run a cycle every ``interval_s`` seconds of ``now`` until ``stop`` is set.

    ``cycles`` bounds the number of cycles (``healer run --once`` is 1). A cycle that
    overruns its interval is followed at once by the next, never by a burst of them.
    A cycle in flight when ``stop`` is set finishes (each of its steps is recorded
    before the next starts); no new one begins.

    With ``leadership``, only the leader cycles; a follower checks every ``poll_s``
    whether it leads now, and ``on_lead`` runs each time it becomes the leader (to pick
    up the incidents the previous leader left in the shared store; also after losing the
    lease and winning it back, since another daemon may have acted meanwhile). After a cycle
    without metrics the wait doubles, up to ``backoff_max_s``; an error of the audit
    store or the cluster never ends the loop.
    """
    done = failures = 0
    term: int | None = None
    while not stop.is_set() and (cycles is None or done < cycles):
        started = now()
        if leadership is not None:
            current = leadership.leading_term(started)
            if current is None:
                stop.wait(poll_s)
                continue
            if current != term and on_lead is not None and not _taken_over(healer, on_lead):
                done += 1  # counted as a failed cycle: --once ends, the loop tries again
                if cycles is not None and done >= cycles:
                    return
                stop.wait(poll_s)
                continue
            term = current
        ok = cycle_once(healer, started)
        failures = 0 if ok else failures + 1
        done += 1
        if cycles is not None and done >= cycles:
            return
        wait_s = interval_s
        if failures and backoff_max_s is not None:
            wait_s = min(backoff_max_s, interval_s * 2 ** (failures - 1))
        spent_s = (now() - started).total_seconds()
        stop.wait(max(0.0, wait_s - spent_s))


def cycle_once(healer: Healer, now: datetime) -> bool:
    """One cycle; False when it had no metrics or failed (retried later), never raises.

    A ``HealerError`` (the audit store down, say) is logged; anything else is a bug and
    is logged with its traceback. Both are counted in ``healer.cycle_failures``.
    """
    try:
        return healer.cycle(now) is not None
    except HealerError as exc:
        healer.cycle_failures += 1
        log.error("cycle_failed", error=str(exc))
    except Exception as exc:
        healer.cycle_failures += 1
        log.exception("cycle_crashed", error=repr(exc))
    return False


def _taken_over(healer: Healer, on_lead: Callable[[], None]) -> bool:
    """Run ``on_lead``; False (logged, counted as a failed cycle) when it raised."""
    try:
        on_lead()
    except Exception as exc:
        healer.cycle_failures += 1
        log.exception("take_over_failed", error=repr(exc))
        return False
    return True
