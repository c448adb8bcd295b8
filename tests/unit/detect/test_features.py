"""Windowed features: trailing windows only, named with their windows, NaN-aware."""

from __future__ import annotations

import numpy as np
import pytest
from histories import PER_HOUR, SIGNALS, STEP_S, history

from healer.detect.features import FeatureSpec, latest_features, trailing_mean, window_features
from healer.types import Frame, Signal


def cut(frame: Frame, rows: int) -> Frame:
    return Frame(frame.timestamps[:rows], frame.workloads, frame.signals, frame.values[:, :, :rows])


def test_no_look_ahead_features_at_row_i_ignore_later_rows() -> None:
    frame = history(1)
    full = window_features(frame)
    for i in (0, 3, 59, 150, PER_HOUR - 1):
        np.testing.assert_array_equal(window_features(cut(frame, i + 1))[:, i], full[:, i])


def test_latest_features_are_the_last_row_of_the_window_features() -> None:
    frame = history(1, seed=4)
    np.testing.assert_allclose(latest_features(frame), window_features(frame)[:, -1], atol=1e-12)


def test_names_carry_the_windows_and_match_the_feature_count() -> None:
    spec = FeatureSpec(short_window_s=30, long_window_s=600)
    assert "change_30s_vs_600s:cpu" in spec.names
    assert window_features(history(0.5), spec).shape[2] == len(spec.names)
    assert spec.signal_weights().shape == (len(spec.names), len(SIGNALS))
    assert spec.floors().shape == (len(spec.names),)


def test_a_cpu_rise_without_traffic_moves_cpu_per_request() -> None:
    frame = history(1)
    frame.values[0, SIGNALS.index(Signal.CPU), -8:] *= 1.5
    last = latest_features(frame)
    cost = FeatureSpec().names.index("change_60s_vs_900s:cpu_per_request")
    assert last[0, cost] > 0.3 > abs(last[1, cost])


def test_gaps_are_skipped_and_an_empty_window_is_nan() -> None:
    x = np.array([[1.0, np.nan, 3.0, np.nan, np.nan]])
    np.testing.assert_array_equal(trailing_mean(x, 2), [[1.0, 1.0, 3.0, 3.0, np.nan]])


def test_a_frame_without_a_signal_the_spec_needs_is_refused() -> None:
    frame = history(0.1)
    partial = Frame(frame.timestamps, frame.workloads, SIGNALS[:3], frame.values[:, :3])
    with pytest.raises(ValueError, match="the frame has no request_rate, "):
        window_features(partial)


def test_windows_follow_the_frame_step() -> None:
    frame = history(1)
    slow = Frame(
        frame.timestamps[::2], frame.workloads, frame.signals, frame.values[:, :, ::2].copy()
    )
    assert np.diff(slow.timestamps)[0] == 2 * STEP_S
    assert np.isfinite(window_features(slow)[:, -1]).all()
