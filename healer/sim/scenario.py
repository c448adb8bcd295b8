"""Scenarios: a simulated cluster's workloads and what happens to them, as YAML.

A scenario lists workloads (Deployments, StatefulSets or DaemonSets, with a traffic
shape and resources), the
behaviour of the images they run, and timed events: faults, each with the remediation
that fixes it (``expect``), and benign events that must not trigger any action
(``expect: none``). Tests and benchmarks score healer against that ground truth.

Event kinds and their parameters:

==============  ==============================================  =========================
kind            what happens                                    fixed by
==============  ==============================================  =========================
memory_leak     running containers leak ``bytes_per_s``; with   restart (for a while, if
                ``recur_after_s`` new containers start leaking   it recurs)
                again that long after they start
overload        traffic rises to ``factor`` times over          scale (up to the
                ``ramp_s``                                        workload's capacity_rps)
release         the Deployment rolls out ``image``; bad or good rollback when bad; none
                by that image's behaviour                         when good
crash_loop      rolls out ``image``, whose containers crash     rollback
                on start (CrashLoopBackOff)
cpu_hog         running containers burn ``cores`` of CPU on     restart
                top of their work (a runaway thread)
scrape_gap      no metrics for ``duration_s`` (``*`` = all)     none (benign)
slowdown        every workload's latency times ``factor`` for   none (benign: a shared
                ``duration_s`` (workload ``*``)                   network or monitoring
                                                                   problem)
manual_scale    a person scales the Deployment or StatefulSet   none (benign)
                to ``replicas``, as ``kubectl scale`` does
node_notready   the kubelet of ``node`` (or of each node        drain (cordon, then evict)
                ``node_selector`` picks) reports NotReady, or
                with ``unreachable`` stops reporting, for
                ``duration_s`` (to the end without): its pods
                fail, turn unready, and are evicted after
                their toleration (300 s)
node_memory_    a process outside the pods takes the node's     drain
pressure        memory and leaks ``bytes_per_s`` more: the
                kubelet reports MemoryPressure and evicts
                pods; its pods are slow and fail more
node_drain      a person drains the node for maintenance        none (benign)
                (cordon, evictions through the Eviction API,
                which disruption budgets may hold back), and
                uncordons it ``duration_s`` later
pod_leak        the workload's ``pod``-th pod (by name) leaks   evict (that pod)
                ``bytes_per_s``; its siblings do not
pod_slow        the ``pod``-th pod answers ``factor`` times      evict (that pod)
                slower for the rest of its life
==============  ==============================================  =========================

Node events name no workload (``workload`` is ``*``): what their pods suffer is
their consequence, and the remedy is the node's (``cordon`` or ``drain``).

A ``gitops`` section puts workloads under Argo CD or Flux, synced from Git repositories
the simulator makes (``GitOps``); a ``release`` or ``crash_loop`` with ``via: git`` then
arrives as the deploy pipeline's commit, rolled out by the syncer.

Files are untrusted input: validated with pydantic, errors name the file, line and field.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from healer.errors import ConfigError
from healer.yamlfile import load_model, read_text


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Traffic(_Model):
    base_rps: float = Field(gt=0)
    """Requests per second at the daily minimum on a weekday."""
    peak_factor: float = Field(default=1.0, ge=1.0)
    """Traffic at the daily peak over traffic at the minimum."""
    peak_hour_utc: float = Field(default=13.0, ge=0, lt=24)
    peak_width_h: float = Field(default=2.0, gt=0)
    """Standard deviation of the bell-shaped daily peak, hours."""
    weekend_factor: float = Field(default=0.7, gt=0)
    """Traffic on Saturdays and Sundays over weekday traffic (ramps over 6 hours)."""
    noise: float = Field(default=0.03, ge=0, lt=1)
    """Relative standard deviation of scrape-to-scrape noise."""
    bursts_per_h: float = Field(default=1.0, ge=0)
    """Rate of short (one scrape) bursts of +30% traffic, which must not trigger action."""


class Resources(_Model):
    cpu_request_cores: float = Field(default=0.25, gt=0)
    cpu_limit_cores: float = Field(default=0.5, gt=0)
    cpu_seconds_per_request: float = Field(default=0.004, gt=0)
    memory_limit_bytes: int = Field(default=512 * 2**20, gt=0)
    memory_base_bytes: int = Field(default=200 * 2**20, gt=0)


class Behaviour(_Model):
    """How pods running an image behave; a release changes the image, and so this."""

    error_ratio: float = Field(default=0.002, ge=0, le=1)
    latency_s: float = Field(default=0.08, gt=0)
    """p99 latency when idle, seconds."""
    cpu_factor: float = Field(default=1.0, gt=0)
    crash_on_start: bool = False
    """Containers exit a few seconds after they start, every time (CrashLoopBackOff)."""


class WorkloadSpec(_Model):
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=50)
    kind: Literal["Deployment", "StatefulSet", "DaemonSet"] = "Deployment"
    """A StatefulSet runs ordered pods ``name-0``, ``name-1``... with the same template; a
    DaemonSet one pod on each node it tolerates (``replicas`` is not read)."""
    namespace: str = "default"
    replicas: int = Field(default=3, ge=0)
    copies: int = Field(default=1, ge=1, le=20000)
    """More than one: this many identical Deployments named ``name-0000``, ``name-0001``..."""
    image: str
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    traffic: Traffic
    resources: Resources = Resources()
    capacity_rps: float | None = Field(default=None, gt=0)
    """A downstream limit (a database, a rate-limited API): requests beyond it fail however
    many replicas serve them, so scaling absorbs an overload only up to this point."""


EventKind = Literal[
    "memory_leak",
    "overload",
    "release",
    "crash_loop",
    "cpu_hog",
    "scrape_gap",
    "slowdown",
    "manual_scale",
    "node_notready",
    "node_memory_pressure",
    "node_drain",
    "pod_leak",
    "pod_slow",
]
NODE_EVENTS = ("node_notready", "node_memory_pressure", "node_drain")
Remedy = Literal["restart", "scale", "rollback", "evict", "cordon", "drain", "none"]
_NEEDS: dict[str, tuple[str, ...]] = {
    "memory_leak": ("bytes_per_s",),
    "overload": ("factor",),
    "release": ("image",),
    "crash_loop": ("image",),
    "cpu_hog": ("cores",),
    "scrape_gap": ("duration_s",),
    "slowdown": ("factor", "duration_s"),
    "manual_scale": ("replicas",),
    "node_notready": (),
    "node_memory_pressure": (),
    "node_drain": (),
    "pod_leak": ("bytes_per_s", "pod"),
    "pod_slow": ("factor", "pod"),
}


class Event(_Model):
    at_s: float = Field(ge=0)
    """Seconds after the scenario start."""
    kind: EventKind
    workload: str = Field(default="*", pattern=r"^(\*|[a-z0-9-]+/[a-z0-9-]+)$")
    """namespace/name of the Deployment (StatefulSet, DaemonSet), or ``*`` for every
    workload."""
    node: str | None = None
    """The node a node event happens to."""
    node_selector: dict[str, str] = {}
    """Instead of ``node``: every node carrying these labels (a zone, a pool)."""
    unreachable: bool = False
    """node_notready: the kubelet stops reporting (Ready Unknown) rather than reporting
    NotReady."""
    expect: Remedy
    """The remediation that fixes it; ``none`` marks a benign event."""
    bytes_per_s: float | None = Field(default=None, gt=0)
    recur_after_s: float | None = Field(default=None, gt=0)
    factor: float | None = Field(default=None, gt=0)
    ramp_s: float = Field(default=60.0, ge=0)
    image: str | None = None
    cores: float | None = Field(default=None, gt=0)
    duration_s: float | None = Field(default=None, gt=0)
    pod: int | None = Field(default=None, ge=0)
    """Which pod of the workload a pod fault hits: its index among the workload's pods
    sorted by name (a StatefulSet's ordinal)."""
    replicas: int | None = Field(default=None, ge=0)
    """The replica count a ``manual_scale`` sets."""
    via: Literal["api", "git"] = "api"
    """How a release or crash loop arrives: ``api`` patches the workload, as ``kubectl set
    image`` does; ``git`` commits the image to the repository of the GitOps application
    that owns the workload, and its syncer rolls it out (see ``GitOps``)."""

    @model_validator(mode="after")
    def _parameters(self) -> Event:
        missing = [name for name in _NEEDS[self.kind] if getattr(self, name) is None]
        if missing:
            raise ValueError(f"a {self.kind} event needs {', '.join(missing)}")
        if self.kind in NODE_EVENTS:
            if (self.node is None) == (not self.node_selector):
                raise ValueError(f"a {self.kind} event needs a node or a node_selector")
            if self.workload != "*":
                raise ValueError(f"a {self.kind} event names a node, not a workload")
            return self
        if self.node is not None or self.node_selector:
            raise ValueError(f"a {self.kind} event names a workload, not a node")
        if self.via == "git" and self.kind not in ("release", "crash_loop"):
            raise ValueError(f"a {self.kind} event cannot arrive through git")
        if self.workload == "*" and self.kind not in ("scrape_gap", "slowdown"):
            raise ValueError(f"a {self.kind} event needs one workload, not *")
        return self

    def nodes_of(self, nodes: list[tuple[str, dict[str, str]]]) -> list[str]:
        """The names among ``nodes`` (name, labels) that a node event happens to."""
        if self.node is not None:
            return [name for name, _ in nodes if name == self.node]
        wanted = self.node_selector.items()
        return [name for name, labels in nodes if wanted <= labels.items()]

    @property
    def end_s(self) -> float:
        return self.at_s + (self.duration_s or 0.0)


Verb = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]


