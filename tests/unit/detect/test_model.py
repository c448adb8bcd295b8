"""The joint model: joint deviations, calibration, determinism, feedback."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from histories import PER_HOUR, WORKLOADS, Pattern, at, history

from healer.detect.combined import score_history
from healer.detect.features import window_features
from healer.detect.model import JointModel, combine
from healer.detect.train import History, LabelledWindow, train
from healer.errors import ModelNotFitted
from healer.types import Frame, Signal

NOW = datetime(2026, 3, 3, 12, tzinfo=UTC)


def fitted(frame: Frame, **params: object) -> JointModel:
    return train(History(frame), now=NOW, params=dict(params)).model


@pytest.fixture(scope="module")
def model() -> JointModel:
    return fitted(history(8, seed=1))


def pattern_scores(model: JointModel, frame: Frame, start: int) -> np.ndarray:
    """(W, rows) combined scores over the ten minutes after a pattern filled the short window."""
    return score_history(frame, model)[:, start + 4 : start + 44]


def test_cpu_rising_without_traffic_is_caught_when_no_single_signal_is(model: JointModel) -> None:
    start = 9 * PER_HOUR
    unexplained = Pattern(0, start, 80, {Signal.CPU: 1.1})
    explained = Pattern(1, start, 80, {Signal.CPU: 1.1, Signal.REQUEST_RATE: 1.1})
    frame = history(10, seed=3, patterns=(unexplained, explained))
    streaming = score_history(frame, None)[:, start : start + 80]
    assert streaming.max() < 0.95  # neither signal alone is far out
    scores = np.median(pattern_scores(model, frame, start), axis=1)
    assert scores[0] >= 0.99
    assert scores[1] < 0.95  # CPU that traffic explains


def test_scores_are_in_0_1_and_quiet_on_normal_history(model: JointModel) -> None:
    features = window_features(history(4, seed=7), model.spec)[:, PER_HOUR:]
    scores = model.anomaly_score(features.reshape(-1, features.shape[-1]))
    assert ((scores >= 0) & (scores <= 1)).all()
    assert np.mean(scores >= 0.95) < 0.01


def test_same_seed_same_scores_and_parameters() -> None:
    frame = history(6, seed=5)
    a, b = fitted(frame, random_state=3), fitted(frame, random_state=3)
    features = window_features(history(1, seed=8), a.spec).reshape(-1, len(a.features_))
    np.testing.assert_array_equal(a.anomaly_score(features), b.anomaly_score(features))
    np.testing.assert_array_equal(a.precision_, b.precision_)


def test_subsampled_fits_depend_on_the_seed_only() -> None:
    frame = history(6, seed=5)
    a = fitted(frame, random_state=1, max_fit_rows=2000)
    b = fitted(frame, random_state=1, max_fit_rows=2000)
    c = fitted(frame, random_state=2, max_fit_rows=2000)
    np.testing.assert_array_equal(a.precision_, b.precision_)
    assert not np.array_equal(a.precision_, c.precision_)


def test_a_model_that_is_not_fitted_says_so() -> None:
    with pytest.raises(ModelNotFitted):
        JointModel().anomaly_score(np.zeros((1, len(JointModel().spec.names))))


def test_a_confirmed_false_positive_makes_the_model_quieter_on_that_pattern() -> None:
    batch_job = {Signal.CPU: 1.6}  # a nightly job: CPU up, traffic flat
    seen = Pattern(0, 3 * PER_HOUR, 80, batch_job)
    frame = history(8, seed=1, patterns=(seen,))
    label = LabelledWindow(
        WORKLOADS[0], at(frame, seen.start), at(frame, seen.start + seen.rows - 1), anomalous=False
    )
    before = train(History(frame), now=NOW).model
    after = train(History(frame, (label,)), now=NOW).model
    again = history(
        2, seed=2, start_row=8 * PER_HOUR, patterns=(Pattern(1, PER_HOUR, 80, batch_job),)
    )
    rows = window_features(again, before.spec)[1, PER_HOUR + 4 : PER_HOUR + 80]
    assert np.median(before.anomaly_score(rows)) >= 0.9
    assert np.median(after.anomaly_score(rows)) < 0.5


def test_combine_takes_the_stronger_evidence() -> None:
    np.testing.assert_array_equal(
        combine(np.array([0.2, 0.97]), np.array([0.99, 0.1])), [0.99, 0.97]
    )
