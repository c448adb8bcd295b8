"""PrometheusSource with a fake client: alignment, assembly, increments, failures."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from structlog.testing import capture_logs

from healer.collect.prometheus import (
    HttpFailure,
    PrometheusClient,
    PrometheusSource,
    RangeResult,
    RawSeries,
    aligned_grid,
)
from healer.collect.signals import SignalQuery, build_queries
from healer.config import PrometheusSettings
from healer.errors import ConfigError, PrometheusUnavailable, QueryError
from healer.types import Signal, WorkloadRef

STEP = 15
T0 = 1_800_000_000  # a multiple of 15


def _series(ns: str, name: str, points: dict[float, str]) -> RawSeries:
    return {
        "metric": {"namespace": ns, "deployment": name},
        "values": [[t, v] for t, v in sorted(points.items())],
    }


@dataclass
class FakeClient:
    """Answers each query from ``answer(promql, start, end)``; records every call."""

    answer: object = None
    url: str = "http://prometheus.test:9090"
    calls: list[tuple[str, int, int]] = field(default_factory=list)
    failures: list[HttpFailure] = field(default_factory=list)
    warnings: tuple[str, ...] = ()

    def query_range(self, promql: str, *, start_s: int, end_s: int, step_s: int) -> RangeResult:
        self.calls.append((promql, start_s, end_s))
        if self.failures:
            raise self.failures.pop(0)
        assert callable(self.answer)
        return RangeResult(self.answer(promql, start_s, end_s), self.warnings)


def _queries(*signals: Signal) -> tuple[SignalQuery, ...]:
    return tuple(SignalQuery(s, f"q_{s}", overridden=False) for s in signals)


def _source(client: FakeClient, *signals: Signal, **kwargs: object) -> PrometheusSource:
    sleeps: list[float] = []
    source = PrometheusSource(
        client,
        queries=_queries(*(signals or (Signal.CPU,))),
        step_s=STEP,
        sleep=sleeps.append,
        **kwargs,  # type: ignore[arg-type]
    )
    source.sleeps = sleeps  # type: ignore[attr-defined]
    return source


def _at(unix_s: float) -> datetime:
    return datetime.fromtimestamp(unix_s, UTC)


def _linear(promql: str, start: int, end: int) -> list[RawSeries]:
    """Every workload's value is its timestamp offset, per signal index."""
    times = range(start, end + 1, STEP)
    return [
        _series("shop", "cart", {t: str(float(t - T0)) for t in times}),
        _series("web", "api", {t: str(float(t - T0) + 0.5) for t in times}),
    ]


def test_grid_is_aligned_on_the_step_inside_the_window() -> None:
    grid = aligned_grid(T0 + 20, 60, STEP)
    np.testing.assert_array_equal(grid, [T0 - 30, T0 - 15, T0, T0 + 15])
    assert aligned_grid(T0, 60, STEP)[-1] == T0  # until itself is included
    assert aligned_grid(T0, 60, STEP)[0] == T0 - 45  # until - window is not


def test_assembles_one_frame_for_all_workloads_with_nan_for_gaps() -> None:
    def answer(promql: str, start: int, end: int) -> list[RawSeries]:
        if promql == "q_cpu":
            return [_series("web", "api", {start: "0.5", end: "0.7"})]
        return [
            _series("shop", "cart", {start: "1", end: "2"}),
            _series("web", "api", {end: "NaN"}),
        ]

    frame = _source(FakeClient(answer), Signal.CPU, Signal.MEMORY).fetch(
        until=_at(T0 + 5), window_s=45
    )
    assert frame.workloads == (
        WorkloadRef("shop", "Deployment", "cart"),
        WorkloadRef("web", "Deployment", "api"),
    )
    assert frame.signals == (Signal.CPU, Signal.MEMORY)
    np.testing.assert_array_equal(frame.timestamps, [T0 - 30, T0 - 15, T0])
    np.testing.assert_array_equal(frame.values[0, 0], [np.nan, np.nan, np.nan])
    np.testing.assert_array_equal(frame.values[0, 1], [1.0, np.nan, 2.0])
    np.testing.assert_array_equal(frame.values[1, 0], [0.5, np.nan, 0.7])


