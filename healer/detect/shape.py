"""The shape stage: ``DiscordLikelihood`` run online over every series of a Frame at once.

The daemon's streaming baselines judge each sample against a level learned over half an
hour, which flags every daily peak; ``univariate.DiscordLikelihood`` judges the recent
*shape* against a week of history and is what NAB's rules reward. This module computes
exactly the univariate detector's scores, but incrementally, one row at a time, for many
series (every workload x signal) together, so that the daemon can run it every cycle.

Rows are fixed time buckets of ``bucket_s`` (5 minutes): a row's value is the mean of
the bucket's valid samples. The detector's windows are in time; the stage's period is
the bucket, known, so it turns them into rows once (``DiscordLikelihood.windows``)
instead of reading the period from timestamps as ``score-csv`` does. Buckets lie on a
grid of multiples of ``bucket_s`` since the epoch, each closed on the right, ``(end -
bucket_s, end]``. A bucket closes as soon as no further sample is expected in it: when a
sample arrives past its end, or when the next sample, one spacing (the last gap between
timestamps) after this one, would fall past it. A series fed at 5-minute steps therefore
closes one bucket per sample, at that sample, whatever the offset of its timestamps; a
15-second scrape closes one every 20 samples. A bucket without a valid sample of a
series adds no row to that series; more than ``GAP_PERIODS`` periods between two rows of
a series (its period: the shortest time between two of its rows, at least a bucket) is a
gap, and its next rows settle (no evidence, nothing learned) as the univariate
detector's do after a gap in time.

State per series, all in (series x rows) arrays: the running sum of squares (for the
RMS of the compression), a ring of cumulative compressed values (for the segment
means), per time scale a ring of segment means (from which the candidate shapes are
read), of shape norms and of distances (for the likelihood statistics; single precision,
NaN where a row was not learned from), the rows left to settle after a gap, and the
refractory state. When a bucket closes, the new row's discord distances of all series
are computed by one ``einsum`` per block of series over windowed views of the rings;
the only Python loops are over the time scales and blocks of ``SERIES_BLOCK`` series.

``peek`` scores a provisional row (a bucket still open) without committing anything,
so that an acute fault can be judged between closings. Scores equal those of
``DiscordLikelihood.score`` on the series of closed rows, to rounding (the products are
summed in another order): the same functions of ``univariate`` do the arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray

from healer.detect.univariate import (
    DISTANCE_DTYPE,
    GAP_PERIODS,
    MIN_LEARNED_ROWS,
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

# Series per einsum: the windowed candidates of a block (256 x ~2,400 x 24 values) are a
# view, and the block's rings (a few MB) stay in cache while the product reads them.
SERIES_BLOCK = 256


@dataclass
class Row:
    """One new row of some series, evaluated but not yet committed."""

    series: I64
    """Indices of the series the row belongs to."""
    index: I64
    """The row's index in each series (its count of committed rows)."""
    sum_squares: F64
    cum_u: F64
    means: list[F64]
    norms: list[F64]
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
        self, n: int, *, detector: DiscordLikelihood | None = None, bucket_s: float = 300.0
    ) -> None:
        self.detector = detector or DiscordLikelihood()
        self.bucket_s = bucket_s
        self.windows_ = d = self.detector.windows(bucket_s)
        self.max_segment_ = max(d.segment_rows)
        self.rows_ = np.zeros(n, dtype=np.int64)
        self.sum_squares_ = np.zeros(n)
        self.cum_u_ = np.zeros((n, self.max_segment_ + 1))
        self.means_ = [np.zeros((n, self._means_len(g))) for g in d.segment_rows]
        self.norms_ = [np.zeros((n, d.history_rows + 1)) for _ in d.segment_rows]
        # NaN: a distance not learned from (too early, or settling after a gap).
        self.distances_ = [
            np.full((n, d.history_rows + 1), np.nan, dtype=DISTANCE_DTYPE) for _ in d.segment_rows
        ]
        self.settle_ = np.zeros(n, dtype=np.int64)
        self.last_row_t_ = np.full(n, -math.inf)
        self.spacing_s_ = np.full(n, math.inf)
        """Shortest time between two rows of each series: its period, for telling a gap."""
        self.last_alarm_ = np.full(n, -1, dtype=np.int64)
        self.calmed_ = np.zeros(n, dtype=bool)
        self.score_ = np.full(n, np.nan)
        # The open bucket: its end (grid), the sums and counts of its samples.
        self.bucket_end_ = -math.inf
        self.closed_end_ = -math.inf
        self.last_t_ = -math.inf
        self.bucket_sum_ = np.zeros(n)
        self.bucket_count_ = np.zeros(n)

    def _means_len(self, segment_rows: int) -> int:
        """Ring length of segment means: the oldest candidate's shape reaches this far."""
        d = self.windows_
        return d.history_rows + segment_rows * (d.shape_points - 1) + 1

    @property
    def n_series(self) -> int:
        return len(self.rows_)

    def state_bytes(self) -> int:
        """Bytes of learned state (all arrays), for sizing."""
        arrays: list[NDArray[np.generic]] = [self.rows_, self.sum_squares_, self.cum_u_]
        arrays += [self.last_alarm_, self.calmed_, self.score_, self.bucket_sum_]
        arrays += [self.bucket_count_, self.settle_, self.last_row_t_, self.spacing_s_]
        arrays += [*self.means_, *self.norms_, *self.distances_]
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
            cum_u=_joined(blocks, lambda b: b.cum_u),
            means=_joined_scales(blocks, lambda b: b.means),
            norms=_joined_scales(blocks, lambda b: b.norms),
            distances=_joined_scales(blocks, lambda b: b.distances),
            likelihood=_joined(blocks, lambda b: b.likelihood),
            score=_joined(blocks, lambda b: b.score),
            alarm=_joined(blocks, lambda b: b.alarm),
            settle=_joined(blocks, lambda b: b.settle),
        )

    def _evaluate(self, values: F64, series: I64) -> Row:
        d, w = self.detector, self.windows_
        i = self.rows_[series]
        settle = self.settle_[series]
        sum_squares = self.sum_squares_[series] + values * values
        u = compress(values, rms_of(sum_squares, (i + 1).astype(np.float64)))
        cum_ring = self.cum_u_.shape[1]
        cum_u = self.cum_u_[series, (i - 1) % cum_ring] * (i > 0) + u
        means, norms, distances = [], [], []
        log_tails, tests = np.zeros(len(series)), np.zeros(len(series))
        for k, g in enumerate(w.segment_rows):
            if g == 1:
                mean = u
            else:
                back = np.where(i >= g, self.cum_u_[series, (i - g) % cum_ring], 0.0)
                mean = (cum_u - back) / np.minimum(i + 1, g)
            norm, distance = self._discord(k, g, series, i, mean)
            recent, past_mean, spread, count = self._statistics(k, series, distance)
            settling = settle > self._settle_rows() - w.settle_rows(g)
            tested = ~settling & (count >= MIN_LEARNED_ROWS)
            log_tails += np.where(tested, log_tail(recent, past_mean, spread), 0.0)
            tests += tested
            means.append(mean)
            norms.append(norm)
            learned = (i >= w.learn_from_row(g)) & ~settling
            distances.append(np.where(learned, distance, np.nan))
        likelihood = fisher_combined(log_tails, tests)
        held = suppressed(i, self.last_alarm_[series], self.calmed_[series], w.refractory_rows)
        hot = likelihood >= d.alarm_level
        score = np.where(hot & held, np.nextafter(d.alarm_level, 0.0), likelihood)
        score = alarms_at_one(score, d.alarm_level)
        return Row(
            series,
            i,
            sum_squares,
            cum_u,
            means,
            norms,
            distances,
            likelihood,
            score,
            hot & ~held,
            settle,
        )

    def _commit(self, row: Row) -> None:
        d, s, i = self.detector, row.series, row.index
        self.sum_squares_[s] = row.sum_squares
        self.cum_u_[s, i % self.cum_u_.shape[1]] = row.cum_u
        history = self.windows_.history_rows
        for k in range(len(self.windows_.segment_rows)):
            self.means_[k][s, i % self.means_[k].shape[1]] = row.means[k]
            self.norms_[k][s, i % (history + 1)] = row.norms[k]
            self.distances_[k][s, i % (history + 1)] = row.distances[k]
        self.settle_[s] = np.maximum(row.settle - 1, 0)
        self.last_alarm_[s] = np.where(row.alarm, i, self.last_alarm_[s])
        calm = row.likelihood < d.rearm_level
        self.calmed_[s] = np.where(row.alarm, False, self.calmed_[s] | calm)
        self.score_[s] = row.score
        self.rows_[s] = i + 1

    def _discord(self, k: int, g: int, series: I64, i: I64, mean: F64) -> tuple[F64, F64]:
        """Norm of each new row's shape and its distance to the nearest earlier shape.

        The segment means of rows ``i - history - g*(points-1) .. i`` are read out of the
        ring in row order (rows before the series' start read as row 0, as
        ``univariate.shapes_of`` pads them); the shapes are strided windows of them.
        """
        d = self.windows_
        p, h, gap = d.shape_points, d.history_rows, d.shape_points * g
        span = g * (p - 1) + 1
        ring = self.means_[k]
        length = ring.shape[1]
        n_candidates = h - gap + 1
        first = -(h + span - 1)  # rows i - h - span + 1 .. i
        line = _read(ring, series, i + first, h + span)
        line[:, -1] = mean
        rows = i[:, None] + np.arange(first, 1)[None, :]
        if i.min() + first < 0:  # rows before the start read as row 0 (maybe the new one)
            zero = line[np.arange(len(series)), np.clip(-first - i, 0, length - 1)]
            line = np.where(rows < 0, zero[:, None], line)
        shapes = sliding_window_view(line, span, axis=1)[:, :, ::g]  # (b, h + 1, p)
        query = shapes[:, -1, :]
        norm: F64 = (query * query).sum(axis=1)
        candidates = shapes[:, :n_candidates, :]  # rows i - h .. i - gap
        cand_norms = _read(self.norms_[k], series, i - h, n_candidates)
        if i.min() - h < 0:  # no candidates before the start
            cand_norms = np.where(
                rows[:, span - 1 : span - 1 + n_candidates] >= 0, cand_norms, np.inf
            )
        cross = cand_norms - 2.0 * np.einsum("bcp,bp->bc", candidates, query)
        return norm, nearest_distance(cross.min(axis=1) + norm, p)

    def _statistics(self, k: int, series: I64, distance: F64) -> tuple[F64, F64, F64, F64]:
        """Recent mean distance (this row and the learned ones of the rows before it),
        and the mean, spread and count of the learned distances of the ``history_rows``
        rows before it (rows i - h .. i - 1; NaN in the ring: not learned from)."""
        d = self.windows_
        h = d.history_rows
        past = _read(self.distances_[k], series, self.rows_[series] - h, h).astype(np.float64)
        used = np.isfinite(past)
        used_past = np.where(used, past, 0.0)
        count = used.sum(axis=1).astype(np.float64)
        mean, spread = mean_std(used_past.sum(axis=1), (used_past * used_past).sum(axis=1), count)
        before = d.recent_rows - 1  # the recent rows before this one
        last, seen = used_past[:, h - before :], used[:, h - before :].sum(axis=1)
        recent = (last.sum(axis=1) + distance) / (seen + 1.0)
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
        end = math.ceil(t / self.bucket_s) * self.bucket_s
        if end <= self.closed_end_:  # a late sample for a closed bucket: the next one
            end = self.closed_end_ + self.bucket_s
        if end > self.bucket_end_:
            closed |= self._close()
            self.bucket_end_ = end
        valid = np.isfinite(values)
        self.bucket_sum_ += np.where(valid, values, 0.0)
        self.bucket_count_ += valid
        self.last_t_ = t
        if t + spacing > self.bucket_end_:  # the next sample is expected past the end
            closed |= self._close()
        return closed

    def _close(self) -> Mask:
        has = self.bucket_count_ > 0
        if has.any():
            series = np.flatnonzero(has)
            self.push(
                self.bucket_sum_[has] / self.bucket_count_[has],
                series,
                after_gap=self._after_gap(series),
            )
            since_s = self.bucket_end_ - self.last_row_t_[has]
            self.spacing_s_[has] = np.minimum(self.spacing_s_[has], since_s)
            self.last_row_t_[has] = self.bucket_end_
        self.closed_end_ = max(self.closed_end_, self.bucket_end_)
        self.bucket_sum_[:] = 0.0
        self.bucket_count_[:] = 0.0
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
        since_s = self.bucket_end_ - self.last_row_t_[series]
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
        (-1: a new series, with fresh state). The bucket grid carries over."""
        out = ShapeStage(len(keep), detector=self.detector, bucket_s=self.bucket_s)
        new, old = np.flatnonzero(keep >= 0), keep[keep >= 0]
        for name in ("rows_", "sum_squares_", "cum_u_", "last_alarm_", "calmed_", "score_"):
            getattr(out, name)[new] = getattr(self, name)[old]
        for name in ("settle_", "last_row_t_", "spacing_s_"):
            getattr(out, name)[new] = getattr(self, name)[old]
        for name in ("bucket_sum_", "bucket_count_"):
            getattr(out, name)[new] = getattr(self, name)[old]
        for name in ("means_", "norms_", "distances_"):
            for dst, src in zip(getattr(out, name), getattr(self, name), strict=True):
                dst[new] = src[old]
        for name in ("bucket_end_", "closed_end_", "last_t_"):
            setattr(out, name, getattr(self, name))
        return out


def _joined(blocks: list[Row], field: Callable[[Row], NDArray[G]]) -> NDArray[G]:
    """One field of the rows of several blocks of series, in order."""
    return np.concatenate([field(b) for b in blocks])


def _joined_scales(blocks: list[Row], field: Callable[[Row], list[F64]]) -> list[F64]:
    """One per-scale field of the rows of several blocks of series, in order."""
    return [np.concatenate(parts) for parts in zip(*(field(b) for b in blocks), strict=True)]


def _read(ring: NDArray[G], series: I64, first: I64, count: int) -> NDArray[G]:
    """(series, count) copy of rows ``first .. first + count - 1`` of each series' ring
    (row r at column r mod the ring's length; rows before the start read garbage).

    When the series are a contiguous range at the same row, as when every series closes
    a bucket together, two slices do it instead of a gather.
    """
    length = ring.shape[1]
    lo = int(series[0]) if len(series) else 0
    uniform = len(series) and (first == first[0]).all() and int(series[-1]) - lo == len(series) - 1
    if uniform and (np.diff(series) == 1).all():
        block, start = ring[lo : lo + len(series)], int(first[0]) % length
        if start + count <= length:
            out: NDArray[G] = block[:, start : start + count].copy()
            return out
        return np.concatenate((block[:, start:], block[:, : count - (length - start)]), axis=1)
    columns = (first[:, None] + np.arange(count)[None, :]) % length
    gathered: NDArray[G] = ring[series[:, None], columns]
    return gathered
