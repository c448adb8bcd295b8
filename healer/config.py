"""Settings: one object, built once at start-up from a YAML file and ``HEALER_*`` variables.

Sections group what belongs together; each field is documented beneath it. Environment
variables use ``__`` between section and field, e.g. ``HEALER_GUARDS__COOLDOWN_S=600``.
Precedence, highest first: explicit arguments, environment, the YAML file, defaults.
"""

from __future__ import annotations

import socket
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from healer.errors import ConfigError
from healer.types import Mode, Signal
from healer.yamlfile import load_data


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DetectorSettings(_Section):
    baseline_half_life_s: float = 1800.0
    """How fast the learned baseline follows the series. Half an hour follows the daily
    cycle (a change of a few percent per half hour) yet stands still under a fault that
    develops in minutes."""
    spread_half_life_s: float = 7200.0
    """How fast the learned spread (typical deviation from baseline) adapts."""
    warmup_s: float = 900.0
    """No finding until a series has been watched this long."""
    score_threshold: float = 0.95
    """Calibrated score at or above which a sample counts as anomalous. The score is a
    probability-like value shared by every signal and workload, not a per-metric limit."""
    persistence_s: float = 60.0
    """A workload must stay anomalous this long before it becomes a finding, which
    ignores one-scrape bursts."""
    model_version: str | None = None
    """Version of the trained multivariate model to run beside the streaming baselines
    (``healer train`` registers versions in ``models_dir``). None: streaming alone."""
    models_dir: Path = Path("models")
    """Folder of model artifacts (skops), their cards and ``registry.json``."""
    shape_enabled: bool = True
    """Run the shape stage (``detect.shape``): each series' recent shape judged against a
    week of its history, so that a daily peak is not an anomaly. Off: the streaming
    baselines alone."""
    shape_bucket_s: float = Field(default=300.0, gt=0)
    """The shape stage's rows: means over buckets of this many seconds. Five minutes,
    the unit its hyperparameters were set in (NAB's rows)."""
    shape_warmup_buckets: int = Field(default=600, ge=1)
    """A series' shape score replaces its streaming score once it has this many buckets
    (50 h): the hourly time scale learns from its 577th row on, and its statistics need
    some rows. Before that, the streaming score serves."""
    warm_s: float | None = Field(default=None, ge=0)
    """At start-up (and on taking the lease), ``healer run`` reads this much history
    from Prometheus to warm the detector (``detect.warm``): the shape stage's rows at one
    sample per bucket, the streaming baselines' last hour at the scrape step. None: as
    much as the detector uses (about 8.5 days with the shape stage); 0: start cold."""


class GuardSettings(_Section):
    mode: Mode = Mode.DRY_RUN
    """Global mode. The most cautious of this, the playbook's and the workload's mode wins
    (dry_run over approval over auto). dry_run by default: nothing changes in the cluster
    until an operator opts in."""
    cooldown_s: float = Field(default=600.0, ge=0)
    """No second action on the same workload within this time."""
    rate_limit_window_s: float = Field(default=600.0, gt=0)
    """Window of the cluster-wide action rate limit."""
    max_actions_per_window: int = Field(default=10, ge=0)
    """Cluster-wide cap on actions within ``rate_limit_window_s``."""
    max_in_flight: int = Field(default=3, ge=0)
    """Actions whose outcome is not yet verified, at most."""
    anomaly_brake_share: float = Field(default=0.3, ge=0, le=1)
    """When more than this share of the watched workloads turned anomalous together
    (onsets within ``anomaly_brake_window_s`` of each other) and none of them is handled
    yet (those acted on and not yet verified still count), the cause is upstream or in
    monitoring: hold their actions, escalate once."""
    anomaly_brake_min_anomalous: int = Field(default=3, ge=1)
    """The brake holds only when at least this many workloads turned anomalous together,
    whatever their share: two faults at once on a small cluster are two incidents to
    handle (two actions), not a mass fault."""
    anomaly_brake_window_s: float = Field(default=900.0, gt=0)
    """Anomalies whose onsets lie this close together count as one event. A shared cause
    (a slowdown, a scrape gap, a store outage) reaches every workload it touches within
    minutes; an independent fault an hour later is not part of it."""
    anomaly_brake_min_workloads: int = Field(default=4, ge=1)
    """The brake only applies when at least this many workloads are watched."""
    allowed_namespaces: tuple[str, ...] = ()
    """When not empty, act only in these namespaces."""
    denied_namespaces: tuple[str, ...] = ("kube-system",)
    """Never act in these namespaces."""
    min_replicas: int = Field(default=1, ge=0)
    """Scale never goes below this."""
    max_replicas: int = Field(default=50, ge=1)
    """Scale never goes above this."""
    max_scale_factor: float = Field(default=2.0, gt=1.0)
    """One scale action at most multiplies the replicas by this (a playbook may ask for
    less): a wrong diagnosis cannot blow up the cluster's capacity in one step."""
    flip_back_window_s: float = Field(default=3600.0, ge=0)
    """No second rollback of a workload within this time: rolling back a rollback
    returns to the revision that was just judged bad (the flip-back trap)."""
    evict_cooldown_s: float = Field(default=1800.0, ge=0)
    """At most one pod of a workload is evicted within this time, even as a step of an
    ``on_failure`` chain (which the cooldown lets through): more than one bad pod is a
    workload's fault, for a workload action."""
    gitops_mode: Mode = Mode.APPROVAL
    """Mode for workloads managed by Argo CD or Flux: their next sync would revert an
    in-cluster change, so a person applies it through the repository."""

    @model_validator(mode="after")
    def _replica_bounds(self) -> GuardSettings:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) must not exceed max_replicas "
                f"({self.max_replicas})"
            )
        return self


