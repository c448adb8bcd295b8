"""The audit store by role: one interface per kind of client, each no wider than it needs.

::

    DaemonLog        the cycle: findings, diagnoses, plans, actions, outcomes; the
                     incident and action history it decides on       (healer.daemon)
    DaemonState      what the daemon keeps across restarts: named values, unresolved
                     incidents, where it left off          (healer.daemon, resume)
    ReviewQueue      what people read, approve, reject and label, and the counts
                     the API shows                                     (healer.api)
    ActionReviews    the review queue's approve and reject alone, which a forge's
                     merge or close settles too                    (healer.gitops)
    TrainingLabels   operators' labels and the rows they label
                                         (healer train, train-diagnoser, notebooks)
    AlertInbox       Alertmanager's alerts: stored as delivered, read and settled
                     by the cycle                      (healer.api, healer.daemon)
    SilenceLog       the Alertmanager silences healer made on each incident
                                           (healer.act.silences, via the daemon)
    Attention        escalations waiting to be acknowledged, people's opt-outs of
                     workloads, the overview's tallies                 (healer.api)
    OptOuts          the opt-out active on a workload, read before planning
                                                                    (healer.daemon)
    ReleaseLog       release events: stored by the API, read by the incident's page
                     and the diagnosis of a bad release    (healer.api, healer.daemon)

``AuditStore`` (``store.py``) is all of them on one database; a client is typed against
the one it uses, so a test can hand it a small fake and a reader of the client sees what
it may touch. Incident status changes only in ``status.py``, whichever role asks.

Decisions:

- Protocols, not base classes: an implementation needs no import of this module, and
  the implementations (``log.py``, ``kept.py``, ``review.py``, ``labels.py``) stay free
  to share one engine and session factory (``database.py``).
- The roles overlap where a client truly reads what another writes: the daemon reads the
  approved actions of the review queue, the API reads the action history the guards
  read, to show the guards' state.
- This module imports no SQL: the API imports it and ``views.py`` only (an
  import-linter contract keeps it so).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Protocol, runtime_checkable

from healer.audit.views import (
    EVERY_INCIDENT,
    Acknowledgement,
    ActionView,
    AlertsRecorded,
    FeedbackInput,
    IncidentDetail,
    IncidentFilter,
    IncidentSummary,
    OptOut,
    StoredAlert,
    StoredRelease,
    StoredSilence,
    Tally,
)
from healer.types import (
    ActionHistory,
    ActionKind,
    ActionRecord,
    ActionStatus,
    Alert,
    AlertDisposition,
    Diagnosis,
    Feedback,
    Finding,
    Frame,
    Incident,
    JsonObject,
    Outcome,
    OutcomeKind,
    Plan,
    Release,
    Silence,
    SilenceState,
    WorkloadRef,
)

__all__ = [
    "ActingLock",
    "ActionReviews",
    "AlertInbox",
    "Attention",
    "DaemonLog",
    "DaemonState",
    "DaemonStore",
    "OptOuts",
    "ReleaseLog",
    "ReviewQueue",
    "SilenceLog",
    "TrainingLabels",
]


class DaemonLog(Protocol):
    """What the cycle writes, each step committed before the next starts, and what it
    reads back to decide."""

    def open_incident(self, finding: Finding, *, frame: Frame | None = None) -> int: ...

    def record_finding(self, incident_id: int, finding: Finding) -> None: ...

    def record_diagnosis(
        self,
        incident_id: int,
        diagnosis: Diagnosis,
        *,
        at: datetime | None = None,
        features: Mapping[str, float] | None = None,
    ) -> None: ...

    def record_plan(self, incident_id: int, plan: Plan, *, at: datetime | None = None) -> None: ...

    def record_action(self, incident_id: int, action: ActionRecord) -> int: ...

    def record_outcome(
        self, incident_id: int, outcome: Outcome, *, frame: Frame | None = None
    ) -> None: ...

    def record_rollout(self, incident_id: int, *, at: datetime, detail: str) -> None: ...

    def expire_pending(self, incident_id: int, outcome: Outcome) -> ActionView | None: ...

    def incident(self, incident_id: int) -> Incident: ...

    def get_incident(self, incident_id: int) -> IncidentDetail | None: ...

    def action_history(self, *, now: datetime, window_s: float) -> ActionHistory: ...

    def approved_actions(self) -> list[ActionView]: ...

    def get_action(self, action_id: int) -> ActionView | None: ...


class DaemonState(Protocol):
    """What the daemon keeps across restarts and picks up when it starts again."""

    def save_state(self, key: str, value: JsonObject, *, at: datetime) -> None: ...

    def load_state(self, key: str) -> JsonObject | None: ...

    def unresolved(self) -> list[Incident]: ...

    def latest_at(self) -> datetime | None: ...

    def latest_resolved(
        self, *, since: datetime, outcome: OutcomeKind | None = None
    ) -> list[Incident]:
        """Each workload's newest resolved incident last seen at or after ``since`` (and
        settled on ``outcome``, if given), newest first: a restarted daemon reads these
        to hold again the workloads the anomaly brake held."""
        ...


@runtime_checkable
class ActingLock(Protocol):
    """One action at a time per cluster across replicas (``audit.acting``): the shards'
    planning on the shared action budget and their actions take turns."""

    def acting(self) -> AbstractContextManager[None]: ...


class DaemonStore(DaemonLog, DaemonState, Protocol):
    """Everything the daemon uses: its log and its kept state."""


class ActionReviews(Protocol):
    """Actions and the people's verdict on those pending: what a forge's merge or close
    settles (``healer.gitops``) as a person on the review page does."""

    def actions(
        self, *, status: ActionStatus | None = None, limit: int = 500
    ) -> list[ActionView]: ...

    def approve_action(
        self, action_id: int, *, by: str, reason: str, at: datetime
    ) -> ActionView: ...

    def reject_action(
        self, action_id: int, *, by: str, reason: str, at: datetime
    ) -> ActionView: ...


class ReviewQueue(ActionReviews, Protocol):
    """What the API reads, approves, rejects and labels, and the counts it shows."""

    @property
    def write_count(self) -> int:
        """Writes committed by this process: caches of what was read key on it."""
        ...

    @property
    def identity(self) -> str:
        """The daemon writing beside the API: the leader when there is no election."""
        ...

    def list_incidents(
        self, where: IncidentFilter = EVERY_INCIDENT, *, limit: int = 50
    ) -> list[IncidentSummary]: ...

    def list_incident_entries(
        self, where: IncidentFilter = EVERY_INCIDENT, *, limit: int = 50
    ) -> list[tuple[int, str]]:
        """``list_incidents`` as each incident's id and its entry's JSON
        (``listed.entry_json``): what the API's list pages are joined from."""
        ...

    def list_incident_entries_now(
        self, where: IncidentFilter = EVERY_INCIDENT, *, limit: int = 50, max_steps: int
    ) -> list[tuple[int, str]] | None:
        """``list_incident_entries`` on the calling thread (an event loop's) when that
        cannot hold it up: within ``max_steps`` of a local database's work; None
        otherwise, and the caller reads on a thread."""
        ...

    def get_incident(self, incident_id: int) -> IncidentDetail | None: ...

    def get_action(self, action_id: int) -> ActionView | None: ...

    def approved_actions(self) -> list[ActionView]: ...

    def record_feedback(self, incident_id: int, label: FeedbackInput) -> Feedback: ...

    def action_counts(self) -> dict[tuple[ActionKind, ActionStatus], int]: ...

    def guard_block_counts(self) -> dict[str, int]: ...

    def action_history(self, *, now: datetime, window_s: float) -> ActionHistory: ...


