"""The daemon's detector with the shape stage: streaming baselines until a series is
warm, then the shape of its recent history.

The streaming baselines (``streaming``) judge each sample against a level learned over
half an hour; on a series with a daily cycle every peak is far from that level. The
shape stage (``shape``) judges the last hours against a week of history and scores a
repeating cycle low wherever it is. Per (workload, signal):

- before the shape stage is warm for the series (``shape_warmup_buckets`` rows), its
  evidence is the streaming stage's, exactly as without the shape stage;
- once warm, it is the shape score of the newest closed bucket, except that when the
  streaming stage flags the signal between two closings, the open (partial) bucket is
  scored as the newest row, without being committed: an acute fault is judged within a
  scrape or two, not at the end of the bucket.

A signal's evidence is a tail probability (the streaming tail; one minus the shape
score), and a workload's score combines its scored signals as the streaming detector
does (Šidák: one minus the smallest tail, to the power of the number of signals). A
workload none of whose series is warm keeps the inner detector's score (streaming, or
streaming with the joint model). The shape stage's refractory caps a lasting anomaly
just below its alarm level (0.999), well above ``score_threshold``: the daemon keeps
seeing an anomaly that goes on, and verifies a healed workload when its score drops.

A warm signal's shape counts only while the signal stands on its harmful side
(``signals.POLARITY``) of its reference by ``ATTRIBUTION_MIN_DEVIATION`` spreads
(``_harmful``): the shape stage is blind to direction, and the return of a signal to its
old level after a fix is as novel a shape as the fault was. The reference is the
streaming baseline, frozen from where it stood when the signal's anomaly began for as
long as either stage holds it anomalous (``_against_reference``): the baseline itself
learns a lasting fault within hours, and a fault judged against it would stop counting
while it goes on. Once the harm an episode is about is over (``_spend``), the reference
follows the baseline again for the rest of the episode, so a daily drift after a fix is
not judged against the level from before the fault. A spike over before the shape
stage alarms on it counts too, taken at the spike (``_with_moves``), unless the
workload's alarm was on at the spike or the signal has since moved to its harmless
side. So a finding is explained by what it lists: a workload whose score stays at or
above the threshold for ``persistence_s`` (``Onsets``), with the signals whose evidence
reaches the threshold first, each in its harmful direction from its reference (or as it
stood at its spike), then the other signals that deviate, as context.

Decisions: the reference is frozen per signal rather than read from the shape stage's
own history (a median of its buckets, say): the baseline before the anomaly is the
level the verifier and the operator compare with, it needs no window of its own, and
outside an anomaly it is the streaming baseline exactly, so a signal's deviation means
the same in a finding whether or not the shape stage is warm.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Protocol, TypeVar

import numpy as np
from numpy.typing import NDArray

from healer.config import DetectorSettings
from healer.detect.shape import ShapeStage
from healer.detect.shape_bulk import learn_history
from healer.detect.signals import polarity
from healer.detect.streaming import ATTRIBUTION_MIN_DEVIATION, Detection, StreamingDetector
from healer.detect.univariate import DiscordLikelihood
from healer.types import Direction, Finding, Frame, Signal, SignalDeviation, WorkloadRef

F64 = NDArray[np.float64]
Mask = NDArray[np.bool_]
G = TypeVar("G", bound=np.generic)


class Inner(Protocol):
    model_version: str

    def update(self, frame: Frame) -> Detection: ...

    def clear_onsets(self) -> None: ...


class Onsets:
    """When each workload's current anomalous run began, and which runs are findings."""

    def __init__(self, settings: DetectorSettings) -> None:
        self.settings = settings
        self.onset_: dict[WorkloadRef, float] = {}
        self.index_: dict[WorkloadRef, int] = {}
        """Where each workload in a run was in the frame that last saw it hot."""

    def track(
        self, workloads: tuple[WorkloadRef, ...], hot: Mask, fresh: Mask, at_s: float
    ) -> None:
        """Start or end anomalous runs; a workload without fresh data keeps its state.

        Only the workloads in a run are looked up, not every quiet one (10,000 lookups a
        cycle at 10,000 workloads): each where it was last seen, else in the whole frame.
        """
        for w in np.flatnonzero(hot & fresh):
            self.onset_.setdefault(workloads[w], at_s)
            self.index_[workloads[w]] = int(w)
        ended = ~hot & fresh
        for workload in list(self.onset_):
            at = self.index_.get(workload, -1)
            if not (0 <= at < len(workloads) and workloads[at] == workload):
                at = workloads.index(workload) if workload in workloads else -1
            if at >= 0 and ended[at]:
                del self.onset_[workload]
                self.index_.pop(workload, None)

    def lasting(self, workloads: tuple[WorkloadRef, ...], hot: Mask, at_s: float) -> list[int]:
        """The hot workloads whose run has lasted ``persistence_s`` (onset stamped at the
        first anomalous sample, hence the second of slack)."""
        return [
            int(w)
            for w in np.flatnonzero(hot)
            if at_s - self.onset_[workloads[w]] + 1.0 >= self.settings.persistence_s
        ]

    def onset(self, workload: WorkloadRef) -> datetime:
        return datetime.fromtimestamp(self.onset_[workload], UTC)


