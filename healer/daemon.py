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

The incident's stages and the one function that moves them live in ``healer.lifecycle``:
the cycle turns what it learns into an event (a tick, a diagnosis, an action's record,
an outcome), feeds it to ``transition`` and carries out the effects it returns
(``_move``). What is not the lifecycle's own is asked of its collaborators: the anomaly
brake's watch, the surge watch, the HPA floor keeper, approvals and verification (healed
once the rollout completed and the playbook's ``verify.signals`` are back at baseline
for ``verify_stable_s``; not healed after ``verify.within_s``, when the playbook's
``on_failure`` names the next playbook to try, or escalation). Escalations go to the
configured receivers, through a queue delivered beside the cycle, and so do healed
incidents, which close their pages. While an action is verified, the workload's alerts
are silenced in Alertmanager (``act.silences``, beside the cycle too); the silence is
expired when the incident has its outcome. Approved actions are
taken by ``approvals``, which asks the cycle to plan and act (``_Acting``) as it does
for any incident; what the cycle counts for status and readiness is kept in ``Vitals``.

Alertmanager's firing alerts are evidence beside the findings (``alert_watch``): an
alert on a workload joins its open incident or opens one, which only a playbook
matching the alert by name (``match.alerts``) acts on; an alert naming no workload, a
denied namespace or a workload the cluster does not have is recorded and never acted on.

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

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Protocol, assert_never, runtime_checkable

import structlog

from healer import decide
from healer.act.forges import ForgeReporter
from healer.act.silences import AlertmanagerSilences, SilenceKeeper
from healer.audit.roles import ActingLock, AlertInbox, DaemonStore, OptOuts, ReleaseLog, SilenceLog
from healer.collect.source import MetricsSource, PodSource
from healer.config import Settings
from healer.decide import Playbook, find_playbook
from healer.decide.escalation import (
    Escalation,
    EscalationQueue,
    Resolution,
    Resolver,
    WebhookNotifier,
)
from healer.decide.guards import brake
from healer.decide.handback import Floor
from healer.decide.policies import Governance, Policy, govern, governed
from healer.detect.streaming import Detection
from healer.diagnose import outliers as pod_outliers
from healer.diagnose import releases as release_names
from healer.diagnose import surge
from healer.diagnose.features import FEATURES, features
from healer.diagnose.learned import Diagnose, LearnedDiagnoser, diagnoser
from healer.errors import CollectError, HealerError, PermanentActionError, StoreError
from healer.lifecycle import alert_watch, approvals, surge_watch, verification
from healer.lifecycle.brake_share import BrakeShare
from healer.lifecycle.brake_watch import BrakeWatch
from healer.lifecycle.hpa_floors import FloorKeeper
from healer.lifecycle.node_watch import NodeCluster, NodeDeps, NodeSource, NodeWatch
from healer.lifecycle.stages import Diagnosing, Story, Track, Verifying, Watching, resumed
from healer.lifecycle.transition import (
    Acted,
    Chained,
    Diagnosed,
    Effect,
    Event,
    ExpirePending,
    ExpireSilences,
    NotDiagnosed,
    NoteFloor,
    Notify,
    Reconcile,
    RecordAction,
    RecordOutcome,
    RecordRollout,
    Resolve,
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
    Alert,
    AlertDisposition,
    Cause,
    Diagnosis,
    Finding,
    Frame,
    JsonObject,
    Mode,
    Outcome,
    OutcomeKind,
    Plan,
    Release,
    SignalDeviation,
    TargetKind,
    WorkloadRef,
    WorkloadState,
    node_ref,
)
from healer.vitals import Vitals

log = structlog.get_logger("healer.daemon")


class Detector(Protocol):
    def update(self, frame: Frame) -> Detection: ...


class Actuator(Protocol):
    def read_state(self, workload: WorkloadRef) -> WorkloadState: ...

    def apply(self, plan: Plan, *, now: datetime) -> ActionRecord: ...

    def already_applied(self, intent: ActionRecord) -> bool: ...


class Policies(Protocol):
    """The policy objects as last watched (``lifecycle.policy_watch.PolicyBook``)."""

    def current(self) -> Sequence[Policy]: ...


@runtime_checkable
class MergeWatch(Protocol):
    """An actuator that learns of approvals given in a forge (``GitOpsActuator``)."""

    def watch_merges(self, now: datetime) -> int: ...


class Notifier(Protocol):
    def notify(self, escalation: Escalation) -> list[str]: ...


class Silencer(Protocol):
    """Silences of a workload's alerts while healer verifies an action (``SilenceKeeper``)."""

    def silence(
        self, incident_id: int, workload: WorkloadRef, *, starts: datetime, ends: datetime
    ) -> None: ...

    def expire(self, incident_id: int, *, at: datetime, why: str) -> None: ...


@dataclass(frozen=True)
class Step:
    """One line of the incident story, for people watching the daemon."""

    kind: str
    incident_id: int
    workload: WorkloadRef
    at: datetime
    text: str


Reporter = Callable[[Step], None]


@dataclass(frozen=True)
class Reading:
    """What one cycle read: its time, its frame and what the detector made of it."""

    now: datetime
    frame: Frame
    detection: Detection
    outliers: Mapping[WorkloadRef, pod_outliers.PodOutlier] = field(default_factory=dict)
    """The workloads about to be diagnosed that have one pod standing out, and it."""


