"""The scoring rules of the Numenta Anomaly Benchmark (NAB v1.1), as healer applies them.

Detection quality is judged on labelled series by these rules (see ``EVAL.md``), so the
project owns an implementation rather than trusting a script it cannot test: every
labelled anomaly window earns up to its true-positive weight for its earliest flagged
row (less the later that row falls inside it), a window without a flag costs the
false-negative weight, and each flagged row outside every window costs the
false-positive weight (less if it falls soon after a window ends). One threshold per
profile serves the whole corpus; it is the best of all distinct scores.

The decision behind the shape of the code: the threshold sweep is done in one pass over
the corpus sorted by score, so that trying every distinct score of 100,000 rows costs a
sort, not 100,000 re-scorings.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]

# NAB ignores the first 15% of a file, at most 750 rows (15% of its 5,000-row norm).
PROBATION_SHARE = 0.15
PROBATION_MAX_ROWS = 750
# Past this (in window widths after a window's end) a false positive costs its full weight.
RAMP_FULL_COST_AFTER = 3.0
# Steepness of NAB's scaled sigmoid.
RAMP_STEEPNESS = 5.0


@dataclass(frozen=True)
class Profile:
    """Weights of one NAB application profile."""

    name: str
    tp_weight: float
    fp_weight: float
    fn_weight: float


PROFILES: tuple[Profile, ...] = (
    Profile("standard", 1.0, 0.11, 1.0),
    Profile("reward_low_FP_rate", 1.0, 0.22, 1.0),
    Profile("reward_low_FN_rate", 1.0, 0.11, 2.0),
)


def ramp(x: F64) -> F64:
    """NAB's scaled sigmoid: 1 well before 0, 0 at 0, -1 past ``RAMP_FULL_COST_AFTER``."""
    with np.errstate(over="ignore"):
        out: F64 = 2.0 / (1.0 + np.exp(RAMP_STEEPNESS * x)) - 1.0
    return np.where(x > RAMP_FULL_COST_AFTER, -1.0, out)


def probation_rows(n_rows: int) -> int:
    """Rows at the start of a file that are neither scored nor counted."""
    return min(math.floor(PROBATION_SHARE * n_rows), PROBATION_MAX_ROWS)


@dataclass(frozen=True)
class LabelledScores:
    """One file's detector scores with its anomaly windows as inclusive row ranges."""

    key: str
    scores: F64
    windows: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class _Rows:
    """A file's scorable rows: score, window id (-1 outside) and unweighted reward.

    Inside a window the reward is the true-positive fraction earned by a first flag there
    (1.0 at the window's first row); outside it is the false-positive fraction (-1.0 far
    from any window, nearer 0 just after one).
    """

    scores: F64
    window: NDArray[np.int64]
    reward: F64
    n_windows: int
    live_windows: int


def _rows(item: LabelledScores) -> _Rows:
    n = len(item.scores)
    index = np.arange(n)
    window = np.full(n, -1, dtype=np.int64)
    reward = np.full(n, -1.0)
    bounds = sorted(item.windows)
    at_edge = float(ramp(np.array(-1.0)))
    for k, (lo, hi) in enumerate(bounds):
        width = hi - lo + 1
        window[lo : hi + 1] = k
        reward[lo : hi + 1] = ramp(-(hi - index[lo : hi + 1] + 1) / width) / at_edge
        end = bounds[k + 1][0] if k + 1 < len(bounds) else n
        if width > 1:
            reward[hi + 1 : end] = ramp((index[hi + 1 : end] - hi) / (width - 1))
    keep = index >= probation_rows(n)
    live = np.unique(window[keep & (window >= 0)])
    return _Rows(item.scores[keep], window[keep], reward[keep], len(bounds), len(live))


@dataclass(frozen=True)
class FileResult:
    key: str
    raw: float
    detected: int
    missed: int
    false_positives: int


@dataclass(frozen=True)
class ProfileResult:
    """A profile's corpus score at its best threshold; ``threshold`` inf flags nothing."""

    profile: Profile
    threshold: float
    raw: float
    null: float
    perfect: float
    files: tuple[FileResult, ...]

    @property
    def normalized(self) -> float:
        return 100.0 * (self.raw - self.null) / (self.perfect - self.null)


