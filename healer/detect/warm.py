"""Warming a detector from history, so that a new or restarted daemon judges at once
with what a daemon running for a week would know.

Two spans of history, oldest first, as ``wanted`` says for the settings:

* the past, at one sample per shape bucket (``shape_bucket_s``): the shape stage's rows,
  as far back as it reaches (a week and a half day of candidates, plus the span of its
  longest shape). Fed to the shape stage alone (``ShapedDetector.learn_history``): a
  sample per bucket is what the stage keeps of the scrapes anyway, and reading a week
  at the bucket step costs a twentieth of reading it at the scrape step;
* the recent part, at the scrape step: through the whole detector (``update``), so the
  streaming baselines learn their level and spread from samples like the live ones
  (its shape rows learned in bulk first, as the past's are). A
  level learned from bucket means would be right, but its spread would be too narrow
  for single scrapes, and a baseline that reads every live sample as an anomaly stops
  learning its spread.

Findings raised while warming are dropped and the anomalous runs forgotten at the end
(``clear_onsets``): nothing in the history is acted on, and a fault still going on
must last ``persistence_s`` in live data, like any other. A gap in the history (NaN)
teaches nothing and raises nothing; a workload absent from some frames keeps its state
(frames are laid onto the union of the workloads seen so far).

Decisions: the function takes frames, not a source, so that the Prometheus path
(``healer.history.warm_from_prometheus``) and the chaos benchmark's simulated days
feed it the same way and the import contracts hold (a step never imports a sibling).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

import numpy as np

from healer.config import DetectorSettings
from healer.detect.streaming import Detection
from healer.detect.univariate import DiscordLikelihood
from healer.types import Frame, JsonObject, WorkloadRef

RECENT_HALF_LIVES = 2.0
"""The recent part spans this many baseline half-lives (an hour by default): the level
has then forgotten three quarters of where it started, and the streaming stage has been
warm (``warmup_s``) for most of it."""


class Warmable(Protocol):
    def update(self, frame: Frame) -> Detection: ...

    def clear_onsets(self) -> None: ...


@runtime_checkable
class ShapeLearner(Protocol):
    def learn_history(self, frame: Frame) -> object: ...


@dataclass(frozen=True)
class WarmSpan:
    """How much history a detector wants, in seconds before now."""

    past_s: float
    """Read at ``bucket_s`` steps, for the shape stage alone (0: no shape stage)."""
    recent_s: float
    """Read at the scrape step, for the whole detector."""
    bucket_s: float

    @property
    def total_s(self) -> float:
        return max(self.past_s, self.recent_s)


def wanted(settings: DetectorSettings) -> WarmSpan:
    """The history the detector of ``settings`` uses: the shape stage's week and a half
    day of candidates and the span of its longest shape (about 8.5 days in all), and for
    the streaming stage ``RECENT_HALF_LIVES`` baseline half-lives, at least its warm-up.
    ``warm_s`` in the settings caps both (0: no warming)."""
    recent_s = max(settings.warmup_s, RECENT_HALF_LIVES * settings.baseline_half_life_s)
    past_s = 0.0
    if settings.shape_enabled:
        shape = DiscordLikelihood().windows(settings.shape_bucket_s)
        reach = max(g * (shape.shape_points - 1) for g in shape.segment_rows)
        rows = max(shape.history_rows + reach, settings.shape_warmup_buckets)
        past_s = rows * settings.shape_bucket_s
    if settings.warm_s is not None:
        recent_s, past_s = min(recent_s, settings.warm_s), min(past_s, settings.warm_s)
    return WarmSpan(past_s=past_s, recent_s=recent_s, bucket_s=settings.shape_bucket_s)


@dataclass(frozen=True)
class WarmReport:
    """What warming learned from; shown in the log and on ``/status``."""

    wanted_s: float
    first_s: float | None
    """UNIX seconds of the oldest sample learned from (None: no history at all)."""
    last_s: float | None
    workloads: int
    samples: int
    """Timestamps fed, past and recent."""
    findings_dropped: int
    seconds: float
    """Wall-clock time warming took."""

    @property
    def history_s(self) -> float:
        if self.first_s is None or self.last_s is None:
            return 0.0
        return self.last_s - self.first_s

    @property
    def short(self) -> bool:
        """Less history than wanted (by more than one bucket of slack)."""
        return self.history_s + 600.0 < self.wanted_s

    def as_json(self) -> JsonObject:
        def stamp(s: float | None) -> str | None:
            return None if s is None else datetime.fromtimestamp(s, UTC).isoformat()

        return {
            "wanted_s": self.wanted_s,
            "history_s": self.history_s,
            "short": self.short,
            "first": stamp(self.first_s),
            "last": stamp(self.last_s),
            "workloads": self.workloads,
            "samples": self.samples,
            "seconds": round(self.seconds, 3),
        }


def warm(
    detector: Warmable,
    *,
    past: Iterable[Frame] = (),
    recent: Iterable[Frame] = (),
    wanted_s: float = 0.0,
    progress: Callable[[str, Frame], None] | None = None,
    timer: Callable[[], float] = time.perf_counter,
) -> WarmReport:
    """Feed ``past`` (bucket-step frames, shape stage only) then ``recent`` (scrape-step
    frames, the whole detector) to ``detector``, oldest first; drop their findings.

    Frames may overlap (a timestamp already learned is skipped) and their workloads may
    differ. The shape stage learns each frame's rows in bulk (``learn_history``): the
    state feeding them bucket by bucket would build, in a fraction of the time. A
    detector without a shape stage skips ``past``. ``progress`` is called
    after each frame with "past" or "recent" and the frame. Returns what was learned.
    """
    started = timer()
    union: tuple[WorkloadRef, ...] = ()
    first = last = None
    samples = dropped = 0
    learner = detector if isinstance(detector, ShapeLearner) else None
    for part, frames in (("past", past), ("recent", recent)):
        for frame in frames:
            if learner is None and part == "past":
                continue
            union = tuple(sorted(set(union) | set(frame.workloads)))
            laid = onto(frame, union)
            seen = _seen(laid)
            if seen.size:
                first = float(seen[0]) if first is None else min(first, float(seen[0]))
                last = float(seen[-1]) if last is None else max(last, float(seen[-1]))
                samples += int(seen.size)
            if learner is not None:
                # The shape stage's rows in bulk; ``update`` then finds them learned.
                learner.learn_history(laid)
            if part == "recent":
                dropped += len(detector.update(laid).findings)
            if progress is not None:
                progress(part, frame)
    detector.clear_onsets()
    return WarmReport(
        wanted_s=wanted_s,
        first_s=first,
        last_s=last,
        workloads=len(union),
        samples=samples,
        findings_dropped=dropped,
        seconds=timer() - started,
    )


def _seen(frame: Frame) -> np.ndarray[tuple[int], np.dtype[np.float64]]:
    """Timestamps at which some workload has some valid value."""
    if not frame.values.size:
        return np.zeros(0)
    some = np.isfinite(frame.values).any(axis=(0, 1))
    out: np.ndarray[tuple[int], np.dtype[np.float64]] = frame.timestamps[some]
    return out


def onto(frame: Frame, workloads: tuple[WorkloadRef, ...]) -> Frame:
    """``frame`` with rows for ``workloads`` (a superset of its own), NaN where absent."""
    if frame.workloads == workloads:
        return frame
    index = {w: i for i, w in enumerate(workloads)}
    values = np.full((len(workloads), len(frame.signals), len(frame.timestamps)), np.nan)
    values[[index[w] for w in frame.workloads]] = frame.values
    return Frame(frame.timestamps, workloads, frame.signals, values)