class DaemonSettings(_Section):
    interval_s: float = Field(default=30.0, gt=0)
    """Time between cycles."""
    window_s: float = Field(default=3600.0, gt=0)
    """How much history each cycle reads."""
    verify_stable_s: float = Field(default=120.0, ge=0)
    """A workload counts as healed once its rollout is complete and it has stayed below
    the anomaly threshold this long."""
    backoff_max_s: float = Field(default=300.0, gt=0)
    """After cycles that could not read their metrics, the wait doubles from
    ``interval_s`` up to this, so a Prometheus outage is not hammered."""


class SurgeSettings(_Section):
    """Early overload evidence: a surge of requests heading past the replicas' capacity,
    acted on before the anomaly detector or the HPA's CPU average catch up."""

    enabled: bool = True
    """Watch every workload's request rate for surges; false leaves overloads to the
    detector alone."""
    reference_s: float = Field(default=600.0, gt=0)
    """The request rate and CPU before a surge: their median over this long, ending where
    the surge's samples begin. Ten minutes hold a few bursts but little of the daily cycle."""
    samples: int = Field(default=2, ge=2)
    """Consecutive samples that must stand out, each one higher than the one before: a
    one-scrape burst is one sample, and two bursts in a row do not keep climbing."""
    min_rise_sigma: float = Field(default=4.0, gt=0)
    """How far each of those samples stands above the reference, in robust spreads of the
    reference (request rate and CPU alike)."""
    min_rise_ratio: float = Field(default=1.15, gt=1.0)
    """... and at least this many times the reference: a quiet series has a tiny spread."""
    min_step_ratio: float = Field(default=1.08, gt=1.0)
    """Each of those samples is at least this many times the one before: still climbing,
    well beyond the scrape-to-scrape noise of a few percent."""
    lead_s: float = Field(default=120.0, ge=0)
    """How far the request rate's trend is carried forward: the time until added replicas
    serve (the next cycles, scheduling, readiness), so they are sized for the load they
    will meet, not the load that was."""
    target_utilisation: float = Field(default=0.8, gt=0, le=1.0)
    """CPU per replica, as a fraction of its request, that a surge must be heading past
    to count, when the workload has no HPA with a CPU target (with one, its target
    applies)."""
    hand_back_after_s: float = Field(default=3600.0, gt=0)
    """An HPA's minReplicas raised for an overload is lowered back to its earlier value
    no sooner than this after the last raise, once the workload is quiet and its requests
    are back near their rate before the surge; the HPA then keeps what its CPU target
    needs. A surge that stays (a new normal) keeps its floor."""


