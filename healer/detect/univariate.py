"""Online anomaly scores for one series: the detector behind `healer score-csv`.

Operations metrics are dominated by repeating shapes (a daily cycle, a nightly batch, a
square wave of a cron job) and by noise whose size differs by orders of magnitude from
one metric to the next. A per-point threshold on the distance from a baseline flags
every daily peak of a cyclic series; what an operator calls an anomaly is a *shape* the
series has not shown before: a jump to a new level, a cycle that goes flat, spikes that
come more often.

First the values are compressed: ``asinh(x / rms)``, with the RMS of the values so far.
That is linear for ordinary values and logarithmic for spikes many times the typical
magnitude, the natural scale of bytes, requests and latencies, whose noise is
multiplicative; without it one burst of network traffic dwarfs every other shape. A
burst that raises the RMS by orders of magnitude changes the units for good: until the
rows before it have left the history, the spread of distances is in their units and the
series looks calmer than it is.

The raw surprise of row i is then a *left discord* distance: how far the recent shape
ending at row i is from the most similar shape ending in the previous ``history_rows``
rows (Euclidean, per point). It is measured at two time scales: the last
``shape_points`` rows, and the last ``shape_points`` hourly means (a day). A series
that repeats itself scores near zero wherever it is in its cycle; a novel shape scores
high, whatever its direction.

Each distance is read, as in Numenta's anomaly likelihood, against its own history: the
mean distance of the last ``recent_s`` (25 minutes) is compared with the mean and spread
of the distances of the previous ``history_rows`` rows, and the Gaussian tail of the
deviation is a probability. This takes the units out (no threshold per metric) and keeps
a noisy series, whose distances are always large, quiet. The reference is the spread of
single distances, not of recent means (which is narrower): a short mean must stand out
from what single rows did, so a few odd rows in a row are not enough.

The two scales are two tests of one hypothesis (the series goes on as before), so their
tail probabilities are combined by Fisher's method: ``-2 * sum(log p)`` follows a
chi-squared law with 4 degrees of freedom when both hold, and its CDF is the score.
A shape both scales find somewhat odd scores higher than one only a single scale finds
odd; keeping the higher of the two would throw that evidence away.

Finally, one alarm per event: after a score reaches ``alarm_level``, the following
``refractory_rows`` rows, and all rows until the score has dropped below
``rearm_level``, are capped just below it. Only the first flag inside an anomaly window
earns anything and every later flag outside one costs, which is also what an operator
wants from a pager. This looks back only, so it is online. An alarm scores 1: the
detector decides at one level for every series (see ``alarms_at_one``).

Windows are set in time, not rows (``DiscordLikelihood.windows``): the sampling period
is the median spacing of the first ``PERIOD_ROWS`` rows, an hour of segments is as many
rows as it takes, a shape spans as many segments as fit its span (two hours at the rows
scale, a day at the hourly one, at most ``shape_points``), a week of history holds at
least ``min_history_rows``, so that an hourly series has a reference within its first
days.

Decisions: where an hour is one row, the two scales would be one, a day of 24 hourly
points in which one odd hour moves a twenty-fourth of the shape; hourly business series
are judged by hours that stand out, and the rows scale is the one that sees them. So the
rows scale keeps its span in time instead of its number of points, down to
``min_shape_points`` (a few hours at hourly samples), and the daily scale keeps its day.
At 5-minute samples and finer nothing changes (both spans hold ``shape_points`` points
or more); the cost is a shape of few points, which pure noise matches less closely, so
a little more often a false alarm (about one in ten days of Gaussian noise at hourly
samples, in the tests). A scale gives evidence only once it has learned from
``MIN_LEARNED_ROWS`` distances, and Fisher's method counts only the scales that gave
some. Samples missing for a short while are put back on a straight line
(``fill_gaps``, at most ``BRIDGE_SHARE`` of the rows scale's shape); they are neither
scored (no output row) nor learned from. A longer spacing, of more than ``GAP_PERIODS``
periods, is a gap: the shapes that span it are not shapes the series made, so at each
scale the rows after it, until its shape has passed the gap, neither give evidence nor
teach.

Decisions: rows are the detector's clock, and a sensor that loses one sample in twenty
makes a day of rows a day and an hour, an hourly segment an hour and three minutes, and
a week of history a week and a third of a day: the shapes stop lining up with the ones
they repeat, and two samples lost together used to be a gap that blinded the daily scale
for a day. Putting the missing rows back keeps rows in step with time. The line is the
plainest guess that uses no later sample than the one the row after it is scored with;
longer runs are not guessed at, since a guess of hours would be compared as if the
series had made it.

Every step uses rows 0..i only, and every step is vectorised: the discord distances in
blocks of ``BLOCK_ROWS`` rows against their history (a matrix product), the rolling
statistics by cumulative sums. The only Python loop is over the rows that reach the
alarm level. The hyperparameters are the same for every series. They are judged on
NAB's development series (5-minute samples) whole, leave one category out, and on
hourly and gappy series derived from them (``bench/detection.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray
from scipy.special import chdtr, log_ndtr
from threadpoolctl import threadpool_limits

F64 = NDArray[np.float64]

# Query rows per matrix product in the discord search: large enough for BLAS to be
# efficient, small enough that the band's wasted corners (2 x 256^2 of 256 x 2,392
# entries) stay small.
BLOCK_ROWS = 256
# The discord's matrix products are small (256 x 25 x ~2,200): more BLAS threads add
# synchronisation, and on a busy machine spinning threads make it several times slower.
BLAS_THREADS = 1
# Values are compressed to units of the series' RMS so far (see ``running_rms``). No
# spread of distances is taken as smaller than this, which keeps a perfectly flat or
# repeating series from dividing by 0. It is far below any real spread: one burst a
# million times the noise makes the RMS, and so the units, that much coarser.
RESOLUTION = 1e-12
# A running RMS of exactly 0 (a series of zeros so far) is taken as this.
MIN_RMS = 1e-12


DAY_S = 86_400.0
HOUR_S = 3_600.0
# The sampling period is the median spacing of the first this many rows: enough that a
# few missing or doubled samples do not move it. Rows before it is known score 0 (they
# are warm-up in any file NAB scores: its probation is 15% of a file).
PERIOD_ROWS = 32
# A spacing of more than this many periods is a gap: the rows that follow it, until a
# shape of real rows has passed (at each scale), give no evidence and are not learned from. Jittered
# timestamps (a spacing of up to 1.5 periods) and one missing sample (2) are not gaps.
GAP_PERIODS = 2.5
# Distances are learned at single precision: seven digits are far more than a mean and
# spread of distances need, and the online stage keeps the last few of them per series
# in half the memory.
DISTANCE_DTYPE = np.float32
# Compressed values (in units of the running RMS) are kept at single precision too: the
# online stage keeps a week and a day of them per series, and seven digits of a value
# against its RMS are far below any noise it has.
MEANS_DTYPE = np.float32
# The past distances a row is judged against are the ``history_rows`` before it and up
# to this many less one more, back to the start of the block of this many rows that
# holds the oldest (a week and at most 55 minutes at 5-minute rows). So the online stage
# keeps the sums of a week's 180 blocks per series and scale, not a week of distances:
# 16 kB a series instead of 27. A week's statistics do not move for a few rows more.
PAST_BLOCK_ROWS = 12
# A likelihood needs a spread estimated from at least this many distances; before that a
# row gives no evidence (the common small-sample bound: a spread from 30 values is
# within about 13% of the truth).
MIN_LEARNED_ROWS = 30
# Samples missing for at most this share of the rows scale's shape are put back on a
# straight line (``fill_gaps``): half an hour at 5-minute samples, one row at hourly
# ones. A line that long moves the shape less than the noise of its other rows does;
# a longer run is a gap, after which the scales settle.
BRIDGE_SHARE = 4


@dataclass(frozen=True)
class Windows:
    """The detector's windows in rows of one sampling period (see ``DiscordLikelihood``)."""

    shape_points: int
    """Points of the longest shape (every scale's where ``scale_points`` is not given)."""
    segment_rows: tuple[int, ...]
    history_rows: int
    recent_rows: int
    refractory_rows: int
    scale_points: tuple[int, ...] = ()
    """Points of each scale's shape, in the order of ``segment_rows``."""

    def points(self, k: int) -> int:
        """Points of the shape of scale ``k``."""
        return self.scale_points[k] if self.scale_points else self.shape_points

    def learn_from_row(self, segment_rows: int, points: int | None = None) -> int:
        """First row whose distance at this scale enters the likelihood statistics.

        Until a row has a full shape's worth of candidates its distance is inflated
        (little to match against): it is scored but not learned from.
        """
        return 2 * (points or self.shape_points) * segment_rows

    def settle_rows(self, segment_rows: int, points: int | None = None) -> int:
        """Rows after a gap that give no evidence at this scale and are not learned from:
        until its shape holds real rows only, it would compare a jump across the gap."""
        return (points or self.shape_points) * segment_rows