class ShapedDetector:
    """An inner detector (streaming, or streaming with the joint model) and the shape stage."""

    def __init__(
        self,
        inner: Inner,
        streaming: StreamingDetector,
        *,
        settings: DetectorSettings | None = None,
    ) -> None:
        self.settings = settings or DetectorSettings()
        self.inner = inner
        self.streaming = streaming
        self.model_version = f"{inner.model_version}+shape"
        self.onsets = Onsets(self.settings)
        self.stage_: ShapeStage | None = None
        self.workloads_: tuple[WorkloadRef, ...] = ()
        self.signals_: tuple[Signal, ...] = ()
        self.scored_: NDArray[np.intp] = np.zeros(0, dtype=np.intp)
        """Indices of the signals the stage holds series for (those with a polarity)."""
        self.reference_level_: F64 = np.zeros((0, 0))
        """(W, S) each signal's reference level (``_against_reference``); NaN: none yet."""
        self.reference_scale_: F64 = np.zeros((0, 0))
        """(W, S) the spread, as a standard deviation, that goes with it."""
        self.move_t_: F64 = np.zeros((0, 0))
        """(W, S) when each signal last moved to its harmful side (``_with_moves``)."""
        self.calm_t_: F64 = np.zeros((0, 0))
        """(W, S) when it last stood far on its harmless side."""
        self.move_level_: F64 = np.zeros((0, 0))
        self.move_value_: F64 = np.zeros((0, 0))
        self.move_deviation_: F64 = np.zeros((0, 0))
        """(W, S) its baseline, value and deviation at the move."""
        self.move_seen_: Mask = np.zeros((0, 0), dtype=bool)
        """(W, S) whether an alarm episode of the workload was on at the move."""
        self.harm_t_: F64 = np.zeros((0, 0))
        """(W, S) when the signal last stood on its harmful side (``_harmful``)."""
        self.episode_t_: F64 = np.zeros((0, 0))
        """(W, S) when its current alarm episode began; infinite outside one."""
        self.spent_: Mask = np.zeros((0, 0), dtype=bool)
        """(W, S) whether its episode is spent: the harm it was about is over (``_spend``)."""

    def update(self, frame: Frame) -> Detection:
        """Learn from the frame's new rows, score its newest time; see ``StreamingDetector``."""
        detection = self.inner.update(frame)
        stage = self.learn_shapes(frame)
        cols = self.scored_
        warm = self._widen(stage.rows_ >= self.settings.shape_warmup_buckets, False)
        sign = polarity(frame.signals)[None, :]
        tail = np.where(
            self._streaming_warm(), StreamingDetector._tail(detection.deviations * sign), 1.0
        )
        score = self._widen(stage.score_, np.nan)
        episode = self._widen(stage.episode_, False)
        n_scored = max(1, len(cols))
        anomalous = (1.0 - tail) ** n_scored >= self.settings.score_threshold
        flagged = warm & anomalous
        flagged &= self._widen(stage.bucket_count_ > 0, False)  # an open bucket to judge
        if flagged.any():
            w, s = np.nonzero(flagged)
            series = w * len(cols) + np.searchsorted(cols, s)
            score[w, s], episode[w, s] = stage.provisional(series)
        calibrated = self._calibrated(stage, np.nan_to_num(score), episode)
        # A signal's tail such that the workload's score is its largest calibrated score.
        evidence = np.where(warm, 1.0 - calibrated ** (1.0 / n_scored), tail)
        evidence = np.where(sign != 0, evidence, 1.0)
        live = episode & ~self.spent_
        judged = self._against_reference(detection, held=warm & (live | anomalous))
        judged = self._with_moves(judged, stage, sign, anomalous, live)
        harmful = self._harmful(judged, sign)
        self._spend(judged.at.timestamp(), stage, episode, harmful)
        evidence = np.where(warm & ~harmful, 1.0, evidence)
        shaped = (1.0 - evidence.min(axis=1)) ** n_scored
        scores = np.where(warm.any(axis=1), shaped, detection.scores)
        scores = np.where(detection.fresh, scores, 0.0)
        counted = (1.0 - evidence) ** n_scored >= self.settings.score_threshold
        findings = self._findings(judged, scores, counted)
        return replace(detection, scores=scores, findings=findings)

    def _against_reference(self, detection: Detection, held: Mask) -> Detection:
        """The detection with each ``held`` signal's level and deviation taken against its
        reference: the streaming baseline as it stood before the signal's anomaly began.

        The streaming baseline holds still while its signal is anomalous, but not for
        ever: it learns at ``streaming.HOLD_FACTOR`` of its rate, and at its full rate
        once the signal is within a few spreads of it, so within hours of a lasting shift
        it stands at the shifted level, while the shape stage's alarm episode goes on.
        Judged against that baseline, a fault that lasts would no longer be on its
        harmful side. The reference is the baseline (level and spread) of the last cycle
        at which the signal was neither flagged by the streaming stage nor in a shape
        alarm episode, frozen while it is (``held``), and following the baseline again
        when the episode ends. A signal back at its old level after a fix stands at its
        reference: a recovery, whatever the baseline learned from the fault meanwhile.
        Not held, a signal's reference is its baseline and nothing changes.
        """
        frozen = held & np.isfinite(self.reference_level_)
        level = np.where(frozen, self.reference_level_, detection.levels)
        scale = np.where(frozen, self.reference_scale_, 1.0)
        off = np.where(np.isfinite(detection.values), detection.values - level, 0.0)
        deviations = np.where(frozen, off / scale, detection.deviations)
        self.reference_level_ = np.where(frozen, level, self.streaming.level_)
        self.reference_scale_ = np.where(frozen, scale, self.streaming.scales())
        return replace(detection, levels=level, deviations=deviations)

    def _spend(self, at_s: float, stage: ShapeStage, episode: Mask, harmful: Mask) -> None:
        """Mark the alarm episodes whose harm is over as spent, for as long as they last.

        The shape stage's episode goes on for as long as its refractory holds (hours),
        long after the signal came back, and it may even open once the harm is over (a
        spike fixed within minutes is a novel shape once its bucket closes). Meanwhile
        the signal's reference would stay frozen at its level from before the fault,
        while the signal follows its daily cycle: a drift of a few spreads from that old
        level, or the small bumps of another workload's restart, would then count with
        the episode's score, an alarm about a harm already reported and fixed.

        An episode is spent once the harm it is about is over: its signal stood on its
        harmful side (``_harmful``) during the episode or within the span of the finest
        shape before it began, and has stood on its harmless side for a whole bucket
        since (the stage's unit of time, longer than the verifier's wait at baseline). A
        spent signal's reference follows its baseline again: a relapse still counts, as
        a harmful move from where the signal stands now. An episode with no harm yet (a
        slow leak's novel shape before it has moved far) keeps its frozen reference, so
        the leak is judged against the level it started from.
        """
        self.harm_t_ = np.where(harmful, at_s, self.harm_t_)
        self.episode_t_ = np.where(episode, np.minimum(self.episode_t_, at_s), np.inf)
        span_s = stage.detector.shape_points * stage.bucket_s
        about = self.harm_t_ >= self.episode_t_ - span_s
        over = about & (at_s - self.harm_t_ >= stage.bucket_s)
        self.spent_ = episode & (self.spent_ | over)

    def learn_shapes(self, frame: Frame) -> ShapeStage:
        """Feed the frame's new rows to the shape stage alone, scoring nothing.

        For warming from coarse history (one sample per bucket): the streaming stage
        learns a level and spread at the scrape step, which a coarse sample would
        mislead, so it is fed only the recent history, through ``update``.
        """
        stage = self._align(frame)
        cols = self.scored_
        for t in np.flatnonzero(frame.timestamps > stage.last_t_):
            stage.observe(float(frame.timestamps[t]), frame.values[:, cols, t].reshape(-1))
        return stage

    def learn_history(self, frame: Frame) -> ShapeStage:
        """``learn_shapes`` for a long frame of history, searching its rows in bulk
        (``shape_bulk.learn_history``): the same state, many times faster when the frame
        holds many buckets, as warming's frames of a day of buckets do."""
        stage = self._align(frame)
        new = frame.timestamps > stage.last_t_
        values = frame.values[:, self.scored_][:, :, new]
        learn_history(stage, frame.timestamps[new], values.reshape(-1, int(new.sum())))
        return stage

    def shape_rows(self) -> dict[tuple[WorkloadRef, Signal], int]:
        """Rows the shape stage holds per (workload, scored signal): how warm it is."""
        if self.stage_ is None:
            return {}
        rows = self.stage_.rows_.reshape(len(self.workloads_), len(self.scored_))
        return {
            (w, self.signals_[s]): int(rows[i, j])
            for i, w in enumerate(self.workloads_)
            for j, s in enumerate(self.scored_)
        }

    def clear_onsets(self) -> None:
        """Forget every anomalous run: none that began in warming history is a finding."""
        self.onsets.onset_.clear()
        self.inner.clear_onsets()

    def _calibrated(self, stage: ShapeStage, score: F64, episode: Mask) -> F64:
        """The shape score on the daemon's scale: at or above ``score_threshold`` exactly
        during an alarm episode.

        The shape stage's likelihood is a Gaussian tail of distances that are not
        Gaussian: on NAB's development series it is at or above 0.95 on about 4% of the
        normal rows, while its alarms (0.999 and not held down) are rare, and it is
        judged by those. Within an episode the score maps linearly from the re-arm level
        (to the threshold) up to 1 (to 1), so a capped score just below the alarm level
        still reads as an ongoing anomaly; outside one it is scaled below the threshold.
        Monotone within each of the two, so the order of the alarms is kept.
        """
        d, threshold = stage.detector, self.settings.score_threshold
        rise = np.clip((score - d.rearm_level) / (1.0 - d.rearm_level), 0.0, 1.0)
        out: F64 = np.where(
            episode, threshold + (1.0 - threshold) * rise, np.nextafter(threshold, 0.0) * score
        )
        return out

    def _widen(self, per_series: NDArray[G], fill: float | bool) -> NDArray[G]:
        """The stage's per-series values as (workloads, signals), ``fill`` where a signal
        is not scored (and so has no series in the stage)."""
        n_workloads = len(self.workloads_)
        out = np.full((n_workloads, len(self.signals_)), fill, dtype=per_series.dtype)
        out[:, self.scored_] = per_series.reshape(n_workloads, len(self.scored_))
        return out

    def _streaming_warm(self) -> Mask:
        seen: F64 = self.streaming.seen_s_
        out: Mask = seen >= self.settings.warmup_s
        return out

    def _align(self, frame: Frame) -> ShapeStage:
        """Keep each series' state when workloads come and go between frames.

        The stage holds a series for each workload and scored signal only: a signal
        that cannot hurt (request rate) would cost memory and never count.
        """
        if self.stage_ is not None and frame.signals != self.signals_:
            raise ValueError("the frame's signals changed; the detector needs a new model")
        if self.stage_ is None:
            self.scored_ = np.flatnonzero(polarity(frame.signals) != 0)
        if self.stage_ is None or frame.workloads != self.workloads_:
            self._align_references(frame)
        n_signals = len(self.scored_)
        if self.stage_ is None:
            self.stage_ = ShapeStage(
                len(frame.workloads) * n_signals,
                detector=DiscordLikelihood(),
                bucket_s=self.settings.shape_bucket_s,
            )
        elif frame.workloads != self.workloads_:
            old = {w: i for i, w in enumerate(self.workloads_)}
            rows = np.array([old.get(w, -1) for w in frame.workloads], dtype=np.int64)
            keep = np.where(
                rows[:, None] >= 0, rows[:, None] * n_signals + np.arange(n_signals), -1
            )
            self.stage_ = self.stage_.take(keep.reshape(-1))
        self.workloads_, self.signals_ = frame.workloads, frame.signals
        return self.stage_

    def _align_references(self, frame: Frame) -> None:
        """Each workload keeps its references and moves when others come and go; a new
        one has none."""
        shape = (len(frame.workloads), len(frame.signals))
        old = {w: i for i, w in enumerate(self.workloads_)}
        rows = np.array([old.get(w, -1) for w in frame.workloads], dtype=np.int64)
        kept = rows >= 0
        for name, fill in (
            ("reference_level_", np.nan),
            ("reference_scale_", np.nan),
            ("move_t_", -np.inf),
            ("calm_t_", -np.inf),
            ("move_level_", np.nan),
            ("move_value_", np.nan),
            ("move_deviation_", 0.0),
            ("move_seen_", False),
            ("harm_t_", -np.inf),
            ("episode_t_", np.inf),
            ("spent_", False),
        ):
            before = getattr(self, name)
            after = np.full(shape, fill, dtype=before.dtype)
            if kept.any() and before.shape[0] == len(self.workloads_):
                after[kept] = before[rows[kept]]
            setattr(self, name, after)

    def _with_moves(
        self,
        judged: Detection,
        stage: ShapeStage,
        sign: F64,
        anomalous: Mask,
        episode: Mask,
    ) -> Detection:
        """The judged detection with each signal whose shape alarm is about a harmful move
        taken at that move: its value, baseline and deviation then.

        A spike that is over within a sample or two is a novel shape for the shape stage
        only once its bucket has closed, when the signal stands at its level again: no
        longer on its harmful side, yet the alarm is the spike's. A move is a sample the
        streaming stage flags (on its harmful side); the signal's alarm is about it when
        the episode is on, the move lies within the span of the finest shape the stage
        judges (``shape_points`` buckets), no move by ``ATTRIBUTION_MIN_DEVIATION``
        spreads to the harmless side came after it, and no alarm episode of the workload
        (any signal) was on at the move: an alarm already on was about the fault the move
        is part of, and a signal back from a fault already reported has recovered,
        whatever the shape of its return.
        """
        at_s = judged.at.timestamp()
        moved = anomalous & (sign != 0)
        self.move_t_ = np.where(moved, at_s, self.move_t_)
        seen = episode.any(axis=1, keepdims=True)
        self.move_seen_ = np.where(moved, seen, self.move_seen_)
        self.move_level_ = np.where(moved, judged.levels, self.move_level_)
        self.move_value_ = np.where(moved, judged.values, self.move_value_)
        self.move_deviation_ = np.where(moved, judged.deviations, self.move_deviation_)
        calm = self._streaming_warm() & (judged.deviations * sign <= -ATTRIBUTION_MIN_DEVIATION)
        self.calm_t_ = np.where(calm & ~moved, at_s, self.calm_t_)
        span_s = stage.detector.shape_points * stage.bucket_s
        about = episode & ~self.move_seen_ & (self.move_t_ > self.calm_t_)
        about &= at_s - self.move_t_ <= span_s
        about &= self.move_deviation_ * sign > judged.deviations * sign
        return replace(
            judged,
            levels=np.where(about, self.move_level_, judged.levels),
            values=np.where(about, self.move_value_, judged.values),
            deviations=np.where(about, self.move_deviation_, judged.deviations),
        )

    def _findings(self, detection: Detection, scores: F64, counted: Mask) -> tuple[Finding, ...]:
        at_s = detection.at.timestamp()
        hot = scores >= self.settings.score_threshold
        self.onsets.track(detection.workloads, hot, detection.fresh, at_s)
        return tuple(
            Finding(
                workload=detection.workloads[w],
                at=detection.at,
                score=float(scores[w]),
                signals=self._attribution(detection, w, counted[w]),
                onset=self.onsets.onset(detection.workloads[w]),
                model_version=self.model_version,
            )
            for w in self.onsets.lasting(detection.workloads, hot, at_s)
        )

    @staticmethod
    def _harmful(judged: Detection, sign: F64) -> Mask:
        """(W, S) whether a signal stands on its harmful side of its reference, by at
        least ``ATTRIBUTION_MIN_DEVIATION`` spreads: only then may its shape count.

        The shape stage cannot tell a fault from the end of one: the return of an error
        ratio from its fault level to its old level is a shape as novel as the rise was,
        and stays novel for as long as the rise is within the shape's window. What makes
        either harmful is where the signal stands now, against a level the fault did not
        move: its reference (``_against_reference``), the baseline from before the
        anomaly. A signal back at that level (under three spreads, the size of noise and
        the verifier's ``BASELINE_SIGMA``) has recovered, or is below its level (memory
        after a restart), and its novel shape is no evidence. Every signal that counts is
        therefore named in the finding, in its harmful direction.
        """
        out: Mask = (sign != 0) & (judged.deviations * sign >= ATTRIBUTION_MIN_DEVIATION)
        return out

    @staticmethod
    def _attribution(detection: Detection, w: int, counted: Mask) -> tuple[SignalDeviation, ...]:
        """Signals far from their reference (``_against_reference``), in spreads from it:
        first those whose evidence alone reaches the threshold (``counted``; each is far
        from its reference on its harmful side, see ``_harmful``), then the others as
        context (a request rate, a CPU that fell), each group largest first."""
        z = detection.deviations[w]
        named = (np.abs(z) >= ATTRIBUTION_MIN_DEVIATION) | counted
        return named_signals(detection, w, z, named, first=counted)


def named_signals(
    detection: Detection, w: int, deviation: F64, named: Mask, first: Mask | None = None
) -> tuple[SignalDeviation, ...]:
    """A finding's explanation: workload ``w``'s ``named`` signals with their value,
    baseline and ``deviation``; the ``first`` ones (default none) ahead of the others,
    largest deviation first within each."""
    ahead = np.zeros(len(deviation), dtype=bool) if first is None else first
    order = np.lexsort((-np.abs(deviation), ~ahead))
    return tuple(
        SignalDeviation(
            signal=detection.signals[i],
            value=float(detection.values[w, i]),
            baseline=float(detection.levels[w, i]),
            deviation=float(deviation[i]),
            direction=Direction.UP if deviation[i] > 0 else Direction.DOWN,
        )
        for i in order
        if named[i]
    )
