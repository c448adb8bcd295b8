"""The shape stage fed a long history at once: ``learn_history``.

Warming feeds the shape stage a week and more of buckets per series. Fed one bucket at
a time, as the live cycle feeds it, every row is a discord search of its own (over a
week of candidates per series): at 1,000 workloads the full history took the better
part of an hour with the numpy search. Here the rows of a whole frame are searched
together: per series and time scale, the new rows' shapes against every candidate
shape in one matrix product (``QUERY_ROWS`` rows at a time, the band of allowed
candidates barred outside by infinity), as ``univariate.left_discord`` searches a file.

The result is the state bucket-by-bucket feeding builds: the stage's own ``observe``
decides which buckets close, with which values and after which gaps (its ``push`` is
shadowed for the call, collecting the rows instead of scoring them); the compressed
values are the same arithmetic; then the rows are committed in order through the
stage's own statistics and commit, one step per row for all series together, so the
running sums, the refractory state and the scores are the live path's. The segment
means, norms and products are the same terms as the live search's, summed in another
order (BLAS' here, compiled loops there), so distances agree to rounding.

Decisions: a module beside ``shape.py`` rather than code in it, so that the live
search can change without this one; it uses the stage's private helpers on purpose,
which keeps one definition of the statistics and of a commit.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import as_strided
from threadpoolctl import threadpool_limits

from healer.detect.shape import (
    F64,
    I64,
    Mask,
    Row,
    ShapeStage,
    _read,
    _trailing_means,
    _window_sums,
)
from healer.detect.univariate import (
    BLAS_THREADS,
    MEANS_DTYPE,
    MIN_LEARNED_ROWS,
    alarms_at_one,
    compress,
    fisher_combined,
    log_tail,
    nearest_distance,
    rms_of,
    suppressed,
)

QUERY_ROWS = 32
"""New rows per matrix product at most: each row's candidates are a band a week wide,
so a block of rows costs (rows x (rows + week)) products, of which the two corners
outside the band (rows^2) are waste, under 5% at 5-minute buckets; and the block's
products (96 x ~2,300, 1.7 MB) stay in the core's cache while they are reduced to their
minima (measured: 1.9 ns a product against 5.3 for blocks of 4 series x 144 rows)."""
HISTORY_STEPS = 288
"""Timestamps learned together at most: a day of buckets, so that what the rows of a
step hold (a few (series x steps) arrays of doubles) stays bounded when a frame holds a
week of them for many series (70 MB at 6,000 series), while each series' preparation
(its line of a week of values, its candidate shapes) serves many rows."""
SERIES_BATCH = 1
"""Series per matrix product: one, for the same reason."""


@dataclass
class _Pushed:
    """One call of the stage's ``push`` while observing: rows of some series."""

    series: I64
    values: F64
    after_gap: Mask


@dataclass
class _Rows:
    """The rows each series closed in a frame, oldest first, padded to the longest."""

    count: I64
    """(n,) new rows per series."""
    values: F64
    """(n, k) bucket means, NaN past a series' count."""
    after_gap: Mask
    """(n, k) whether the row follows a gap."""


def learn_history(stage: ShapeStage, timestamps: F64, values: F64) -> Mask:
    """Observe ``values`` (series, T) at ``timestamps`` (T,), as T calls of
    ``stage.observe`` would, and commit the rows they close; return the series that
    committed some row. Times not after the stage's last one are skipped. Scores
    nothing that anyone reads: the rows' scores end up in the stage's refractory state
    and ``score_``, as they would live."""
    n = stage.n_series
    if values.shape != (n, len(timestamps)):
        raise ValueError(f"values: ({n}, {len(timestamps)}) expected, got {values.shape}")
    committed = np.zeros(n, dtype=bool)
    for lo in range(0, len(timestamps), HISTORY_STEPS):
        rows = _closed_rows(
            stage, timestamps[lo : lo + HISTORY_STEPS], values[:, lo : lo + HISTORY_STEPS]
        )
        if rows.count.any():
            distances, sum_squares, u = _distances(stage, rows)
            _commit_in_order(stage, rows, distances, sum_squares, u)
        committed |= rows.count > 0
    return committed


@contextmanager
def _collecting(stage: ShapeStage) -> Iterator[list[_Pushed]]:
    """The stage's ``push`` collecting its rows instead of committing them."""
    pushed: list[_Pushed] = []

    def collect(values: F64, series: I64 | None = None, *, after_gap: Mask | None = None) -> F64:
        index = np.arange(stage.n_series) if series is None else np.asarray(series)
        gap = np.zeros(len(index), dtype=bool) if after_gap is None else np.asarray(after_gap)
        pushed.append(_Pushed(index.astype(np.int64), np.asarray(values, np.float64), gap))
        return np.full(len(index), np.nan)

    # An instance attribute shadows the method for this call only: the stage's bucket
    # logic stays the one definition of which rows close.
    setattr(stage, "push", collect)  # noqa: B010
    try:
        yield pushed
    finally:
        delattr(stage, "push")