@dataclass(frozen=True)
class DiscordLikelihood:
    """Left-discord distance read as an anomaly likelihood, with one alarm per event.

    Windows are set in time where time is their natural unit (an hour, a week, half a
    day), and turned into rows with the series' sampling period; a shape's number of
    points is a count of samples. ``windows`` gives them all in rows.
    """

    shape_points: int = 24
    """Points in a shape compared with history."""
    segment_s: tuple[float, ...] = (0.0, HOUR_S)
    """Time averaged into one point of a shape, one entry per time scale (at least one
    row): the rows themselves (at 5-minute samples a shape of the last 2 h, which sees
    jumps and spikes) and hourly means (a shape of the last day, which sees a cycle that
    skips a beat or spikes that come more often). Where an hour is one row the two
    scales are one."""
    span_s: tuple[float, ...] = (2.0 * HOUR_S, DAY_S)
    """Time one shape spans, one entry per time scale: its points are as many segments
    as fit, at most ``shape_points`` and at least ``min_shape_points``. At 5-minute
    samples both scales have ``shape_points`` points, as at any finer sampling; where
    an hour is one row, the rows scale keeps its role (jumps and spikes within hours)
    with a shorter shape instead of becoming the daily one, in which one odd hour is a
    twenty-fourth of the shape."""
    min_shape_points: int = 4
    """Fewest points in a shape: a rise, a peak and a fall and the level around them."""
    history_s: float = 7.5 * DAY_S
    """How far back the discord search and the likelihood statistics reach: a week and
    half a day. The same hours of last week must be among the candidates, or every Monday
    morning is a shape never seen before; the half day is slack for a weekly pattern
    that drifts by some hours."""
    min_history_rows: int = 240
    """Rows of history however long the period: ten shapes of candidates, and a spread
    of distances from that many rows."""
    max_history_rows: int = 4320
    """Rows of history however short the period: the search is linear in it (twice a
    week at 5-minute samples keeps a 20,000-row file well under a second)."""
    recent_s: float = 1500.0
    """Time over which distances are averaged before the likelihood (at least a row), so
    one odd sample is weaker evidence than a spell: five samples at 5 minutes, a single
    one at hourly samples, which are means of an hour already."""
    alarm_level: float = 0.999
    """Score from which an alarm holds the following rows down."""
    refractory_s: float = 12.5 * HOUR_S
    """Time after an alarm during which scores stay below ``alarm_level``: an incident
    of a working day is paged once."""
    rearm_level: float = 0.99
    """After an alarm, a new one needs the likelihood to have dropped below this first:
    an anomaly that lasts for days is one incident, paged once."""
    period_s: float = 300.0
    """Sampling period of rows scored without timestamps."""

    def windows(self, period_s: float) -> Windows:
        """The windows in rows of ``period_s``."""
        scales = sorted(
            {
                (g, self._points(span_s / (g * period_s)))
                for segment_s, span_s in zip(self.segment_s, self.span_s, strict=True)
                for g in (max(1, round(segment_s / period_s)),)
            }
        )
        # A scale whose shapes would not leave a shape's worth of candidates within the
        # longest history is dropped (an hour of second-by-second samples).
        scales = [(g, p) for g, p in scales if g == 1 or 2 * p * g <= self.max_history_rows]
        history = round(self.history_s / period_s)
        history = min(max(history, self.min_history_rows), self.max_history_rows)
        history = max(history, max(p * g for g, p in scales) + 1)  # a candidate at least
        return Windows(
            shape_points=max(p for _, p in scales),
            segment_rows=tuple(g for g, _ in scales),
            scale_points=tuple(p for _, p in scales),
            history_rows=history,
            recent_rows=max(1, round(self.recent_s / period_s)),
            refractory_rows=max(1, round(self.refractory_s / period_s)),
        )

    def _points(self, segments: float) -> int:
        """Points of a shape that spans ``segments`` segments."""
        return min(max(round(segments), self.min_shape_points), self.shape_points)

    def score(self, values: F64, seconds: F64 | None = None) -> F64:
        """Scores in [0, 1] for every row; row i's uses rows 0..i only.

        ``seconds``: each row's time; the sampling period is read from the first
        ``PERIOD_ROWS`` spacings (rows before that score 0), and a longer spacing than
        ``GAP_PERIODS`` periods is a gap. Without it rows are ``period_s`` apart.
        """
        x = np.asarray(values, dtype=np.float64)
        if len(x) == 0:
            return np.zeros(0)
        if seconds is None:
            return self.score_rows(x, self.windows(self.period_s))
        t = np.asarray(seconds, dtype=np.float64)
        period_s = sampling_period(t, self.period_s)
        windows = self.windows(period_s)
        bridge = windows.points(0) * windows.segment_rows[0] // BRIDGE_SHARE
        filled = fill_gaps(x, t, period_s, bridge)
        scores = self.score_rows(filled.values, windows, filled.gaps, imputed=~filled.real)
        out = scores[filled.real]
        out[:PERIOD_ROWS] = 0.0
        return out

    def score_rows(
        self,
        x: F64,
        windows: Windows,
        gaps: NDArray[np.int64] | None = None,
        *,
        imputed: NDArray[np.bool_] | None = None,
    ) -> F64:
        """Scores of rows ``windows`` apart; ``gaps``: the rows that follow a gap;
        ``imputed``: rows that stand in for missing samples (``fill_gaps``), which
        neither give evidence nor teach."""
        u = compress(x, running_rms(x)).astype(MEANS_DTYPE).astype(np.float64)
        log_tails, tests = np.zeros(len(x)), np.zeros(len(x))
        skipped = np.zeros(len(x), dtype=bool) if imputed is None else imputed
        with threadpool_limits(limits=BLAS_THREADS, user_api="blas"):
            for k, segment_rows in enumerate(windows.segment_rows):
                points = windows.points(k)
                settle = windows.settle_rows(segment_rows, points)
                settling = settling_rows(len(x), gaps, settle) | skipped
                log_tail, tested = self._log_tail(u, windows, segment_rows, points, settling)
                log_tails += log_tail
                tests += tested
        likelihood = fisher_combined(log_tails, tests)
        held = refractory(
            likelihood, self.alarm_level, rows=windows.refractory_rows, rearm=self.rearm_level
        )
        return alarms_at_one(held, self.alarm_level)

    @staticmethod
    def _log_tail(
        x: F64, w: Windows, segment_rows: int, points: int, settling: NDArray[np.bool_]
    ) -> tuple[F64, NDArray[np.bool_]]:
        """Log of the Gaussian tail probability of the recent discord distance at one
        scale, and whether the row has that evidence (0 where it has not).

        In logs, so that a tail of 1e-30 stays distinct from one of 1e-300 when the scales
        are combined. A distance not learned from is NaN in the statistics.
        """
        shapes = shapes_of(x, points, segment_rows)
        distance = left_discord(shapes, points * segment_rows, w.history_rows)
        learn_from = w.learn_from_row(segment_rows, points)
        learned = np.where((np.arange(len(x)) >= learn_from) & ~settling, distance, np.nan)
        learned = learned.astype(DISTANCE_DTYPE).astype(np.float64)
        recent = recent_mean(learned, distance, w.recent_rows)
        mean, spread, count = past_mean_std(learned, w.history_rows)
        tested = ~settling & (count >= MIN_LEARNED_ROWS)
        return np.where(tested, log_tail(recent, mean, spread), 0.0), tested


