"""Warming the daemon's detector from a real Prometheus holding a backfilled day.

Reuses the backfilled-day fixture of ``test_prometheus`` (promtool blocks of the default
scenario, a day at one-minute scrapes, served by a real Prometheus): the detector wants
about 8.5 days, Prometheus holds one, so warming takes what there is and says so. The
day holds the default scenario's faults, a memory leak with its OOM kills and counter
resets among them: warming raises nothing from them.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
from structlog.testing import capture_logs
from test_prometheus import DAY_RATE_WINDOW_S, DAY_STEP_S, Day, day  # noqa: F401 (fixture)

from healer.config import DetectorSettings, PrometheusSettings
from healer.detect.combined import build_detector
from healer.detect.shaped import ShapedDetector
from healer.types import Frame, Signal
from healer.warmup import warm_from_prometheus

# Shape rows that a day gives: a bucket of five minutes each, less the first (rates
# need a second scrape) and some slack for the scenario's start.
DAY_BUCKETS = 86_400 // 300


def test_a_backfilled_day_warms_the_detector_and_says_it_is_short(day: Day) -> None:  # noqa: F811
    prometheus = PrometheusSettings(
        url=day.prometheus.url, step_s=DAY_STEP_S, rate_window_s=DAY_RATE_WINDOW_S
    )
    settings = DetectorSettings(shape_warmup_buckets=DAY_BUCKETS - 12)
    detector = build_detector(settings)
    assert isinstance(detector, ShapedDetector)
    times = np.asarray(day.cluster.timestamps)
    now = datetime.fromtimestamp(times[-1], UTC)
    with capture_logs() as logs:
        report = warm_from_prometheus(detector, prometheus=prometheus, settings=settings, now=now)
    assert report.short and report.last_s == times[-1]
    assert 23 * 3600 <= report.history_s <= 24 * 3600
    assert set(w for w, _ in detector.shape_rows()) == set(day.cluster.workloads)
    assert min(detector.shape_rows().values()) >= settings.shape_warmup_buckets
    assert (detector.streaming.seen_s_[:, 0] >= settings.warmup_s).all()
    chunks = [e for e in logs if e["event"] == "warm_read"]
    assert [e["part"] for e in chunks][-1] == "recent" and len(chunks) >= 2
    (said,) = [e for e in logs if e["event"] == "warmed"]
    assert said["log_level"] == "warning" and 23 <= said["history_h"] <= 24
    # The next cycle, on the day's last minutes again plus nothing new, is quiet: it
    # holds no new sample, and warming left no anomalous run behind.
    last = Frame(
        times[-5:],
        day.cluster.workloads,
        tuple(Signal),
        np.full((len(day.cluster.workloads), len(Signal), 5), np.nan),
    )
    assert not detector.update(last).findings