class LeaderSettings(_Section):
    enabled: bool = True
    """Elect one leader among the daemons through a coordination.k8s.io/v1 Lease; only
    the leader acts, the others serve the API. Off: this daemon always acts (one replica)."""
    namespace: str = "healer"
    """Namespace of the Lease; in a cluster, the daemon's own (the manifests set it)."""
    name: str = "healer"
    """Name of the Lease; daemons sharing it share one leader."""
    identity: str | None = None
    """This daemon's name in the Lease and the audit store; none means
    ``<hostname>_<random>``, unique per process (the hostname is the pod name)."""
    lease_duration_s: int = Field(default=15, ge=1)
    """How long followers wait after the last renewal they saw before taking over
    (Kubernetes' controller default)."""
    renew_deadline_s: float = Field(default=10.0, gt=0)
    """The leader stops acting when it could not renew for this long; shorter than the
    lease duration, so it stops before anyone else may start."""
    retry_period_s: float = Field(default=2.0, gt=0)
    """Time between two attempts to acquire or renew the Lease."""

    @model_validator(mode="after")
    def _ordered(self) -> LeaderSettings:
        if not self.renew_deadline_s < self.lease_duration_s:
            raise ValueError("renew_deadline_s must be shorter than lease_duration_s")
        if not self.retry_period_s < self.renew_deadline_s:
            raise ValueError("retry_period_s must be shorter than renew_deadline_s")
        return self


class ShardingSettings(_Section):
    shards: int = Field(default=0, ge=0, le=256)
    """Spread the workloads over this many shards, each claimed by one replica through a
    Lease ``<leader.name>-shard-<i>`` (``leader`` timings and namespace); a namespace
    belongs to shard ``sha1(namespace) mod shards``. 0: no sharding, one leader acts on
    everything. Every replica of a cluster must use the same count: a replica that finds
    a live shard Lease recording another count refuses to start."""
    settle_s: float = Field(default=30.0, ge=0)
    """How long a replica that joins must have been seen (through its membership Lease
    ``<leader.name>-member-<identity>``) before the others hand it shards: each replica
    keeps its fair share of the shards among the live members and hands the rest over,
    and this wait keeps a replica in a crash loop from moving shards back and forth."""


DENIED_NETWORKS: tuple[IPv4Network | IPv6Network, ...] = tuple(
    ip_network(net)
    for net in (
        "169.254.0.0/16",  # link-local: cloud metadata (169.254.169.254), ECS credentials
        "fe80::/10",  # IPv6 link-local
        "0.0.0.0/8",  # "this host": a connection to 0.0.0.0 reaches the local host
        "::/128",  # the IPv6 unspecified address, likewise
        "100.100.100.200/32",  # Alibaba Cloud's metadata service
        "fd00:ec2::254/128",  # AWS's metadata service over IPv6
        "224.0.0.0/4",  # multicast and broadcast: never an HTTP receiver
        "255.255.255.255/32",
        "ff00::/8",
    )
)
"""Where a webhook may not point by default: the addresses that hand out a node's cloud
credentials, and addresses no HTTP receiver has. Loopback and private ranges are allowed
(a receiver is often a sidecar or an in-cluster service); deny them in the setting."""


def denied_address(
    host: str, networks: tuple[IPv4Network | IPv6Network, ...]
) -> IPv4Address | IPv6Address | None:
    """The address ``host`` names literally, when it lies in one of ``networks``.

    Literal forms a resolver also accepts count (``2852039166``, ``0xa9fea9fe``,
    ``0251.0376.0251.0376``), and an IPv4-mapped IPv6 address counts as its IPv4 address.
    A name (not an address) gives None: it is checked when it is resolved.
    """
    address: IPv4Address | IPv6Address
    try:
        address = ip_address(host.strip("[]"))
    except ValueError:
        try:
            address = IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address if any(address in net for net in networks) else None


def webhook_problem(url: str, networks: tuple[IPv4Network | IPv6Network, ...]) -> str | None:
    """Why ``url`` may not receive escalations, or None."""
    try:
        parsed = urlsplit(url)
        host = parsed.hostname
    except ValueError as exc:
        return f"{url!r} is not a URL: {exc}"
    if parsed.scheme not in ("http", "https"):
        return f"{url!r}: only http and https URLs are allowed"
    if not host:
        return f"{url!r} has no host"
    denied = denied_address(host, networks)
    if denied is not None:
        return f"{url!r}: address {denied} is in escalation.denied_networks"
    return None


def _http_url(url: str | None) -> str | None:
    """``url`` without a trailing slash, when it is an http(s) URL with a host."""
    if url is None:
        return None
    problem = webhook_problem(url, ())
    if problem is not None:
        raise ValueError(problem)
    return url.rstrip("/")