def alarms_at_one(score: F64, level: float) -> F64:
    """Every alarm (a score at ``level`` not held down) scores 1.

    The alarm is the detector's decision, at one level for every series. Above it the
    likelihood ranks alarms by a Gaussian tail that no longer means much (the distances
    are not Gaussian), and a threshold chosen among those values on one kind of series
    does not hold on another: left to range, the alarms of real AWS series scored
    24 of their 66 points at the level best on the artificial series.
    """
    out: F64 = np.where(score >= level, 1.0, score)
    return out


def sampling_period(seconds: F64, default_s: float) -> float:
    """Median positive spacing of the first ``PERIOD_ROWS`` rows (``default_s`` if none)."""
    steps = np.diff(seconds[: PERIOD_ROWS + 1])
    steps = steps[steps > 0]
    return float(np.median(steps)) if len(steps) else default_s


@dataclass(frozen=True)
class Filled:
    """A series with its short gaps bridged (see ``fill_gaps``)."""

    values: F64
    real: NDArray[np.bool_]
    """Whether each row is a sample of the series (not one put in a gap)."""
    gaps: NDArray[np.int64]
    """Rows that follow a gap too long to bridge."""


def fill_gaps(x: F64, seconds: F64, period_s: float, most_rows: int) -> Filled:
    """The series with the samples missing from every run of at most ``most_rows`` put
    back, on the straight line between the samples on either side; a longer run is a
    gap (``Filled.gaps``) if it spans more than ``GAP_PERIODS`` periods.

    The line needs the sample after the run, and only the rows from that one on are
    scored with it, so the filling looks back only.
    """
    n = len(x)
    step = np.diff(seconds)
    missing = np.maximum(np.rint(step / period_s).astype(np.int64) - 1, 0)
    fill = np.where(missing <= most_rows, missing, 0)
    long_gap = (step > GAP_PERIODS * period_s) & (fill == 0)
    inserted = np.concatenate(([0], np.cumsum(fill)))
    position = np.arange(n) + inserted  # each sample's row among all rows
    real = np.zeros(n + int(inserted[-1]), dtype=bool)
    real[position] = True
    out: F64 = x if len(real) == n else np.interp(np.arange(len(real)), position, x)
    return Filled(out, real, position[np.flatnonzero(long_gap) + 1])