class ApiFault(_Model):
    """Failures the simulated API server injects, for reliability tests.

    Each request whose verb is listed (all verbs when none are) fails with 500, 409,
    429 or 403 at the given rates, and is delayed by ``latency_s``, while simulated time is in
    ``[from_s, until_s)``. A 429 carries ``Retry-After``, as the real server's does.
    """

    verbs: tuple[Verb, ...] = ()
    error_500: float = Field(default=0.0, ge=0, le=1)
    conflict_409: float = Field(default=0.0, ge=0, le=1)
    throttle_429: float = Field(default=0.0, ge=0, le=1)
    forbidden_403: float = Field(default=0.0, ge=0, le=1)
    """As if healer's service account lacked the RBAC permission."""
    retry_after_s: int = Field(default=1, ge=0)
    latency_s: float = Field(default=0.0, ge=0, le=30)
    from_s: float = Field(default=0.0, ge=0)
    until_s: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _rates(self) -> ApiFault:
        if self.error_500 + self.conflict_409 + self.throttle_429 + self.forbidden_403 > 1:
            raise ValueError("the failure rates add up to more than 1")
        return self


class NodePool(_Model):
    """The cluster's nodes: ``count`` alike, named ``<name_prefix>-00``, ``-01``...

    Without a ``count`` the pool is sized for the scenario's pods: room for four times
    every workload's replicas (an autoscaler may triple them, a rollout surges a
    quarter), by pods, CPU requests and memory requests alike, and at least three nodes.
    """

    count: int | None = Field(default=None, ge=1, le=5000)
    name_prefix: str = Field(default="node", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    cpu_cores: float = Field(default=32.0, gt=0)
    """Allocatable CPU of each node, cores (capacity is the same: nothing is reserved)."""
    memory_bytes: int = Field(default=128 * 2**30, gt=0)
    max_pods: int = Field(default=110, ge=1)
    """The kubelet's ``--max-pods``; 110 is its default."""
    zones: int = Field(default=3, ge=1, le=26)
    """Nodes are spread over this many zones (``topology.kubernetes.io/zone``)."""
    labels: dict[str, str] = {}

    def size_for(self, workloads: list[WorkloadSpec]) -> int:
        """``count``, or the default for ``workloads`` (see the class docstring)."""
        if self.count is not None:
            return self.count
        pods = sum(4 * w.replicas for w in workloads)
        cpu = sum(4 * w.replicas * w.resources.cpu_request_cores for w in workloads)
        memory = sum(4 * w.replicas * w.resources.memory_limit_bytes for w in workloads)
        need = max(pods / self.max_pods, cpu / self.cpu_cores, memory / self.memory_bytes, 3.0)
        return int(-(-need // 1))

    def names(self, workloads: list[WorkloadSpec]) -> list[str]:
        """The nodes' names, zero-padded so that name order is index order."""
        count = self.size_for(workloads)
        width = max(2, len(str(count - 1)))
        return [f"{self.name_prefix}-{i:0{width}d}" for i in range(count)]


class GitApp(_Model):
    """One GitOps application: Argo CD's ``Application`` (in namespace ``argocd``) or
    Flux's ``GitRepository`` and ``Kustomization`` (in ``flux-system``), both named
    ``name``, owning the listed workloads from a repository the simulator makes."""

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=50)
    owner: Literal["argocd", "flux"] = "argocd"
    workloads: list[str] = Field(min_length=1)
    """namespace/name of each workload the application's path holds a manifest of."""
    render: Literal["plain", "kustomize"] = "plain"
    """``plain``: one manifest per workload, the image in it; ``kustomize``: the same
    manifests under a kustomization.yaml whose ``images`` pins each image's tag."""
    self_heal: bool = True
    """Argo CD's ``syncPolicy.automated.selfHeal`` (Flux always corrects drift)."""
    replicas_in_git: bool = False
    """Whether the manifests in Git set ``spec.replicas``. Off by default, as where an
    autoscaler (or healer) sets the replica count: with it on, the syncer puts Git's
    count back over any scaling, as Argo CD's self-heal and Flux do."""
    prune: bool = False
    interval: str = "10m"
    """Flux's Kustomization ``spec.interval``: 10m, as in Flux's guides."""
    source_interval: str = "1m"
    """Flux's GitRepository ``spec.interval``: 1m, as in Flux's guides."""


class GitOps(_Model):
    """Workloads owned by GitOps applications, synced from Git repositories on disk.

    At start the simulator makes, for each application, a bare repository
    ``<root>/<name>.git`` (the remote; ``root`` is a fresh temporary directory unless the
    cluster is given one) with one commit of the workloads' manifests under
    ``apps/<name>/`` on ``main``, and a clone ``<root>/<name>-pipeline`` its deploy
    pipeline commits from. The Application's ``spec.source.repoURL`` (Flux: the
    GitRepository's ``spec.url``) is ``file://<root>/<name>.git``: ``git clone`` and
    ``git push`` work on it, and the syncer reads it.
    """

    applications: list[GitApp] = Field(min_length=1)
    argocd_poll_s: float = Field(default=180.0, gt=0)
    """How often Argo CD looks at Git: its ``timeout.reconciliation``, 180 s by default."""
    argocd_self_heal_delay_s: float = Field(default=5.0, ge=0)
    """How long drift stays before self-heal reverts it: Argo CD's
    ``--self-heal-timeout-seconds``, 5 s by default."""


class Scenario(_Model):
    name: str
    description: str
    start: datetime
    step_s: float = Field(default=15.0, gt=0)
    """Scrape interval: metrics are sampled once per step."""
    seed: int = 0
    images: dict[str, Behaviour] = {}
    """Behaviour per image; images not listed behave as ``Behaviour()``."""
    workloads: list[WorkloadSpec] = Field(min_length=1)
    events: list[Event] = []
    api_faults: list[ApiFault] = []
    """Failures of the Kubernetes API itself; can also be set at run time."""
    nodes: NodePool = NodePool()
    """The nodes pods are scheduled onto; by default enough for the workloads."""
    gitops: GitOps | None = None
    """Workloads whose manifests live in Git, with Argo CD or Flux syncing them."""

    @model_validator(mode="after")
    def _gitops_owns_workloads(self) -> Scenario:
        known = {f"{w.namespace}/{n}" for w in self.workloads for n in _names(w)}
        owner: dict[str, str] = {}
        for i, app in enumerate(self.gitops.applications if self.gitops else []):
            for workload in app.workloads:
                if workload not in known:
                    raise ValueError(
                        f"gitops.applications[{i}]: no workload {workload!r} in this scenario"
                    )
                if workload in owner:
                    raise ValueError(
                        f"gitops: {workload} owned by {owner[workload]} and {app.name}"
                    )
                owner[workload] = app.name
        for i, event in enumerate(self.events):
            if event.via == "git" and event.workload not in owner:
                raise ValueError(f"events[{i}]: {event.workload} is owned by no gitops application")
        return self

    @model_validator(mode="after")
    def _events_name_workloads(self) -> Scenario:
        names = [f"{w.namespace}/{n}" for w in self.workloads for n in _names(w)]
        twice = sorted(n for n, count in Counter(names).items() if count > 1)
        if twice:
            raise ValueError(f"workloads: {', '.join(twice)} named more than once")
        known = set(names)
        kinds = {f"{w.namespace}/{n}": w.kind for w in self.workloads for n in _names(w)}
        for i, event in enumerate(self.events):
            if event.workload != "*" and event.workload not in known:
                raise ValueError(f"events[{i}]: no workload {event.workload!r} in this scenario")
            if event.kind == "manual_scale" and kinds.get(event.workload) == "DaemonSet":
                raise ValueError(f"events[{i}]: a DaemonSet has no replicas to scale")
        nodes = set(self.nodes.names(self.expanded())) if self.events else set()
        for i, event in enumerate(self.events):
            if event.node is not None and event.node not in nodes:
                raise ValueError(f"events[{i}]: no node {event.node!r} in this scenario")
        replicas = {f"{w.namespace}/{n}": w.replicas for w in self.workloads for n in _names(w)}
        for i, event in enumerate(self.events):
            if event.pod is not None and event.pod >= replicas.get(event.workload, 0):
                raise ValueError(
                    f"events[{i}]: pod {event.pod} of {event.workload}, which has "
                    f"{replicas.get(event.workload, 0)} replicas"
                )
        return self

    def behaviour(self, image: str) -> Behaviour:
        return self.images.get(image, Behaviour())

    def expanded(self) -> list[WorkloadSpec]:
        """Every Deployment, with ``copies`` unrolled."""
        return [
            w.model_copy(update={"name": name, "copies": 1})
            for w in self.workloads
            for name in _names(w)
        ]


def _names(w: WorkloadSpec) -> list[str]:
    return [w.name] if w.copies == 1 else [f"{w.name}-{i:04d}" for i in range(w.copies)]


def _folder() -> Path:
    return Path(str(resources.files("healer.sim") / "scenarios"))


def builtin_names() -> list[str]:
    return sorted(p.stem for p in _folder().glob("*.yaml"))


def load_scenario(name_or_path: str) -> Scenario:
    """Load a built-in scenario by name, or a scenario file by path.

    Raises ConfigError naming the scenario file, line and field at fault.
    """
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        if name_or_path not in builtin_names():
            known = ", ".join(builtin_names())
            raise ConfigError(f"unknown scenario {name_or_path!r} (known: {known})")
        path = _folder() / f"{name_or_path}.yaml"
    text = read_text(path, ConfigError)
    scenario, _ = load_model(text, Scenario, where=str(path), error=ConfigError, what="scenario")
    return scenario


def summaries() -> list[tuple[str, str]]:
    """(name, first sentence of the description) of every built-in scenario."""
    out = []
    for name in builtin_names():
        description = " ".join(load_scenario(name).description.split())
        out.append((name, description.split(". ")[0].rstrip(".") + "."))
    return out
