"""Training history from Prometheus (in chunks), CSV files and the simulator."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from healer.collect.prometheus import RangeResult, RawSeries
from healer.config import PrometheusSettings
from healer.errors import ConfigError
from healer.history import PROMETHEUS_CHUNK_S, csv_history, prometheus_history, sim_history
from healer.types import Signal

START = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
SETTINGS = PrometheusSettings(url="http://prometheus.test:9090", step_s=60)


@dataclass
class Prometheus:
    """Answers every query with one series per workload: the timestamp's minute of the hour."""

    calls: list[tuple[int, int]] = field(default_factory=list)

    def query_range(self, promql: str, *, start_s: int, end_s: int, step_s: int) -> RangeResult:
        self.calls.append((start_s, end_s))
        grid = range(start_s, end_s + 1, step_s)
        series: list[RawSeries] = [
            {
                "metric": {"namespace": "shop", "deployment": name},
                "values": [[t, str((t // 60) % 60)] for t in grid],
            }
            for name in ("cart", "orders")
        ]
        return RangeResult(series)


def test_a_long_range_is_read_in_chunks_and_joined() -> None:
    fake = Prometheus()
    end = START + timedelta(hours=13)
    history = prometheus_history(SETTINGS, start=START, end=end, client=fake)
    per_signal = len(fake.calls) // len(Signal)
    assert per_signal == int(np.ceil(13 * 3600 / PROMETHEUS_CHUNK_S))
    frame = history.frame
    assert [w.name for w in frame.workloads] == ["cart", "orders"]
    steps = np.diff(frame.timestamps)
    assert (steps == 60).all()  # no gap and no repeat where chunks meet
    assert frame.timestamps[0] > START.timestamp() and frame.timestamps[-1] == end.timestamp()
    cpu = frame.values[0, frame.signals.index(Signal.CPU)]
    np.testing.assert_array_equal(cpu, (frame.timestamps // 60) % 60)
    assert history.source == SETTINGS.url and history.windows == ()


def test_an_empty_range_or_no_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="the time range is empty"):
        prometheus_history(SETTINGS, start=START, end=START, client=Prometheus())
    with pytest.raises(ConfigError, match=r"prometheus\.url is not set"):
        prometheus_history(PrometheusSettings(), start=START, end=START + timedelta(hours=1))


def test_no_csv_file_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no CSV file"):
        csv_history([])


def test_a_benign_scenario_has_no_labelled_windows() -> None:
    history = sim_history("benign-day", duration_s=1800)
    assert history.windows == () and history.frame.values.shape[2] == 120