class TrainingLabels(Protocol):
    """What training reads: operators' labels, and the diagnoser's row kept with each
    incident's latest diagnosis, by incident id."""

    def feedback(self, since: datetime | None = None) -> list[Feedback]: ...

    def diagnosis_features(self) -> dict[int, dict[str, float]]: ...


@runtime_checkable
class AlertInbox(Protocol):
    """Alertmanager's alerts: the API stores each delivery whole before it answers; the
    cycle reads the firing alerts it has not looked at and records what it made of them."""

    def record_alerts(self, alerts: Sequence[Alert], *, at: datetime) -> AlertsRecorded: ...

    def pending_alerts(self, *, limit: int = 1000) -> list[StoredAlert]: ...

    def settle_alert(
        self,
        alert_id: int,
        disposition: AlertDisposition,
        *,
        detail: str,
        at: datetime,
        incident_id: int | None = None,
    ) -> None: ...

    def alerts_of(self, incident_id: int) -> list[StoredAlert]: ...


@runtime_checkable
class SilenceLog(Protocol):
    """The silences healer made in Alertmanager: recorded when made (or not made) and when
    expired, each change also a step of the incident's timeline."""

    def record_silence(self, incident_id: int, silence: Silence, *, at: datetime) -> int: ...

    def settle_silence(
        self,
        row_id: int,
        *,
        state: SilenceState,
        at: datetime,
        detail: str,
        error: str | None = None,
    ) -> None: ...

    def active_silences(self, incident_id: int) -> list[StoredSilence]: ...

    def silences_of(self, incident_id: int) -> list[StoredSilence]: ...


@runtime_checkable
class OptOuts(Protocol):
    """The daemon's read of people's opt-outs, before it plans for a workload."""

    def opted_out(self, workload: WorkloadRef, *, now: datetime) -> OptOut | None: ...


@runtime_checkable
class Attention(OptOuts, Protocol):
    """What the overview shows and its buttons change: escalations to acknowledge,
    opt-outs, and the tallies of a window."""

    def acknowledge(
        self, incident_id: int, *, by: str, at: datetime, note: str = ""
    ) -> Acknowledgement: ...

    def acknowledgement(self, incident_id: int) -> Acknowledgement | None: ...

    def unacknowledged(self, *, limit: int = 50) -> tuple[list[IncidentSummary], int]: ...

    def opt_out(
        self, workload: WorkloadRef, *, by: str, reason: str, at: datetime, until: datetime
    ) -> OptOut: ...

    def end_opt_out(self, opt_out_id: int, *, by: str, at: datetime) -> OptOut: ...

    def opt_outs(self, *, now: datetime) -> list[OptOut]: ...

    def tally(self, *, since: datetime) -> Tally: ...


@runtime_checkable
class ReleaseLog(Protocol):
    """Release events: the API stores each before it answers; the daemon reads those
    around a rollout it blames."""

    def record_release(
        self, release: Release, *, known: bool | None, sender: str, at: datetime
    ) -> StoredRelease: ...

    def releases_of(
        self, workload: WorkloadRef, *, since: datetime, until: datetime
    ) -> list[StoredRelease]: ...