def _weighted(rows: _Rows, profile: Profile) -> F64:
    weight = np.where(rows.window >= 0, profile.tp_weight, profile.fp_weight)
    return rows.reward * weight


def score_file(key: str, rows: _Rows, profile: Profile, threshold: float) -> FileResult:
    """Raw score of one file at a fixed threshold."""
    flagged = rows.scores >= threshold
    value = _weighted(rows, profile)
    outside = flagged & (rows.window < 0)
    raw = float(value[outside].sum())
    detected = 0
    for k in np.unique(rows.window[rows.window >= 0]):
        hits = flagged & (rows.window == k)
        detected += bool(hits.any())
        raw += float(value[hits].max()) if hits.any() else -profile.fn_weight
    missed = rows.live_windows - detected
    return FileResult(key, raw, detected, missed, int(outside.sum()))


def best_threshold(corpus: Sequence[_Rows], profile: Profile) -> float:
    """The threshold with the highest raw corpus score; ties go to the higher threshold.

    Rows are visited from the highest score down. Flagging a row outside every window
    adds its (negative) value; flagging one inside a window adds how much it raises
    that window's best value so far, which starts at minus the false-negative weight.
    """
    scores = np.concatenate([r.scores for r in corpus])
    values = np.concatenate([_weighted(r, profile) for r in corpus])
    offsets = np.cumsum([0] + [r.n_windows for r in corpus[:-1]])
    windows = np.concatenate(
        [
            np.where(r.window >= 0, r.window + off, -1)
            for r, off in zip(corpus, offsets, strict=True)
        ]
    )
    order = np.argsort(-scores, kind="stable")
    scores, values, windows = scores[order], values[order], windows[order]
    gain = np.where(windows < 0, values, 0.0)
    inside = np.flatnonzero(windows >= 0)
    by_window = inside[np.argsort(windows[inside], kind="stable")]
    groups = np.split(by_window, np.flatnonzero(np.diff(windows[by_window])) + 1)
    for rows in groups:
        if len(rows):
            best = np.maximum.accumulate(values[rows])
            before = np.concatenate(([-profile.fn_weight], best[:-1]))
            gain[rows] = np.maximum(best, -profile.fn_weight) - np.maximum(
                before, -profile.fn_weight
            )
    total = np.cumsum(gain)
    ends = np.flatnonzero(np.append(scores[1:] != scores[:-1], True))
    if len(ends) == 0 or total[ends].max() <= 0.0:
        return math.inf
    return float(scores[ends[int(np.argmax(total[ends]))]])


def evaluate(
    items: Sequence[LabelledScores], profiles: Sequence[Profile] = PROFILES
) -> tuple[ProfileResult, ...]:
    """NAB scores of a corpus, one result per profile, each at its own best threshold."""
    return _evaluate(items, profiles, None)


def evaluate_at(
    items: Sequence[LabelledScores], threshold: float, profiles: Sequence[Profile] = PROFILES
) -> tuple[ProfileResult, ...]:
    """NAB scores of a corpus at a given threshold, for instance one chosen on other files.

    That is how a detector fares on series it was not tuned on: NAB's own sweep picks
    the threshold with the labels of the very files it scores.
    """
    return _evaluate(items, profiles, threshold)


def _evaluate(
    items: Sequence[LabelledScores], profiles: Sequence[Profile], fixed: float | None
) -> tuple[ProfileResult, ...]:
    corpus = [_rows(item) for item in items]
    results = []
    for profile in profiles:
        threshold = best_threshold(corpus, profile) if fixed is None else fixed
        files = tuple(
            score_file(item.key, rows, profile, threshold)
            for item, rows in zip(items, corpus, strict=True)
        )
        null = -profile.fn_weight * sum(r.live_windows for r in corpus)
        perfect = profile.tp_weight * sum(r.n_windows for r in corpus)
        raw = sum(f.raw for f in files)
        results.append(ProfileResult(profile, threshold, raw, null, perfect, files))
    return tuple(results)
