"""Vitals on their own: what cycles add up to, and why the loop is not ready."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from healer.vitals import Vitals

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def test_cycles_with_data_add_up() -> None:
    vitals = Vitals()
    vitals.read(T0, findings=2)
    vitals.timed(0.5)
    vitals.read(T0 + timedelta(seconds=60), findings=1)
    vitals.timed(0.25)
    status = vitals.status()
    assert (status["cycles"], status["findings"]) == (2, 3)
    assert (status["cycle_seconds_sum"], status["last_cycle_seconds"]) == (0.75, 0.25)
    assert status["last_cycle"] == "2026-03-02T12:01:00+00:00"


def test_not_ready_before_any_cycle_with_data_and_when_metrics_fail() -> None:
    vitals = Vitals(last_error="prometheus.url http://prom:9090 refused the connection")
    assert vitals.readiness(T0, interval_s=30) == [
        "metrics unavailable: prometheus.url http://prom:9090 refused the connection",
        "no cycle with metrics yet",
    ]


def test_not_ready_once_the_last_cycle_is_three_intervals_old() -> None:
    vitals = Vitals(last_cycle=T0)
    assert vitals.readiness(T0 + timedelta(seconds=90), interval_s=30) == []
    assert vitals.readiness(T0 + timedelta(seconds=91), interval_s=30) == [
        "last cycle with metrics 91s ago (more than 90s)"
    ]
