"""Response models of the HTTP API (pydantic v2).

They are the API's contract, kept apart from the store's dataclasses so that the store
can change without changing what clients see. Times are ISO 8601 in UTC; enums are their
string values. Each model is built from the store's result by a ``from_*`` class method.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue

from healer.audit.tables import StepKind
from healer.audit.views import (
    ActionView,
    IncidentDetail,
    IncidentSummary,
    StoredAlert,
    StoredSilence,
    TimelineStep,
)
from healer.types import (
    ActionKind,
    ActionStatus,
    AlertDisposition,
    AlertStatus,
    Cause,
    Feedback,
    IncidentStatus,
    OutcomeKind,
    SilenceState,
    Verdict,
    WorkloadRef,
)


class _Out(BaseModel):
    # from_attributes: a model reads the store's dataclasses field by field, by name.
    model_config = ConfigDict(frozen=True, extra="forbid", from_attributes=True)


class Workload(_Out):
    namespace: str
    kind: str
    name: str

    @classmethod
    def from_ref(cls, ref: WorkloadRef) -> Workload:
        return cls.model_validate(ref)


class IncidentItem(_Out):
    id: int
    workload: Workload
    status: IncidentStatus
    opened: datetime
    closed: datetime | None
    score: float
    """Peak anomaly score, 0..1."""
    cause: Cause | None
    confidence: float | None
    action: ActionKind | None
    action_status: ActionStatus | None
    outcome: OutcomeKind | None
    last_seen: datetime
    cluster: str = "default"
    """``cluster.name`` of the healer that recorded it (one store, many clusters)."""

    @classmethod
    def from_summary(cls, summary: IncidentSummary) -> IncidentItem:
        return cls.model_validate(summary)


class IncidentPage(_Out):
    items: list[IncidentItem]
    next_cursor: str | None
    """Pass as ``cursor`` to get the next page; null on the last page."""


class Step(_Out):
    kind: StepKind
    at: datetime
    data: dict[str, JsonValue]
    actor: str
    """The daemon's identity, or the token name of the person who reviewed or labelled."""

    @classmethod
    def from_step(cls, step: TimelineStep) -> Step:
        return cls(kind=step.kind, at=step.at, data=step.data, actor=step.actor)


class ActionOut(_Out):
    id: int
    incident_id: int
    kind: ActionKind
    workload: Workload
    status: ActionStatus
    intent: dict[str, JsonValue]
    """The plan it carries out: playbook, params, mode, each guard's verdict."""
    request: dict[str, JsonValue]
    """The Kubernetes request: verb, path, content type, body."""
    response: dict[str, JsonValue] | None
    created: datetime
    started: datetime | None
    finished: datetime | None
    error: str | None
    reviewed_by: str | None
    reviewed_at: datetime | None
    review_reason: str | None
    actor: str

    @classmethod
    def from_view(cls, view: ActionView) -> ActionOut:
        return cls.model_validate(view)


class AlertOut(_Out):
    """An Alertmanager alert joined to the incident."""

    id: int
    name: str
    status: AlertStatus
    fingerprint: str
    starts_at: datetime
    ends_at: datetime | None
    labels: dict[str, str]
    annotations: dict[str, str]
    generator_url: str
    received: datetime
    disposition: AlertDisposition | None
    detail: str | None

    @classmethod
    def from_stored(cls, stored: StoredAlert) -> AlertOut:
        alert = stored.alert
        return cls(
            id=stored.id,
            name=alert.name,
            status=alert.status,
            fingerprint=alert.fingerprint,
            starts_at=alert.starts_at,
            ends_at=alert.ends_at,
            labels=dict(alert.labels),
            annotations=dict(alert.annotations),
            generator_url=alert.generator_url,
            received=stored.received,
            disposition=stored.disposition,
            detail=stored.detail,
        )


class SilenceOut(_Out):
    """An Alertmanager silence healer asked for on the incident's workload."""

    id: int
    silence_id: str | None
    """Alertmanager's id; null when the silence could not be made."""
    state: SilenceState
    matchers: dict[str, str]
    """Label name to the value it must equal."""
    regex: dict[str, str]
    """Label name to the regular expression (anchored) it must match: the pods of the
    workload, for alerts that name a pod alone."""
    starts_at: datetime
    ends_at: datetime
    error: str | None
    """Why it could not be made, or why its last expiry failed."""
    created: datetime
    updated: datetime

    @classmethod
    def from_stored(cls, stored: StoredSilence) -> SilenceOut:
        silence = stored.silence
        return cls(
            id=stored.id,
            silence_id=silence.silence_id,
            state=silence.state,
            matchers=dict(silence.matchers),
            regex=dict(silence.regex),
            starts_at=silence.starts_at,
            ends_at=silence.ends_at,
            error=silence.error,
            created=stored.created,
            updated=stored.updated,
        )


