"""healer's Prometheus path against a real Prometheus server.

The server is Debian's ``prometheus`` binary, started per module on a free loopback port
with a temporary data directory. Without the binary these tests skip, unless
HEALER_REQUIRE_PROMETHEUS=1 (set by CI), which makes a missing binary a failure.

Two ways in:

* Live: Prometheus scrapes the simulator's /metrics every second. Each scrape first
  advances the simulated cluster by one step (``step_s`` = 1 s), so scrape *k* shows the
  cluster after step *k*, and ``cluster.samples[k]`` is the ground truth of every point
  whose newest scrape is *k*. With ``rate()`` over two scrape intervals a rate covers
  exactly that last step, as the simulator's samples do.
* Backfill: a day of simulated history written as OpenMetrics, turned into TSDB blocks
  by ``promtool tsdb create-blocks-from openmetrics``, then served by Prometheus.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from healer.api.server import ServerThread, bind
from healer.collect.prometheus import PrometheusClient, PrometheusSource
from healer.collect.rules import recording_rules
from healer.collect.signals import POD_OWNER_RECORD, RECORDS, build_queries
from healer.config import PrometheusSettings
from healer.errors import QueryError
from healer.sim.apiserver import create_api, write_kubeconfig
from healer.sim.cluster import LATENCY_BUCKETS_S, Cluster
from healer.sim.exposition import render_metrics
from healer.sim.scenario import Scenario, load_scenario
from healer.types import Frame, Signal, WorkloadRef

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration

# Agreement with the simulator's ground truth, per signal: (relative, absolute); a point
# agrees when |prometheus - truth| <= max(relative * |truth|, absolute).
# cpu, memory, request_rate, ready_ratio: the same arithmetic on the same samples; the
# tolerance absorbs float rounding and a pod that started or stopped within the step
# (the simulator counts a new pod's first step from zero, rate() needs two samples).
# error_ratio: absolute 0.01. rate() extrapolates a counter's increase towards the
# window's start only as far as the counter would reach zero, so a pod's 5xx counter
# going from 0 to 1 reads about half its rate (1/80 of a step's requests, here).
# latency_p99: compared by histogram bucket instead (see test_latency_in_the_right_bucket).
TOLERANCE = {
    Signal.CPU: (0.02, 1e-6),
    Signal.MEMORY: (0.001, 1e-6),
    Signal.REQUEST_RATE: (0.02, 1e-6),
    Signal.ERROR_RATIO: (0.0, 0.01),
    Signal.READY_RATIO: (0.0, 1e-9),
}
# Share of points that must agree. web/api runs undisturbed: all of its points. The
# others restart (checkout) and roll out (cart): a step in which a pod starts or stops
# differs, because rate() needs two samples of a new pod and the simulator counts the
# pod's first step from zero.
STEADY = WorkloadRef("web", "Deployment", "api")
STEADY_STATEFULSET = WorkloadRef("shop", "StatefulSet", "ledger")
"""Its pods reach it through ``kube_pod_owner`` alone, named ``statefulset/ledger``."""
STEADY_DAEMONSET = WorkloadRef("infra", "DaemonSet", "proxy")
"""One pod on each node, named ``daemonset/proxy`` the same way."""
AGREEING_SHARE = 0.9
STEADY_SHARE = 0.95


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        message = f"the {name} binary is not installed (Debian package prometheus)"
        if os.environ.get("HEALER_REQUIRE_PROMETHEUS") == "1":
            pytest.fail(message + " and HEALER_REQUIRE_PROMETHEUS=1")
        pytest.skip(message)
    return found


# Ports for servers the tests start in another process, which must be told a port before
# they bind it. Below Linux's ephemeral range (32768-60999), where bind(port 0) never
# lands, in a block of its own per pytest-xdist worker: between this check and the
# server's bind, no other test can be handed the same port. Each run starts at a random
# place in its block, so that two runs on one machine rarely race for the same port.
PORT_BASE = 10000
PORTS_PER_WORKER = 500
_ports = itertools.count(random.randrange(PORTS_PER_WORKER))


def _free_port() -> int:
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    first = PORT_BASE + worker * PORTS_PER_WORKER
    for _ in range(PORTS_PER_WORKER):
        port = first + next(_ports) % PORTS_PER_WORKER
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue  # taken by something else on this machine
        return port
    raise RuntimeError(f"no free port in {first}-{first + PORTS_PER_WORKER - 1}")


@dataclass
class PrometheusServer:
    """A real Prometheus process on loopback; ``url`` once ready."""

    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    @classmethod
    def start(
        cls,
        workdir: Path,
        *,
        targets: list[str],
        data_dir: Path,
        interval_s: float = 1.0,
        rule_files: Sequence[Path] = (),
        alertmanager: str | None = None,
    ) -> PrometheusServer:
        """Scraping ``targets`` and evaluating ``rule_files`` every ``interval_s``; firing
        alerts go to ``alertmanager`` (``host:port``), resent as often as rules run."""
        every = f"{interval_s:g}s"
        config: dict[str, Any] = {
            "global": {
                "scrape_interval": every,
                "scrape_timeout": every,
                "evaluation_interval": every,
            },
            "scrape_configs": [{"job_name": "sim", "static_configs": [{"targets": targets}]}]
            if targets
            else [],
            "rule_files": [str(path) for path in rule_files],
        }
        if alertmanager is not None:
            config["alerting"] = {
                "alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]
            }
        config_path = workdir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config))
        port = _free_port()
        log_path = workdir / "prometheus.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [
                    _binary("prometheus"),
                    f"--config.file={config_path}",
                    f"--storage.tsdb.path={data_dir}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    # Backfilled history may be older than the default 15 days.
                    "--storage.tsdb.retention.time=100y",
                    # An alert, a resolved one too, is sent again after this rather than
                    # the default minute: Alertmanager holds back a resolution that
                    # arrives while the alert is silenced and delivers the one sent after.
                    f"--rules.alert.resend-delay={every}",
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        server = cls(process, f"http://127.0.0.1:{port}", log_path)
        server.wait_ready()
        return server

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"prometheus not ready after {timeout_s} s")

    def instant(self, promql: str) -> list[dict[str, Any]]:
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10.0)
        answer.raise_for_status()
        result: list[dict[str, Any]] = answer.json()["data"]["result"]
        return result

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _scenario(*, start: datetime, step_s: float, events: list[dict[str, Any]]) -> Scenario:
    return Scenario.model_validate(
        {
            "name": "prometheus",
            "description": "steady api, ledger (a StatefulSet) and proxy (a DaemonSet), a "
            "leaking checkout, a bad release of cart",
            "start": start,
            "step_s": step_s,
            "seed": 11,
            # Errors common enough that every pod's 5xx counter is well above zero after
            # a few steps: near zero, rate() extrapolates less (see TOLERANCE).
            "images": {
                "web/api:1": {"error_ratio": 0.02},
                "shop/checkout:1": {"error_ratio": 0.02},
                "shop/cart:1": {"error_ratio": 0.02},
                "shop/cart:2": {"error_ratio": 0.2, "latency_s": 0.3},
                "shop/ledger:1": {"error_ratio": 0.02},
                "infra/proxy:1": {"error_ratio": 0.02},
            },
            "workloads": [
                {
                    "name": "api",
                    "namespace": "web",
                    "replicas": 2,
                    "image": "web/api:1",
                    "traffic": {"base_rps": 80, "noise": 0.05},
                },
                {
                    "name": "checkout",
                    "namespace": "shop",
                    "replicas": 2,
                    "image": "shop/checkout:1",
                    "traffic": {"base_rps": 40, "noise": 0.05},
                },
                {
                    "name": "cart",
                    "namespace": "shop",
                    "replicas": 2,
                    "image": "shop/cart:1",
                    "traffic": {"base_rps": 30, "noise": 0.05},
                },
                {
                    "name": "ledger",
                    "namespace": "shop",
                    "kind": "StatefulSet",
                    "replicas": 2,
                    "image": "shop/ledger:1",
                    "traffic": {"base_rps": 20, "noise": 0.05},
                },
                {
                    "name": "proxy",
                    "namespace": "infra",
                    "kind": "DaemonSet",
                    "image": "infra/proxy:1",
                    # One pod on each of the scenario's 3 nodes: 30 requests a second
                    # each, as many as the Deployments' pods, so that its pods' 5xx
                    # counters too leave zero within a few steps.
                    "traffic": {"base_rps": 90, "noise": 0.05},
                },
            ],
            "events": events,
        }
    )


def _advancing(app: Any, cluster: Cluster, *, steps: int) -> Callable[..., Any]:
    """The simulator's app, moving the cluster one step per scrape, for ``steps`` scrapes."""

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/metrics":
            with cluster.lock:
                if len(cluster.samples) < steps:
                    cluster.advance(cluster.scenario.step_s)
        await app(scope, receive, send)

    return wrapped


