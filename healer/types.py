"""The value types that flow through the loop, and nothing else.

Every step of the cycle (collect, detect, diagnose, decide, act, audit) takes and returns
these frozen dataclasses, so that a step can be read and tested alone with literal values.
Kubernetes client objects and Prometheus JSON never travel beyond the module that read
them: they are turned into these types at the edge.

Times are timezone-aware UTC ``datetime`` values; inside a ``Frame`` they are float UNIX
seconds, because detection works on whole numpy arrays.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TypeAlias

import numpy as np
from numpy.typing import NDArray

JsonValue: TypeAlias = bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"] | None
JsonObject: TypeAlias = dict[str, JsonValue]


class Signal(enum.StrEnum):
    """The per-workload signals healer watches. Units are in the docstring of each."""

    CPU = "cpu"
    """CPU used over CPU requested, summed over the workload's pods (1.0 = at requests)."""
    MEMORY = "memory"
    """Mean working-set memory of the workload's pods over their memory limit (0..1)."""
    RESTARTS = "restarts"
    """Container restarts per minute over the last 10 minutes, summed over the workload's pods."""
    REQUEST_RATE = "request_rate"
    """HTTP requests per second served by the workload."""
    ERROR_RATIO = "error_ratio"
    """Share of HTTP responses with a 5xx code (0..1)."""
    LATENCY_P99 = "latency_p99"
    """99th percentile of HTTP request duration, seconds."""
    READY_RATIO = "ready_ratio"
    """Available replicas over desired replicas (1.0 = all available)."""


class Direction(enum.StrEnum):
    UP = "up"
    DOWN = "down"


class TargetKind(enum.StrEnum):
    """The kinds of object healer acts on; ``healer.actions.targets`` maps each to its
    API path, and each action kind lists those it supports (``ActionSpec.targets``).
    A playbook asking for what no action supports on a kind (a DaemonSet's scale) is
    refused; Pod and Node are next."""

    DEPLOYMENT = "Deployment"
    STATEFULSET = "StatefulSet"
    DAEMONSET = "DaemonSet"
    NODE = "Node"
    """Cluster-scoped: its ``WorkloadRef`` has an empty namespace (see ``NodeState``)."""