class IncidentDetailOut(IncidentItem):
    timeline: list[Step]
    """Every recorded step, oldest first."""
    actions: list[ActionOut]
    """Every action of the incident, oldest first."""
    alerts: list[AlertOut] = []
    """The Alertmanager alerts joined to it, in the order they arrived."""
    silences: list[SilenceOut] = []
    """The Alertmanager silences healer asked for on it, oldest first."""

    @classmethod
    def from_detail(cls, detail: IncidentDetail) -> IncidentDetailOut:
        item = IncidentItem.from_summary(detail.summary)
        return cls(
            **dict(item),
            timeline=[Step.from_step(s) for s in detail.timeline],
            actions=[ActionOut.from_view(a) for a in detail.actions],
            alerts=[AlertOut.from_stored(a) for a in detail.alerts],
            silences=[SilenceOut.from_stored(s) for s in detail.silences],
        )


class ActionList(_Out):
    items: list[ActionOut]


class FeedbackOut(_Out):
    incident_id: int
    workload: Workload
    verdict: Verdict
    window_start: datetime
    window_end: datetime
    cause: Cause | None
    right_action: ActionKind | None
    by: str
    at: datetime
    note: str

    @classmethod
    def from_feedback(cls, feedback: Feedback) -> FeedbackOut:
        return cls.model_validate(feedback)


class PlaybookList(_Out):
    items: list[dict[str, JsonValue]]


class ModelCard(_Out):
    name: str
    """File name of the card in the models directory, without ``.json``."""
    card: dict[str, JsonValue]


class ModelList(_Out):
    items: list[ModelCard]


class GuardState(_Out):
    in_flight: int
    """Actions taken whose outcome is not yet known."""
    max_in_flight: int
    actions_in_window: int
    """Actions taken within the rate-limit window ending now."""
    max_actions_per_window: int
    window_s: float
    cooling_down: list[str]
    """Workloads acted on within the cooldown: no action on them until it ends."""
    pending_approval: int
    approved_waiting: int
    """Approved actions the daemon has not yet taken."""


class WarmStatus(_Out):
    model_config = ConfigDict(frozen=True, extra="allow")

    wanted_s: float
    """History the detector uses, seconds."""
    history_s: float
    """History Prometheus held and the detector learned from, seconds."""
    short: bool
    """Less history than wanted: the shape stage judges from what there is, and takes
    over each series once it has ``shape_warmup_buckets`` rows."""
    first: datetime | None
    last: datetime | None
    workloads: int
    seconds: float
    """Wall-clock time warming took."""


class DaemonStatus(_Out):
    model_config = ConfigDict(frozen=True, extra="allow")

    leader: str | None
    """Identity of the daemon holding the lease (this one when there is no election)."""
    is_leader: bool | None = None
    """Whether the daemon answering holds the lease (None: no daemon in this process)."""
    mode: str | None
    cycles: int
    last_cycle: datetime | None
    last_cycle_seconds: float | None
    """Wall-clock time the last cycle took."""
    guards: GuardState
    warm: WarmStatus | None = None
    """The history the detector was warmed with at start-up (None: started cold)."""


# -- request bodies ---------------------------------------------------------------------


def _printable(text: str) -> str:
    """Refuse control characters (NUL cannot even be stored by PostgreSQL)."""
    if any(ord(c) < 32 and c not in "\t\n\r" for c in text):
        raise ValueError("control characters are not allowed")
    return text


Text = Annotated[str, Field(max_length=2000), AfterValidator(_printable)]


class _In(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ApproveIn(_In):
    reason: Text = ""
    """Why; shown in the timeline."""


class RejectIn(_In):
    reason: Annotated[Text, Field(min_length=1)]
    """Why not: required, so the record says."""


class FeedbackIn(_In):
    verdict: Verdict
    """true_positive: a real problem; false_positive: nothing was wrong."""
    cause: Cause | None = None
    """The real cause, when the diagnosis was wrong or to confirm it."""
    right_action: ActionKind | None = None
    """The action that would have been right; null when none was."""
    note: Text = ""


class Health(_Out):
    status: str