def settling_rows(n: int, gaps: NDArray[np.int64] | None, settle: int) -> NDArray[np.bool_]:
    """Rows fewer than ``settle`` rows after the end of a gap (the row after it is 0)."""
    out = np.zeros(n, dtype=bool)
    for g in () if gaps is None else gaps:
        out[g : g + settle] = True
    return out


def recent_mean(learned: F64, distance: F64, rows: int) -> F64:
    """Mean of each row's distance and the learned ones among the ``rows - 1`` before."""
    finite = np.isfinite(learned)
    total = np.concatenate(([0.0], np.cumsum(np.where(finite, learned, 0.0))))
    counts = np.concatenate(([0.0], np.cumsum(finite)))
    end = np.arange(len(distance))
    start = np.maximum(0, end - (rows - 1))
    out: F64 = (total[end] - total[start] + distance) / (counts[end] - counts[start] + 1.0)
    return out


def compress(x: F64, rms: F64) -> F64:
    """Values in units of the running RMS, logarithmic for spikes many times it."""
    out: F64 = np.arcsinh(x / rms)
    return out


def rms_of(sum_squares: F64, count: F64) -> F64:
    """RMS from a sum of squares and a count, never below ``MIN_RMS``."""
    out: F64 = np.maximum(np.sqrt(sum_squares / count), MIN_RMS)
    return out