@dataclass
class Healer:
    """The cycle: feeds each incident's events to ``transition`` and carries out the
    effects, with the lifecycle's collaborators for what is not the lifecycle's own."""

    source: MetricsSource
    detector: Detector
    actuator: Actuator
    store: DaemonStore
    playbooks: Sequence[Playbook]
    settings: Settings
    report: Reporter = lambda step: None
    tracked: dict[WorkloadRef, Track] = field(default_factory=dict)
    vitals: Vitals = field(default_factory=Vitals)
    """Cycles, findings and failures counted, for status and readiness."""
    notifier: Notifier | None = None
    """Where escalations go; built from ``settings.escalation`` when not given."""
    diagnose: Diagnose | None = None
    """Finding and context to a diagnosis; when not given, the learned diagnoser of
    ``settings.diagnosis_model`` (if any) with the rules behind it."""
    brake: BrakeWatch = field(default_factory=BrakeWatch)
    """What the anomaly brake counts and holds, across cycles."""
    floors: FloorKeeper = field(default_factory=FloorKeeper)
    """The HPA floors raised and not yet handed back."""
    alerts: AlertInbox | None = None
    """Where Alertmanager's alerts are read; the store itself when it keeps them."""
    alert_names: dict[WorkloadRef, frozenset[str]] = field(default_factory=dict)
    """The alerts taken as evidence on each watched workload, for ``match.alerts``."""
    silences: Silencer | None = None
    """Where the alerts of a workload acted on are silenced; built from
    ``settings.alertmanager.url`` when not given (none set: no silences)."""
    pods: PodSource | None = None
    """Where per-pod values are read for the workloads being diagnosed; the metrics
    source itself when it has them. None: diagnosis from workload signals alone."""
    nodes: NodeWatch | None = None
    """The node watch (``lifecycle.node_watch``): on when ``nodes.enabled``, the source
    reads nodes and the actuator lists their pods; what it kept is loaded on resume."""
    releases: ReleaseLog | None = None
    """Where release events are read, to name the pipeline behind a bad release; the
    store itself when it keeps them."""
    reporter: ForgeReporter | None = None
    """Where a rolled-back release is reported (GitHub, GitLab); built when
    ``releases.github_token`` or ``releases.gitlab_token`` is set."""
    blamed: dict[WorkloadRef, Release] = field(default_factory=dict)
    """The release each bad-release diagnosis named, until its rollback is reported."""
    watching: tuple[WorkloadRef, ...] | None = None
    """The workloads of the last frame read, as the frame holds them (no copy each
    cycle); None before the first. The API asks it whether a release's workload is
    known, once per release."""
    policies: Policies | None = None
    """HealingPolicy and ClusterHealingPolicy objects, watched beside the cycle; read
    when a plan is made, so a change applies from the next cycle. None: settings alone."""
    routes: dict[WorkloadRef, tuple[str, ...]] = field(default_factory=dict)
    """The receivers each tracked workload's policies named at its last plan."""
    brake_share: BrakeShare | None = None
    """With shards: the anomaly brake's counts exchanged with the other replicas through
    the store (``lifecycle.brake_share``), so the brake judges the whole cluster."""
    scope: Callable[[str], bool] | None = None
    """Whether this daemon handles a namespace's workloads now (a shard replica, see
    ``healer.sharding``; cluster-scoped objects have the empty namespace); None: all.
    Incidents, approvals and alerts of other namespaces are left to their shard."""

    def __post_init__(self) -> None:
        if self.diagnose is None:
            path = self.settings.diagnosis_model
            self.diagnose = diagnoser(LearnedDiagnoser.load(path) if path else None)
        if self.pods is None and isinstance(self.source, PodSource):
            self.pods = self.source
        if self.alerts is None and isinstance(self.store, AlertInbox):
            self.alerts = self.store
        hooks, api = self.settings.escalation, self.settings.api
        if self.notifier is None and hooks.receivers:
            notifier = WebhookNotifier(hooks, api=api)
            self.notifier = EscalationQueue(notifier, capacity=hooks.queue_size)
        manager = self.settings.alertmanager
        if self.silences is None and manager.url and isinstance(self.store, SilenceLog):
            self.silences = SilenceKeeper(
                AlertmanagerSilences(manager),
                self.store,
                capacity=manager.silence_queue_size,
                link=api.incident_link,
            )
        if self.nodes is None and self._node_edges() is not None:
            self.nodes = NodeWatch()
        if self.releases is None and isinstance(self.store, ReleaseLog):
            self.releases = self.store
        forges = self.settings.releases
        if self.reporter is None and (forges.github_token or forges.gitlab_token):
            self.reporter = ForgeReporter(forges, link=api.incident_link)

    def resume(self) -> int:
        """Pick up the incidents a previous run left unresolved; returns how many.

        An action already taken is verified, never taken again; an incident still to be
        diagnosed is diagnosed when its workload is next found anomalous (``resumed``).
        The workloads the anomaly brake held and still watched are held again
        (``_resume_held``), so a restart neither lets their event through nor escalates
        it twice. Call once, before the first cycle.
        """
        if self.nodes is not None:
            self.nodes = NodeWatch.load(self.store)
        for incident in self.store.unresolved():
            if incident.workload.kind == TargetKind.NODE.value:
                continue  # the node watch's, picked up from what it kept
            if not self._owns(incident.workload.namespace):
                continue  # another shard's
            self.tracked[incident.workload] = resumed(incident)
            self._resume_alerts(incident.id, incident.workload)
        self._resume_held()
        return len(self.tracked)

    def _resume_alerts(self, incident_id: int, workload: WorkloadRef) -> None:
        """The alerts joined to the incident are its evidence again: an action of it
        awaiting approval is planned anew, and must match the same playbook."""
        if self.alerts is None:
            return
        names = frozenset(a.alert.name for a in self.alerts.alerts_of(incident_id))
        if names:
            self.alert_names[workload] = names

    def _resume_held(self) -> None:
        """Watch again the workloads the anomaly brake held before the restart."""
        stable_s = self.settings.daemon.verify_stable_s
        for track in self.brake.resume(self.store, set(self.tracked), stable_s=stable_s):
            if self._owns(track.workload.namespace):
                self.tracked[track.workload] = track

    def _share_brake(self, watched: int, now: datetime) -> None:
        """Exchange the brake's counts with the other shards; a store error is logged
        and the brake judges this shard's share alone this cycle."""
        if self.brake_share is None:
            return
        try:
            self.brake_share.exchange(self.brake, watched=watched, now=now)
        except StoreError as exc:
            self.brake_share.peer_watched = 0
            log.warning("brake_share_failed", error=str(exc))

    def _watched(self, detection: Detection) -> int:
        """Workloads the brake's share is of: this shard's, and the others' it read."""
        peers = self.brake_share.peer_watched if self.brake_share is not None else 0
        return len(detection.workloads) + peers

    def _owns(self, namespace: str) -> bool:
        return self.scope is None or self.scope(namespace)

    def cycle(self, now: datetime) -> Detection | None:
        """Run the loop once at simulated or real time ``now``; times it (wall clock)."""
        started = time.perf_counter()
        detection = self._cycle(now)
        if detection is not None:
            self.vitals.timed(time.perf_counter() - started)
        return detection

    def _cycle(self, now: datetime) -> Detection | None:
        self.vitals.last_attempt = now
        try:
            frame = self.source.fetch(until=now, window_s=self.settings.daemon.window_s)
        except CollectError as exc:
            log.warning("no_metrics", error=str(exc))  # never act on missing data
            self.vitals.last_error = str(exc)
            return None
        self.vitals.last_error = None
        detection = self.detector.update(frame)
        self.watching = frame.workloads
        findings = {f.workload: f for f in detection.findings}
        reading = Reading(now, frame, detection, self._outliers(findings, now))
        self.vitals.read(now, len(findings))
        self.brake.take(detection, self.tracked, self.settings)
        self._share_brake(len(detection.workloads), now)
        self._watch_nodes(now, frozenset(findings))  # first: what fails on a bad node is its
        self._watch_merges(now)
        self.vitals.incident_errors += approvals.take_approved(
            store=self.store,
            playbooks=self.playbooks,
            cycle=_Acting(self, reading),
            now=now,
            owns=self._owns,
        )
        for tracked in list(self.tracked.values()):
            self._guarded(tracked.workload, self._progress, tracked, reading)
        for gone in self.alert_names.keys() - self.tracked.keys():
            del self.alert_names[gone]
        for gone in self.routes.keys() - self.tracked.keys():
            del self.routes[gone]
        for workload, finding in findings.items():
            track = self.tracked.get(workload)
            if track is not None:
                self.store.record_finding(track.incident_id, finding)
                if isinstance(track, Diagnosing):
                    self._guarded(workload, self._diagnose, track, finding, reading)
            else:
                self._guarded(workload, self._open, finding, reading)
        self._take_alerts(reading)
        surges = surge_watch.surges(frame, self.settings.surge)
        for early in surges:
            if early.finding.workload not in self.tracked:
                self._guarded(early.finding.workload, self._open_surge, early, reading)
        busy = set(self.tracked) | {s.finding.workload for s in surges}
        for key, floor in self.floors.due(now, self.settings, busy=busy, store=self.store):
            self._guarded(floor.workload, self._hand_back, key, floor, frame, now)
        return detection

    def _watch_merges(self, now: datetime) -> None:
        """Pull requests merged in the forge count as approvals, taken this cycle."""
        if not isinstance(self.actuator, MergeWatch):
            return
        try:
            self.actuator.watch_merges(now)
        except HealerError as exc:  # the store or the forge: asked again next cycle
            log.error("merge_watch_failed", error=str(exc))

    def _outliers(
        self, findings: Mapping[WorkloadRef, Finding], now: datetime
    ) -> Mapping[WorkloadRef, pod_outliers.PodOutlier]:
        """One pod against its siblings, for the workloads this cycle diagnoses: those
        newly anomalous and those still waiting for a diagnosis. Their pods only, so
        the cost follows what is anomalous, not the cluster's size; unreadable pods
        leave the diagnosis to the workload's signals, and so does a bug in reading or
        judging them (logged and counted): the view only sharpens a diagnosis, so its
        failure must never cost the cycle the workloads' own."""
        wanted = [
            w for w in findings if w not in self.tracked or isinstance(self.tracked[w], Diagnosing)
        ]
        if self.pods is None or not wanted:
            return {}
        try:
            return pod_outliers.find(self.pods.fetch_pods(until=now, workloads=wanted))
        except CollectError as exc:
            log.warning("no_pod_metrics", error=str(exc), workloads=len(wanted))
        except Exception as exc:  # a bug: logged and counted, the cycle goes on without it
            self.vitals.incident_errors += 1
            log.exception("pod_view_crashed", error=repr(exc), workloads=len(wanted))
        return {}

    # ---- nodes ---------------------------------------------------------------------------

    def _node_edges(self) -> tuple[NodeSource, NodeCluster] | None:
        """The source and actuator as the node watch uses them, when both can."""
        source, cluster = self.source, self.actuator
        if not self.settings.nodes.enabled:
            return None
        if isinstance(source, NodeSource) and isinstance(cluster, NodeCluster):
            return source, cluster
        return None

    def _watch_nodes(self, now: datetime, anomalous: frozenset[WorkloadRef]) -> None:
        """One step of the node watch; its trouble is logged and never stops the cycle."""
        edges = self._node_edges()
        if self.nodes is None or edges is None or not self._owns(""):
            return
        source, cluster = edges
        deps = NodeDeps(
            store=self.store,
            cluster=cluster,
            settings=self.settings,
            say=self._say_node,
            escalate=self._escalate_node,
            resolve=self._resolve_node,
        )
        try:
            self.nodes.step(source.nodes(until=now), now, deps=deps, anomalous=anomalous)
        except CollectError as exc:
            log.warning("no_node_metrics", error=str(exc))  # never act on missing data
        except HealerError as exc:
            log.error("node_step_failed", error=str(exc))
        except Exception as exc:  # a bug: logged and counted, the next cycle tries again
            self.vitals.incident_errors += 1
            log.exception("node_step_crashed", error=repr(exc))

    def _say_node(self, kind: str, incident_id: int, node: str, at: datetime, text: str) -> None:
        ref = node_ref(node)
        log.info(f"incident_{kind}", incident_id=incident_id, workload=str(ref), detail=text)
        self.report(Step(kind, incident_id, ref, at, text))

    def _escalate_node(self, escalation: Escalation) -> None:
        if self.notifier is not None:
            self.notifier.notify(self._tried(escalation))

    def _resolve_node(self, resolution: Resolution) -> None:
        if isinstance(self.notifier, Resolver):
            self.notifier.resolve(resolution)

    def _guarded(
        self, workload: WorkloadRef, fn: Callable[..., None], *args: object, **kwargs: object
    ) -> None:
        """One workload's trouble (an API error, a bad value) never stops the cycle."""
        try:
            fn(*args, **kwargs)
        except HealerError as exc:
            log.error("workload_step_failed", workload=str(workload), error=str(exc))
        except Exception as exc:  # a bug: escalate this incident, carry on with the rest
            self.vitals.incident_errors += 1
            log.exception("workload_step_crashed", workload=str(workload), error=repr(exc))
            self._escalate_crash(workload, exc)

    def _escalate_crash(self, workload: WorkloadRef, exc: Exception) -> None:
        """Close the workload's incident as escalated, naming the exception."""
        track = self.tracked.get(workload)
        if track is None or self.vitals.last_attempt is None:
            return  # it failed before an incident opened: the log is all there is
        reason = f"internal error while handling the incident: {type(exc).__name__}: {exc}"
        try:
            if self.store.incident(track.incident_id).outcome is not None:
                return  # settled already: an outcome is never overwritten
            self._move(
                track, Settled(Outcome(OutcomeKind.ESCALATED, reason, self.vitals.last_attempt))
            )
        except Exception as again:  # the store down as well: the next cycle meets it again
            log.error("escalation_not_recorded", workload=str(workload), error=repr(again))

    # ---- moving an incident ------------------------------------------------------------------

    def _move(self, track: Track, event: Event, reading: Reading | None = None) -> Track:
        """Feed ``event`` to ``transition`` and carry out its effects; the incident's
        stage after it (``track`` itself once it is no longer watched). Only the watched
        incident of the workload is kept: a stand-in for another one (an approval of an
        older incident) is settled, never watched."""
        move = transition(track, event)
        self._carry_out(track, move.before, reading)
        current = self.tracked.get(track.workload)
        if current is not None and current.incident_id == track.incident_id:
            if move.to is None:
                del self.tracked[track.workload]
            else:
                self.tracked[track.workload] = move.to
        after = move.to if move.to is not None else track
        self._carry_out(after, move.after, reading)
        return after

    def _carry_out(self, track: Track, effects: Sequence[Effect], reading: Reading | None) -> None:
        for effect in effects:
            match effect:
                case RecordOutcome(outcome=outcome):
                    frame = reading.frame if reading is not None else None
                    self.store.record_outcome(track.incident_id, outcome, frame=frame)
                case RecordAction(record=record):
                    self.store.record_action(track.incident_id, record)
                case Say(kind=kind, at=at, text=text):
                    self._say(kind, track, at, text)
                case Notify(escalation=escalation):
                    if self.notifier is not None:
                        routed = replace(escalation, receivers=self._routes(track.workload))
                        self.notifier.notify(self._tried(routed))
                case Resolve(resolution=resolution):
                    if isinstance(self.notifier, Resolver):
                        routed = replace(resolution, receivers=self._routes(track.workload))
                        self.notifier.resolve(routed)
                case SilenceAlerts(starts=starts, ends=ends):
                    if self.silences is not None:
                        self.silences.silence(
                            track.incident_id, track.workload, starts=starts, ends=ends
                        )
                case ExpireSilences(at=at, why=why):
                    if self.silences is not None:
                        self.silences.expire(track.incident_id, at=at, why=why)
                case ExpirePending(at=at):
                    quiet_s = self.settings.daemon.verify_stable_s
                    expired = approvals.expire(track.incident_id, at, quiet_s, store=self.store)
                    if expired is not None:
                        self._say("outcome", track, at, f"{expired.kind}: {expired.evidence}")
                case NoteFloor(plan=plan, at=at, baseline_rps=rps):
                    self.floors.note(plan, at, rps, store=self.store)
                case RecordRollout(at=at, detail=detail):
                    self.store.record_rollout(track.incident_id, at=at, detail=detail)
                case Verify(track=verifying, overdue=overdue):
                    assert reading is not None, "verifying needs the cycle's reading"
                    self._verify(verifying, overdue, reading)
                case Reconcile(track=reconciling):
                    assert reading is not None, "reconciling needs the cycle's reading"
                    event = verification.reconcile(
                        reconciling, now=reading.now, cluster=self.actuator
                    )
                    self._move(reconciling, event, reading)
                case _:
                    assert_never(effect)

    def _tried(self, escalation: Escalation) -> Escalation:
        """The escalation with every action taken on its incident, for its story. A
        store that cannot be read now costs the story its actions, never the page."""
        try:
            detail = self.store.get_incident(escalation.incident_id)
        except StoreError as exc:
            log.warning(
                "escalation_story_unread", incident_id=escalation.incident_id, error=str(exc)
            )
            return escalation
        if detail is None:
            return escalation
        tried = tuple(
            f"{a.kind} {a.status}" + (f": {a.error}" if a.error else "") for a in detail.actions
        )
        return replace(escalation, tried=tried)

    # ---- a new incident ------------------------------------------------------------------

    def _open(self, finding: Finding, reading: Reading) -> None:
        incident = self.store.open_incident(finding, frame=reading.frame)
        track = Diagnosing(incident, finding.workload)
        self.tracked[finding.workload] = track
        top = _deviations(finding.signals[:3])
        self._say("finding", track, reading.now, f"score {finding.score:.2f}: {top}")
        self._diagnose(track, finding, reading)

    def _open_surge(self, early: surge.Surge, reading: Reading) -> None:
        """A surge heading past capacity opens an overload incident before the detector
        reports; a surge the replicas absorb opens nothing."""
        judged = surge_watch.judge(early, reading.frame, self.settings.surge, cluster=self.actuator)
        if judged is None:
            return
        diagnosis, state = judged
        finding, now = early.finding, reading.now
        incident = self.store.open_incident(finding, frame=reading.frame)
        track = Watching(incident, finding.workload, Story(finding, diagnosis))
        self.tracked[finding.workload] = track
        self._say("finding", track, now, f"request surge: {_deviations(finding.signals)}")
        self._record_diagnosis(track, diagnosis, finding, state, reading)
        self._say("diagnosis", track, now, f"{diagnosis.cause}: {diagnosis.explanation}")
        self._plan_and_act(track, diagnosis, finding, state, reading)

    def _diagnose(self, track: Diagnosing, finding: Finding, reading: Reading) -> None:
        """Diagnose and act; if the cluster cannot be read, the next cycle tries again."""
        try:
            state = self.actuator.read_state(finding.workload)
        except HealerError as exc:
            self._move(track, NotDiagnosed(str(exc)))
            raise
        assert self.diagnose is not None  # set in __post_init__
        share = self._share(reading.detection)
        outlier = reading.outliers.get(finding.workload)
        diagnosis = pod_outliers.outlier_diagnosis(finding, state, outlier) or self.diagnose(
            finding, reading.frame, state, share
        )
        diagnosis = self._name_release(diagnosis, state, reading.now)
        if self._on_bad_node(track, finding, diagnosis, state, reading):
            return
        watching = self._move(track, Diagnosed(Story(finding, diagnosis)))
        self._record_diagnosis(watching, diagnosis, finding, state, reading)
        self._say(
            "diagnosis",
            watching,
            reading.now,
            f"{diagnosis.cause} ({diagnosis.confidence:.0%}): {diagnosis.explanation}",
        )
        self._plan_and_act(watching, diagnosis, finding, state, reading)

    def _on_bad_node(
        self,
        track: Diagnosing,
        finding: Finding,
        diagnosis: Diagnosis,
        state: WorkloadState,
        reading: Reading,
    ) -> bool:
        """A workload whose pods fail on a bad node is the node's to heal: its incident
        records why and closes without an action of its own, and without a page (the
        node's incident pages if it must). True when it was."""
        node = self.nodes.blame(finding.workload) if self.nodes is not None else None
        if node is None:
            return False
        blame = f"its pods fail on a bad node: {node.explanation}"
        held = replace(diagnosis, cause=node.cause, explanation=blame)
        watching = self._move(track, Diagnosed(Story(finding, held)))
        self._record_diagnosis(watching, held, finding, state, reading)
        self._say("diagnosis", watching, reading.now, f"{node.cause}: {blame}")
        why = "left to the node's incident: healer cordons and drains the node, not the workload"
        self._move(
            watching, Settled(Outcome(OutcomeKind.ESCALATED, why, reading.now), notify=False)
        )
        return True

    def _name_release(self, diagnosis: Diagnosis, state: WorkloadState, now: datetime) -> Diagnosis:
        """A bad release's diagnosis with the pipeline that shipped it, when one told us.
        A store that cannot answer costs the name, never the diagnosis."""
        current = state.current_revision
        if self.releases is None or current is None or diagnosis.cause is not Cause.BAD_RELEASE:
            return diagnosis
        since = current.created - release_names.MATCH_WINDOW
        try:
            stored = self.releases.releases_of(state.workload, since=since, until=now)
        except StoreError as exc:
            log.warning("releases_unread", workload=str(state.workload), error=str(exc))
            return diagnosis
        found = release_names.matching(current, [s.release for s in stored])
        if found is None:
            return diagnosis
        self.blamed[state.workload] = found
        return release_names.with_release(diagnosis, state, [found])

    @staticmethod
    def _share(detection: Detection) -> float:
        return detection.anomalous_count / max(1, len(detection.workloads))

    def _record_diagnosis(
        self,
        track: Track,
        diagnosis: Diagnosis,
        finding: Finding,
        state: WorkloadState,
        reading: Reading,
    ) -> None:
        """Store the diagnosis with the diagnoser's feature row, which operators' labels
        later turn into training data."""
        row = features(finding, reading.frame, state, self._share(reading.detection))
        named = dict(zip(FEATURES, row.tolist(), strict=True))
        self.store.record_diagnosis(track.incident_id, diagnosis, at=reading.now, features=named)

    def _plan_and_act(
        self,
        track: Track,
        diagnosis: Diagnosis,
        finding: Finding,
        state: WorkloadState,
        reading: Reading,
        chain_to: Playbook | None = None,
    ) -> None:
        with self._acting():
            now = reading.now
            size, onset = self.brake.event(finding, self.settings, live=chain_to is not None)
            silenced = self._silenced(finding.workload, now)
            plan = self._plan(diagnosis, finding, state, reading, size, chain_to, silenced)
            if plan is None:
                settled = self._unplanned(diagnosis, finding, reading, size, onset)
                self._move(track, replace(settled, notify=False) if silenced else settled)
                return
            self.store.record_plan(track.incident_id, plan, at=now)
            if not plan.allowed:
                self._blocked(track, plan, onset, paged=silenced is None, now=now)
                return
            self._say(
                "plan",
                track,
                now,
                f"{plan.playbook}: {plan.action} {dict(plan.params)} ({plan.mode})",
            )
            self._act(track, plan, now)

    def _blocked(
        self, track: Track, plan: Plan, onset: datetime, *, paged: bool, now: datetime
    ) -> None:
        """A guard blocked ``plan``: escalated, paging people unless they silenced the
        workload's alerts (``paged`` False), and once only for a mass event."""
        details = "; ".join(g.detail for g in plan.guard_results if not g.passed)
        self._say("plan", track, now, f"{plan.playbook}: {plan.action} blocked: {details}")
        notify = paged
        if "anomaly_brake" in plan.blocked_by:  # one notification says it all
            notify = self.brake.hold(plan.workload, onset, self.settings) and notify
        why = f"{plan.action} blocked by {', '.join(plan.blocked_by)}: {details}"
        self._move(track, Settled(Outcome(OutcomeKind.ESCALATED, why, now), notify=notify))

    def _acting(self) -> AbstractContextManager[object]:
        """The cluster's acting lock when the store has one (``audit.acting``): shards
        plan on the shared budget and act one at a time."""
        return self.store.acting() if isinstance(self.store, ActingLock) else nullcontext()

    def _unplanned(
        self, diagnosis: Diagnosis, finding: Finding, reading: Reading, size: int, onset: datetime
    ) -> Settled:
        """No playbook handles the diagnosis: escalated, or held by the anomaly brake
        when the workload is part of a mass event all the same."""
        now = reading.now
        held = brake(size, self._watched(reading.detection), self.settings.guards)
        if not held.passed:
            outcome = Outcome(OutcomeKind.ESCALATED, f"held by anomaly_brake: {held.detail}", now)
            return Settled(outcome, notify=self.brake.hold(finding.workload, onset, self.settings))
        why = (
            f"no playbook handles {diagnosis.cause} at {diagnosis.confidence:.0%} "
            "confidence; a person must look"
        )
        return Settled(Outcome(OutcomeKind.ESCALATED, why, now))

    def _act(self, track: Track, plan: Plan, now: datetime) -> None:
        intent: JsonObject = {"action": plan.action.value, "params": dict(plan.params)}
        if plan.mode is not Mode.APPROVAL:  # written before the request, so never lost
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
            record = ActionRecord(
                plan.action, plan.workload, intent, ActionStatus.FAILED, now, now, error=failed
            )
            self.store.record_action(track.incident_id, record)
            raise
        self.store.record_action(track.incident_id, record)
        self._move(track, Acted(plan, record, now))
        if record.kind is ActionKind.ROLLBACK and record.status is ActionStatus.SUCCEEDED:
            self._report_rollback(track.incident_id, plan)

    def _report_rollback(self, incident_id: int, plan: Plan) -> None:
        """Tell the forge that shipped the rolled-back release, beside the cycle."""
        release = self.blamed.pop(plan.workload, None)
        to_revision = plan.params.get("to_revision")
        if self.reporter is None or release is None or not isinstance(to_revision, int):
            return
        self.reporter.submit(release, incident_id=incident_id, to_revision=to_revision)

    def _plan(
        self,
        diagnosis: Diagnosis,
        finding: Finding,
        state: WorkloadState,
        reading: Reading,
        anomalous: int,
        chain_to: Playbook | None = None,
        silenced: str | None = None,
    ) -> Plan | None:
        """The planner with every guard, on the store's action history as of now;
        ``anomalous`` is the size of the event the anomaly brake judges, ``silenced``
        why people silenced healer on the workload, if they did."""
        governance = self._governance(state, reading.now)
        guards = governed(self.settings.guards, governance)
        history = self.store.action_history(now=reading.now, window_s=guards.rate_limit_window_s)
        return decide.plan(
            diagnosis,
            finding,
            state,
            playbooks=self.playbooks,
            guards=guards,
            history=history,
            anomalous_workloads=anomalous,
            watched_workloads=self._watched(reading.detection),
            now=reading.now,
            chain_to=chain_to,
            demand=surge_watch.overload_demand(
                diagnosis, reading.frame, state, self.settings.surge
            ),
            alerts=self.alert_names.get(finding.workload, frozenset()),
            silenced=silenced,
            governance=governance,
        )

    def _governance(self, state: WorkloadState, now: datetime) -> Governance | None:
        """What the watched policies say about ``state.workload`` at ``now``; their
        receivers are kept for the incident's pages (``_routes``)."""
        if self.policies is None:
            return None
        governance = govern(self.policies.current(), state.workload, state.labels, now)
        self.routes[state.workload] = governance.receivers
        return governance

    def _routes(self, workload: WorkloadRef) -> tuple[str, ...]:
        """The named receivers the workload's policies route its pages to, as of its
        last plan; none before one."""
        return self.routes.get(workload, ())

    def _silenced(self, workload: WorkloadRef, now: datetime) -> str | None:
        """Why people silenced healer on ``workload`` (an opt-out made on the review
        page, still running at ``now``); None when they have not, or the store keeps
        no opt-outs."""
        if not isinstance(self.store, OptOuts):
            return None
        opted = self.store.opted_out(workload, now=now)
        return opted.detail() if opted is not None else None

    # ---- alerts --------------------------------------------------------------------------

    def _take_alerts(self, reading: Reading) -> None:
        """Settle the firing alerts not looked at yet (``alert_watch``). An alert whose
        workload cannot be read for now stays pending, and is taken next cycle."""
        if self.alerts is None:
            return
        for pending in self.alerts.pending_alerts():
            if not self._owns(alert_watch.namespace_of(pending.alert)):
                continue  # left pending for the shard of its namespace
            workload = pending.alert.workload or alert_watch.NOBODY
            self._guarded(workload, self._take_alert, pending.id, pending.alert, reading)

    def _take_alert(self, alert_id: int, alert: Alert, reading: Reading) -> None:
        now = reading.now
        try:
            owner = self._owner_of_pod(alert)
        except PermanentActionError as exc:  # the pod is gone, or not ours to read
            named = alert_watch.named_pod(alert)
            detail = f"{alert.name} on pod {'/'.join(named or ())}: {exc}"
            self._settle_alert(alert_id, AlertDisposition.UNKNOWN_WORKLOAD, detail, now)
            return
        refused = alert_watch.refusal(alert, self.settings.guards, owner)
        if refused is not None:
            self._settle_alert(alert_id, *refused, now)
            return
        workload = owner or alert.workload
        assert workload is not None  # refusal() settles an alert naming none
        track = self.tracked.get(workload)
        if track is not None:
            joined = f"{alert.name} joined incident {track.incident_id}"
            self._settle_alert(alert_id, AlertDisposition.JOINED, joined, now, track.incident_id)
            self.alert_names[workload] = self.alert_names.get(workload, frozenset()) | {alert.name}
            self._say("alert", track, now, f"alert {alert.name} firing")
            return
        try:
            state = self.actuator.read_state(workload)
        except PermanentActionError as exc:  # not found, or not ours to read: never acted on
            detail = f"{alert.name} on {workload}: the cluster has no such workload: {exc}"
            self._settle_alert(alert_id, AlertDisposition.UNKNOWN_WORKLOAD, detail, now)
            return
        self._open_alert(alert_id, alert, state, reading)

    def _owner_of_pod(self, alert: Alert) -> WorkloadRef | None:
        """The workload controlling the pod an alert names instead of a workload; None
        when it names none, or the actuator cannot resolve pods."""
        named = alert_watch.named_pod(alert)
        if named is None or not isinstance(self.actuator, alert_watch.PodOwners):
            return None
        return self.actuator.owner_of_pod(*named)

    def _open_alert(
        self, alert_id: int, alert: Alert, state: WorkloadState, reading: Reading
    ) -> None:
        """An alert on a workload with no open incident opens one and plans on it. The
        alert is settled after the incident opened: a crash in between leaves it pending,
        and the next cycle joins it to that incident."""
        now, workload = reading.now, state.workload
        finding = alert_watch.finding(alert, workload, now)
        diagnosis = alert_watch.diagnosis(alert, workload)
        incident = self.store.open_incident(finding)
        track = Watching(incident, workload, Story(finding, diagnosis))
        self.tracked[workload] = track
        self.alert_names[workload] = frozenset({alert.name})
        opened = f"{alert.name} opened incident {incident}"
        self._settle_alert(alert_id, AlertDisposition.OPENED, opened, now, incident)
        self._say("finding", track, now, f"alert {alert.name} firing")
        self.store.record_diagnosis(incident, diagnosis, at=now)
        self._say("diagnosis", track, now, f"{diagnosis.cause}: {diagnosis.explanation}")
        self._plan_and_act(track, diagnosis, finding, state, reading)

    def _settle_alert(
        self,
        alert_id: int,
        disposition: AlertDisposition,
        detail: str,
        at: datetime,
        incident_id: int | None = None,
    ) -> None:
        assert self.alerts is not None  # only alerts read from it are settled
        self.alerts.settle_alert(
            alert_id, disposition, detail=detail, at=at, incident_id=incident_id
        )
        log.info("alert_settled", alert_id=alert_id, disposition=str(disposition), detail=detail)

    # ---- open incidents --------------------------------------------------------------------

    def _progress(self, track: Track, reading: Reading) -> None:
        detection, workload = reading.detection, track.workload
        # Quiet means fresh data at baseline: missing data is never taken for health.
        quiet = (
            workload not in {f.workload for f in detection.findings}
            and detection.observed(workload)
            and detection.score_of(workload) < self.settings.detector.score_threshold
        )
        at_baseline = (
            quiet
            and isinstance(track, Verifying)
            and verification.at_baseline(
                track.plan,
                workload,
                detection,
                settings=self.settings,
                playbooks=self.playbooks,
            )
        )
        tick = Tick(reading.now, quiet, self.settings.daemon.verify_stable_s, at_baseline)
        self._move(track, tick, reading)

    def _verify(self, track: Verifying, overdue: bool, reading: Reading) -> None:
        """Judge the action taken; not healed with an ``on_failure`` playbook plans that
        one next (without its cooldown, with every other guard)."""
        verdict = verification.judge(
            track,
            overdue=overdue,
            now=reading.now,
            settings=self.settings,
            playbooks=self.playbooks,
            cluster=self.actuator,
        )
        if verdict.rolled_out is not None:
            self._move(track, verdict.rolled_out, reading)
        event = verdict.event
        if event is None:
            return
        watching = self._move(track, event, reading)
        if not isinstance(event, Chained) or verdict.state is None:
            return
        chained = find_playbook(self.playbooks, event.next_playbook)
        diagnosis, finding = track.story.diagnosis, track.story.finding
        if diagnosis is None or finding is None:  # verification chains only a full story
            raise UnexpectedEvent(f"incident {track.incident_id}: chained without a diagnosis")
        self._plan_and_act(watching, diagnosis, finding, verdict.state, reading, chained)

    def _hand_back(self, key: str, floor: Floor, frame: Frame, now: datetime) -> None:
        def policy_mode(state: WorkloadState) -> Mode | None:
            governance = self._governance(state, now)
            return governance.mode.value if governance and governance.mode else None

        self.floors.hand_back(
            key,
            floor,
            frame,
            now,
            self.settings,
            store=self.store,
            cluster=self.actuator,
            policy_mode=policy_mode,
        )

    def _say(self, kind: str, track: Track, at: datetime, text: str) -> None:
        log.info(
            f"incident_{kind}",
            incident_id=track.incident_id,
            workload=str(track.workload),
            detail=text,
        )
        self.report(Step(kind, track.incident_id, track.workload, at, text))

    def status(self) -> JsonObject:
        return {
            **self.vitals.status(),
            "escalations_dropped": (
                self.notifier.dropped if isinstance(self.notifier, EscalationQueue) else 0
            ),
            "mode": str(self.settings.guards.mode),
            "model_version": getattr(self.detector, "model_version", None),
            "tracked_incidents": len(self.tracked),
        }

    def readiness(self, now: datetime) -> list[str]:
        """Why the loop is not doing its job right now; empty when it is (``Vitals``)."""
        return self.vitals.readiness(now, interval_s=self.settings.daemon.interval_s)