@dataclass(frozen=True, order=True)
class WorkloadRef:
    namespace: str
    kind: str
    """A ``TargetKind`` value; kept a plain string so that stored rows read back as
    they were written."""
    name: str

    def __str__(self) -> str:
        if not self.namespace:  # cluster-scoped (a Node): named as kubectl names it
            return f"{self.kind.lower()}/{self.name}"
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class ObjectRef:
    """A namespaced custom object, as ``CustomObjectsApi`` addresses it: a GitOps
    syncer's object that ``gitops`` reads and ``act`` fetches and annotates."""

    group: str
    version: str
    plural: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.plural}.{self.group}/{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Frame:
    """One aligned window of metrics for many workloads.

    ``values[w, s, t]`` is signal ``signals[s]`` of workload ``workloads[w]`` at
    ``timestamps[t]`` (UNIX seconds, ascending, one scrape step apart); NaN marks a gap.
    """

    timestamps: NDArray[np.float64]
    workloads: tuple[WorkloadRef, ...]
    signals: tuple[Signal, ...]
    values: NDArray[np.float64]

    def __post_init__(self) -> None:
        expected = (len(self.workloads), len(self.signals), len(self.timestamps))
        if self.values.shape != expected:
            raise ValueError(f"Frame values have shape {self.values.shape}, expected {expected}")

    @cached_property
    def workload_rows(self) -> Mapping[WorkloadRef, int]:
        """Each workload's row of ``values``, looked up in constant time, where
        ``workloads.index`` compares the workload with every one before it: at 100,000
        workloads, lookups for a cycle's findings would cost seconds."""
        return {w: i for i, w in enumerate(self.workloads)}

    def series(self, workload: WorkloadRef, signal: Signal) -> NDArray[np.float64]:
        """The time series of one workload and signal (a view, not a copy)."""
        row: NDArray[np.float64] = self.values[
            self.workload_rows[workload], self.signals.index(signal)
        ]
        return row


@dataclass(frozen=True)
class SignalDeviation:
    """How far one signal of a workload stands from its learned baseline."""

    signal: Signal
    value: float
    baseline: float
    deviation: float
    """Signed distance from the baseline in units of the baseline's spread."""
    direction: Direction


@dataclass(frozen=True)
class Finding:
    """The detector's verdict that a workload is anomalous at ``at``."""

    workload: WorkloadRef
    at: datetime
    score: float
    """Calibrated anomaly score in [0, 1]."""
    signals: tuple[SignalDeviation, ...]
    """The signals that deviate, largest deviation first."""
    onset: datetime
    """When the anomaly began: the first sample of the current anomalous run."""
    model_version: str

    def deviation(self, signal: Signal) -> SignalDeviation | None:
        return next((d for d in self.signals if d.signal == signal), None)


class Cause(enum.StrEnum):
    MEMORY_LEAK = "memory_leak"
    OVERLOAD = "overload"
    BAD_RELEASE = "bad_release"
    CRASH_LOOP = "crash_loop"
    CPU_HOG = "cpu_hog"
    POD_OUTLIER = "pod_outlier"
    """One pod of the workload stands out from its siblings (its own leak, a slow pod):
    evicting that pod, not touching the others, is the remedy."""
    UNKNOWN = "unknown"
    NODE_NOT_READY = "node_not_ready"
    """A node is NotReady and the pods on it fail while their workloads' others serve."""
    NODE_PRESSURE = "node_pressure"
    """A node is under memory (disk, PID) pressure and the pods on it fail."""


@dataclass(frozen=True)
class Revision:
    """One ReplicaSet revision of a Deployment."""

    number: int
    replicaset: str
    created: datetime
    images: tuple[str, ...]
    template: str = ""
    """Fingerprint of the pod template without ``kubectl.kubernetes.io/restartedAt``:
    revisions that differ only by a restart share it. Empty when unknown."""


@dataclass(frozen=True)
class PodState:
    """One pod of a workload, as much as choosing one to act on needs."""

    name: str
    ready: bool
    """The pod's Ready condition is True."""
    restarts: int
    """Container restarts, summed over its containers."""
    created: datetime
    terminating: bool = False
    """A deletion is under way (``metadata.deletionTimestamp`` is set)."""


@dataclass(frozen=True)
class HpaState:
    name: str
    min_replicas: int
    max_replicas: int
    target_cpu_utilisation: float | None = None
    """The autoscaler's CPU target as a fraction of requests (0.8 for 80%); None when it
    scales on another metric."""


@dataclass(frozen=True)
class Demand:
    """A workload's measured load, for sizing a scale-up from demand rather than by a
    fixed factor."""

    rps: float
    """Requests per second now."""
    projected_rps: float
    """Requests per second expected once new replicas serve (the trend carried over
    the lead time), never below ``rps``."""
    cpu_per_rps: float
    """CPU per request per second, as a fraction of one replica's CPU request: one
    replica serving ``r`` requests a second runs at ``r * cpu_per_rps`` of its request."""


@dataclass(frozen=True)
class WorkloadState:
    """What the cluster says about a workload, read through the Kubernetes API."""

    workload: WorkloadRef
    replicas: int
    ready_replicas: int
    updated_replicas: int
    available_replicas: int
    generation: int
    observed_generation: int
    paused: bool
    revisions: tuple[Revision, ...]
    """Every revision the cluster still holds, newest (current) first."""
    annotations: Mapping[str, str] = field(default_factory=dict)
    hpa: HpaState | None = None
    total_replicas: int | None = None
    """``status.replicas``: pods of every revision, old ones still terminating included."""
    labels: Mapping[str, str] = field(default_factory=dict)
    pods: tuple[PodState, ...] = ()
    """The pods the Deployment's selector matches, oldest first."""
    held_back: int = 0
    """Pods a StatefulSet's ``partition`` keeps at an earlier revision on purpose: its
    rollout is complete without them, as ``kubectl rollout status`` says."""

    @property
    def current_revision(self) -> Revision | None:
        return self.revisions[0] if self.revisions else None

    @property
    def previous_revision(self) -> Revision | None:
        return self.revisions[1] if len(self.revisions) > 1 else None

    @property
    def rollout_complete(self) -> bool:
        """The same test ``kubectl rollout status`` applies."""
        updated = self.updated_replicas
        if self.held_back:  # a partition's pods count as done, whichever revision they run
            updated = min(self.replicas, updated + self.held_back)
        return (
            self.observed_generation >= self.generation
            and updated == self.replicas
            and (self.total_replicas is None or self.total_replicas <= updated)
            and self.available_replicas >= self.replicas
            and self.ready_replicas >= self.replicas
        )


@dataclass(frozen=True)
class Diagnosis:
    workload: WorkloadRef
    cause: Cause
    confidence: float
    """0..1: how sure the diagnoser is of ``cause``."""
    explanation: str
    """One or two sentences an operator can read: what was seen and why it means ``cause``."""
    pod: str | None = None
    """The one pod the diagnosis blames (``pod_outlier``), which an eviction names; None
    when the cause is the workload's as a whole."""


class Mode(enum.StrEnum):
    AUTO = "auto"
    APPROVAL = "approval"
    DRY_RUN = "dry_run"


class ActionKind(enum.StrEnum):
    RESTART = "restart"
    SCALE = "scale"
    ROLLBACK = "rollback"
    EVICT = "evict"
    """Evict one pod through the PDB-aware eviction API."""
    CORDON = "cordon"
    """Mark a node unschedulable, as ``kubectl cordon`` does."""
    DRAIN = "drain"
    """Evict one pod from a cordoned node, as ``kubectl drain`` does for each of its pods."""
    UNCORDON = "uncordon"
    """Mark a node schedulable again, as ``kubectl uncordon`` does."""

    @classmethod
    def _missing_(cls, value: object) -> ActionKind | None:
        # ``delete_pod``, the earlier name of an eviction, in stored rows and playbooks.
        return cls.EVICT if value == "delete_pod" else None


@dataclass(frozen=True)
class GuardResult:
    guard: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class Plan:
    """What to do about one diagnosis, and which guards allowed or blocked it."""

    workload: WorkloadRef
    playbook: str
    action: ActionKind
    params: Mapping[str, JsonValue]
    mode: Mode
    guard_results: tuple[GuardResult, ...]
    reason: str
    verify_within_s: float
    """How long the verifier waits for the workload to return to baseline."""

    @property
    def allowed(self) -> bool:
        return all(g.passed for g in self.guard_results)

    @property
    def blocked_by(self) -> tuple[str, ...]:
        return tuple(g.guard for g in self.guard_results if not g.passed)


class ActionStatus(enum.StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DRY_RUN = "dry_run"
    PENDING_APPROVAL = "pending_approval"
    BLOCKED = "blocked"
    INTENDED = "intended"
    """Recorded before the request is sent; a later record says how it ended."""
    APPROVED = "approved"
    """A person approved a pending action; the daemon's next cycle runs it through the
    guards again and takes it (or blocks it)."""
    REJECTED = "rejected"
    """A person rejected a pending action; it is never taken."""
    EXPIRED = "expired"
    """Nobody reviewed a pending action before the workload settled on its own; it is
    withdrawn and never taken (approving it later is refused)."""


@dataclass(frozen=True)
class ActionRecord:
    kind: ActionKind
    target: WorkloadRef
    request: JsonObject
    """The Kubernetes request made (or that would be made): verb, path, content type, body."""
    status: ActionStatus
    started: datetime
    finished: datetime
    error: str | None = None


class OutcomeKind(enum.StrEnum):
    HEALED = "healed"
    NOT_HEALED = "not_healed"
    ESCALATED = "escalated"


@dataclass(frozen=True)
class Outcome:
    kind: OutcomeKind
    evidence: str
    at: datetime


@dataclass(frozen=True)
class ActionHistory:
    """What the guards need to know about past actions; read from the audit store."""

    last_action_at: Mapping[WorkloadRef, datetime]
    recent_action_times: tuple[datetime, ...]
    """Start times of actions taken cluster-wide, for the global rate limit."""
    in_flight: int
    """Actions taken whose outcome is not yet known."""
    last_rollback_at: Mapping[WorkloadRef, datetime] = field(default_factory=dict)
    """When each workload was last rolled back, for the flip-back guard."""
    last_eviction_at: Mapping[WorkloadRef, datetime] = field(default_factory=dict)
    """When a pod of each workload was last evicted, for the eviction budget guard."""


class IncidentStatus(enum.StrEnum):
    OPEN = "open"
    """Detected; diagnosis, plan or action under way."""
    VERIFYING = "verifying"
    """An action was taken; waiting for the workload to return to baseline."""
    PENDING_APPROVAL = "pending_approval"
    RESOLVED = "resolved"
    """Closed with an outcome."""


@dataclass(frozen=True)
class Incident:
    """Everything about one anomalous episode of one workload."""

    id: int
    workload: WorkloadRef
    status: IncidentStatus
    opened: datetime
    finding: Finding
    diagnosis: Diagnosis | None = None
    plan: Plan | None = None
    action: ActionRecord | None = None
    outcome: Outcome | None = None


class Verdict(enum.StrEnum):
    """An operator's label on an incident."""

    TRUE_POSITIVE = "true_positive"
    FALSE_POSITIVE = "false_positive"


@dataclass(frozen=True)
class Feedback:
    """An operator's label on one incident: training data for the detector and diagnoser.

    ``window_start``..``window_end`` is the stretch of the workload's signals the label
    speaks of: from the finding's onset to the incident's close (or the label's time).
    """

    incident_id: int
    workload: WorkloadRef
    verdict: Verdict
    window_start: datetime
    window_end: datetime
    cause: Cause | None
    """The cause the operator confirms (a true positive), or None."""
    right_action: ActionKind | None
    """The action that would have been right; None when no action was."""
    by: str
    at: datetime
    note: str = ""


@dataclass(frozen=True)
class LeaseRecord:
    """What a leader-election Lease says; ``resource_version`` is None before it exists."""

    holder: str
    """Identity of the holder; empty when released."""
    lease_duration_s: int
    acquired: datetime | None
    renewed: datetime | None
    transitions: int
    resource_version: str | None = None
    shards: int | None = None
    """The shard count of the replicas claiming a shard Lease (an annotation); None on
    the leader-election Lease."""


class AlertStatus(enum.StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class Alert:
    """One alert as Alertmanager delivered it (its webhook's ``alerts[]`` item).

    ``fingerprint`` and ``starts_at`` name the alert: Alertmanager sends the same pair
    again on every repeat of a group, and a new ``starts_at`` when the alert fires again
    after it resolved. ``ends_at`` is kept only once the alert is resolved (a firing
    alert's ``endsAt`` is Alertmanager's guess of when it times out)."""

    fingerprint: str
    name: str
    """The ``alertname`` label."""
    status: AlertStatus
    starts_at: datetime
    ends_at: datetime | None
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    generator_url: str = ""
    receiver: str = ""

    @property
    def workload(self) -> WorkloadRef | None:
        """The Deployment its ``namespace`` and ``deployment`` labels name, else the
        StatefulSet (DaemonSet) its ``statefulset`` (``daemonset``) label names (as
        kube-state-metrics' alerts carry them); None without a namespace and one of them."""
        namespace = self.labels.get("namespace")
        for label, kind in (
            ("deployment", "Deployment"),
            ("statefulset", "StatefulSet"),
            ("daemonset", "DaemonSet"),
        ):
            name = self.labels.get(label)
            if namespace and name:
                return WorkloadRef(namespace, kind, name)
        return None


class AlertDisposition(enum.StrEnum):
    """What the daemon made of a firing alert, once it looked."""

    OPENED = "opened"
    """It opened an incident on its workload."""
    JOINED = "joined"
    """It joined the workload's open incident."""
    NO_WORKLOAD = "no_workload"
    """Its labels name no Deployment (no ``namespace`` with ``deployment``): kept, unresolved."""
    DENIED = "denied"
    """The guards deny its namespace: recorded, never acted on."""
    UNKNOWN_WORKLOAD = "unknown_workload"
    """The cluster has no such workload: recorded, never acted on."""


class SilenceState(enum.StrEnum):
    """Where a silence healer asked Alertmanager for stands."""

    ACTIVE = "active"
    """Made: the workload's alerts are silenced until its end, or until healer expires it."""
    EXPIRED = "expired"
    """Expired by healer when the incident had its outcome, or found expired."""
    FAILED = "failed"
    """Could not be made: the workload's alerts page as usual."""
    RELEASED = "released"
    """Changed by a person in Alertmanager, which makes it theirs: healer leaves it alone."""


@dataclass(frozen=True)
class Silence:
    """A silence of one workload's alerts, as healer asked Alertmanager for it."""

    matchers: Mapping[str, str]
    """Label name to the value it must equal (``namespace``, ``deployment``)."""
    starts_at: datetime
    ends_at: datetime
    state: SilenceState
    silence_id: str | None = None
    """Alertmanager's id of it; None when it could not be made."""
    error: str | None = None
    """Why it could not be made or expired, if so."""
    regex: Mapping[str, str] = field(default_factory=dict)
    """Label name to the regular expression (RE2, anchored) it must match (``pod``)."""


@dataclass(frozen=True)
class PodFrame:
    """Per-pod values of some workloads at one time, beside the per-workload ``Frame``.

    Row ``p`` is pod ``pods[p]`` of workload ``workloads[owner[p]]``; ``values[p, s]`` is
    signal ``signals[s]`` averaged over the collector's short window (NaN: no value, as
    for latency on a pod that served nothing). ``memory_slope`` is the pod's memory trend,
    in shares of its limit per second. Read only for the workloads being diagnosed, so
    the cost does not grow with the cluster, only with what is anomalous.
    """

    at: float
    workloads: tuple[WorkloadRef, ...]
    owner: NDArray[np.int64]
    pods: tuple[str, ...]
    ready: NDArray[np.bool_]
    signals: tuple[Signal, ...]
    values: NDArray[np.float64]
    memory_slope: NDArray[np.float64]

    def __post_init__(self) -> None:
        count = len(self.pods)
        shapes = (self.owner.shape, self.ready.shape, self.memory_slope.shape)
        if self.values.shape != (count, len(self.signals)) or any(
            shape != (count,) for shape in shapes
        ):
            raise ValueError(f"PodFrame arrays do not fit {count} pods x {len(self.signals)}")

    @staticmethod
    def empty(at: float = 0.0) -> PodFrame:
        return PodFrame(
            at=at,
            workloads=(),
            owner=np.zeros(0, dtype=np.int64),
            pods=(),
            ready=np.zeros(0, dtype=bool),
            signals=POD_SIGNALS,
            values=np.zeros((0, len(POD_SIGNALS))),
            memory_slope=np.zeros(0),
        )


POD_SIGNALS: tuple[Signal, ...] = (
    Signal.CPU,
    Signal.MEMORY,
    Signal.RESTARTS,
    Signal.ERROR_RATIO,
    Signal.LATENCY_P99,
)
"""The signals a pod has of its own; request rate and readiness are the workload's
(its Service spreads the one, its controller counts the other)."""


# ---- nodes ---------------------------------------------------------------------------------


def node_ref(name: str) -> WorkloadRef:
    """The target naming a node: cluster-scoped, so its namespace is empty."""
    return WorkloadRef("", TargetKind.NODE.value, name)


@dataclass(frozen=True)
class NodePod:
    """One pod a node runs, as much as judging and draining the node needs."""

    namespace: str
    name: str
    owner: str
    """Its controller as ``Kind/name`` (``ReplicaSet/cart-7f9c``); empty for a bare pod.
    Pods with the same owner are replicas of one workload."""
    ready: bool
    """Its Ready condition is True."""
    terminating: bool = False

    @property
    def daemon(self) -> bool:
        """Run by a DaemonSet: a drain leaves it, as ``kubectl drain --ignore-daemonsets``."""
        return self.owner.startswith("DaemonSet/")

    @property
    def workload(self) -> str:
        """``namespace/Kind/name`` of its owner, for telling replicas apart across nodes."""
        return f"{self.namespace}/{self.owner}"


@dataclass(frozen=True)
class NodeState:
    """One node as its conditions, its spec and its pods say (kube-state-metrics'
    ``kube_node_status_condition``, ``kube_node_spec_unschedulable``, ``kube_pod_info``)."""

    name: str
    ready: bool
    """The Ready condition is True."""
    pressure: tuple[str, ...]
    """The pressure conditions that are True (``MemoryPressure``, ``DiskPressure``, ...)."""
    unschedulable: bool
    """Cordoned: ``spec.unschedulable``."""
    pods: tuple[NodePod, ...] = ()

    @property
    def healthy(self) -> bool:
        return self.ready and not self.pressure

    @property
    def ref(self) -> WorkloadRef:
        return node_ref(self.name)


# --- Release events (CI/CD pipelines, forges, GitOps syncs) ---------------------------


class ReleaseSource(enum.StrEnum):
    """Who told healer of a release: the shape of the body it came in."""

    GITLAB = "gitlab"
    GITHUB = "github"
    ARGOCD = "argocd"
    PLAIN = "plain"
    """The plain JSON body a Jenkinsfile or any script posts."""


@dataclass(frozen=True)
class Release:
    """One release of a workload, as a pipeline, a forge or a GitOps sync reported it.

    Every field but ``workload`` and ``at`` may be empty: a forge knows the commit and
    who pushed it, a script may know only the image. ``revision`` is what the sender
    calls the release (a Git SHA, a tag, an Argo CD sync revision); ``image`` the
    container image it rolls out, when known; ``status`` the sender's word for how the
    release went (``success``, ``failure``, ``Synced``, ...), kept as sent."""

    workload: WorkloadRef
    at: datetime
    """When the release happened, by the sender's clock (when it said), else on receipt."""
    source: ReleaseSource
    revision: str = ""
    image: str = ""
    commit: str = ""
    author: str = ""
    pipeline: str = ""
    """The pipeline, job or application's name, as the sender calls it."""
    pipeline_url: str = ""
    """A link a person follows to the pipeline, deployment or sync."""
    environment: str = ""
    status: str = ""
    report_url: str = ""
    """Where healer reports a rollback of this release: the GitHub deployment's
    ``statuses_url``, or the GitLab commit's comments; empty: nowhere."""
