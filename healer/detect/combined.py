"""The detector the daemon runs: streaming per-signal baselines plus a trained joint model.

Each update scores every workload twice, with the streaming detector (is any signal far
from its own baseline?) and with the joint model over the newest windowed features (is
the combination unusual?), and combines the two into one calibrated score
(``model.combine``). A workload becomes a Finding when that score stays at or above the
threshold for ``persistence_s``, as with the streaming detector alone.

The explanation names the signals the streaming detector sees deviate, and those that
carry the joint model's distance when it is the joint model that fires; a joint
deviation is given in the model's own units (the square root of the signal's share of
the Mahalanobis distance), signed by which way the signal moved.

``score_history`` replays a whole Frame online, row by row, for training and evaluation:
row t's score uses rows up to t only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
from numpy.typing import NDArray

from healer.config import DetectorSettings
from healer.detect.features import latest_features, window_features
from healer.detect.model import JointModel, combine
from healer.detect.shaped import Onsets, ShapedDetector, named_signals
from healer.detect.streaming import ATTRIBUTION_MIN_DEVIATION, Detection, StreamingDetector
from healer.types import Finding, Frame, SignalDeviation

F64 = NDArray[np.float64]

# A signal is named for the joint model when it carries this share of the distance.
JOINT_ATTRIBUTION_SHARE = 0.25


class CombinedDetector:
    """Streaming baselines and a joint model, combined into one score per workload."""

    def __init__(
        self, model: JointModel, *, version: str, settings: DetectorSettings | None = None
    ) -> None:
        self.settings = settings or DetectorSettings()
        self.model = model
        self.streaming = StreamingDetector(self.settings)
        self.model_version = f"{StreamingDetector.model_version}+{version}"
        self.onsets = Onsets(self.settings)

    def update(self, frame: Frame) -> Detection:
        """Learn from the frame's new rows, score its newest time; see ``StreamingDetector``."""
        stream = self.streaming.update(frame)
        features = latest_features(frame, self.model.spec)
        joint = self.model.anomaly_score(features)
        accepted = self.model.matches_confirmed(features)
        scores = np.where(stream.fresh, combine(stream.scores, joint, accepted), 0.0)
        at_s = stream.at.timestamp()
        hot = scores >= self.settings.score_threshold
        self.onsets.track(stream.workloads, hot, stream.fresh, at_s)
        findings = []
        for w in self.onsets.lasting(stream.workloads, hot, at_s):
            workload = frame.workloads[w]
            joint_fires = joint[w] >= self.settings.score_threshold
            findings.append(
                Finding(
                    workload=workload,
                    at=stream.at,
                    score=float(scores[w]),
                    signals=self._attribution(stream, w, features[w] if joint_fires else None),
                    onset=self.onsets.onset(workload),
                    model_version=self.model_version,
                )
            )
        return replace(stream, scores=scores, findings=tuple(findings))

    def clear_onsets(self) -> None:
        """Forget every anomalous run (after warming from history)."""
        self.onsets.onset_.clear()
        self.streaming.clear_onsets()

    def _attribution(
        self, stream: Detection, w: int, features: F64 | None
    ) -> tuple[SignalDeviation, ...]:
        """Signals the streaming detector sees deviate, and (``features`` given, when the
        joint model fires) those carrying the joint distance, largest first."""
        z = stream.deviations[w]
        shares, joint = np.zeros_like(z), np.zeros_like(z)
        if features is not None:
            row = features[None, :]
            parts = self.model.contributions(row)[0]
            shares = parts / max(float(parts.sum()), 1e-12)
            moved = self.model.spec.directions(row)[0]
            moved = np.where(moved == 0, 1.0, moved)  # a level that did not change: up
            joint = moved * np.sqrt(shares * float(self.model.distance(row)[0]))
        named = (np.abs(z) >= ATTRIBUTION_MIN_DEVIATION) | (shares >= JOINT_ATTRIBUTION_SHARE)
        deviation = np.where(np.abs(z) >= np.abs(joint), z, joint)
        return named_signals(stream, w, deviation, named)


def score_history(
    frame: Frame,
    model: JointModel | None,
    *,
    settings: DetectorSettings | None = None,
    advance: Callable[[int], object] | None = None,
) -> F64:
    """(W, T) online scores of every workload at every row: the service detector replayed.

    With ``model`` None, the streaming detector alone (the detector in service without a
    trained model). ``advance``, when given, is called with the number of rows done, for
    a progress bar.
    """
    detector = StreamingDetector(settings)
    out = np.zeros((len(frame.workloads), len(frame.timestamps)))
    fresh = np.zeros(out.shape, dtype=bool)
    for t in range(len(frame.timestamps)):
        prefix = Frame(
            frame.timestamps[: t + 1], frame.workloads, frame.signals, frame.values[:, :, : t + 1]
        )
        detection = detector.update(prefix)
        fresh[:, t] = detection.fresh
        out[:, t] = np.where(detection.fresh, detection.scores, 0.0)
        if advance is not None:
            advance(1)
    if model is None:
        return out
    rows = window_features(frame, model.spec).reshape(-1, len(model.features_))
    joint = model.anomaly_score(rows).reshape(out.shape)
    accepted = model.matches_confirmed(rows).reshape(out.shape)
    combined: F64 = np.where(fresh, combine(out, joint, accepted), 0.0)
    return combined


def build_detector(
    settings: DetectorSettings,
) -> StreamingDetector | CombinedDetector | ShapedDetector:
    """The detector the settings name: streaming alone, or with a registered joint model,
    and the shape stage over either (``shape_enabled``, on by default).

    Loading checks the artifact against its card (``registry.load``); a model that does
    not load stops start-up with the file named, rather than running without it.
    """
    from healer.detect import registry

    inner: StreamingDetector | CombinedDetector
    if settings.model_version is None:
        inner = streaming = StreamingDetector(settings)
    else:
        loaded = registry.load(settings.model_version, models_dir=settings.models_dir)
        inner = CombinedDetector(loaded.model, version=loaded.version, settings=settings)
        streaming = inner.streaming
    if not settings.shape_enabled:
        return inner
    return ShapedDetector(inner, streaming, settings=settings)