def _deviations(signals: Sequence[SignalDeviation]) -> str:
    """The signals of a finding as people read them: each with its direction and size."""
    return ", ".join(f"{d.signal} {d.direction} {abs(d.deviation):.0f}σ" for d in signals)


@dataclass(frozen=True)
class _Acting:
    """The cycle at one reading, as taking an approved action asks it (``approvals``)."""

    healer: Healer
    reading: Reading

    def watched(self, workload: WorkloadRef) -> Track | None:
        return self.healer.tracked.get(workload)

    def watch(self, track: Track) -> None:
        self.healer.tracked[track.workload] = track

    def move(self, track: Track, event: Event) -> Track:
        return self.healer._move(track, event)

    def replan(
        self, diagnosis: Diagnosis, finding: Finding, chain_to: Playbook | None
    ) -> Plan | None:
        healer = self.healer
        state = healer.actuator.read_state(finding.workload)
        size, _ = healer.brake.event(finding, healer.settings, live=True)
        silenced = healer._silenced(finding.workload, self.reading.now)
        return healer._plan(diagnosis, finding, state, self.reading, size, chain_to, silenced)

    def act(self, track: Track, plan: Plan) -> None:
        self.healer._act(track, plan, self.reading.now)

    def exclusive(self) -> AbstractContextManager[object]:
        return self.healer._acting()


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
    is logged with its traceback. Both are counted in ``healer.vitals.cycle_failures``.
    """
    try:
        return healer.cycle(now) is not None
    except HealerError as exc:
        healer.vitals.cycle_failures += 1
        log.error("cycle_failed", error=str(exc))
    except Exception as exc:
        healer.vitals.cycle_failures += 1
        log.exception("cycle_crashed", error=repr(exc))
    return False


def _taken_over(healer: Healer, on_lead: Callable[[], None]) -> bool:
    """Run ``on_lead``; False (logged, counted as a failed cycle) when it raised."""
    try:
        on_lead()
    except Exception as exc:
        healer.vitals.cycle_failures += 1
        log.exception("take_over_failed", error=repr(exc))
        return False
    return True
