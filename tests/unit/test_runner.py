"""What a replica's /readyz says: a follower needs the Lease, the leader fresh metrics too."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs
from test_leader import FakeLeases

from healer.audit.store import AuditStore
from healer.collect.prometheus import PrometheusSource, RangeResult
from healer.config import load_settings
from healer.daemon import Healer
from healer.detect.shaped import ShapedDetector
from healer.detect.streaming import StreamingDetector
from healer.detect.warm import WarmReport
from healer.leader import LeaderElector
from healer.runner import Daemon

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[tuple[FakeLeases, Daemon, Daemon, list[datetime]]]:
    settings = load_settings(None, prometheus={"url": "http://prometheus.test:9090"})
    leases, clock = FakeLeases(), [T0]
    daemons = []
    for name in ("a", "b"):
        store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
        elector = LeaderElector(leases, identity=name, settings=settings.leader)
        healer = Healer(
            source=None,  # type: ignore[arg-type]  # never fetched here
            detector=StreamingDetector(settings.detector),
            actuator=None,  # type: ignore[arg-type]  # never called here
            store=store,
            playbooks=(),
            settings=settings,
        )
        daemons.append(
            Daemon(settings, healer, store, None, name, elector, clock=lambda: clock[0])  # type: ignore[arg-type]  # no source needed
        )
    yield leases, daemons[0], daemons[1], clock
    for daemon in daemons:
        daemon.store.close()


def test_before_the_first_attempt_nobody_is_ready(
    replicas: tuple[FakeLeases, Daemon, Daemon, list[datetime]],
) -> None:
    _, a, _, _ = replicas
    assert a.readiness() == ["leader election has not completed yet"]


def test_the_follower_is_ready_the_leader_waits_for_metrics(
    replicas: tuple[FakeLeases, Daemon, Daemon, list[datetime]],
) -> None:
    _, a, b, _ = replicas
    assert a.elector is not None and b.elector is not None
    a.elector.tick(T0)
    b.elector.tick(T0)
    assert b.readiness() == []
    assert a.readiness() == ["no cycle with metrics yet"]
    a.healer.vitals.last_error = "connection refused"
    assert a.readiness()[0] == (
        "metrics unavailable: connection refused (prometheus.url http://prometheus.test:9090)"
    )
    assert a.status()["is_leader"] is True and b.status()["leader"] == "a"


def test_a_kubernetes_api_outage_makes_every_replica_unready(
    replicas: tuple[FakeLeases, Daemon, Daemon, list[datetime]],
) -> None:
    leases, a, b, clock = replicas
    assert a.elector is not None and b.elector is not None
    a.elector.tick(T0)
    b.elector.tick(T0)
    leases.down = True
    clock[0] = T0 + timedelta(seconds=2)
    a.elector.tick(clock[0])
    b.elector.tick(clock[0])
    for daemon in (a, b):
        assert any("Kubernetes API unavailable" in r for r in daemon.readiness())


def test_the_status_says_how_the_detector_was_warmed(
    replicas: tuple[FakeLeases, Daemon, Daemon, list[datetime]],
) -> None:
    _, a, _, _ = replicas
    assert a.status()["warm"] is None  # not leading yet: nothing warmed
    a.warm = WarmReport(
        wanted_s=730_800.0,
        first_s=T0.timestamp() - 86_400,
        last_s=T0.timestamp(),
        workloads=3,
        samples=516,
        findings_dropped=0,
        seconds=1.5,
    )
    warm = a.status()["warm"]
    assert isinstance(warm, dict) and warm["short"] is True and warm["history_s"] == 86_400


class Unexpected:
    """A Prometheus client failing as nothing foresaw: not an HTTP failure, a bug."""

    url = "http://prometheus.test:9090"

    def query_range(self, promql: str, *, start_s: int, end_s: int, step_s: int) -> RangeResult:
        raise RuntimeError("an answer nobody expected")


def test_a_warm_up_failing_in_any_way_logs_one_line_and_the_daemon_starts_cold(
    tmp_path: Path,
) -> None:
    """Without leader election the daemon takes over at once: a warm-up failure must
    not end ``healer run``, however unexpected."""
    settings = load_settings(None, prometheus={"url": "http://prometheus.test:9090"})
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    before = StreamingDetector(settings.detector)
    healer = Healer(
        source=None,  # type: ignore[arg-type]  # never fetched here
        detector=before,
        actuator=None,  # type: ignore[arg-type]  # never called here
        store=store,
        playbooks=(),
        settings=settings,
    )
    source = PrometheusSource.from_settings(settings.prometheus, client=Unexpected())
    daemon = Daemon(settings, healer, store, source, "a", clock=lambda: T0)
    try:
        with capture_logs() as logs:
            daemon.take_over()
    finally:
        store.close()
    (failed,) = [e for e in logs if e["log_level"] in ("warning", "error")]
    assert failed["event"] == "warm_failed" and "an answer nobody expected" in failed["error"]
    assert [e["event"] for e in logs][-1] == "leading"
    assert healer.detector is not before and daemon.warm is None
    assert isinstance(healer.detector, ShapedDetector)
    assert healer.detector.shape_rows() == {}  # cold: nothing learned