LIVE_STEPS = 45
CART_RELEASE_STEP = 15
RATE_WINDOW_S = 2  # two scrape intervals: each rate() covers exactly the last step


@dataclass
class Live:
    prometheus: PrometheusServer
    cluster: Cluster
    scrape_times: np.ndarray[Any, np.dtype[np.float64]]
    sim: ServerThread


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    _binary("prometheus")
    workdir = tmp_path_factory.mktemp("prometheus-live")
    start = datetime.now(UTC).replace(microsecond=0)
    cluster = Cluster(
        _scenario(
            start=start,
            step_s=1.0,
            events=[
                {
                    "at_s": 5,
                    "kind": "memory_leak",
                    "workload": "shop/checkout",
                    "bytes_per_s": 30e6,
                    "expect": "restart",
                },
                {
                    "at_s": 15,
                    "kind": "release",
                    "workload": "shop/cart",
                    "image": "shop/cart:2",
                    "expect": "rollback",
                },
            ],
        )
    )
    sim = ServerThread(
        _advancing(create_api(cluster), cluster, steps=LIVE_STEPS), bind("127.0.0.1", 0)
    ).start()
    target = sim.url.removeprefix("http://")
    prometheus = PrometheusServer.start(
        workdir, targets=[target], data_dir=workdir / "data", interval_s=1.0
    )
    try:
        deadline = time.monotonic() + 120
        while len(cluster.samples) < LIVE_STEPS and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(cluster.samples) == LIVE_STEPS, "Prometheus did not scrape the simulator"
        time.sleep(2.5)  # the last scrapes are ingested
        raw = prometheus.instant('kube_deployment_spec_replicas{deployment="api"}[10m]')
        times = np.array([float(t) for t, _ in raw[0]["values"]])
        yield Live(prometheus, cluster, times, sim)
    finally:
        prometheus.stop()
        sim.stop()


