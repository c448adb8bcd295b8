"""Training from a real Prometheus: a backfilled simulated day, read in chunks.

Reuses the backfilled-day fixture of ``test_prometheus`` (promtool blocks of the default
scenario, served by a real Prometheus), so the PromQL that trains is the PromQL that runs.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from test_prometheus import DAY_RATE_WINDOW_S, DAY_STEP_S, Day, day  # noqa: F401 (fixture)

from healer.config import PrometheusSettings
from healer.detect import registry
from healer.detect.train import train
from healer.history import PROMETHEUS_CHUNK_S, prometheus_history


def test_a_day_of_prometheus_history_trains_a_version(day: Day, tmp_path: Path) -> None:  # noqa: F811
    settings = PrometheusSettings(
        url=day.prometheus.url, step_s=DAY_STEP_S, rate_window_s=DAY_RATE_WINDOW_S
    )
    times = np.asarray(day.cluster.timestamps)
    start = datetime.fromtimestamp(times[0] - DAY_STEP_S, UTC)
    end = datetime.fromtimestamp(times[-1], UTC)
    assert (end - start).total_seconds() > 3 * PROMETHEUS_CHUNK_S  # read in several chunks
    history = prometheus_history(settings, start=start, end=end)
    np.testing.assert_array_equal(history.frame.timestamps, times)
    assert set(history.frame.workloads) == set(day.cluster.workloads)
    result = train(history, now=end, models_dir=tmp_path)
    assert result.card["training"]["sources"] == [day.prometheus.url]  # type: ignore[index,call-overload]
    assert registry.load("joint-1", models_dir=tmp_path).card["sha256"]
