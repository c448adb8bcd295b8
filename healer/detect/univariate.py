"""Online anomaly scores for one series: the detector behind `healer score-csv`.

Operations metrics are dominated by repeating shapes (a daily cycle, a nightly batch, a
square wave of a cron job) and by noise whose size differs by orders of magnitude from
one metric to the next. A per-point threshold on the distance from a baseline flags
every daily peak of a cyclic series; what an operator calls an anomaly is a *shape* the
series has not shown before: a jump to a new level, a cycle that goes flat, spikes that
come more often.

So the raw surprise of row i is a *left discord* distance: how far the last
``shape_rows`` values are from the most similar stretch of the same length in the
previous ``history_rows`` rows (Euclidean, per value, in the series' own units). A
series that repeats itself scores near zero wherever it is in its cycle; a novel shape
scores high, whatever its direction.

That distance is then read, as in Numenta's anomaly likelihood, against its own recent
behaviour: the mean distance of the last ``recent_rows`` rows is compared with the mean
and spread of the distance over ``history_rows`` rows, and the Gaussian tail of that
deviation gives a probability-like score. This takes the units out (no threshold per
metric) and makes a noisy series, whose distances are always large, quiet. A floor on
the spread at the series' quantisation step keeps flat and integer-valued series from
turning the smallest change into a certainty.

Finally, one alarm per event: after a score reaches ``alarm_level`` the next
``refractory_rows`` rows are capped just below it. Only the first flag inside an
anomaly window earns anything and every later flag outside one costs, which is also
what an operator wants from a pager. This is online (it looks back only).

Every step uses rows 0..i only, and every step is vectorised: the discord distances in
blocks of ``BLOCK_ROWS`` rows against their history (a matrix product), the rolling
means by cumulative sums. The only Python loop is over the few rows that reach the
alarm level. The hyperparameters are the same for every series.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray
from scipy.special import ndtr

F64 = NDArray[np.float64]

# Query rows per matrix product in the discord search: large enough for BLAS to be
# efficient, small enough that the band's wasted corners (2 x 256^2 of 256 x 2,232
# entries) stay small.
BLOCK_ROWS = 256
# Below this spread the likelihood's z-score would divide by ~0.
MIN_SPREAD = 1e-9


@dataclass(frozen=True)
class DiscordLikelihood:
    """Left-discord distance read as an anomaly likelihood, with one alarm per event.

    Rows are samples, whatever their period; the defaults are in rows of NAB's 5-minute
    series, where 24 rows are two hours and 2,000 rows about a week.
    """

    shape_rows: int = 24
    """Length of the recent shape compared with history (2 h at 5-min samples: long
    enough to see a cycle's slope, short enough to react within the hour)."""
    history_rows: int = 2000
    """How far back the discord search and the likelihood statistics reach (about a
    week of 5-minute samples, so a weekly pattern is seen once before it is judged)."""
    recent_rows: int = 5
    """Rows averaged before the likelihood, so one odd sample is weaker evidence than
    five."""
    alarm_level: float = 0.999
    """Score from which an alarm holds the following rows down."""
    refractory_rows: int = 150
    """Rows after an alarm during which scores stay below ``alarm_level`` (12.5 h)."""

    def score(self, values: F64) -> F64:
        """Scores in [0, 1] for every row; row i's uses rows 0..i only."""
        x = np.asarray(values, dtype=np.float64)
        if len(x) == 0:
            return np.zeros(0)
        distance = left_discord(x, self.shape_rows, self.history_rows)
        recent = trailing_mean(distance, self.recent_rows)
        mean, spread = past_mean_std(recent, self.history_rows)
        floor = np.maximum(quantisation_step(x), MIN_SPREAD)
        likelihood: F64 = ndtr((recent - mean) / np.maximum(spread, floor))
        return refractory(likelihood, self.alarm_level, self.refractory_rows)


def left_discord(x: F64, shape_rows: int, history_rows: int) -> F64:
    """Per-value distance from the shape ending at each row to its nearest earlier match.

    Candidates end at least ``shape_rows`` rows before the row (no overlap with the
    query) and at most ``history_rows`` rows before it. Rows without a candidate get 0.

    Rows are taken in blocks on a fixed grid, each block a matrix product of the same
    shape whatever the series' length (zero-padded past its end), so that a row's
    distance is bit-for-bit the same when the file is cut after it.
    """
    n, m, block = len(x), shape_rows, BLOCK_ROWS
    span = history_rows + block - m  # candidate columns of one block
    padded = np.concatenate((np.full(m - 1, x[0]), x, np.zeros(block)))
    shapes = np.ascontiguousarray(sliding_window_view(padded, m))
    norms = (shapes * shapes).sum(axis=1)
    # Candidate column c of a block's row r is row (start - history_rows + c): allowed
    # when r <= c <= history_rows - m + r, a band of fixed shape, barred
    # elsewhere by adding infinity.
    r = np.arange(block)[:, None]
    c = np.arange(span)[None, :]
    barred = np.where((c < r) | (c > history_rows - m + r), np.inf, 0.0)
    out = np.zeros(n)
    for start in range(0, n, block):
        first = start - history_rows
        lo = max(first, 0)
        hi = start + block - m
        if hi <= lo:
            continue
        cross = shapes[start : start + block] @ shapes[lo:hi].T
        cross *= -2.0
        cross += norms[None, lo:hi]
        cross += barred[:, lo - first :]
        nearest = cross.min(axis=1) + norms[start : start + block]
        stop = min(n, start + block)
        found = nearest[: stop - start]
        out[start:stop] = np.where(np.isfinite(found), np.sqrt(np.maximum(found, 0.0) / m), 0.0)
    return out


def trailing_mean(a: F64, rows: int) -> F64:
    """Mean of each row and the ``rows - 1`` before it (fewer at the start)."""
    total = np.concatenate(([0.0], np.cumsum(a)))
    end = np.arange(1, len(a) + 1)
    start = np.maximum(0, end - rows)
    out: F64 = (total[end] - total[start]) / (end - start)
    return out


def past_mean_std(a: F64, rows: int) -> tuple[F64, F64]:
    """Mean and standard deviation of the ``rows`` values before each row.

    Row 0 has no past: mean 0, deviation 0. The statistics exclude the row itself, so
    a jump is judged against what came before it.
    """
    total = np.concatenate(([0.0], np.cumsum(a)))
    squares = np.concatenate(([0.0], np.cumsum(a * a)))
    end = np.arange(len(a))
    start = np.maximum(0, end - rows)
    count = np.maximum(end - start, 1)
    mean = (total[end] - total[start]) / count
    var = (squares[end] - squares[start]) / count - mean * mean
    return mean, np.sqrt(np.maximum(var, 0.0))  # rounding can make var < 0


def quantisation_step(x: F64) -> F64:
    """Smallest non-zero change between consecutive values so far (MIN_SPREAD if none)."""
    step = np.abs(np.diff(x, prepend=x[0]))
    smallest = np.minimum.accumulate(np.where(step > 0, step, np.inf))
    return np.where(np.isfinite(smallest), smallest, MIN_SPREAD)


def refractory(score: F64, level: float, rows: int) -> F64:
    """Cap at just below ``level`` every score within ``rows`` rows after an alarm."""
    out = score.copy()
    below = np.nextafter(level, 0.0)
    quiet_until = -1
    for i in np.flatnonzero(score >= level):
        if i <= quiet_until:
            out[i] = below
        else:
            quiet_until = int(i) + rows
    return out


DEFAULT_DETECTOR = "discord"
DETECTORS: dict[str, Callable[[F64], F64]] = {
    "discord": DiscordLikelihood().score,
}