def _truth_at(live: Live, frame: Frame) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Ground truth aligned with ``frame``: (truth[w, s, t], usable[t])."""
    newest = np.searchsorted(live.scrape_times, frame.timestamps, side="right") - 1
    # Scrape 0 has no predecessor for rate(), and counters within a step or two of zero
    # read low (see TOLERANCE); scrapes past LIVE_STEPS repeat the last step.
    usable = (newest >= 3) & (newest < LIVE_STEPS)
    order = [live.cluster.workloads.index(w) for w in frame.workloads]
    samples = np.stack(live.cluster.samples)  # (T, W, S)
    truth = samples[np.clip(newest, 0, LIVE_STEPS - 1)][:, order, :]
    return np.transpose(truth, (1, 2, 0)), usable


def _source(url: str, *, step_s: int, window_s: int, **overrides: Any) -> PrometheusSource:
    return PrometheusSource(
        PrometheusClient(url, timeout_s=10.0),
        queries=build_queries(window_s=window_s, **overrides),
        step_s=step_s,
    )


def _live_frame(live: Live) -> Frame:
    source = _source(live.prometheus.url, step_s=1, window_s=RATE_WINDOW_S)
    until = datetime.fromtimestamp(live.scrape_times[-1], UTC)
    return source.fetch(until=until, window_s=LIVE_STEPS + 10)


def _agreement(
    frame: Frame, truth: Any, usable: Any, signal: Signal, rows: list[int] | None = None
) -> float:
    s = frame.signals.index(signal)
    rows = list(range(len(frame.workloads))) if rows is None else rows
    got, want = frame.values[rows][:, s, usable], truth[rows][:, s, usable]
    relative, absolute = TOLERANCE[signal]
    both_nan = np.isnan(got) & np.isnan(want)
    close = np.abs(got - want) <= np.maximum(relative * np.abs(want), absolute)
    return float(np.mean(both_nan | close))


def test_every_scrape_reached_prometheus(live: Live) -> None:
    assert len(live.scrape_times) >= LIVE_STEPS
    assert np.all(np.diff(live.scrape_times[:LIVE_STEPS]) == pytest.approx(1.0, abs=0.2))


@pytest.mark.parametrize("signal", sorted(TOLERANCE))
def test_frame_matches_the_simulators_ground_truth(live: Live, signal: Signal) -> None:
    frame = _live_frame(live)
    assert set(frame.workloads) == set(live.cluster.workloads)
    truth, usable = _truth_at(live, frame)
    assert usable.sum() >= LIVE_STEPS - 5
    steady = frame.workloads.index(STEADY)
    # The steady workload agrees at (nearly) every step: a scrape that a loaded machine
    # delays past its step boundary can shift one or two rate() windows by a step.
    assert _agreement(frame, truth, usable, signal, rows=[steady]) >= STEADY_SHARE
    ledger = frame.workloads.index(STEADY_STATEFULSET)
    assert _agreement(frame, truth, usable, signal, rows=[ledger]) >= STEADY_SHARE
    proxy = frame.workloads.index(STEADY_DAEMONSET)
    assert _agreement(frame, truth, usable, signal, rows=[proxy]) >= STEADY_SHARE
    assert _agreement(frame, truth, usable, signal) >= AGREEING_SHARE


def test_latency_in_the_right_bucket(live: Live) -> None:
    """histogram_quantile interpolates linearly inside a bucket, so it can only be asked
    to land in the bucket that holds the simulator's p99. Where the p99s sit depends on
    the time of day (the scenario starts now, traffic follows a daily cycle); one close
    to a bucket edge may be counted on the other side of it, because the histogram
    holds the sampled requests of all pods and the truth is the pods' model. So: every
    point within one bucket, at least 90% in the same bucket. cart is left out from its
    release on: while old and new pods serve together, the simulator's truth is the mean
    of the pods' p99s, not the p99 of the workload's requests, which the histogram
    measures."""
    frame = _live_frame(live)
    truth, usable = _truth_at(live, frame)
    s = frame.signals.index(Signal.LATENCY_P99)
    edges = np.array(LATENCY_BUCKETS_S)
    released = live.scrape_times[CART_RELEASE_STEP - 1]
    same: list[np.ndarray[Any, Any]] = []
    for w, workload in enumerate(frame.workloads):
        keep = usable & ~np.isnan(truth[w, s])
        if workload.name == "cart":
            keep &= frame.timestamps < released
        assert keep.sum() >= 10
        apart = np.searchsorted(edges, frame.values[w, s, keep]) - np.searchsorted(
            edges, truth[w, s, keep]
        )
        assert np.all(np.abs(apart) <= 1), (workload, apart)
        same.append(apart == 0)
    assert np.concatenate(same).mean() >= 0.9


def test_restarts_seen_at_the_steps_the_simulator_restarted(live: Live) -> None:
    """Prometheus' rate() extrapolates a counter's first increase from zero only halfway,
    so the first restart of a container reads lower than the truth: compare where
    restarts happened, and that every later one is exact."""
    frame = _live_frame(live)
    truth, usable = _truth_at(live, frame)
    s = frame.signals.index(Signal.RESTARTS)
    got, want = frame.values[:, s, usable], truth[:, s, usable]
    assert np.nansum(want) > 0, "the leak made no container restart"
    np.testing.assert_array_equal(got > 0, want > 0)


def test_faults_are_visible_through_prometheus(live: Live) -> None:
    frame = _live_frame(live)
    _, usable = _truth_at(live, frame)
    frame = Frame(
        frame.timestamps[usable], frame.workloads, frame.signals, frame.values[:, :, usable]
    )
    checkout = WorkloadRef("shop", "Deployment", "checkout")
    cart = WorkloadRef("shop", "Deployment", "cart")
    api = WorkloadRef("web", "Deployment", "api")
    memory = frame.series(checkout, Signal.MEMORY)
    assert np.nanmax(memory) > 0.9  # leaking towards its limit, then OOM-killed
    assert np.nanmax(frame.series(checkout, Signal.RESTARTS)) > 0
    errors = frame.series(cart, Signal.ERROR_RATIO)
    assert np.nanmean(errors[-10:]) > 0.15 > 0.05 > np.nanmean(errors[:10])
    assert np.nanmean(frame.series(api, Signal.ERROR_RATIO)) < 0.05
    assert np.nanmax(frame.series(api, Signal.RESTARTS)) == 0


def test_incremental_fetch_equals_a_full_fetch(live: Live) -> None:
    source = _source(live.prometheus.url, step_s=1, window_s=RATE_WINDOW_S)
    end = live.scrape_times[LIVE_STEPS - 1]
    source.fetch(until=datetime.fromtimestamp(end - 10, UTC), window_s=30)
    step = source.fetch(until=datetime.fromtimestamp(end, UTC), window_s=30)
    assert source.stats.incremental
    full = _source(live.prometheus.url, step_s=1, window_s=RATE_WINDOW_S).fetch(
        until=datetime.fromtimestamp(end, UTC), window_s=30
    )
    assert step.workloads == full.workloads
    np.testing.assert_array_equal(step.timestamps, full.timestamps)
    np.testing.assert_allclose(step.values, full.values, equal_nan=True)


def test_pod_view_reads_each_pods_own_values_for_the_workloads_asked(live: Live) -> None:
    """The per-pod queries (``healer.collect.pod_queries``) against the simulator's pods:
    the same pods, their memory as the containers hold it, each Ready, and only the
    workloads asked for, a StatefulSet's through ``kube_pod_owner`` alone."""
    settings = PrometheusSettings(url=live.prometheus.url, step_s=1, rate_window_s=RATE_WINDOW_S)
    source = PrometheusSource.from_settings(settings)
    until = datetime.fromtimestamp(live.scrape_times[LIVE_STEPS - 1], UTC)
    asked = (STEADY, STEADY_STATEFULSET)
    pods = source.fetch_pods(until=until, workloads=asked)
    assert set(pods.workloads) == set(asked)
    for workload in asked:
        mine = {pods.pods[p] for p in np.flatnonzero(pods.owner == pods.workloads.index(workload))}
        held = {
            p["metadata"]["name"] for p in live.cluster.pods_of(workload.namespace, workload.name)
        }
        assert mine == held
    assert pods.ready.all()
    memory = pods.values[:, pods.signals.index(Signal.MEMORY)]
    truth = [
        live.cluster.container(live.cluster.get_object("pods", ns, name)).memory_bytes
        for ns, name in (
            (pods.workloads[w].namespace, pod) for w, pod in zip(pods.owner, pods.pods, strict=True)
        )
    ]
    limit = 512 * 2**20
    np.testing.assert_allclose(memory, np.asarray(truth) / limit, rtol=0.05)
    latency = pods.values[:, pods.signals.index(Signal.LATENCY_P99)]
    assert np.all(np.isfinite(latency)) and np.all(latency > 0)
    assert np.all(pods.values[:, pods.signals.index(Signal.RESTARTS)] == 0)


