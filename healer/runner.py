"""`healer run`: the daemon beside a real cluster, wired from the settings.

One process holds the loop, the HTTP API and, with leader election on, a thread that
keeps the Lease: every replica serves the API from the shared audit store, only the
leader cycles and acts. Start-up fails fast, naming the setting, on what no retry can
fix: a settings file that does not load, a kubeconfig that does not exist or parse, a
Prometheus URL that is not an http(s) URL, a playbook that does not validate, a port in
use. A dependency that is merely down (the Kubernetes API, Prometheus) does not stop
start-up: the daemon logs which setting points at it, reports not ready on ``/readyz``
and keeps trying, since in a cluster it usually starts before its dependencies.

On taking the lead (at once without leader election) the daemon warms a fresh
detector from the history Prometheus holds (``warmup``) before its first cycle, so it
judges with a week of history from the start; less history than wanted, or none, is
logged and shown on ``/status``, never a reason not to start; nor is a warm-up that
fails in a way nobody foresaw: one ``warm_failed`` line, and the daemon starts cold.

Shutdown (SIGTERM, SIGINT) lets the cycle in flight finish (each of its steps is
recorded before the next begins), stops the Lease thread, releases the Lease so a
follower takes over at once, then stops the API and closes the store.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlparse

import structlog

from healer.act.customobjects import CustomObjects
from healer.act.kube import KubeActuator, api_client
from healer.act.lease import KubeLeases, KubeMembers, server_version
from healer.act.policy_api import KubePolicyApi
from healer.act.silences import SilenceKeeper
from healer.api.app import create_app
from healer.api.server import ServerThread, bind
from healer.audit.store import AuditStore
from healer.collect.prometheus import (
    HttpFailure,
    PrometheusClient,
    PrometheusSource,
    RangeClient,
)
from healer.collect.scope import ScopedSource
from healer.collect.source import MetricsSource
from healer.compose import build_loop
from healer.config import Settings
from healer.daemon import Detector, Healer, Reporter, run_forever
from healer.decide import load_playbooks
from healer.decide.escalation import EscalationQueue
from healer.detect.combined import build_detector
from healer.detect.warm import WarmReport
from healer.errors import ActionError, ConfigError, StoreError
from healer.gitops.build import gitops_actuator
from healer.leader import LeaderElector, LeaderOnlyActuator, default_identity, run_elector
from healer.lifecycle import policy_watch
from healer.lifecycle.brake_share import BrakeShare
from healer.membership import Membership
from healer.sharding import (
    ShardClaims,
    ShardOnlyActuator,
    check_shard_count,
    lease_name,
)
from healer.types import JsonObject
from healer.warmup import warm_from_prometheus

log = structlog.get_logger("healer.runner")

Clock = Callable[[], datetime]


class WindowedSource(MetricsSource, Protocol):
    """The daemon's metrics source: it keeps a window between fetches, which taking the
    lead starts afresh (``reset``), and lends its client to warming the detector from
    history. ``PrometheusSource`` in a cluster; a fake in tests."""

    @property
    def client(self) -> RangeClient: ...

    def reset(self) -> None: ...


def _wall_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class Daemon:
    """Everything ``healer run`` started; ``serve`` runs it until ``stop`` is set."""

    settings: Settings
    healer: Healer
    store: AuditStore
    source: WindowedSource
    identity: str
    elector: LeaderElector | ShardClaims | None = None
    """The Lease this replica leads by, or its shard Leases (``sharding.shards``)."""
    api: ServerThread | None = None
    clock: Clock = _wall_clock
    playbooks: int = 0
    warm: WarmReport | None = None
    """What the detector learned from Prometheus when this replica last took the lead."""
    _threads: list[threading.Thread] = field(default_factory=list)
    policies: KubePolicyApi | None = None
    """Where the policy objects are watched (``policies.enabled``); None: settings alone."""
    _policy_stop: threading.Event = field(default_factory=threading.Event)

    # ---- what /readyz and /api/v1/status say ----------------------------------------------

    def readiness(self) -> list[str]:
        """Why this replica is not ready; empty when it is.

        A follower is ready when it can reach the Lease (it serves the API from the shared
        store); the leader also needs a recent cycle on fresh metrics.
        """
        now = self.clock()
        reasons: list[str] = []
        elector = self.elector
        if elector is not None:
            if elector.last_error is not None:
                reasons.append(
                    f"Kubernetes API unavailable (cluster settings): {elector.last_error}"
                )
            elif not elector.holder and not elector.is_leader(now):
                reasons.append("leader election has not completed yet")
            if not elector.is_leader(now):
                return reasons
        for reason in self.healer.readiness(now):
            if reason.startswith("metrics unavailable"):
                reason = f"{reason} (prometheus.url {self.settings.prometheus.url})"
            reasons.append(reason)
        return reasons

    def status(self) -> JsonObject:
        out = dict(self.healer.status())
        if self.elector is not None:
            out.update(self.elector.status(self.clock()))
        else:
            out.update({"identity": self.identity, "is_leader": True, "leader": self.identity})
        out["warm"] = self.warm.as_json() if self.warm is not None else None
        return out

    # ---- running ---------------------------------------------------------------------------

    def take_over(self) -> None:
        """Become the acting leader: a fresh detector warmed from Prometheus' history, a
        fresh metrics window, the shared store's open incidents resumed (an action another
        leader took is verified, never repeated)."""
        self.healer.tracked.clear()
        self.healer.detector = self._warmed_detector()
        self.source.reset()
        resumed = self.healer.resume()
        policies = self.healer.policies
        if isinstance(policies, policy_watch.PolicyBook) and not policies.wait_synced(
            POLICY_SYNC_S
        ):
            log.warning("policies_not_synced", waited_s=POLICY_SYNC_S, using="settings for now")
        log.info("leading", identity=self.identity, incidents_resumed=resumed)

    def _warmed_detector(self) -> Detector:
        """A fresh detector, warmed from Prometheus' history unless ``warm_s`` is 0.

        Warming only spares the detector hours of learning: whatever goes wrong in it
        (what ``warm_from_prometheus`` does not absorb itself, i.e. a bug or an answer
        nobody foresaw) is logged on one line and the daemon starts cold, with a new
        detector, since the one being warmed may have learned part of the history.
        """
        detector = build_detector(self.settings.detector)
        if self.settings.detector.warm_s == 0:
            return detector
        try:
            self.warm = warm_from_prometheus(
                detector,
                prometheus=self.settings.prometheus,
                settings=self.settings.detector,
                now=self.clock(),
                client=self.source.client,
            )
        except Exception as exc:
            log.error("warm_failed", error=repr(exc), start="cold")
            self.warm = None
            return build_detector(self.settings.detector)
        return detector

    def serve(self, stop: threading.Event, *, once: bool = False) -> None:
        """Run until ``stop`` is set (or one cycle with ``once``), then shut down cleanly."""
        lease_stop = threading.Event()
        elector = self.elector
        if elector is not None:
            elector.tick(self.clock())  # a first attempt now: --once needs its answer
            thread = threading.Thread(
                target=run_elector,
                kwargs={"elector": elector, "stop": lease_stop, "now": self.clock},
                name="lease",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        self._watch_policies()
        try:
            if once and elector is not None and not elector.is_leader(self.clock()):
                log.warning("not_leader", identity=self.identity, holder=elector.holder)
                return
            if elector is None:
                self.take_over()
            run_forever(
                self.healer,
                interval_s=self.settings.daemon.interval_s,
                stop=stop,
                now=self.clock,
                cycles=1 if once else None,
                leadership=elector,
                on_lead=self.take_over,
                poll_s=min(1.0, self.settings.leader.retry_period_s),
                backoff_max_s=self.settings.daemon.backoff_max_s,
            )
        finally:
            self.shutdown(lease_stop)

    def missed_cycle(self) -> str | None:
        """Why ``serve(once=True)`` ran no cycle on fresh metrics, naming the setting to
        check; None when it did. Read after ``serve``."""
        healer, elector = self.healer, self.elector
        if (
            healer.vitals.last_cycle is not None
            and healer.vitals.last_cycle == healer.vitals.last_attempt
        ):
            return None
        if healer.vitals.last_error is not None:
            url = self.settings.prometheus.url
            return f"no metrics from prometheus.url {url}: {healer.vitals.last_error}"
        if healer.vitals.cycle_failures:
            return "the cycle failed (the log says why)"
        if elector is not None and elector.last_error is not None:
            return f"Kubernetes API unavailable (cluster.kubeconfig): {elector.last_error}"
        if elector is not None:
            return f"not the leader: {elector.holder or 'another replica'} holds the Lease"
        return "no cycle ran"

    def _watch_policies(self) -> None:
        """The policy watch's threads, beside the cycle (``lifecycle.policy_watch``);
        daemon threads, not joined at shutdown: they keep nothing to flush."""
        if self.policies is None or not isinstance(self.healer.policies, policy_watch.PolicyBook):
            return
        elector, policy = self.elector, self.settings.policies
        policy_watch.start(
            self.policies,
            self.healer.policies,
            stop=self._policy_stop,
            leading=lambda: elector is None or elector.is_leader(self.clock()),
            now=self.clock,
            status_interval_s=policy.status_interval_s,
            missing_retry_s=policy.missing_retry_s,
        )

    def shutdown(self, lease_stop: threading.Event) -> None:
        lease_stop.set()
        self._policy_stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        if self.elector is not None:
            self.elector.release(self.clock())
        if self.api is not None:
            self.api.stop()
        if isinstance(self.healer.notifier, EscalationQueue):
            self.healer.notifier.close(timeout_s=10)  # what is queued, within a bound
        if isinstance(self.healer.silences, SilenceKeeper):
            self.healer.silences.close(timeout_s=10)  # expiries queued, within a bound
        self.store.close()
        log.info("stopped", identity=self.identity, cycles=self.healer.vitals.cycles)


def start(
    settings: Settings,
    *,
    serve_api: bool = True,
    report: Reporter | None = None,
    clock: Clock = _wall_clock,
) -> Daemon:
    """Build the daemon from ``settings``; raises ConfigError naming the setting at fault."""
    playbooks = load_playbooks(settings.playbooks_dir)
    api = _kube_client(settings)
    prometheus = _prometheus(settings)
    source: WindowedSource = prometheus
    identity = settings.leader.identity or default_identity()
    sock = bind(settings.api.host, settings.api.port) if serve_api else None
    try:
        store = _open_store(settings, identity=identity)
    except BaseException:
        if sock is not None:
            sock.close()
        raise
    actuator: Any = KubeActuator(api)
    elector: LeaderElector | ShardClaims | None = None
    scope = None
    if settings.sharding.shards:
        elector = _shard_claims(settings, api, identity=identity, clock=clock)
        actuator = ShardOnlyActuator(actuator, elector, clock=clock)
        source = ScopedSource(prometheus, owns=elector.owns)
        scope = elector.owns
    elif settings.leader.enabled:
        leases = KubeLeases(api, namespace=settings.leader.namespace, name=settings.leader.name)
        elector = LeaderElector(leases, identity=identity, settings=settings.leader)
        actuator = LeaderOnlyActuator(actuator, elector, clock=clock)
    if settings.gitops.enabled:  # outermost: only the leader cycles, and so pushes
        objects = CustomObjects(api)
        actuator = gitops_actuator(
            actuator, objects=objects, settings=settings, unresolved=store.unresolved, reviews=store
        )
    healer = build_loop(
        settings,
        source=source,
        actuator=actuator,
        store=store,
        playbooks=playbooks,
        report=report,
    )
    healer.scope = scope
    if scope is not None:
        fresh_s = 3 * settings.daemon.interval_s  # three missed cycles: that replica stopped
        healer.brake_share = BrakeShare(store, identity, fresh_s=fresh_s)
    daemon = Daemon(
        settings, healer, store, source, identity, elector, clock=clock, playbooks=len(playbooks)
    )
    if settings.policies.enabled:
        healer.policies = policy_watch.PolicyBook()
        daemon.policies = KubePolicyApi(api)
    if sock is not None:
        app = create_app(
            store=store,
            status=daemon.status,
            readiness=daemon.readiness,
            settings=settings,
            playbooks=playbooks,
            models_dir=settings.detector.models_dir,
            watched=lambda: healer.watching,
        )
        daemon.api = ServerThread(app, sock).start()
    _probe(settings, api)
    log.info(
        "started",
        identity=identity,
        mode=str(settings.guards.mode),
        leader_election=settings.leader.enabled,
        shards=settings.sharding.shards or None,
        cluster=settings.cluster.name,
        api=daemon.api.url if daemon.api else None,
        prometheus=settings.prometheus.url,
    )
    return daemon


POLICY_SYNC_S = 10.0
"""On taking the lead, the first cycle waits this long for the policy objects to be
listed, so that it never acts without the policies that exist; then it starts anyway
(the API server down: an action would fail too), and they apply once listed."""

STORE_OPEN_ATTEMPTS = 6
"""Opening the store is retried with a doubling wait (0.5 s, 1 s, ... 8 s: about 15 s in
all): replicas starting together on one SQLite file find it locked for a moment, and a
database server may still be starting. Then start-up fails, naming store.url."""


def _open_store(settings: Settings, *, identity: str) -> AuditStore:
    url = settings.store.url
    for attempt in range(STORE_OPEN_ATTEMPTS):
        try:
            return AuditStore(
                url,
                identity=identity,
                cluster=settings.cluster.name,
                unavailable_s=settings.store.unavailable_s,
            )
        except StoreError as exc:
            if attempt == STORE_OPEN_ATTEMPTS - 1:
                raise StoreError(f"setting store.url: {exc}") from exc
            log.warning("store_unavailable", setting="store.url", error=str(exc))
            time.sleep(0.5 * 2**attempt)
    raise AssertionError("unreachable")


def _shard_claims(settings: Settings, api: Any, *, identity: str, clock: Clock) -> ShardClaims:
    """One elector per shard Lease, after checking that no live replica runs with
    another shard count (ConfigError naming ``sharding.shards``)."""
    shards, leader = settings.sharding.shards, settings.leader

    def leases(index: int) -> KubeLeases:
        return KubeLeases(api, namespace=leader.namespace, name=lease_name(leader.name, index))

    check_shard_count([leases(i) for i in range(shards + 1)], shards=shards, now=clock())
    electors = [
        LeaderElector(leases(i), identity=identity, settings=leader, shards=shards)
        for i in range(shards)
    ]
    membership = Membership(
        KubeMembers(api, namespace=leader.namespace, group=leader.name),
        identity=identity,
        base=leader.name,
        settings=leader,
        settle_s=settings.sharding.settle_s,
    )
    return ShardClaims(
        electors, identity=identity, settings=leader, clock=clock, membership=membership
    )


def _kube_client(settings: Settings) -> Any:
    cluster = settings.cluster
    if cluster.kubeconfig is not None and not cluster.kubeconfig.is_file():
        raise ConfigError(f"setting cluster.kubeconfig: {cluster.kubeconfig}: no such file")
    try:
        return api_client(cluster.kubeconfig, cluster.context)
    except ConfigError as exc:
        raise ConfigError(f"setting cluster.kubeconfig: {exc}") from exc


def _prometheus(settings: Settings) -> PrometheusSource:
    url = settings.prometheus.url
    if not url:
        raise ConfigError("setting prometheus.url: not set (the Prometheus HTTP API base URL)")
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"setting prometheus.url: {url!r} is not an http(s) URL")
    return PrometheusSource.from_settings(settings.prometheus)


def _probe(settings: Settings, api: Any) -> None:
    """Say at start-up which dependency is down and which setting points at it."""
    try:
        version = server_version(api)
        log.info("kubernetes_reachable", version=version)
    except ActionError as exc:
        log.warning(
            "dependency_unavailable",
            setting="cluster.kubeconfig",
            kubeconfig=str(settings.cluster.kubeconfig or "in-cluster"),
            error=str(exc),
        )
    client = PrometheusClient.from_settings(settings.prometheus)
    try:
        end_s = int(datetime.now(UTC).timestamp())
        client.query_range("vector(1)", start_s=end_s - 60, end_s=end_s, step_s=60)
        log.info("prometheus_reachable", url=settings.prometheus.url)
    except HttpFailure as exc:
        log.warning(
            "dependency_unavailable",
            setting="prometheus.url",
            url=settings.prometheus.url,
            error=exc.detail,
        )
    finally:
        client.close()