def test_infinite_and_negative_values_become_gaps_and_are_logged() -> None:
    def answer(promql: str, start: int, end: int) -> list[RawSeries]:
        # +Inf: CPU over zero requests; -3: a counter reset read without rate().
        return [_series("shop", "cart", {start: "+Inf", start + STEP: "-3", end: "0.25"})]

    with capture_logs() as logs:
        frame = _source(FakeClient(answer)).fetch(until=_at(T0), window_s=45)
    np.testing.assert_array_equal(frame.values[0, 0], [np.nan, np.nan, 0.25])
    dropped = [e for e in logs if e["event"] == "prometheus_values_dropped"]
    assert dropped == [
        {
            "event": "prometheus_values_dropped",
            "log_level": "warning",
            "signal": "cpu",
            "infinite": 1,
            "negative": 1,
        }
    ]


def test_off_grid_points_are_ignored() -> None:
    def answer(promql: str, start: int, end: int) -> list[RawSeries]:
        return [_series("shop", "cart", {start + 7: "9", end: "1"})]

    frame = _source(FakeClient(answer)).fetch(until=_at(T0), window_s=30)
    np.testing.assert_array_equal(frame.values[0, 0], [np.nan, 1.0])


def test_second_fetch_asks_only_for_new_steps_plus_the_overlap() -> None:
    client = FakeClient(_linear)
    source = _source(client, overlap_steps=1)
    source.fetch(until=_at(T0), window_s=300)
    assert client.calls == [("q_cpu", T0 - 285, T0)]
    frame = source.fetch(until=_at(T0 + 31), window_s=300)
    assert client.calls[-1] == ("q_cpu", T0, T0 + 30)
    assert source.stats.incremental
    full = _source(FakeClient(_linear)).fetch(until=_at(T0 + 31), window_s=300)
    np.testing.assert_array_equal(frame.timestamps, full.timestamps)
    np.testing.assert_array_equal(frame.values, full.values)
    assert frame.values.shape == (2, 1, 20)


def test_a_fetch_far_ahead_or_back_in_time_reads_the_whole_window() -> None:
    client = FakeClient(_linear)
    source = _source(client)
    source.fetch(until=_at(T0), window_s=60)
    source.fetch(until=_at(T0 + 3600), window_s=60)
    assert client.calls[-1][1] == T0 + 3600 - 45
    source.fetch(until=_at(T0), window_s=60)
    assert client.calls[-1][1] == T0 - 45
    source.fetch(until=_at(T0), window_s=120)  # a longer window than held
    assert client.calls[-1][1] == T0 - 105


def test_workloads_gone_from_the_window_are_dropped_new_ones_added() -> None:
    def answer(promql: str, start: int, end: int) -> list[RawSeries]:
        times = range(start, end + 1, STEP)
        old = _series("shop", "old", {t: "1" for t in times if t < T0})
        new = _series("shop", "new", {t: "2" for t in times if t > T0})
        return [s for s in (old, new) if s["values"]]

    source = _source(FakeClient(answer), overlap_steps=0)
    first = source.fetch(until=_at(T0), window_s=45)
    assert [w.name for w in first.workloads] == ["old"]
    second = source.fetch(until=_at(T0 + 30), window_s=45)
    assert source.stats.incremental
    assert [w.name for w in second.workloads] == ["new"]
    np.testing.assert_array_equal(second.values[0, 0], [np.nan, 2.0, 2.0])


def test_transient_failures_are_retried_with_exponential_backoff() -> None:
    client = FakeClient(_linear)
    client.failures = [HttpFailure(None, "connection refused"), HttpFailure(503, "busy")]
    source = _source(client, retries=2, backoff_s=0.5)
    with capture_logs() as logs:
        frame = source.fetch(until=_at(T0), window_s=30)
    assert len(frame.workloads) == 2
    assert source.sleeps == [0.5, 1.0]  # type: ignore[attr-defined]
    assert [e["attempt"] for e in logs if e["event"] == "prometheus_retry"] == [1, 2]