def nearest_distance(nearest_squared: F64, points: int) -> F64:
    """Per-point distance from the squared distance to the nearest candidate (0 when
    there was no candidate: infinity)."""
    out: F64 = np.where(
        np.isfinite(nearest_squared), np.sqrt(np.maximum(nearest_squared, 0.0) / points), 0.0
    )
    return out


def mean_std(total: F64, squares: F64, count: F64) -> tuple[F64, F64]:
    """Mean and standard deviation from sums; an empty sum gives mean 0 and deviation 0."""
    count = np.maximum(count, 1.0)
    mean = total / count
    var = squares / count - mean * mean
    return mean, np.sqrt(np.maximum(var, 0.0))  # rounding can make var < 0


def log_tail(recent: F64, mean: F64, spread: F64) -> F64:
    """Log of the Gaussian upper tail of the recent distance against its history."""
    out: F64 = log_ndtr(-(recent - mean) / np.maximum(spread, RESOLUTION))
    return out


def fisher_combined(log_tails: F64, tests: F64 | int) -> F64:
    """Fisher's method: the chi-squared CDF (2 degrees of freedom per test) of
    ``-2 * sum(log p)``, the likelihood that the series does not go on as before.

    ``tests``: the scales that had evidence for each row; a scale still learning or
    settling after a gap is no test at all (counting it as p = 1 would dilute the others).
    A row without any test scores 0.
    """
    tests = np.asarray(tests, dtype=np.float64)
    out: F64 = np.where(tests > 0, chdtr(np.maximum(2.0 * tests, 2.0), -2.0 * log_tails), 0.0)
    return out


