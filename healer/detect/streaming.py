"""The streaming detector: a learned baseline per workload and signal, one score per workload.

For every (workload, signal) it learns, online, a level (an exponentially weighted mean
with a half-life of tens of minutes, which follows the daily cycle but not a fault that
develops in minutes) and a spread (the weighted mean absolute deviation from that
level). A new sample's deviation is its distance from the level in units of the spread.

Scores are calibrated probabilities, not thresholds per metric: the deviation in the
harmful direction is read against a Student-t distribution with 3 degrees of freedom
(heavy tails, because operational noise is not Gaussian), and the per-signal tail
probabilities are combined with the Šidák correction for the number of scored signals.
A score of 0.95 therefore means "a sample this far out happens by chance in fewer than
1 in 20 workload-samples", whichever signal it is and whatever its units.

While a sample is anomalous its signal's baseline holds still (it learns at 5% of the
usual rate), so a fault is not learned as the new normal within minutes, while a
lasting change is absorbed within hours. A workload becomes a Finding only when it
stays anomalous for ``persistence_s``, which ignores one-scrape bursts.

Everything is computed on whole (workload x signal) arrays; the only Python loop is over
the few new timestamps of each cycle. A score at time t uses data up to t only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

from healer.config import DetectorSettings
from healer.detect.signals import RELATIVE_FLOOR, absolute_floor, polarity
from healer.types import Direction, Finding, Frame, Signal, SignalDeviation, WorkloadRef

# Degrees of freedom of the Student-t the deviations are read against (``student_t3_tail``
# is its tail in closed form: change both together).
T_DOF = 3.0
# While anomalous, the baseline learns at this fraction of its usual rate.
HOLD_FACTOR = 0.05
# Mean absolute deviation times this estimates a Gaussian standard deviation.
MAD_TO_SD = 1.25
# A signal is named in a finding's explanation when it deviates by this many spreads.
ATTRIBUTION_MIN_DEVIATION = 3.0
# Residuals are clipped to this many spreads before they update the spread, so one
# outlier cannot inflate it.
SPREAD_CLIP = 4.0

F64 = NDArray[np.float64]


@dataclass(frozen=True)
class Detection:
    """The detector's view after a cycle: the latest score and deviations per workload."""

    at: datetime
    workloads: tuple[WorkloadRef, ...]
    signals: tuple[Signal, ...]
    scores: F64
    """(W,) calibrated score in [0, 1] at ``at``."""
    deviations: F64
    """(W, S) signed deviation of each signal from its baseline, in spreads."""
    levels: F64
    values: F64
    findings: tuple[Finding, ...]
    fresh: NDArray[np.bool_]
    """(W,) whether the workload had a valid scored sample in this update; a workload
    without one is unknown, not healthy."""
    rows: Mapping[WorkloadRef, int] | None = field(default=None, repr=False, compare=False)
    """``workload_rows`` if the detector already holds it (built when left out)."""

    @cached_property
    def workload_rows(self) -> Mapping[WorkloadRef, int]:
        """Each workload's row, looked up in constant time (see ``Frame.workload_rows``).

        The detector hands over the mapping it keeps while its workloads stay the same:
        built afresh for every cycle's detection, it cost a tenth of a second a cycle at
        100,000 workloads."""
        if self.rows is not None:
            return self.rows
        return {w: i for i, w in enumerate(self.workloads)}

    def score_of(self, workload: WorkloadRef) -> float:
        return float(self.scores[self.workload_rows[workload]])

    def observed(self, workload: WorkloadRef) -> bool:
        row = self.workload_rows.get(workload)
        return row is not None and bool(self.fresh[row])

    @property
    def anomalous_count(self) -> int:
        return len(self.findings)


