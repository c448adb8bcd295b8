"""The shape stage: ``DiscordLikelihood`` run online over every series of a Frame at once.

The daemon's streaming baselines judge each sample against a level learned over half an
hour, which flags every daily peak; ``univariate.DiscordLikelihood`` judges the recent
*shape* against a week of history and is what NAB's rules reward. This module computes
exactly the univariate detector's scores, but incrementally, one row at a time, for many
series (every workload x signal) together, so that the daemon can run it every cycle.

Rows are fixed time buckets of ``bucket_s`` (5 minutes): a row's value is the mean of
the bucket's valid samples. The detector's windows are in time; the stage's period is
the bucket, known, so it turns them into rows once (``DiscordLikelihood.windows``)
instead of reading the period from timestamps as ``score-csv`` does. A series' buckets
lie on a grid of multiples of ``bucket_s`` since the epoch, shifted by the series' offset
(``PHASES`` offsets, one per block of series, so that the closings of many series spread
over the cycles of a bucket), each closed on the right, ``(end - bucket_s, end]``. A
bucket closes as soon as no further sample is expected in it: when a sample arrives past
its end, or when the next sample, one spacing (the last gap between timestamps) after
this one, would fall past it. A series fed at 5-minute steps therefore
closes one bucket per sample, at that sample, whatever the offset of its timestamps; a
15-second scrape closes one every 20 samples. A bucket without a valid sample of a
series adds no row to that series; more than ``GAP_PERIODS`` periods between two rows of
a series (its period: the shortest time between two of its rows, at least a bucket) is a
gap, and its next rows settle (no evidence, nothing learned) as the univariate
detector's do after a gap in time.

State per series, all in (series x rows) arrays: the running sum of squares (for the
RMS of the compression), a ring of compressed values (single precision) long enough for
the oldest candidate's shape at the largest scale, per time scale the learned distances
of the last few rows (for the recent mean; single precision, NaN where a row was not
learned from) and the sums, sums of squares and counts of the learned distances of each
block of ``PAST_BLOCK_ROWS`` rows of the past (for its mean and spread; a week is 180
blocks), the rows left to settle after a gap, and the refractory state: about 16 kB per
series at 5-minute buckets. When a bucket closes, ``DISCORD_CHUNK`` series at a time
read their line of compressed rows from the ring, and each scale's segment means, the
squared norms of its candidate shapes and their products with the new shape come from
that line, by the compiled search of ``discord_scan``. The only Python loops are over
the time scales and chunks of series.

``peek`` scores a provisional row (a bucket still open) without committing anything,
so that an acute fault can be judged between closings. Scores equal those of
``DiscordLikelihood.score`` on the series of closed rows, to rounding (the sums are
of the same terms in another order): the same functions of ``univariate`` do the rest.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from healer.detect.discord_scan import nearest_squared
from healer.detect.univariate import (
    DISTANCE_DTYPE,
    GAP_PERIODS,
    MEANS_DTYPE,
    MIN_LEARNED_ROWS,
    PAST_BLOCK_ROWS,
    DiscordLikelihood,
    alarms_at_one,
    compress,
    fisher_combined,
    log_tail,
    mean_std,
    nearest_distance,
    rms_of,
    suppressed,
)

G = TypeVar("G", bound=np.generic)
F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
Mask = NDArray[np.bool_]

# Series evaluated together: the block's rings (a few MB) stay in cache while its chunks
# of ``DISCORD_CHUNK`` series are searched, and its statistics are a few array passes.
SERIES_BLOCK = 256
# Phases of the bucket grid: block k of ``SERIES_BLOCK`` series has its buckets end
# ``(k mod PHASES) * bucket_s / PHASES`` after the epoch's grid, so that the closings of
# many series spread over a bucket (at the daemon's 30 s interval and 5-minute buckets,
# one cycle in ten closes a tenth of them) instead of all falling in one cycle.
PHASES = 10
# Series per pass of the discord search: their line (32 x ~2,400 values, 600 kB) stays
# in the core's cache while every scale searches it, where a 256-series block's (5 MB)
# would go out to memory.
DISCORD_CHUNK = 32
# Series copied at a time when workloads come and go (``ShapeStage.take``): about 40 MB
# of the largest array (the ring), instead of a temporary the size of the whole state.
TAKE_ROWS = 4096


@dataclass
class Row:
    """One new row of some series, evaluated but not yet committed."""

    series: I64
    """Indices of the series the row belongs to."""
    index: I64
    """The row's index in each series (its count of committed rows)."""
    sum_squares: F64
    u: F64
    """The row's compressed value, at the ring's precision."""
    distances: list[F64]
    likelihood: F64
    score: F64
    alarm: Mask
    settle: I64
    """Rows each series has left to settle after a gap at its largest scale, this one
    included; a smaller scale has settled once fewer are left than its shape's span
    is shorter."""
    """Rows that raise an alarm (reach the alarm level and are not held down)."""