def suppressed(
    row: NDArray[np.int64], last: NDArray[np.int64], calmed: NDArray[np.bool_], rows: int
) -> NDArray[np.bool_]:
    """Whether a score at the alarm level at ``row`` is held down: an alarm was raised at
    ``last`` (-1: never) less than ``rows`` rows ago, or the score has not dropped below
    the re-arm level since (``calmed`` False)."""
    out: NDArray[np.bool_] = (last >= 0) & ((row <= last + rows) | ~calmed)
    return out


def shapes_of(x: F64, points: int, segment_rows: int) -> F64:
    """(n, points) recent shape at each row: the means of ``points`` consecutive segments
    of ``segment_rows`` rows, the last ending at the row (row 0 repeated before the start).
    """
    means = trailing_mean(x, segment_rows) if segment_rows > 1 else x
    span = segment_rows * (points - 1) + 1
    padded = np.concatenate((np.full(span - 1, means[0]), means))
    return np.ascontiguousarray(sliding_window_view(padded, span)[:, ::segment_rows])


def left_discord(shapes: F64, exclusion_rows: int, history_rows: int) -> F64:
    """Per-point distance from the shape at each row to its nearest earlier match.

    Candidates are the shapes at least ``exclusion_rows`` rows before the row (so they
    do not overlap it) and at most ``history_rows`` rows before it. Rows without a
    candidate get 0.

    Rows are taken in blocks on a fixed grid, each block a matrix product of the same
    shape whatever the series' length (zero-padded past its end), so that a row's
    distance is bit-for-bit the same when the file is cut after it.
    """
    n, points = shapes.shape
    block, gap = BLOCK_ROWS, exclusion_rows
    span = history_rows + block - gap  # candidate columns of one block
    shapes = np.concatenate((shapes, np.zeros((block, points))))
    norms = (shapes * shapes).sum(axis=1)
    # |q - c|^2 = |q|^2 + (|c|^2 - 2 q.c): the bracket for a block in one matrix product.
    query = np.hstack((shapes, np.ones((len(shapes), 1))))
    candidate = np.hstack((-2.0 * shapes, norms[:, None]))
    # Candidate column c of a block's row r is row (start - history_rows + c): allowed
    # when r <= c <= history_rows - gap + r, a band of fixed shape. Only the first and
    # the last ``block`` columns hold barred cells; they are barred by adding infinity.
    r = np.arange(block)[:, None]
    c = np.arange(span)[None, :]
    barred = np.where((c < r) | (c > history_rows - gap + r), np.inf, 0.0)
    out = np.zeros(n)
    for start in range(0, n, block):
        first = start - history_rows
        lo = max(first, 0)
        hi = start + block - gap
        if hi <= lo:
            continue
        cross = query[start : start + block] @ candidate[lo:hi].T
        skip = lo - first  # columns before the series' start
        if skip < block:
            cross[:, : block - skip] += barred[:, skip:block]
        right = max(span - block, skip)
        cross[:, right - skip :] += barred[:, right:]
        nearest = cross.min(axis=1) + norms[start : start + block]
        stop = min(n, start + block)
        out[start:stop] = nearest_distance(nearest[: stop - start], points)
    return out