def test_invalid_promql_override_names_the_signal_and_query(live: Live) -> None:
    source = _source(
        live.prometheus.url,
        step_s=1,
        window_s=RATE_WINDOW_S,
        overrides={Signal.LATENCY_P99: "histogram_quantile(0.99, sum by (le) (rate(x[5m]))"},
    )
    with pytest.raises(QueryError) as caught:
        source.fetch(until=datetime.fromtimestamp(live.scrape_times[-1], UTC), window_s=10)
    message = str(caught.value)
    assert "signal latency_p99" in message
    assert "configured query" in message
    assert "histogram_quantile(0.99, sum by (le) (rate(x[5m]))" in message


def test_query_without_workload_labels_is_a_query_error(live: Live) -> None:
    source = _source(
        live.prometheus.url,
        step_s=1,
        window_s=RATE_WINDOW_S,
        overrides={Signal.CPU: "sum(rate(container_cpu_usage_seconds_total[$window]))"},
    )
    with pytest.raises(QueryError, match=r"signal cpu: a series without namespace"):
        source.fetch(until=datetime.fromtimestamp(live.scrape_times[-1], UTC), window_s=10)


def _healer(*args: str) -> subprocess.CompletedProcess[str]:
    """The command line in its own process: its logging set-up stays out of this one."""
    return subprocess.run(
        [sys.executable, "-m", "healer.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_collect_command_prints_one_json_object(live: Live) -> None:
    result = _healer("collect", "--prometheus", live.prometheus.url, "--once", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["workloads"] == 5  # three Deployments, a StatefulSet and a DaemonSet
    assert list(report["signals"]) == [str(s) for s in Signal]
    for row in report["signals"].values():
        assert set(row) == {"gap_share", "query_seconds"}
        assert 0.0 <= row["gap_share"] <= 1.0 and row["query_seconds"] > 0.0


def test_collect_command_prints_a_table(live: Live) -> None:
    result = _healer("collect", "--prometheus", live.prometheus.url, "--once")
    assert result.returncode == 0, result.stderr
    assert f"{live.prometheus.url}: 5 workloads x 7 signals" in result.stdout
    assert "latency_p99" in result.stdout


def test_collect_command_with_a_bad_override_names_signal_and_query(
    live: Live, tmp_path: Path
) -> None:
    config = tmp_path / "healer.yaml"
    config.write_text(yaml.safe_dump({"prometheus": {"queries": {"cpu": "sum by (namespace"}}}))
    result = _healer(
        "collect", "--prometheus", live.prometheus.url, "--once", "--config", str(config)
    )
    assert result.returncode == 2, result.stderr
    assert "signal cpu: Prometheus refused the configured query" in result.stderr
    assert "query: sum by (namespace" in result.stderr
    assert "Traceback" not in result.stderr


# ---- backfill: a day of simulated history through promtool ---------------------------

DAY_STEP_S = 60
DAY_STEPS = 24 * 3600 // DAY_STEP_S
# Just under two steps: the range holds exactly the last two samples in Prometheus 2
# (closed range) and 3 (half-open), so each rate() covers the last step.
DAY_RATE_WINDOW_S = 2 * DAY_STEP_S - 1


def write_openmetrics(cluster: Cluster, steps: int, path: Path) -> None:
    """Advance ``cluster`` by ``steps`` steps and write every scrape as OpenMetrics.

    OpenMetrics wants each family's samples together, with timestamps, and names a
    counter family without its ``_total`` suffix.
    """
    families: dict[str, list[str]] = {}
    types: dict[str, str] = {}
    for _ in range(steps):
        cluster.advance(cluster.scenario.step_s)
        stamp = f" {cluster.clock.now_s():.3f}"
        family = ""
        for line in render_metrics(cluster).splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split()
                family = name.removesuffix("_total") if kind == "counter" else name
                types[family] = kind
                families.setdefault(family, [])
            elif line and not line.startswith("#"):
                families[family].append(line + stamp)
    with path.open("w") as out:
        for family, lines in families.items():
            out.write(f"# TYPE {family} {types[family]}\n")
            out.write("\n".join(lines) + "\n")
        out.write("# EOF\n")


@dataclass
class Day:
    prometheus: PrometheusServer
    cluster: Cluster
    data: Path


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Day]:
    promtool = _binary("promtool")
    workdir = tmp_path_factory.mktemp("prometheus-day")
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    scenario = load_scenario("default").model_copy(
        update={"start": midnight - timedelta(days=3), "step_s": float(DAY_STEP_S)}
    )
    cluster = Cluster(scenario)
    history = workdir / "history.om"
    write_openmetrics(cluster, DAY_STEPS, history)
    data = workdir / "data"
    subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(history), str(data)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    prometheus = PrometheusServer.start(workdir, targets=[], data_dir=data)
    try:
        yield Day(prometheus, cluster, data)
    finally:
        prometheus.stop()


def test_backfilled_day_reads_back_as_the_simulator_sampled_it(day: Day) -> None:
    source = _source(day.prometheus.url, step_s=DAY_STEP_S, window_s=DAY_RATE_WINDOW_S)
    times = np.asarray(day.cluster.timestamps)
    frame = source.fetch(until=datetime.fromtimestamp(times[-1], UTC), window_s=86400)
    np.testing.assert_array_equal(frame.timestamps, times)
    assert set(frame.workloads) == set(day.cluster.workloads)
    order = [day.cluster.workloads.index(w) for w in frame.workloads]
    truth = np.transpose(np.stack(day.cluster.samples)[:, order, :], (1, 2, 0))
    # The simulator's counters start at zero with the scenario; while they are within a
    # step of zero, rate() extrapolates only as far as zero and reads low.
    usable = np.arange(len(times)) >= 2
    steady = [frame.workloads.index(WorkloadRef("web", "Deployment", "storefront"))]
    for signal in TOLERANCE:
        assert _agreement(frame, truth, usable, signal, rows=steady) == 1.0, signal
        assert _agreement(frame, truth, usable, signal) >= AGREEING_SHARE, signal


def test_backfilled_day_shows_the_scenarios_faults(day: Day) -> None:
    source = _source(day.prometheus.url, step_s=DAY_STEP_S, window_s=DAY_RATE_WINDOW_S)
    times = np.asarray(day.cluster.timestamps)
    frame = source.fetch(until=datetime.fromtimestamp(times[-1], UTC), window_s=86400)
    start = day.cluster.scenario.start.timestamp()
    cart = frame.series(WorkloadRef("shop", "Deployment", "cart"), Signal.ERROR_RATIO)
    release = start + 3900  # the bad release of cart, from the default scenario
    assert np.nanmax(cart[frame.timestamps < release]) < 0.05
    assert np.nanmean(cart[frame.timestamps > release + 600]) > 0.1
    checkout = frame.series(WorkloadRef("shop", "Deployment", "checkout"), Signal.MEMORY)
    leak = start + 1200
    assert np.nanmax(checkout[frame.timestamps > leak]) > np.nanmax(
        checkout[frame.timestamps < leak]
    )


# ---- recording rules: backfilled over the day with promtool, as a cluster would -----


# A rule group is evaluated at a fixed offset inside its interval, promtool's backfill
# too: a hash of the group's name and of its file's path as given on the command line.
# The files are named relative to their folder, so that the offsets are the same on
# every run (a temporary path moved them at random), and named so that the map's offset
# comes before the signals' and both lie well inside the minute (16.5 s and 44.3 s):
# the signals then read the map of the same step, and their rate() over
# DAY_RATE_WINDOW_S holds two samples. A signals offset in the minute's last second
# (one temporary path in sixty) left one sample: no rate, NaN in every recorded rate.
# The test checks the offsets first, so that renaming the group fails there, saying so.
OWNER_RULES, SIGNAL_RULES = "rules-owner.yaml", "rules-signals.yaml"


def _backfill_rules(promtool: str, url: str, rules: Path, out: Path, times: Any) -> None:
    subprocess.run(
        [
            promtool,
            "tsdb",
            "create-blocks-from",
            "rules",
            f"--url={url}",
            f"--start={int(times[0])}",
            f"--end={int(times[-1]) + 1}",
            f"--eval-interval={DAY_STEP_S}s",
            f"--output-dir={out}",
            rules.name,  # relative: the group's file, and so its offset, never moves
        ],
        check=True,
        capture_output=True,
        timeout=300,
        cwd=rules.parent,
    )


def _offset_s(prometheus: PrometheusServer, record: str, until_s: float) -> float:
    """Where in the minute the recorded series ``record`` has its samples: the offset
    its rule group was evaluated at (the same for every sample of a group)."""
    answer = httpx.get(
        f"{prometheus.url}/api/v1/query",
        params={"query": f"{record}[10m]", "time": until_s},
        timeout=10.0,
    )
    answer.raise_for_status()
    stamps = {
        float(t) % DAY_STEP_S for r in answer.json()["data"]["result"] for t, _ in r["values"]
    }
    assert len(stamps) == 1, f"{record}: samples at {sorted(stamps)} s into the minute"
    return stamps.pop()


def _with_blocks(data: Path, *sources: Path) -> Path:
    """``data``'s blocks plus those of ``sources``, in a new directory."""
    merged = data.parent / f"{data.name}+{len(sources)}"
    for source in (data, *sources):
        for block in source.iterdir():
            if block.is_dir() and block.name.startswith("01"):  # ULID block directories
                shutil.copytree(block, merged / block.name)
    return merged


@pytest.fixture(scope="module")
def recorded_day(day: Day, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Day]:
    """The day with healer's recording rules backfilled: the map first, then the signals
    (promtool does not read series recorded in the same run)."""
    promtool = _binary("promtool")
    workdir = tmp_path_factory.mktemp("prometheus-rules")
    group = recording_rules(window_s=DAY_RATE_WINDOW_S, interval_s=DAY_STEP_S)["groups"][0]
    owner, signals = workdir / OWNER_RULES, workdir / SIGNAL_RULES
    owner.write_text(yaml.safe_dump({"groups": [{**group, "rules": group["rules"][:1]}]}))
    signals.write_text(yaml.safe_dump({"groups": [{**group, "rules": group["rules"][1:]}]}))
    times = np.asarray(day.cluster.timestamps)
    data = day.data
    _backfill_rules(promtool, day.prometheus.url, owner, workdir / "owner", times)
    mapped = PrometheusServer.start(
        workdir, targets=[], data_dir=_with_blocks(data, workdir / "owner")
    )
    try:
        _backfill_rules(promtool, mapped.url, signals, workdir / "signals", times)
    finally:
        mapped.stop()
    merged = _with_blocks(data, workdir / "owner", workdir / "signals")
    prometheus = PrometheusServer.start(workdir, targets=[], data_dir=merged)
    try:
        yield Day(prometheus, day.cluster, merged)
    finally:
        prometheus.stop()


def test_recorded_series_equal_the_joining_queries(day: Day, recorded_day: Day) -> None:
    times = np.asarray(day.cluster.timestamps)
    until, window_s = datetime.fromtimestamp(times[-1], UTC), 6 * 3600
    joined = _source(day.prometheus.url, step_s=DAY_STEP_S, window_s=DAY_RATE_WINDOW_S)
    recorded = PrometheusSource(
        PrometheusClient(recorded_day.prometheus.url, timeout_s=10.0),
        queries=build_queries(recorded=True),
        step_s=DAY_STEP_S,
    )
    # What the comparison below rests on: each group evaluated between two scrapes, the
    # map before the signals (OWNER_RULES).
    owner_s = _offset_s(recorded_day.prometheus, POD_OWNER_RECORD, times[-1])
    signal_s = _offset_s(recorded_day.prometheus, RECORDS[Signal.CPU], times[-1])
    assert 0 < owner_s < signal_s < DAY_STEP_S - 1, (owner_s, signal_s)
    want = joined.fetch(until=until, window_s=window_s)
    got = recorded.fetch(until=until, window_s=window_s)
    assert got.workloads == want.workloads
    np.testing.assert_array_equal(got.timestamps, want.timestamps)
    assert np.isnan(want.values).mean() < 0.05
    # Prometheus evaluates a rule group at a fixed offset inside its interval (a hash
    # of the group), promtool too: the value recorded by step t is the one of step t-1.
    np.testing.assert_allclose(
        got.values[:, :, 1:], want.values[:, :, :-1], rtol=1e-9, equal_nan=True
    )


def test_shipped_rules_file_is_valid_for_prometheus() -> None:
    result = subprocess.run(
        [_binary("promtool"), "check", "rules", str(REPO / "deploy/prometheus/healer-rules.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(Signal) + 1} rules found" in result.stdout


def _run_once(live: Live, tmp_path: Path, prometheus_url: str, **env: str) -> Any:
    """`healer run --once` wired as against a real cluster: kubeconfig, Prometheus, store."""
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", live.sim.url)
    environment = {
        **os.environ,
        "HEALER_STORE__URL": f"sqlite:///{tmp_path / 'audit.db'}",
        "HEALER_PLAYBOOKS_DIR": str(REPO / "playbooks"),
        **env,
    }
    command = ["run", "--once", "--kubeconfig", str(kubeconfig), "--prometheus", prometheus_url]
    return subprocess.run(
        [sys.executable, "-m", "healer.cli", *command],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=environment,
        cwd=tmp_path,
    )


def test_run_once_reads_prometheus_and_the_cluster(live: Live, tmp_path: Path) -> None:
    result = _run_once(live, tmp_path, live.prometheus.url)
    assert result.returncode == 0, result.stderr
    assert "mode dry_run" in result.stdout
    assert "stopped after 1 cycles" in result.stdout
    assert "no_metrics" not in result.stderr


def test_run_once_with_an_unreachable_prometheus_fails_naming_it_without_acting(
    live: Live, tmp_path: Path
) -> None:
    unreachable = f"http://127.0.0.1:{_free_port()}"
    result = _run_once(live, tmp_path, unreachable, HEALER_PROMETHEUS__RETRIES="0")
    assert result.returncode == 2, result.stderr
    assert "no_metrics" in result.stderr  # the cycle ran into it, acted on nothing
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("healer: error: healer run --once: no cycle ran: no metrics from")
    assert f"prometheus.url {unreachable}" in last
    assert '"cycles": 0' in result.stderr


def test_run_with_invalid_promql_keeps_cycling_without_acting_and_readyz_says_why(
    live: Live, tmp_path: Path
) -> None:
    """The daemon as deployed: a bad override in the settings file. It must stay up,
    never act, and tell a readiness probe (and a person) which signal and query fail."""
    config = tmp_path / "healer.yaml"
    bad = "sum by (namespace, deployment) (rate(http_requests_total[$window])"
    config.write_text(
        yaml.safe_dump(
            {
                "prometheus": {"queries": {"request_rate": bad}, "step_s": 1},
                "daemon": {"interval_s": 1.0},
                "api": {"port": _free_port()},
            }
        )
    )
    port = yaml.safe_load(config.read_text())["api"]["port"]
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", live.sim.url)
    environment = {
        **os.environ,
        "HEALER_STORE__URL": f"sqlite:///{tmp_path / 'audit.db'}",
        "HEALER_PLAYBOOKS_DIR": str(REPO / "playbooks"),
    }
    command = [
        *("run", "--config", str(config), "--kubeconfig", str(kubeconfig)),
        *("--prometheus", live.prometheus.url),
    ]
    with subprocess.Popen(
        [sys.executable, "-m", "healer.cli", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
        cwd=tmp_path,
    ) as daemon:
        try:
            body: dict[str, Any] = {}
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and daemon.poll() is None:
                try:
                    answer = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2.0)
                    body = answer.json()
                    if any("request_rate" in r for r in body.get("reasons", [])):
                        assert answer.status_code == 503
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.3)
            time.sleep(2.5)  # a few more cycles fail the same way; the daemon stays up
            assert daemon.poll() is None, "the daemon stopped on a bad query"
        finally:
            daemon.terminate()
            stdout, stderr = daemon.communicate(timeout=30)
    assert body["status"] == "not ready", body
    reason = next(r for r in body["reasons"] if "request_rate" in r)
    assert reason.startswith("metrics unavailable: signal request_rate: Prometheus refused")
    assert "configured query" in reason and bad.replace("$window", "60s") in reason
    assert daemon.returncode == 0, stderr
    assert stderr.count("no_metrics") >= 2
    assert "stopped after 0 cycles" in stdout