def test_unreachable_after_retries_names_the_signal_and_query() -> None:
    client = FakeClient(_linear)
    client.failures = [HttpFailure(None, "connection refused")] * 3
    source = _source(client, retries=2)
    with pytest.raises(PrometheusUnavailable) as caught:
        source.fetch(until=_at(T0), window_s=30)
    message = str(caught.value)
    assert message.startswith("signal cpu: Prometheus at http://prometheus.test:9090")
    assert "unreachable after 3 attempts (connection refused)" in message
    assert message.endswith("query: q_cpu")


@pytest.mark.parametrize(
    ("status", "error", "attempts"),
    [
        (400, QueryError, 1),
        (422, QueryError, 1),
        (401, PrometheusUnavailable, 1),
        (404, PrometheusUnavailable, 1),
        (500, PrometheusUnavailable, 3),
        (503, PrometheusUnavailable, 3),
    ],
)
def test_http_errors_map_to_collect_errors(
    status: int, error: type[Exception], attempts: int
) -> None:
    client = FakeClient(_linear)
    client.failures = [HttpFailure(status, "went wrong")] * 3
    with pytest.raises(error, match=rf"signal cpu: .*HTTP {status}.*query: q_cpu"):
        _source(client, retries=2).fetch(until=_at(T0), window_s=30)
    assert len(client.calls) == attempts


def test_a_failed_fetch_keeps_the_held_window() -> None:
    client = FakeClient(_linear)
    source = _source(client, overlap_steps=0)
    source.fetch(until=_at(T0), window_s=60)
    client.failures = [HttpFailure(400, "bad")]
    with pytest.raises(QueryError):
        source.fetch(until=_at(T0 + 15), window_s=60)
    source.fetch(until=_at(T0 + 15), window_s=60)
    assert client.calls[-1][1:] == (T0 + 15, T0 + 15)


def test_series_without_workload_labels_or_twice_are_query_errors() -> None:
    def unlabelled(promql: str, start: int, end: int) -> list[RawSeries]:
        return [{"metric": {"namespace": "shop"}, "values": [[end, "1"]]}]

    with pytest.raises(QueryError, match="without namespace and deployment labels"):
        _source(FakeClient(unlabelled)).fetch(until=_at(T0), window_s=30)

    def twice(promql: str, start: int, end: int) -> list[RawSeries]:
        return [_series("shop", "cart", {end: "1"}), _series("shop", "cart", {end: "2"})]

    with pytest.raises(QueryError, match="more than one series for shop/cart"):
        _source(FakeClient(twice)).fetch(until=_at(T0), window_s=30)


def test_server_warnings_are_logged_with_the_signal() -> None:
    client = FakeClient(_linear, warnings=("PromQL info: metric might not be a counter",))
    with capture_logs() as logs:
        _source(client).fetch(until=_at(T0), window_s=30)
    assert {
        "event": "prometheus_warning",
        "log_level": "warning",
        "signal": "cpu",
        "warning": "PromQL info: metric might not be a counter",
    } in logs


def test_settings_build_every_query_and_the_client(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    settings = PrometheusSettings(
        url="https://prom.example:9090/",
        bearer_token_file=token,
        signal_set="istio",
        queries={Signal.CPU: "sum by (namespace, deployment) (up)"},
        step_s=30,
    )
    source = PrometheusSource.from_settings(settings)
    assert isinstance(source.client, PrometheusClient)
    assert source.client.url == "https://prom.example:9090"
    assert source.step_s == 30
    assert source.queries == build_queries(
        signal_set="istio", overrides=settings.queries, window_s=60
    )
    source.client.close()


def test_settings_without_url_or_with_a_missing_ca_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"prometheus.url is not set"):
        PrometheusClient.from_settings(PrometheusSettings())
    with pytest.raises(ConfigError, match=r"prometheus.ca_file .*nope.pem: no such file"):
        PrometheusClient.from_settings(
            PrometheusSettings(url="https://p:9090", ca_file=tmp_path / "nope.pem")
        )