class NamedReceiver(_Section):
    """A receiver policies route to by name (``notify.receivers`` of a HealingPolicy)."""

    name: str = Field(min_length=1, max_length=63)
    """The name policies use."""
    url: str
    """Where to POST. http(s) only, checked against ``denied_networks``."""
    format: Literal["generic", "slack", "teams"] = "generic"
    """The body: generic JSON, Slack-compatible, or a Teams Adaptive Card."""


class EscalationSettings(_Section):
    denied_networks: tuple[IPvAnyNetwork, ...] = DENIED_NETWORKS
    """Address ranges a webhook may not point at, checked at start-up for addresses in
    the URL and at each delivery for what a name resolves to. The default
    (``DENIED_NETWORKS``) denies link-local and cloud metadata addresses; add
    ``127.0.0.0/8``, ``::1/128``, ``10.0.0.0/8``, ``172.16.0.0/12``,
    ``192.168.0.0/16`` and ``fc00::/7`` to keep receivers outside the cluster."""
    webhook_urls: tuple[str, ...] = ()
    """Receivers of a generic JSON body for each escalated incident (a pager bridge, a
    ticketing hook). http(s) only."""
    slack_webhook_urls: tuple[str, ...] = ()
    """Receivers of a Slack-compatible body (``text`` and ``blocks``). http(s) only."""
    teams_webhook_urls: tuple[str, ...] = ()
    """Microsoft Teams incoming webhooks (Workflows or the older connectors): an Adaptive
    Card in a ``message`` attachment. http(s) only."""
    pagerduty_routing_key: SecretStr | None = None
    """Integration (routing) key of a PagerDuty service's Events API v2 integration: an
    escalation triggers an alert whose ``dedup_key`` is the incident, a healed incident
    resolves it. None: no PagerDuty."""
    pagerduty_url: str = "https://events.pagerduty.com/v2/enqueue"
    """PagerDuty's Events API v2 endpoint (``https://events.eu.pagerduty.com/v2/enqueue``
    for the EU service region)."""
    opsgenie_api_key: SecretStr | None = None
    """API key of an Opsgenie API integration: an escalation creates an alert whose
    ``alias`` is the incident, a healed incident closes it. None: no Opsgenie."""
    opsgenie_url: str = "https://api.opsgenie.com"
    """Opsgenie's API (``https://api.eu.opsgenie.com`` for the EU instance)."""
    resolutions: bool = True
    """Tell the receivers when an incident healed as well: PagerDuty and Opsgenie close
    the alert of that incident, the chat and generic receivers get a message. False:
    escalations only."""
    queue_size: int = Field(default=100, ge=1)
    """Escalations waiting for delivery, at most. Delivery runs beside the cycle, never
    in it; when the receivers are slower than the escalations, the ones that do not fit
    are dropped, logged and counted (``healer_escalations_dropped_total``)."""
    timeout_s: float = Field(default=5.0, gt=0)
    """Per-request timeout of a webhook delivery."""
    retries: int = Field(default=2, ge=0, le=10)
    """Extra attempts after a network error, a 429 or a 5xx answer."""
    backoff_s: float = Field(default=0.5, ge=0)
    """Wait before the first retry; it doubles on each further retry."""
    routes: tuple[NamedReceiver, ...] = ()
    """Receivers that policies name (``notify.receivers``): one gets the escalations and
    resolutions of the workloads whose matching policies name it, beside the receivers
    above, which get every page."""

    @field_validator("routes")
    @classmethod
    def _routes(
        cls, routes: tuple[NamedReceiver, ...], info: ValidationInfo
    ) -> tuple[NamedReceiver, ...]:
        networks = info.data.get("denied_networks", DENIED_NETWORKS)
        for index, route in enumerate(routes):
            problem = webhook_problem(route.url, networks)
            if problem is not None:
                raise ValueError(f"[{index}] {route.name}: {problem}")
        names = [r.name for r in routes]
        if len(set(names)) != len(names):
            raise ValueError(f"names must be unique: {', '.join(names)}")
        return routes

    @field_validator("webhook_urls", "slack_webhook_urls", "teams_webhook_urls")
    @classmethod
    def _receivers(cls, urls: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        networks = info.data.get("denied_networks", DENIED_NETWORKS)
        for index, url in enumerate(urls):
            problem = webhook_problem(url, networks)
            if problem is not None:
                raise ValueError(f"[{index}] {problem}")
        return urls

    @property
    def receivers(self) -> bool:
        """Whether any receiver is configured."""
        return bool(
            self.webhook_urls
            or self.routes
            or self.slack_webhook_urls
            or self.teams_webhook_urls
            or self.pagerduty_routing_key
            or self.opsgenie_api_key
        )

    @field_validator("pagerduty_url", "opsgenie_url")
    @classmethod
    def _service(cls, url: str, info: ValidationInfo) -> str:
        problem = webhook_problem(url, info.data.get("denied_networks", DENIED_NETWORKS))
        if problem is not None:
            raise ValueError(problem)
        return url


class ClusterSettings(_Section):
    kubeconfig: Path | None = None
    """Path of a kubeconfig; none means in-cluster configuration, then ``~/.kube/config``."""
    context: str | None = None
    """Context of the kubeconfig to use; none means its current context."""
    name: str = Field(
        default="default", min_length=1, max_length=30, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
    )
    """This cluster's name (a DNS label of at most 30 characters, since the daemon's kept
    values are stored under ``<name>/<key>``) on every incident and action it records, so that
    the healers of several clusters can share one store and the API and review page
    filter by cluster."""


class StoreSettings(_Section):
    url: str = "sqlite:///healer.db"
    """SQLAlchemy URL of the audit store."""
    unavailable_s: float = Field(default=60.0, gt=0)
    """How long a read or write waits for a database server that does not answer (a
    PostgreSQL restart) before it fails; the cycle waits with it, then carries on."""


class ApiToken(_Section):
    """One bearer token of the API, stored as the SHA-256 of the token, never the token."""

    name: str = Field(min_length=1, max_length=255)
    """Who holds it; written as the ``actor`` of the reviews and labels it makes."""
    role: Literal["viewer", "operator"]
    """viewer reads; operator also approves, rejects and labels."""
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    """Hex SHA-256 of the token (``healer token`` prints a token and its hash)."""


class ApiSettings(_Section):
    host: str = "127.0.0.1"
    """Address the API and review page listen on; ``0.0.0.0`` in a cluster."""
    port: int = Field(default=8080, ge=0, le=65535)
    """Port of the API and review page; 0 picks a free one."""
    tokens: tuple[ApiToken, ...] = ()
    """Bearer tokens and their roles. None configured: every /api/v1 request is refused
    (401); /healthz, /readyz and /metrics stay open."""
    cursor_secret: SecretStr | None = None
    """Key that signs pagination cursors and review page sessions. Unset: a random key
    per process (one for all the workers of ``healer api --workers``), so neither
    outlives a restart nor a hop to another replica."""
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    """Largest request body accepted; a larger one is refused with 413 before it is read
    whole. The largest legitimate body (a review with a 2,000-character reason) is a few
    kilobytes."""
    login_failures: int = Field(default=10, ge=1)
    """Failed logins on the review page allowed per client address within
    ``login_window_s``; more are refused with 429 and ``Retry-After``."""
    login_window_s: float = Field(default=60.0, gt=0)
    """Window of ``login_failures``."""
    public_url: str | None = None
    """Base URL people reach healer's review page at (``https://healer.example.com``):
    silences and pages link to an incident as ``{public_url}/incidents/{id}``. None:
    they name the incident by its number only."""
    workers: int = Field(default=1, ge=1, le=64)
    """Processes that serve the API on one port when it runs alone (``healer api``):
    one process answers about 3,000 incident-list pages not kept a second, so a busy
    review API wants about one per core. The daemon's own API is one process."""

    @field_validator("public_url")
    @classmethod
    def _http(cls, url: str | None) -> str | None:
        return _http_url(url)

    def incident_link(self, incident_id: int) -> str:
        """Where people read the incident: its review page, or its number alone when
        ``public_url`` is not set."""
        if self.public_url is None:
            return f"healer incident {incident_id}"
        return f"{self.public_url}/incidents/{incident_id}"


class ReceiverToken(_Section):
    """A bearer token Alertmanager sends to ``POST /api/v1/alerts``, stored as its SHA-256."""

    name: str = Field(min_length=1, max_length=255)
    """Which Alertmanager holds it; shown in the log of each delivery."""
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    """Hex SHA-256 of the token (``healer token`` prints a token and its hash)."""


class AlertmanagerSettings(_Section):
    receiver_tokens: tuple[ReceiverToken, ...] = ()
    """Tokens that may deliver alerts, and nothing else: kept apart from ``api.tokens``
    so that the token in Alertmanager's configuration reads no incident and approves no
    action. None configured: every delivery is refused (401)."""
    url: str | None = None
    """Base URL of Alertmanager (``http://alertmanager.monitoring:9093``): while healer
    verifies an action, it silences the workload's alerts there through API v2, and
    expires the silence once the incident has its outcome. None: no silences."""
    bearer_token: SecretStr | None = None
    """Sent to Alertmanager as ``Authorization: Bearer ...``, for one behind an
    authenticating proxy (OpenShift's, kube-rbac-proxy)."""
    silence_timeout_s: float = Field(default=5.0, gt=0)
    """Per-request timeout of a silence's creation or expiry."""
    silence_retries: int = Field(default=3, ge=0, le=10)
    """Extra attempts after a network error, a 429 or a 5xx answer; then the incident
    records that the silence could not be made (or expired)."""
    silence_backoff_s: float = Field(default=1.0, ge=0)
    """Wait before the first retry; it doubles on each further retry, up to 30 s."""
    silence_queue_size: int = Field(default=1000, ge=1)
    """Silences waiting to be made or expired, at most: the work runs beside the cycle,
    never in it; what does not fit is recorded on its incident as not done."""

    @field_validator("url")
    @classmethod
    def _http(cls, url: str | None) -> str | None:
        return _http_url(url)


class PrometheusSettings(_Section):
    url: str | None = None
    """Base URL of a server with the Prometheus HTTP API (Prometheus, Thanos, Mimir,
    VictoriaMetrics), e.g. ``http://prometheus.monitoring:9090``. None: not configured."""
    timeout_s: float = Field(default=10.0, gt=0)
    """Per-request timeout, also sent to the server so that it abandons slow queries."""
    retries: int = Field(default=2, ge=0, le=10)
    """Extra attempts after a network failure, a timeout or a 5xx/429 answer."""
    backoff_s: float = Field(default=0.5, ge=0)
    """Wait before the first retry; it doubles on each further retry."""
    bearer_token: SecretStr | None = None
    """Sent as ``Authorization: Bearer ...``, for Prometheus behind a gateway."""
    bearer_token_file: Path | None = None
    """Read the bearer token from this file on each start (a service-account token)."""
    basic_auth_username: str | None = None
    """HTTP basic authentication user, for Prometheus behind a gateway."""
    basic_auth_password: SecretStr | None = None
    """HTTP basic authentication password."""
    ca_file: Path | None = None
    """PEM bundle that signs the server's certificate, for a private CA."""
    step_s: int = Field(default=15, ge=1)
    """Resolution of the range queries, whole seconds; set it to the scrape interval.
    Frame timestamps are multiples of it, so consecutive cycles line up."""
    rate_window_s: int = Field(default=60, ge=1)
    """Range of ``rate()`` in the queries. At least two scrape intervals, or rates have
    a single sample and come back empty; four is the usual choice."""
    overlap_steps: int = Field(default=1, ge=0)
    """Each incremental fetch asks again for this many already-held steps, because the
    newest points may have been computed before the last scrape was ingested."""
    concurrency: int = Field(default=7, ge=1, le=32)
    """Signals queried in parallel."""
    signal_set: Literal["standard", "istio"] = "standard"
    """``standard``: HTTP metrics from the application (``http_requests_total``,
    ``http_request_duration_seconds``). ``istio``: the same three signals from Istio's
    standard metrics. CPU, memory, restarts and readiness come from cAdvisor and
    kube-state-metrics in both."""
    workload_mapping: Literal["owner", "pod_label"] = "owner"
    """How pods map to Deployments. ``owner``: through ``kube_pod_owner`` and
    ``kube_replicaset_owner``, which works on any cluster with kube-state-metrics.
    ``pod_label``: through the pod label ``workload_label`` in ``kube_pod_labels``."""
    workload_label: str = Field(default="app", min_length=1)
    """Pod label naming the Deployment, with ``workload_mapping: pod_label``, as written
    on the pod (``app.kubernetes.io/name``); kube-state-metrics' ``label_`` name is derived."""
    recording_rules: bool = False
    """Read the series stored by healer's recording rules (``healer rules`` prints them,
    for these settings) instead of evaluating the pod-to-Deployment joins at every step:
    for clusters with thousands of workloads."""
    queries: dict[Signal, str] = {}
    """PromQL per signal, replacing the built-in one. It must return one series per
    workload with ``namespace`` and ``deployment`` labels; ``$window`` stands for the
    rate window and ``$pod_owner`` for the pod-to-Deployment mapping vector."""

    @field_validator("queries")
    @classmethod
    def _not_blank(cls, value: dict[Signal, str]) -> dict[Signal, str]:
        blank = [str(signal) for signal, query in value.items() if not query.strip()]
        if blank:
            raise ValueError(f"empty query for {', '.join(blank)}")
        return value


# ---- nodes ---------------------------------------------------------------------------------


class NodeSettings(_Section):
    """Healing nodes: cordon, drain, uncordon (``decide.nodes``, ``lifecycle.node_watch``)."""

    enabled: bool = True
    """Watch nodes and heal those that fail their pods. Off: nodes are never touched."""
    grace_s: float = Field(default=60.0, ge=0)
    """A node must be NotReady or under pressure, with its pods failing, for this long
    before healer cordons it: a kubelet that misses one heartbeat is not a bad node.
    One minute, well inside the five minutes after which Kubernetes alone evicts the
    pods of a NotReady node (``tolerationSeconds: 300``)."""
    min_healthy_share: float = Field(default=0.51, ge=0, le=1)
    """Never cordon a node when fewer than this share of the cluster's nodes would stay
    schedulable after it: the node is escalated instead. 51%, the ``minHealthy`` default
    of node-healthcheck operators: when most nodes look bad at once, the fault is in
    the network or the monitoring, and cordoning them would take the cluster down."""
    max_cordoned: int = Field(default=3, ge=0)
    """At most this many nodes cordoned by healer at once, whatever their share."""
    drain_after_s: float = Field(default=120.0, ge=0)
    """A node under pressure is cordoned first; it is drained only if its pods still fail
    this long after the cordon (the pressure may pass once nothing new lands there). A
    NotReady node is drained at once: its pods cannot recover there."""
    drain_within_s: float = Field(default=600.0, gt=0)
    """A drain that has not emptied the node this long after it started (a
    PodDisruptionBudget refusing evictions) is escalated; its pods are never deleted."""
    uncordon_after_s: float = Field(default=600.0, ge=0)
    """A node healer cordoned is uncordoned once it has been Ready, without pressure, for
    this long: a node that flaps is not given pods back at its first good minute."""


class ReleaseSettings(_Section):
    """Release events (``POST /api/v1/releases``): who may post them."""

    tokens: tuple[ReceiverToken, ...] = ()
    """Bearer tokens a pipeline or an Argo CD notification sends, which may post releases
    and nothing else (an operator token of ``api.tokens`` may post them too)."""
    github_secret: SecretStr | None = None
    """The secret of the GitHub webhook: each delivery's ``X-Hub-Signature-256`` must be
    its HMAC-SHA256 of the raw body. None: GitHub deliveries are refused (401)."""
    gitlab_tokens: tuple[ReceiverToken, ...] = ()
    """The secret tokens of GitLab webhooks (sent as ``X-Gitlab-Token``), stored as
    their SHA-256. None configured: GitLab deliveries need a bearer token instead."""
    github_token: SecretStr | None = None
    """A GitHub token allowed to write deployment statuses: after healer rolls back a
    release GitHub told of, it posts the deployment's status ``failure`` with the
    incident's link. None: no report to GitHub."""
    gitlab_token: SecretStr | None = None
    """A GitLab token with the ``api`` scope: after healer rolls back a release GitLab
    told of, it comments on the release's commit with the incident's link. None: no
    report to GitLab."""
    report_timeout_s: float = Field(default=5.0, gt=0)
    """Per-request timeout of a report to GitHub or GitLab (sent beside the cycle)."""


class PolicySettings(_Section):
    """HealingPolicy and ClusterHealingPolicy objects (``healer.io``, deploy/crds/)."""

    enabled: bool = True
    """Watch the policy objects and apply them beside these settings (the most cautious
    wins). With the CRDs not installed, healer runs on these settings alone and logs it
    once. False: settings and annotations only."""
    status_interval_s: float = Field(default=30.0, gt=0)
    """Besides after every change, the leader writes the policies' status (matched
    workloads, Ready, Invalid) this often, as workloads come and go."""
    missing_retry_s: float = Field(default=60.0, gt=0)
    """With the CRDs not installed, look for them again this often."""


# ---- GitOps: healing through Git (issue 18) ---------------------------------------------


class GitOpsSettings(_Section):
    """Where a rollback of a workload that Argo CD or Flux owns lands: a commit in the
    repository the syncer reads (pushed to its branch in auto mode, a pull or merge
    request in approval mode), so that the next sync keeps it instead of reverting it."""

    enabled: bool = False
    """Roll back GitOps-owned workloads through their repository. False: such workloads
    are only switched to ``guards.gitops_mode``, as before."""
    undo_first: bool = False
    """Also undo in the cluster at once, after the commit is pushed (never before, and
    never when the commit failed): the fix is fast, and Git keeps it."""
    cache_dir: Path = Path(".healer-git")
    """Where repositories are cloned and fetched, one directory per repository URL."""
    token_file: Path | None = None
    """A file holding the token (or password) for the repository and the forge API, as
    a mounted Secret is: handed to git through ``GIT_ASKPASS``, never on a command line
    or in a log. None: the repository needs no credentials (or git's own config has them)."""
    username: str = "healer"
    """The user name git offers with the token over HTTPS."""
    forge: Literal["github", "gitlab", "none"] = "none"
    """The forge that serves pull/merge requests in approval mode. ``none``: approval
    mode pushes nothing and waits for approval, then pushes to the tracked branch."""
    forge_url: str = "https://api.github.com"
    """The forge's REST API root: ``https://api.github.com``, a GitHub Enterprise
    ``https://host/api/v3``, or a GitLab ``https://host/api/v4``."""
    forge_project: str | None = None
    """``owner/name`` (GitHub) or the project path or id (GitLab) of the repository;
    None: taken from the repository URL's path."""
    branch_prefix: str = "healer/"
    """Branches of pull requests are this followed by ``incident-N``."""
    committer_name: str = "healer"
    """The author and committer name of healer's commits."""
    committer_email: str = "healer@localhost"
    """The author and committer e-mail of healer's commits (a forge may require one it
    knows, to credit the commit to healer's account)."""
    timeout_s: float = Field(default=60.0, gt=0)
    """Longest one git command or forge call may take: a hung remote fails the action
    instead of holding the cycle."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="HEALER_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    detector: DetectorSettings = DetectorSettings()
    guards: GuardSettings = GuardSettings()
    daemon: DaemonSettings = DaemonSettings()
    surge: SurgeSettings = SurgeSettings()
    escalation: EscalationSettings = EscalationSettings()
    cluster: ClusterSettings = ClusterSettings()
    store: StoreSettings = StoreSettings()
    api: ApiSettings = ApiSettings()
    alertmanager: AlertmanagerSettings = AlertmanagerSettings()
    prometheus: PrometheusSettings = PrometheusSettings()
    leader: LeaderSettings = LeaderSettings()
    sharding: ShardingSettings = ShardingSettings()
    nodes: NodeSettings = NodeSettings()
    releases: ReleaseSettings = ReleaseSettings()
    policies: PolicySettings = PolicySettings()
    gitops: GitOpsSettings = GitOpsSettings()
    playbooks_dir: Path = Path("playbooks")
    """Directory of playbook YAML files, validated at start-up."""
    diagnosis_model: Path | None = None
    """A learned diagnoser (skops file beside its JSON card), used for the causes it has
    enough labelled history of; the rules diagnose the rest. None: rules only."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings)


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Read the YAML file at ``path`` (if any), then the environment, then ``overrides``.

    Raises ConfigError naming the file and the field at fault.
    """
    data: dict[str, Any] = {}
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read settings: {exc}") from exc
        loaded = load_data(text, where=str(path), error=ConfigError) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: settings must be a mapping at the top level")
        data = loaded
    try:
        from_env = Settings().model_dump(exclude_unset=True)
        merged = _deep_merge(_deep_merge(data, from_env), overrides)
        return Settings.model_validate(merged)
    except ValidationError as exc:
        where = f"{path}: " if path else ""
        first = exc.errors()[0]
        field_path = ".".join(str(p) for p in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        if message.startswith("["):  # an item of a list setting: name it as its index
            index, _, message = message.partition(" ")
            field_path += index
        raise ConfigError(f"{where}setting {field_path}: {message}") from exc


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out