def _closed_rows(stage: ShapeStage, timestamps: F64, values: F64) -> _Rows:
    n = stage.n_series
    with _collecting(stage) as pushed:
        for t in range(len(timestamps)):
            stage.observe(float(timestamps[t]), values[:, t])
    if not pushed:
        return _Rows(np.zeros(n, np.int64), np.zeros((n, 0)), np.zeros((n, 0), dtype=bool))
    series = np.concatenate([p.series for p in pushed])
    order = np.argsort(series, kind="stable")  # each series' rows in the order closed
    series = series[order]
    count = np.bincount(series, minlength=n).astype(np.int64)
    position = np.arange(len(series)) - (np.cumsum(count) - count)[series]
    width = int(count.max())
    out = _Rows(count, np.full((n, width), np.nan), np.zeros((n, width), dtype=bool))
    out.values[series, position] = np.concatenate([p.values for p in pushed])[order]
    out.after_gap[series, position] = np.concatenate([p.after_gap for p in pushed])[order]
    return out


def _distances(stage: ShapeStage, rows: _Rows) -> tuple[list[F64], F64, F64]:
    """Per time scale, (n, k) discord distance of each new row, and the rows' running
    sums of squares and compressed values (NaN past a series' count). Series are
    searched in groups that start at the same row and add as many."""
    n, width = rows.values.shape
    out = [np.full((n, width), np.nan) for _ in stage.windows_.segment_rows]
    sum_squares, u = np.full((n, width), np.nan), np.full((n, width), np.nan)
    has = np.flatnonzero(rows.count > 0)
    keys = np.stack((stage.rows_[has], rows.count[has]), axis=1)
    groups, which = np.unique(keys, axis=0, return_inverse=True)
    with threadpool_limits(limits=BLAS_THREADS, user_api="blas"):
        for group, (first, k) in enumerate(groups.tolist()):
            members = has[which.reshape(-1) == group]
            squares, compressed = _compressed(stage, members, rows.values[members, :k])
            sum_squares[members, :k], u[members, :k] = squares, compressed
            for lo in range(0, len(members), SERIES_BATCH):
                batch = members[lo : lo + SERIES_BATCH]
                line = _line(stage, batch, first, compressed[lo : lo + SERIES_BATCH])
                for scale, segment in enumerate(stage.windows_.segment_rows):
                    out[scale][batch, :k] = _discord(stage, segment, first, line)
    return out, sum_squares, u


def _compressed(stage: ShapeStage, series: I64, values: F64) -> tuple[F64, F64]:
    """Running sums of squares and compressed values of ``values`` (series, k), the
    new rows of ``series``, all at the same row: the live path's additions in its
    order."""
    first = stage.rows_[series]
    terms = np.concatenate((stage.sum_squares_[series][:, None], values * values), axis=1)
    sum_squares = np.cumsum(terms, axis=1)[:, 1:]
    count = (first[:, None] + 1 + np.arange(values.shape[1])[None, :]).astype(np.float64)
    u = compress(values, rms_of(sum_squares, count)).astype(MEANS_DTYPE).astype(np.float64)
    return sum_squares, u


def _line(stage: ShapeStage, series: I64, first: int, u: F64) -> F64:
    """(series, line_rows - 1 + k) compressed rows ``first - line_rows + 1`` to the last
    new one (``u``: the k new ones), 0 before the series' start (``ShapeStage._line``
    for k new rows)."""
    n = stage.line_rows_
    starts = np.full(len(series), first - n + 1, dtype=np.int64)
    line = np.concatenate((_read(stage.u_, series, starts, n - 1).astype(np.float64), u), axis=1)
    if first - n + 1 < 0:
        line[:, : min(n - 1 - first, line.shape[1])] = 0.0
    return line


