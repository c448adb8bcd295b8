"""The daemon's detector with a joint model: findings, persistence and explanations."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from histories import PER_HOUR, Pattern, history

from healer.config import DetectorSettings
from healer.detect.combined import CombinedDetector, score_history
from healer.detect.model import JointModel
from healer.detect.train import History, train
from healer.types import Direction, Frame, Signal

NOW = datetime(2026, 3, 3, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def model() -> JointModel:
    return train(History(history(8, seed=1)), now=NOW).model


def replay(detector: CombinedDetector, frame: Frame, rows: range) -> list[object]:
    """Feed the frame a row at a time, as daemon cycles would; the Detections."""
    out = []
    for t in rows:
        prefix = Frame(
            frame.timestamps[: t + 1], frame.workloads, frame.signals, frame.values[:, :, : t + 1]
        )
        out.append(detector.update(prefix))
    return out


def test_a_joint_deviation_becomes_a_finding_that_names_its_signals(model: JointModel) -> None:
    start = 2 * PER_HOUR
    frame = history(3, seed=3, patterns=(Pattern(0, start, 60, {Signal.CPU: 1.1}),))
    detector = CombinedDetector(model, version="joint-1")
    detections = replay(detector, frame, range(start + 20))
    before = [d for d in detections[:start] if d.findings]  # type: ignore[attr-defined]
    assert before == []
    last = detections[-1]
    (finding,) = last.findings  # type: ignore[attr-defined]
    assert finding.workload == frame.workloads[0]
    assert finding.model_version == "streaming-baseline/1+joint-1"
    assert finding.onset.timestamp() <= frame.timestamps[start + 5]
    named = {d.signal: d for d in finding.signals}
    assert named[Signal.CPU].direction == Direction.UP
    assert finding.score == pytest.approx(last.score_of(frame.workloads[0]))  # type: ignore[attr-defined]


def test_update_scores_are_the_replayed_history_scores(model: JointModel) -> None:
    frame = history(1.5, seed=4, patterns=(Pattern(1, PER_HOUR, 40, {Signal.CPU: 1.2}),))
    detector = CombinedDetector(model, version="joint-1")
    online = np.stack(
        [d.scores for d in replay(detector, frame, range(len(frame.timestamps)))], axis=1
    )  # type: ignore[attr-defined]
    np.testing.assert_allclose(online, score_history(frame, model), atol=1e-12)


def test_a_short_burst_does_not_persist_into_a_finding(model: JointModel) -> None:
    start = 2 * PER_HOUR
    frame = history(3, seed=5, patterns=(Pattern(0, start, 2, {Signal.ERROR_RATIO: 30.0}),))
    settings = DetectorSettings(persistence_s=120.0)
    detector = CombinedDetector(model, version="joint-1", settings=settings)
    assert not any(d.findings for d in replay(detector, frame, range(start + 10)))  # type: ignore[attr-defined]