class ShapeStage:
    """Online ``DiscordLikelihood`` over ``n`` series, fed rows or time-stamped samples."""

    def __init__(
        self,
        n: int,
        *,
        detector: DiscordLikelihood | None = None,
        bucket_s: float = 300.0,
        offsets_s: F64 | None = None,
    ) -> None:
        self.detector = detector or DiscordLikelihood()
        self.bucket_s = bucket_s
        self.windows_ = d = self.detector.windows(bucket_s)
        self.max_segment_ = max(d.segment_rows)
        self.rows_ = np.zeros(n, dtype=np.int64)
        self.sum_squares_ = np.zeros(n)
        # Compressed rows back to the first point of the oldest candidate's shape at the
        # largest scale (its segment mean reaches a segment further back).
        self.line_rows_ = d.history_rows + self.max_segment_ * d.shape_points
        self.u_ = np.zeros((n, self.line_rows_), dtype=MEANS_DTYPE)
        # Per scale, the learned distances of the ``recent_rows - 1`` rows before the next
        # one (row r at column r mod their count; NaN: not learned from, as too early or
        # settling after a gap).
        self.recent_ = [
            np.full((n, d.recent_rows - 1), np.nan, dtype=DISTANCE_DTYPE) for _ in d.segment_rows
        ]
        # Per scale, the sum, sum of squares and count of the learned distances of each
        # block of ``PAST_BLOCK_ROWS`` rows (block b at column b mod ``blocks_``), those of
        # the blocks that left the past (``univariate.past_mean_std``) reset to 0: the
        # past statistics of the next row are the sums of the columns.
        self.blocks_ = d.history_rows // PAST_BLOCK_ROWS + 2
        self.block_sum_ = [np.zeros((n, self.blocks_)) for _ in d.segment_rows]
        self.block_squares_ = [np.zeros((n, self.blocks_)) for _ in d.segment_rows]
        # At most ``PAST_BLOCK_ROWS`` distances a block: a byte counts them.
        self.block_count_ = [np.zeros((n, self.blocks_), dtype=np.uint8) for _ in d.segment_rows]
        self.settle_ = np.zeros(n, dtype=np.int64)
        self.last_row_t_ = np.full(n, -math.inf)
        self.spacing_s_ = np.full(n, math.inf)
        """Shortest time between two rows of each series: its period, for telling a gap."""
        self.last_alarm_ = np.full(n, -1, dtype=np.int64)
        self.calmed_ = np.zeros(n, dtype=bool)
        self.score_ = np.full(n, np.nan)
        self.offset_s_ = self.phase_offsets(n) if offsets_s is None else np.asarray(offsets_s)
        """Each series' bucket grid: multiples of ``bucket_s`` plus this (under a bucket)."""
        if (
            self.offset_s_.shape != (n,)
            or not ((self.offset_s_ >= 0.0) & (self.offset_s_ < bucket_s)).all()
        ):
            raise ValueError(f"offsets_s: {n} offsets in [0, {bucket_s}) s expected")
        # The open bucket of each series: its end (on its grid), the sums and counts of
        # its samples; the end of its last closed bucket.
        self.bucket_end_ = np.full(n, -math.inf)
        self.closed_end_ = np.full(n, -math.inf)
        self.last_t_ = -math.inf
        self.bucket_sum_ = np.zeros(n)
        self.bucket_count_ = np.zeros(n)

    def phase_offsets(self, n: int) -> F64:
        """Grid offsets of ``n`` series: ``PHASES`` phases, one per block of series."""
        phase = (np.arange(n) // SERIES_BLOCK) % PHASES
        out: F64 = phase.astype(np.float64) * (self.bucket_s / PHASES)
        return out

    @property
    def n_series(self) -> int:
        return len(self.rows_)

    def state_bytes(self) -> int:
        """Bytes of learned state (all arrays), for sizing."""
        arrays: list[NDArray[np.generic]] = [self.rows_, self.sum_squares_, self.u_]
        arrays += [self.last_alarm_, self.calmed_, self.score_, self.bucket_sum_]
        arrays += [self.bucket_count_, self.settle_, self.last_row_t_, self.spacing_s_]
        arrays += [self.offset_s_, self.bucket_end_, self.closed_end_]
        arrays += [*self.recent_, *self.block_sum_, *self.block_squares_, *self.block_count_]
        return sum(a.nbytes for a in arrays)

    # ---- rows -----------------------------------------------------------------------------

    def push(self, values: F64, series: I64 | None = None, *, after_gap: Mask | None = None) -> F64:
        """Commit one row for each of ``series`` (default all); return their scores.

        ``after_gap``: the series whose row follows a gap (the stage's own buckets tell
        it when it is fed samples with ``observe``).
        """
        index = np.arange(self.n_series) if series is None else np.asarray(series, dtype=np.int64)
        if len(index) == 0:
            return np.zeros(0)
        if after_gap is not None:
            self.settle_[index] = np.where(after_gap, self._settle_rows(), self.settle_[index])
        row = self.evaluate(np.asarray(values, dtype=np.float64), index)
        self._commit(row)
        return row.score

    def peek(self, values: F64, series: I64) -> F64:
        """Scores the rows would have if committed now; the state is unchanged."""
        if len(series) == 0:
            return np.zeros(0)
        return self.evaluate(np.asarray(values, dtype=np.float64), np.asarray(series)).score

    def evaluate(self, values: F64, series: I64) -> Row:
        """The new row of ``series`` (values, one each), scored, without committing it."""
        blocks = [
            self._evaluate(values[lo : lo + SERIES_BLOCK], series[lo : lo + SERIES_BLOCK])
            for lo in range(0, len(series), SERIES_BLOCK)
        ]
        if len(blocks) == 1:
            return blocks[0]
        if not blocks:
            return self._evaluate(values, series)
        return Row(
            series=_joined(blocks, lambda b: b.series),
            index=_joined(blocks, lambda b: b.index),
            sum_squares=_joined(blocks, lambda b: b.sum_squares),
            u=_joined(blocks, lambda b: b.u),
            distances=_joined_scales(blocks, lambda b: b.distances),
            likelihood=_joined(blocks, lambda b: b.likelihood),
            score=_joined(blocks, lambda b: b.score),
            alarm=_joined(blocks, lambda b: b.alarm),
            settle=_joined(blocks, lambda b: b.settle),
        )

    def _evaluate(self, values: F64, series: I64) -> Row:
        w = self.windows_
        i = self.rows_[series]
        settle = self.settle_[series]
        sum_squares = self.sum_squares_[series] + values * values
        u = compress(values, rms_of(sum_squares, (i + 1).astype(np.float64)))
        u = u.astype(MEANS_DTYPE).astype(np.float64)
        searched = self._discord(series, i, u)
        distances = []
        log_tails, tests = np.zeros(len(series)), np.zeros(len(series))
        for k, g in enumerate(w.segment_rows):
            distance = searched[k]
            recent, past_mean, spread, count = self._statistics(k, series, distance)
            settling = settle > self._settle_rows() - w.settle_rows(g)
            tested = ~settling & (count >= MIN_LEARNED_ROWS)
            log_tails += np.where(tested, log_tail(recent, past_mean, spread), 0.0)
            tests += tested
            learned = (i >= w.learn_from_row(g)) & ~settling
            distances.append(np.where(learned, distance, np.nan))
        d = self.detector
        likelihood = fisher_combined(log_tails, tests)
        held = suppressed(i, self.last_alarm_[series], self.calmed_[series], w.refractory_rows)
        hot = likelihood >= d.alarm_level
        score = np.where(hot & held, np.nextafter(d.alarm_level, 0.0), likelihood)
        score = alarms_at_one(score, d.alarm_level)
        return Row(
            series,
            i,
            sum_squares,
            u,
            distances,
            likelihood,
            score,
            hot & ~held,
            settle,
        )

    def _commit(self, row: Row) -> None:
        d, s, i = self.detector, row.series, row.index
        self.sum_squares_[s] = row.sum_squares
        self.u_[s, i % self.line_rows_] = row.u
        history, block = self.windows_.history_rows, PAST_BLOCK_ROWS
        into = (i // block) % self.blocks_
        # The past of row i + 1 begins a block later than row i's when i + 1 - history is
        # a multiple of a block: the block that held row i - history leaves it.
        leaves = (i >= history) & ((i + 1 - history) % block == 0)
        left = ((i - history) // block % self.blocks_)[leaves]
        for k in range(len(self.windows_.segment_rows)):
            entering = row.distances[k].astype(DISTANCE_DTYPE)
            if self.recent_[k].shape[1]:
                self.recent_[k][s, i % self.recent_[k].shape[1]] = entering
            value = entering.astype(np.float64)
            used = np.isfinite(value)
            value = np.where(used, value, 0.0)
            self.block_sum_[k][s, into] += value
            self.block_squares_[k][s, into] += value * value
            self.block_count_[k][s, into] += used.astype(np.uint8)
            for sums in (self.block_sum_[k], self.block_squares_[k], self.block_count_[k]):
                sums[s[leaves], left] = 0
        self.settle_[s] = np.maximum(row.settle - 1, 0)
        self.last_alarm_[s] = np.where(row.alarm, i, self.last_alarm_[s])
        calm = row.likelihood < d.rearm_level
        self.calmed_[s] = np.where(row.alarm, False, self.calmed_[s] | calm)
        self.score_[s] = row.score
        self.rows_[s] = i + 1

    def _line(self, series: I64, i: I64, u: F64) -> F64:
        """(series, line_rows) compressed rows ``i - line_rows + 1 .. i`` of each series
        (the last one ``u``, the new row), 0 before the series' start."""
        n = self.line_rows_
        line = np.empty((len(series), n))
        _read(self.u_, series, i - n + 1, n - 1, out=line[:, :-1])
        line[:, -1] = u
        if i.min() - n + 1 < 0:
            rows = i[:, None] + np.arange(1 - n, 1)[None, :]
            line[rows < 0] = 0.0
        return line

    def _discord(self, series: I64, i: I64, u: F64) -> list[F64]:
        """Per scale, the distance of each new row's shape (``u``: the new rows'
        compressed values) to its nearest earlier shape, ``DISCORD_CHUNK`` series at a
        time (see ``_nearest``): a chunk's line is read from the ring and searched at
        every scale while it is still in the core's cache."""
        out = [np.empty(len(i)) for _ in self.windows_.segment_rows]
        for lo in range(0, len(i), DISCORD_CHUNK):
            chunk = slice(lo, lo + DISCORD_CHUNK)
            line = self._line(series[chunk], i[chunk], u[chunk])
            for k, g in enumerate(self.windows_.segment_rows):
                out[k][chunk] = self._nearest(g, i[chunk], line)
        return out

    def _nearest(self, g: int, i: I64, line: F64) -> F64:
        """``_discord`` for a few series: the segment means of rows ``i - history -
        g*(points-1) .. i``, trailing means of ``line`` (rows before the series' start
        read as row 0, as ``univariate.shapes_of`` pads them), searched by
        ``discord_scan``."""
        d = self.windows_
        p, h = d.shape_points, d.history_rows
        span = g * (p - 1) + 1
        squared = nearest_squared(
            line, i, segment_rows=g, points=p, n_candidates=h - p * g + 1, count=h + span
        )
        return nearest_distance(squared, p)

    def _statistics(self, k: int, series: I64, distance: F64) -> tuple[F64, F64, F64, F64]:
        """Recent mean distance (this row and the learned ones of the rows before it),
        and the mean, spread and count of the learned distances of the rows before it
        from about ``history_rows`` back (``univariate.past_mean_std``; NaN: not learned
        from), from the sums of the blocks of those rows."""
        count = _rows(self.block_count_[k], series).sum(axis=1, dtype=np.float64)
        mean, spread = mean_std(
            _rows(self.block_sum_[k], series).sum(axis=1),
            _rows(self.block_squares_[k], series).sum(axis=1),
            count,
        )
        last = _rows(self.recent_[k], series).astype(np.float64)
        used = np.isfinite(last)
        recent = (np.where(used, last, 0.0).sum(axis=1) + distance) / (used.sum(axis=1) + 1.0)
        return recent, mean, spread, count

    # ---- time buckets ---------------------------------------------------------------------

    def observe(self, t: float, values: F64) -> Mask:
        """Add the samples of all series at time ``t`` (NaN: none); close buckets as due.

        Returns the series that committed a row. A time not after the last one is
        ignored (it was observed before).
        """
        closed = np.zeros(self.n_series, dtype=bool)
        if t <= self.last_t_:
            return closed
        spacing = t - self.last_t_ if math.isfinite(self.last_t_) else 0.0  # unknown yet
        b, offset = self.bucket_s, self.offset_s_
        end = np.ceil((t - offset) / b) * b + offset
        late = end <= self.closed_end_  # a late sample for a closed bucket: the next one
        end = np.where(late, self.closed_end_ + b, end)
        due = end > self.bucket_end_
        if due.any():
            closed |= self._close(due)
            self.bucket_end_ = np.where(due, end, self.bucket_end_)
        valid = np.isfinite(values)
        self.bucket_sum_ += np.where(valid, values, 0.0)
        self.bucket_count_ += valid
        self.last_t_ = t
        due = t + spacing > self.bucket_end_  # the next sample is expected past the end
        if due.any():
            closed |= self._close(due)
        return closed

    def _close(self, due: Mask) -> Mask:
        """Close the open bucket of the ``due`` series; those with a sample add a row."""
        has = due & (self.bucket_count_ > 0)
        if has.any():
            series = np.flatnonzero(has)
            self.push(
                self.bucket_sum_[has] / self.bucket_count_[has],
                series,
                after_gap=self._after_gap(series),
            )
            end = self.bucket_end_[has]
            self.spacing_s_[has] = np.minimum(self.spacing_s_[has], end - self.last_row_t_[has])
            self.last_row_t_[has] = end
        self.closed_end_ = np.where(
            due, np.maximum(self.closed_end_, self.bucket_end_), self.closed_end_
        )
        self.bucket_sum_[due] = 0.0
        self.bucket_count_[due] = 0.0
        return has

    def _settle_rows(self) -> int:
        """Rows after a gap until the largest scale has settled."""
        return self.windows_.settle_rows(self.max_segment_)

    def _after_gap(self, series: I64) -> Mask:
        """Whether the open bucket of each of ``series`` follows a gap: more than
        ``GAP_PERIODS`` periods since its last row (one bucket without a sample is not).

        A series' period is the shortest time between two of its rows, at least a bucket:
        a series sampled hourly has a row every twelfth bucket, and that is no gap.
        """
        period_s = np.where(np.isfinite(self.spacing_s_[series]), self.spacing_s_[series], 0.0)
        since_s = self.bucket_end_[series] - self.last_row_t_[series]
        limit_s = GAP_PERIODS * np.maximum(period_s, self.bucket_s)
        out: Mask = np.isfinite(since_s) & (since_s > limit_s)
        return out

    @property
    def episode_(self) -> Mask:
        """Series in an alarm episode: an alarm was raised and the likelihood has not
        dropped below the re-arm level since (what the refractory holds down as one)."""
        out: Mask = (self.last_alarm_ >= 0) & ~self.calmed_
        return out

    def provisional(self, series: I64) -> tuple[F64, Mask]:
        """Scores and alarm episodes of ``series`` with their open bucket taken as the
        newest row (the committed ones where the bucket holds no sample); nothing is
        committed."""
        score, episode = self.score_[series].copy(), self.episode_[series]
        has = self.bucket_count_[series] > 0
        if has.any():
            s = series[has]
            settled = self.settle_[s].copy()  # an open bucket after a gap settles too
            self.settle_[s] = np.where(self._after_gap(s), self._settle_rows(), settled)
            try:
                row = self.evaluate(self.bucket_sum_[s] / self.bucket_count_[s], s)
            finally:
                self.settle_[s] = settled
            score[has] = row.score
            going_on = self.episode_[s] & (row.likelihood >= self.detector.rearm_level)
            episode[has] = row.alarm | going_on
        return score, episode

    def take(self, keep: I64) -> ShapeStage:
        """A stage for a new list of series: series ``j`` continues old series ``keep[j]``
        (-1: a new series, with fresh state). Each series keeps its bucket grid."""
        new, old = np.flatnonzero(keep >= 0), keep[keep >= 0]
        offsets = self.phase_offsets(len(keep))
        offsets[new] = self.offset_s_[old]
        out = ShapeStage(
            len(keep), detector=self.detector, bucket_s=self.bucket_s, offsets_s=offsets
        )
        for name in ("rows_", "sum_squares_", "u_", "last_alarm_", "calmed_", "score_"):
            _copy_rows(getattr(out, name), new, getattr(self, name), old)
        for name in ("settle_", "last_row_t_", "spacing_s_"):
            _copy_rows(getattr(out, name), new, getattr(self, name), old)
        for name in ("bucket_sum_", "bucket_count_", "bucket_end_", "closed_end_"):
            _copy_rows(getattr(out, name), new, getattr(self, name), old)
        for name in ("recent_", "block_sum_", "block_squares_", "block_count_"):
            for dst, src in zip(getattr(out, name), getattr(self, name), strict=True):
                _copy_rows(dst, new, src, old)
        out.last_t_ = self.last_t_
        return out


def _copy_rows(dst: NDArray[G], into: I64, src: NDArray[G], rows: I64) -> None:
    """``dst[into] = src[rows]``, ``TAKE_ROWS`` rows at a time: a gather in one go first
    copies every row taken into a temporary as large as the state kept (gigabytes when a
    shard of a large cluster takes another over), on top of the old and the new state."""
    for lo in range(0, len(into), TAKE_ROWS):
        dst[into[lo : lo + TAKE_ROWS]] = src[rows[lo : lo + TAKE_ROWS]]


def _rows(a: NDArray[G], series: I64) -> NDArray[G]:
    """Rows ``series`` of ``a``: a view when they are a contiguous range, as when a block
    of series closes its buckets together, else a copy."""
    lo = int(series[0]) if len(series) else 0
    contiguous = len(series) and int(series[-1]) - lo == len(series) - 1
    if contiguous and (np.diff(series) == 1).all():
        return a[lo : lo + len(series)]
    out: NDArray[G] = a[series]
    return out


def _joined(blocks: list[Row], field: Callable[[Row], NDArray[G]]) -> NDArray[G]:
    """One field of the rows of several blocks of series, in order."""
    return np.concatenate([field(b) for b in blocks])


# The numpy means and window sums of bulk learning (``shape_bulk``), which searches many
# rows of a series at once.


def _trailing_means(line: F64, g: int, count: int, i: I64) -> F64:
    """Means of each of the last ``count`` columns of ``line`` and the ``g - 1`` before
    it, the newest column being row ``i`` of each series; a row near the start averages
    the rows since the start only (the columns before hold 0)."""
    if g == 1:
        return line[:, -count:]
    lo = line.shape[1] - count - g + 1
    assert lo >= 0, "the line holds a whole segment before its first mean"
    sums = _window_sums(line[:, lo:], 1, g)
    if i.min() - count + 1 >= g - 1:  # every segment is whole
        sums /= g
        return sums
    rows = i[:, None] + np.arange(1 - count, 1)[None, :]
    out: F64 = sums / np.clip(rows + 1, 1, g)
    return out


def _window_sums(a: F64, step: int, terms: int) -> F64:
    """Sums ``a[:, c] + a[:, c + step] + ... + a[:, c + step*(terms-1)]`` for every
    column ``c`` where the last term exists.

    By sums of sums: for ``terms = f1 * f2 * ...`` (small factors, ``_sum_factors``),
    the sums of ``f1`` terms, then ``f2`` of those side by side, and so on, each factor
    ``f`` costing ``f - 1`` passes over ``a`` (12 terms: 4 passes, 24: 5); a count with
    a large prime factor is summed by doubling instead (sums of 1, 2, 4 ... terms,
    shifted and added). Either way each sum is a sum of its terms themselves (the
    rounding of a direct sum, not of a difference of running totals).
    """
    factors = _sum_factors(terms)
    if factors is None:
        return _doubling_sums(a, step, terms)
    out, size = a, 1
    for f in factors:
        shift = step * size
        width = out.shape[1] - shift * (f - 1)
        total = np.add(out[:, :width], out[:, shift : shift + width])
        for m in range(2, f):
            total += out[:, m * shift : m * shift + width]
        out, size = total, size * f
    return out if out is not a else a.copy()


@lru_cache(maxsize=32)
def _sum_factors(terms: int) -> tuple[int, ...] | None:
    """Factors of ``terms`` to sum by (``_window_sums``), or None where doubling takes
    fewer passes: ``f - 1`` passes a factor against one a doubling and one a set bit."""
    factors, rest = [], terms
    for f in (2, 3, 5, 7):
        while rest % f == 0:
            factors.append(f)
            rest //= f
    if rest > 1:
        return None
    doubling = terms.bit_length() - 1 + bin(terms).count("1") - 1
    return tuple(factors) if sum(f - 1 for f in factors) <= doubling else None


def _doubling_sums(a: F64, step: int, terms: int) -> F64:
    """``_window_sums`` by doubling: sums of 1, 2, 4 ... terms, shifted and added."""
    width = a.shape[1] - step * (terms - 1)
    out: F64 | None = None
    power, size, offset = a, 1, 0  # power[c]: the sum of ``size`` terms from column c
    while True:
        if terms & size:
            part = power[:, offset * step : offset * step + width]
            out = part.copy() if out is None else np.add(out, part, out=out)
            offset += size
        if 2 * size > terms:
            break
        power = power[:, : -step * size] + power[:, step * size :]
        size *= 2
    assert out is not None
    return out


def _joined_scales(blocks: list[Row], field: Callable[[Row], list[F64]]) -> list[F64]:
    """One per-scale field of the rows of several blocks of series, in order."""
    return [np.concatenate(parts) for parts in zip(*(field(b) for b in blocks), strict=True)]


def _read(
    ring: NDArray[G], series: I64, first: I64, count: int, out: NDArray[np.generic] | None = None
) -> NDArray[G]:
    """(series, count) copy of rows ``first .. first + count - 1`` of each series' ring
    (row r at column r mod the ring's length; rows before the start read garbage),
    written into ``out`` (converted to its type) when given.

    When the series are a contiguous range at the same row, as when every series closes
    a bucket together, two slices do it instead of a gather.
    """
    length = ring.shape[1]
    lo = int(series[0]) if len(series) else 0
    uniform = len(series) and (first == first[0]).all() and int(series[-1]) - lo == len(series) - 1
    if uniform and (np.diff(series) == 1).all():
        block, start = ring[lo : lo + len(series)], int(first[0]) % length
        head = min(count, length - start)
        if out is None:
            out = np.empty((len(series), count), dtype=ring.dtype)
        out[:, :head] = block[:, start : start + head]
        out[:, head:] = block[:, : count - head]
        return out  # type: ignore[return-value]  # of the ring's type unless ``out`` given
    columns = (first[:, None] + np.arange(count)[None, :]) % length
    gathered: NDArray[G] = ring[series[:, None], columns]
    if out is None:
        return gathered
    out[...] = gathered
    return out  # type: ignore[return-value]  # ``out``'s type, as documented
