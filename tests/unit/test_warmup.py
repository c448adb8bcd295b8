"""Warming from Prometheus with a fake client: chunked reads, a short history, an outage."""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
from structlog.testing import capture_logs

from healer.collect.prometheus import HttpFailure, RangeResult, RawSeries
from healer.config import DetectorSettings, PrometheusSettings
from healer.detect.combined import build_detector
from healer.detect.shaped import ShapedDetector
from healer.detect.streaming import Detection, StreamingDetector
from healer.types import Frame, Signal
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
    names: tuple[str, ...] = ("cart", "orders")
    points: list[int] = field(default_factory=list)
    """Points (series x steps) each answer held."""
    running: int = 0
    most_running: int = 0
    """The most queries in flight at once."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def query_range(self, promql: str, *, start_s: int, end_s: int, step_s: int) -> RangeResult:
        with self.lock:
            self.calls.append((start_s, end_s, step_s))
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            time.sleep(0.0005)  # a query in flight for a while, so overlaps would show
            if self.down:
                raise HttpFailure(None, "connection refused")
            times = np.arange(start_s, end_s + 1, step_s)
            times = times[times >= self.oldest_s]
            series: list[RawSeries] = [
                {
                    "metric": {"namespace": "shop", "deployment": name},
                    "values": [[float(t), "0.5"] for t in times],
                }
                for name in self.names
            ]
            self.points.append(len(self.names) * len(times))
            return RangeResult(series if len(times) else [])
        finally:
            with self.lock:
                self.running -= 1


@dataclass
class Recorder:
    """A detector with a shape stage that only keeps the frames it is fed."""

    frames: list[Frame] = field(default_factory=list)

    def learn_history(self, frame: Frame) -> None:
        self.frames.append(frame)

    def update(self, frame: Frame) -> Detection:
        self.frames.append(frame)
        return StreamingDetector(DETECTOR).update(frame)

    def clear_onsets(self) -> None:
        pass


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


def test_chunks_are_sized_by_the_workloads_and_signals_are_read_one_at_a_time() -> None:
    """30 workloads and room for 3,000 values a chunk: about 14 steps a chunk (100 values
    a query), where a handful of workloads read a day of buckets at once. Every step
    wanted is still read exactly once, oldest first."""
    client = History(oldest_s=0, names=tuple(f"w{i}" for i in range(30)))
    warmed = Recorder()
    max_values = 3_000
    report = warm_from_prometheus(
        warmed,
        prometheus=PROMETHEUS,
        settings=DETECTOR,
        now=NOW,
        client=client,
        max_values=max_values,
    )
    assert client.most_running == 1
    per_query = max_values // len(Signal)
    assert max(client.points) <= per_query and max(client.points) >= per_query - 30
    steps = sorted({step for _, _, step in client.calls})
    for step in steps:
        spans = sorted({(start, end) for start, end, s in client.calls if s == step})
        assert all(later[0] == earlier[1] + step for earlier, later in itertools.pairwise(spans))
    assert steps == [15, 300]  # the past at the bucket step, the recent hour at the scrape's
    assert not report.short and report.workloads == 30
    assert [len(f.workloads) for f in warmed.frames] == [30] * len(warmed.frames)
    assert max(len(f.timestamps) for f in warmed.frames) == per_query // 30