def trailing_mean(a: F64, rows: int) -> F64:
    """Mean of each row and the ``rows - 1`` before it (fewer at the start)."""
    total = np.concatenate(([0.0], np.cumsum(a)))
    end = np.arange(1, len(a) + 1)
    start = np.maximum(0, end - rows)
    out: F64 = (total[end] - total[start]) / (end - start)
    return out


def past_mean_std(a: F64, rows: int) -> tuple[F64, F64, F64]:
    """Mean, standard deviation and count of the finite values among the ``rows`` before
    each row and the few before those back to a multiple of ``PAST_BLOCK_ROWS`` (NaN:
    not learned from).

    A row with no past gets mean 0, deviation 0 and count 0. The statistics exclude the
    row itself, so a jump is judged against what came before it.
    """
    used = np.isfinite(a)
    b = np.where(used, a, 0.0)
    total = np.concatenate(([0.0], np.cumsum(b)))
    squares = np.concatenate(([0.0], np.cumsum(b * b)))
    counts = np.concatenate(([0.0], np.cumsum(used)))
    end = np.arange(len(a))
    start = np.maximum(0, (end - rows) // PAST_BLOCK_ROWS * PAST_BLOCK_ROWS)
    count = counts[end] - counts[start]
    mean, spread = mean_std(total[end] - total[start], squares[end] - squares[start], count)
    return mean, spread, count


def running_rms(x: F64) -> F64:
    """Root mean square of the values so far (row i's uses rows 0..i)."""
    return rms_of(np.cumsum(x * x), np.arange(1, len(x) + 1, dtype=np.float64))


def refractory(score: F64, level: float, *, rows: int, rearm: float) -> F64:
    """Cap at just below ``level`` every score that would raise a second alarm too soon.

    A new alarm needs ``rows`` rows since the last one and a score below ``rearm`` in
    between. The loop visits only the rows at or above ``level``.
    """
    out = score.copy()
    below = np.nextafter(level, 0.0)
    calm = np.flatnonzero(score < rearm)
    last = -1
    for i in np.flatnonzero(score >= level):
        calmed = np.searchsorted(calm, i) > np.searchsorted(calm, last)
        if suppressed(np.array(i), np.array(last), np.array(calmed), rows):
            out[i] = below
        else:
            last = int(i)
    return out


DEFAULT_DETECTOR = "discord"
DETECTORS: dict[str, Callable[[F64, F64], F64]] = {
    "discord": DiscordLikelihood().score,
}