class StreamingDetector:
    """Online per-signal baselines with calibrated, combined scores (scikit-learn style)."""

    model_version = "streaming-baseline/1"

    def __init__(self, settings: DetectorSettings | None = None) -> None:
        self.settings = settings or DetectorSettings()

    def _reset(self, workloads: tuple[WorkloadRef, ...], signals: tuple[Signal, ...]) -> None:
        shape = (len(workloads), len(signals))
        self.workloads_ = workloads
        self.rows_: Mapping[WorkloadRef, int] = {w: i for i, w in enumerate(workloads)}
        """Each workload's row, for every detection until the workloads change."""
        self.signals_ = signals
        self.level_ = np.full(shape, np.nan)
        self.spread_ = np.zeros(shape)
        self.seen_s_ = np.zeros(shape)
        self.valid_t_ = np.full(shape, -np.inf)
        """When each series last had a valid sample (UNIX seconds)."""
        self.count_ = np.zeros(shape)
        self.onset_ = np.full(len(workloads), np.nan)
        self.last_t_ = -np.inf
        self.polarity_ = polarity(signals)
        self.floor_ = absolute_floor(signals)

    def _align(self, frame: Frame) -> None:
        """Keep learned state when workloads come and go between frames."""
        if not hasattr(self, "workloads_"):
            self._reset(frame.workloads, frame.signals)
            return
        if frame.workloads == self.workloads_ and frame.signals == self.signals_:
            return
        if frame.signals != self.signals_:
            raise ValueError("the frame's signals changed; the detector needs a new model")
        old = self.rows_
        keep = np.array([old.get(w, -1) for w in frame.workloads], dtype=np.intp)
        new, kept = np.flatnonzero(keep >= 0), keep[keep >= 0]
        arrays = (self.level_, self.spread_, self.seen_s_, self.count_, self.valid_t_)
        last_t, onset = self.last_t_, self.onset_
        self._reset(frame.workloads, frame.signals)
        for dst, src in zip(
            (self.level_, self.spread_, self.seen_s_, self.count_, self.valid_t_),
            arrays,
            strict=True,
        ):
            dst[new] = src[kept]
        self.onset_[new] = onset[kept]
        self.last_t_ = last_t

    def update(self, frame: Frame) -> Detection:
        """Learn from the frame's samples newer than the last call; score the newest."""
        self._align(frame)
        new = np.flatnonzero(frame.timestamps > self.last_t_)
        shape = (len(frame.workloads), len(frame.signals))
        z, scores = np.zeros(shape), np.zeros(shape[0])
        levels, values = self.level_.copy(), np.full(shape, np.nan)
        fresh = np.zeros(shape[0], dtype=bool)
        for t in new:
            values = frame.values[:, :, t]
            levels = self.level_.copy()
            z, scores = self._step(float(frame.timestamps[t]), values)
            fresh = (np.isfinite(values) & (self.polarity_ != 0)[None, :]).any(axis=1)
        at = datetime.fromtimestamp(float(self.last_t_) if np.isfinite(self.last_t_) else 0.0, UTC)
        findings = self._findings(at, scores, z, levels, values)
        return Detection(
            at=at,
            workloads=frame.workloads,
            signals=frame.signals,
            scores=scores,
            deviations=z,
            levels=levels,
            values=values,
            findings=findings,
            fresh=fresh,
            rows=self.rows_,
        )

    def score_steps(self, frame: Frame) -> F64:
        """(W, T) score of every workload at each of the frame's timestamps.

        Learns exactly as ``update`` does (the state after this call is the state after
        ``update`` on the same frame), but keeps every step's score instead of the last
        one: for evaluating the detector on whole labelled series and for benchmarks.
        Timestamps not newer than the last call's are NaN: they were scored before.
        """
        self._align(frame)
        out = np.full((len(frame.workloads), len(frame.timestamps)), np.nan)
        for t in np.flatnonzero(frame.timestamps > self.last_t_):
            out[:, t] = self._step(float(frame.timestamps[t]), frame.values[:, :, t])[1]
        return out

    def _step(self, t: float, x: F64) -> tuple[F64, F64]:
        s = self.settings
        dt = t - self.last_t_ if np.isfinite(self.last_t_) else 0.0
        self.last_t_ = t
        valid = np.isfinite(x)
        self._forget(valid & (t - self.valid_t_ > s.baseline_half_life_s))
        fresh = valid & np.isnan(self.level_)
        self.level_[fresh] = x[fresh]
        resid = np.where(valid, x - self.level_, 0.0)
        scale = self.scales()
        z = resid / scale
        warm = self.seen_s_ >= s.warmup_s
        tail = self._tail(z * self.polarity_[None, :])
        tail = np.where(warm & (self.polarity_[None, :] != 0), tail, 1.0)
        n_scored = max(1, int(np.count_nonzero(self.polarity_)))
        scores = (1.0 - tail.min(axis=1)) ** n_scored
        self._learn(dt, valid, resid, scale, tail)
        self.valid_t_ = np.where(valid, t, self.valid_t_)
        self._track_onset(t, scores, seen=(valid & (self.polarity_ != 0)[None, :]).any(axis=1))
        return np.where(valid, z, 0.0), scores

    def judge(self, values: F64) -> tuple[F64, F64]:
        """(W, S) deviations and (W,) scores of one sample ``values`` (W, S) against the
        baselines as they stand, learning nothing from it and forgetting nothing.

        For a release gate, which compares a new revision with the old one's normal: the
        baselines must stay the old revision's while the new one is judged. A series not
        warm, or without a value, scores nothing (its tail is 1)."""
        valid = np.isfinite(values) & np.isfinite(self.level_)
        z = np.where(
            valid, (np.nan_to_num(values) - np.nan_to_num(self.level_)) / self.scales(), 0.0
        )
        scored = valid & (self.seen_s_ >= self.settings.warmup_s) & (self.polarity_ != 0)[None, :]
        tail = np.where(scored, self._tail(z * self.polarity_[None, :]), 1.0)
        n_scored = max(1, int(np.count_nonzero(self.polarity_)))
        scores: F64 = (1.0 - tail.min(axis=1)) ** n_scored
        return z, scores

    def scales(self) -> F64:
        """(W, S) the unit of the next sample's deviation: the learned spread as a
        standard deviation, at least the signal's resolution (absolute, and relative to
        the level)."""
        out: F64 = np.maximum(
            np.maximum(self.spread_ * MAD_TO_SD, self.floor_[None, :]),
            RELATIVE_FLOOR * np.abs(np.nan_to_num(self.level_)),
        )
        return out

    def _forget(self, stale: NDArray[np.bool_]) -> None:
        """Start the ``stale`` series over, as if seen for the first time.

        After a gap longer than the baseline's half-life, what was learned before it is
        no reference: the series moved on meanwhile, unseen, and a workload back with
        fresh pods climbs from their start (memory from 60% back to normal over minutes).
        Kept, the old spread read that climb as a fault of many spreads, and the held
        baseline never caught up. A stale series therefore warms up for ``warmup_s``
        before it is scored again, so neither the gap nor the warm-up raises a finding.
        A series never seen is stale too, which changes nothing for it.
        """
        self.level_[stale] = np.nan
        self.spread_[stale] = 0.0
        self.seen_s_[stale] = 0.0
        self.count_[stale] = 0.0

    def clear_onsets(self) -> None:
        """Forget every anomalous run (after warming from history): a fault still on
        must last ``persistence_s`` in live data before it is a finding."""
        if hasattr(self, "onset_"):
            self.onset_[:] = np.nan

    @staticmethod
    def _tail(harm: F64) -> F64:
        """One-sided tail probability of a harmful deviation under the Student-t.

        Evaluated for harmful deviations only (no harm: 0.5). With ``T_DOF`` = 3 the
        CDF has a closed form, ``1/2 + (x / (1 + x^2) + atan(x)) / pi`` at
        ``x = t / sqrt(3)``: an arctangent and a ratio, a fifth of the cost of scipy's
        incomplete beta function (``stdtr``), which the daemon paid twice a cycle for
        every harmful (workload, signal), and equal to it to within 1e-15.
        """
        tail: F64 = np.where(np.isnan(harm), np.nan, 0.5)
        harmful = harm > 0.0
        tail[harmful] = student_t3_tail(harm[harmful])
        return tail

    def _learn(
        self, dt: float, valid: NDArray[np.bool_], resid: F64, scale: F64, tail: F64
    ) -> None:
        s = self.settings
        self.count_ += valid
        self.seen_s_ += np.where(valid, dt, 0.0)
        # Early on, a plain running mean; later, exponential forgetting with the half-life.
        warmup = 1.0 / np.maximum(self.count_, 1.0)
        alpha_level = np.maximum(1.0 - 0.5 ** (dt / s.baseline_half_life_s), warmup)
        alpha_spread = np.maximum(1.0 - 0.5 ** (dt / s.spread_half_life_s), warmup)
        n_scored = max(1, int(np.count_nonzero(self.polarity_)))
        anomalous = (1.0 - tail) ** n_scored >= s.score_threshold
        alpha_level = np.where(anomalous, alpha_level * HOLD_FACTOR, alpha_level)
        alpha_spread = np.where(anomalous, 0.0, alpha_spread)
        clipped = np.minimum(np.abs(resid), SPREAD_CLIP * scale)
        self.level_ = np.where(valid, self.level_ + alpha_level * resid, self.level_)
        self.spread_ = np.where(
            valid, self.spread_ + alpha_spread * (clipped - self.spread_), self.spread_
        )

    def _track_onset(self, t: float, scores: F64, seen: NDArray[np.bool_]) -> None:
        """Start or end each workload's anomalous run; a sample with no data changes nothing."""
        hot = scores >= self.settings.score_threshold
        started = np.where(np.isnan(self.onset_), t, self.onset_)
        self.onset_ = np.where(seen, np.where(hot, started, np.nan), self.onset_)

    def _findings(
        self, at: datetime, scores: F64, z: F64, levels: F64, values: F64
    ) -> tuple[Finding, ...]:
        step_slack = 1.0  # onset is stamped at the first anomalous sample
        lasting = (at.timestamp() - self.onset_ + step_slack) >= self.settings.persistence_s
        out = []
        for w in np.flatnonzero(lasting & (scores >= self.settings.score_threshold)):
            out.append(
                Finding(
                    workload=self.workloads_[w],
                    at=at,
                    score=float(scores[w]),
                    signals=self._attribution(z[w], levels[w], values[w]),
                    onset=datetime.fromtimestamp(float(self.onset_[w]), UTC),
                    model_version=self.model_version,
                )
            )
        return tuple(out)

    def _attribution(self, z: F64, levels: F64, values: F64) -> tuple[SignalDeviation, ...]:
        order = np.argsort(-np.abs(z))
        return tuple(
            SignalDeviation(
                signal=self.signals_[i],
                value=float(values[i]),
                baseline=float(levels[i]),
                deviation=float(z[i]),
                direction=Direction.UP if z[i] > 0 else Direction.DOWN,
            )
            for i in order
            if abs(z[i]) >= ATTRIBUTION_MIN_DEVIATION
        )


def student_t3_tail(t: F64) -> F64:
    """Upper tail ``1 - CDF(t)`` of the Student-t with 3 degrees of freedom, ``t > 0``.

    ``x / (1 + x^2)`` is written ``1 / (x + 1/x)`` so that an infinite deviation has a
    tail of 0, as ``stdtr`` gives it.
    """
    x = t / math.sqrt(T_DOF)
    out: F64 = 0.5 - (1.0 / (x + 1.0 / x) + np.arctan(x)) / math.pi
    return out