def _discord(stage: ShapeStage, g: int, first: int, line: F64) -> F64:
    """(series, k) distance of each new row's shape at scale ``g`` to its nearest
    earlier shape: ``ShapeStage._nearest`` for k rows at once."""
    w = stage.windows_
    p, h, gap = w.shape_points, w.history_rows, w.shape_points * g
    span = g * (p - 1) + 1
    k = line.shape[1] - (stage.line_rows_ - 1)
    count = h + span - 1 + k  # means of rows first - h - span + 1 .. first + k - 1
    b = line.shape[0]
    last = np.full(b, first + k - 1, dtype=np.int64)
    # A copy: at the row scale the means are a view of the line, which the next scale reads.
    means = np.array(_trailing_means(line, g, count, last), order="C", copy=True)
    oldest = first - h - span + 1
    if oldest < 0:  # rows before the start read as row 0 (the last mean is of a row)
        means[:, :-oldest] = means[:, [-oldest]]
    # (b, h + k, p): shape c ends at row first - h + c.
    row_stride, column_stride = means.strides
    shapes = as_strided(
        means,
        shape=(b, h + k, p),
        strides=(row_stride, column_stride, column_stride * g),
        writeable=False,
    )
    norms = _window_sums(means * means, g, p)  # (b, h + k), sums of their terms
    # |q - c|^2 = |q|^2 + (|c|^2 - 2 q.c): the bracket for a block of rows in one matrix
    # product of [q, 1] and [-2c, |c|^2] (doubling is exact, so only the order of the
    # sum differs from the live search's).
    candidates = np.empty((b, h + k, p + 1))
    candidates[:, :, :p] = shapes
    query = np.ones((b, k, p + 1))
    query[:, :, :p] = candidates[:, h:, :p]
    query_norms = (query[:, :, :p] * query[:, :, :p]).sum(axis=2)
    candidates[:, :, :p] *= -2.0
    candidates[:, :, p] = norms
    out = np.empty((b, k))
    blocks = -(-k // QUERY_ROWS)
    size = -(-k // blocks)
    for lo in range(0, k, size):
        rows = min(size, k - lo)
        width = rows + h - gap  # candidates of rows lo .. lo + rows - 1
        # Candidates that end before the series' start are barred: no products for them
        # (in a series' first week, most of the band).
        skip = min(max(h - first - lo, 0), width)
        if skip == width:
            out[:, lo : lo + rows] = 0.0  # no candidate yet: distance 0, as live
            continue
        for s in range(b):  # two-dimensional products: BLAS' fastest path
            cross = query[s, lo : lo + rows] @ candidates[s, lo + skip : lo + width].T
            _bar(cross, reach=h - gap, skip=skip)
            nearest = cross.min(axis=1) + query_norms[s, lo : lo + rows]
            out[s, lo : lo + rows] = nearest_distance(nearest, p)
    return out


def _bar(cross: F64, *, reach: int, skip: int) -> None:
    """Set to infinity, in (rows, width) ``cross`` (the candidates of a block of rows
    from its ``skip``-th on), those outside row r's band of candidates r .. r + ``reach``:
    only the band's two corners are touched."""
    rows = cross.shape[0]
    left, right = _corners(rows)
    if skip < rows:
        cross[:, : rows - skip] += left[:, skip:]
    if skip <= reach + 1:
        cross[:, reach + 1 - skip :] += right
    else:
        cross += right[:, skip - reach - 1 :]


@functools.lru_cache(maxsize=8)
def _corners(rows: int) -> tuple[F64, F64]:
    """The band's corners for a block of ``rows`` rows: (rows, rows) infinity left of
    each row's first column r, and (rows, rows - 1) right of its last, r + reach."""
    r = np.arange(rows)[:, None]
    left = np.where(np.arange(rows)[None, :] < r, np.inf, 0.0)
    right = np.where(np.arange(1, rows)[None, :] > r, np.inf, 0.0)
    return left, right


def _commit_in_order(
    stage: ShapeStage, rows: _Rows, distances: list[F64], sum_squares: F64, u: F64
) -> None:
    """Commit the new rows oldest first, all series at their j-th new row together:
    ``ShapeStage._evaluate`` and ``_commit`` with the distances already searched."""
    w, d = stage.windows_, stage.detector
    settle_all = stage._settle_rows()
    for j in range(rows.values.shape[1]):
        series = np.flatnonzero(rows.count > j)
        gap = rows.after_gap[series, j]
        if gap.any():
            stage.settle_[series] = np.where(gap, settle_all, stage.settle_[series])
        i, settle = stage.rows_[series], stage.settle_[series]
        kept, log_tails, tests = [], np.zeros(len(series)), np.zeros(len(series))
        for k, g in enumerate(w.segment_rows):
            distance = distances[k][series, j]
            recent, past_mean, spread, count = stage._statistics(k, series, distance)
            settling = settle > settle_all - w.settle_rows(g)
            tested = ~settling & (count >= MIN_LEARNED_ROWS)
            log_tails += np.where(tested, log_tail(recent, past_mean, spread), 0.0)
            tests += tested
            learned = (i >= w.learn_from_row(g)) & ~settling
            kept.append(np.where(learned, distance, np.nan))
        likelihood = fisher_combined(log_tails, tests)
        held = suppressed(i, stage.last_alarm_[series], stage.calmed_[series], w.refractory_rows)
        hot = likelihood >= d.alarm_level
        score = np.where(hot & held, np.nextafter(d.alarm_level, 0.0), likelihood)
        score = alarms_at_one(score, d.alarm_level)
        stage._commit(
            Row(
                series,
                i,
                sum_squares[series, j],
                u[series, j],
                kept,
                likelihood,
                score,
                hot & ~held,
                settle,
            )
        )
