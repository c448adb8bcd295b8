"""The learned diagnoser on literal findings: where it answers, where the rules do, and
how its files are guarded."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from builders import CART, NOW, revision, state

from healer.diagnose.features import FEATURES, features
from healer.diagnose.learned import Example, LearnedDiagnoser, diagnoser
from healer.errors import ModelMismatch, ModelNotFitted
from healer.types import (
    Cause,
    Direction,
    Feedback,
    Finding,
    Frame,
    Signal,
    SignalDeviation,
    Verdict,
)

SIGNALS = tuple(Signal)
LONG_RUNNING = state(revision(4), revision(3))


def frame() -> Frame:
    timestamps = NOW.timestamp() - 15.0 * np.arange(41)[::-1]
    return Frame(timestamps, (CART,), SIGNALS, np.full((1, len(SIGNALS), 41), 0.4))


def finding(**deviations: float) -> Finding:
    devs = tuple(
        SignalDeviation(Signal(name), 1.0, 0.5, value, Direction.UP)
        for name, value in deviations.items()
    )
    return Finding(CART, NOW, 0.99, devs, NOW - timedelta(minutes=3), "test/1")


def examples(rng: np.random.Generator, n: int = 12) -> list[Example]:
    """CPU-only findings labelled cpu_hog; error findings labelled bad_release."""
    out = []
    for _ in range(n):
        hog = finding(cpu=rng.uniform(8, 30))
        out.append(Example(features(hog, frame(), LONG_RUNNING, 0.1), Cause.CPU_HOG, "t"))
        bad = finding(error_ratio=rng.uniform(8, 30))
        out.append(Example(features(bad, frame(), LONG_RUNNING, 0.1), Cause.BAD_RELEASE, "t"))
    return out


@pytest.fixture
def fitted() -> LearnedDiagnoser:
    return LearnedDiagnoser().fit(examples(np.random.default_rng(0)))


def test_features_are_one_finite_row_in_feature_order() -> None:
    row = features(finding(cpu=10.0), frame(), LONG_RUNNING, 0.25)
    assert row.shape == (len(FEATURES),) and np.isfinite(row).all()
    assert row[FEATURES.index("deviation_cpu")] == 10.0
    assert row[FEATURES.index("anomalous_share")] == 0.25
    assert row[FEATURES.index("rollout_age_min")] == 240.0  # long-running: capped


def test_learned_where_it_has_history(fitted: LearnedDiagnoser) -> None:
    result = fitted.diagnose(finding(cpu=20.0), frame(), LONG_RUNNING, 0.1)
    assert result is not None and result.cause is Cause.CPU_HOG
    assert result.confidence >= 0.6
    assert "Learned from 24 labelled diagnoses (12 of cpu_hog)" in result.explanation


def test_rules_where_the_cause_has_too_little_history() -> None:
    few = LearnedDiagnoser(min_examples=20).fit(examples(np.random.default_rng(1)))
    assert few.diagnose(finding(cpu=20.0), frame(), LONG_RUNNING, 0.1) is None
    combined = diagnoser(few)(finding(cpu=20.0), frame(), LONG_RUNNING, 0.1)
    assert combined.cause is Cause.CPU_HOG and "Learned" not in combined.explanation


def test_rules_alone_without_a_model() -> None:
    result = diagnoser(None)(finding(memory=20.0), frame(), LONG_RUNNING, 0.1)
    assert result.cause in set(Cause)


def test_unfitted_refuses() -> None:
    with pytest.raises(ModelNotFitted):
        LearnedDiagnoser().predict_proba(np.zeros(len(FEATURES)))


def test_saved_and_loaded_gives_the_same_answers(fitted: LearnedDiagnoser, tmp_path: Path) -> None:
    path = tmp_path / "diagnoser.skops"
    card = fitted.save(path)
    loaded = LearnedDiagnoser.load(path)
    row = features(finding(error_ratio=15.0), frame(), LONG_RUNNING, 0.1)
    want, got = fitted.predict_proba(row), loaded.predict_proba(row)
    assert want.keys() == got.keys()
    assert all(np.allclose(want[c], got[c]) for c in want)
    assert json.loads(card.read_text())["support"] == {"bad_release": 12, "cpu_hog": 12}


def test_a_tampered_file_or_card_is_refused(fitted: LearnedDiagnoser, tmp_path: Path) -> None:
    path = tmp_path / "diagnoser.skops"
    card = fitted.save(path)
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ModelMismatch, match="sha256"):
        LearnedDiagnoser.load(path)
    fitted.save(path)
    data = json.loads(card.read_text())
    card.write_text(json.dumps({**data, "features": data["features"][:-1]}))
    with pytest.raises(ModelMismatch, match="features"):
        LearnedDiagnoser.load(path)


def test_feedback_becomes_examples() -> None:
    from healer.groundtruth import examples_from_feedback

    at = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    labels = [
        Feedback(1, CART, Verdict.TRUE_POSITIVE, at, at, Cause.CPU_HOG, None, "ann", at),
        Feedback(2, CART, Verdict.FALSE_POSITIVE, at, at, None, None, "ann", at),
        Feedback(3, CART, Verdict.TRUE_POSITIVE, at, at, Cause.OVERLOAD, None, "ann", at),
    ]
    rows = {1: np.zeros(len(FEATURES)), 2: np.ones(len(FEATURES))}
    got = examples_from_feedback(labels, rows)
    assert [(e.cause, e.source) for e in got] == [
        (Cause.CPU_HOG, "feedback:1"),
        (Cause.UNKNOWN, "feedback:2"),
    ]
