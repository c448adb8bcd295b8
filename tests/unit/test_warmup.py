"""Warming from Prometheus with a fake client: chunked reads, a short history, an outage."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
from structlog.testing import capture_logs

from healer.collect.prometheus import HttpFailure, RangeResult, RawSeries
from healer.config import DetectorSettings, PrometheusSettings
from healer.detect.combined import build_detector
from healer.detect.shaped import ShapedDetector
from healer.warmup import WARM_CHUNK_POINTS, warm_from_prometheus

NOW = datetime(2026, 3, 9, 12, 0, tzinfo=UTC)
PROMETHEUS = PrometheusSettings(url="http://prometheus.test:9090", retries=0)
DETECTOR = DetectorSettings(shape_warmup_buckets=100)


@dataclass
class History:
    """Answers every query with a flat series for two workloads from ``oldest_s`` on."""

    oldest_s: float
    url: str = "http://prometheus.test:9090"
    calls: list[tuple[int, int, int]] = field(default_factory=list)
    down: bool = False

    def query_range(self, promql: str, *, start_s: int, end_s: int, step_s: int) -> RangeResult:
        self.calls.append((start_s, end_s, step_s))
        if self.down:
            raise HttpFailure(None, "connection refused")
        times = np.arange(start_s, end_s + 1, step_s)
        times = times[times >= self.oldest_s]
        series: list[RawSeries] = [
            {
                "metric": {"namespace": "shop", "deployment": name},
                "values": [[float(t), "0.5"] for t in times],
            }
            for name in ("cart", "orders")
        ]
        return RangeResult(series if len(times) else [])


def detector() -> ShapedDetector:
    out = build_detector(DETECTOR)
    assert isinstance(out, ShapedDetector)
    return out


def test_a_short_history_warms_from_what_there_is_and_says_so() -> None:
    client = History(oldest_s=NOW.timestamp() - 2 * 86_400)
    warmed = detector()
    with capture_logs() as logs:
        report = warm_from_prometheus(
            warmed, prometheus=PROMETHEUS, settings=DETECTOR, now=NOW, client=client
        )
    assert report.short and abs(report.history_s - 2 * 86_400) <= 300
    assert min(warmed.shape_rows().values()) >= DETECTOR.shape_warmup_buckets
    # Each query spans at most a day of buckets (or the recent hour at the scrape step).
    assert all((end - start) // step < WARM_CHUNK_POINTS for start, end, step in client.calls)
    assert {step for _, _, step in client.calls} == {300, 15}
    reads = [e for e in logs if e["event"] == "warm_read"]
    assert reads and reads[-1]["part"] == "recent"
    (done,) = [e for e in logs if e["event"] == "warmed"]
    assert done["log_level"] == "warning" and done["history_h"] == 48.0
    assert done["wanted_h"] > 200


def test_an_unreachable_prometheus_starts_cold_with_one_warning() -> None:
    client = History(oldest_s=0, down=True)
    warmed = detector()
    with capture_logs() as logs:
        report = warm_from_prometheus(
            warmed, prometheus=PROMETHEUS, settings=DETECTOR, now=NOW, client=client
        )
    assert report.history_s == 0 and report.first_s is None and report.short
    assert len(client.calls) == 7  # the first chunk's seven signals, then no more
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == [
        "warm_read_failed",
        "warmed",
    ]
    assert warmed.shape_rows() == {}
