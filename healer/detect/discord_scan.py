"""The shape stage's discord search: each series' newest shape against its week of candidates.

For each series, given its line of compressed rows (the newest last): the segment means
of ``segment_rows`` rows at every row, the query (the newest shape: ``points`` means
``segment_rows`` apart) and, over the ``n_candidates`` earlier shapes, the least
``|c|^2 - 2 q.c``; returned with ``|q|^2`` added, the squared distance to the nearest
candidate (``univariate.nearest_distance`` turns it into the per-point distance).

It is compiled (numba) because in numpy it was a dozen passes over (series x week)
temporaries per scale (sums of shifted copies for the means and the candidates' norms,
strided copies and a matrix product or an ``einsum`` for the products), most of a
daemon's cycle at 100,000 workloads: here each series' means and sums stay in the
core's first-level cache, and each loop is a straight pass over contiguous values that
the compiler turns into vector instructions. The sums are the same terms in another
order (each mean a sum of its rows, each candidate's bracket a sum over its points of
its square less twice its product with the query), so distances agree with the numpy
search and with ``univariate.left_discord`` to rounding (the tests hold the scores to
1e-9).

Decisions: the kernel is compiled on first use (a second or two, once per process),
not cached on disk, so that a read-only install never writes nor warns.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]


def _scan(
    line: F64,
    newest_rows: NDArray[np.int64],
    segment_rows: int,
    points: int,
    n_candidates: int,
    count: int,
    out: F64,
) -> None:
    """``nearest_squared`` for every row of ``line``, into ``out``.

    Written as loops over one-dimensional slices with a non-negative index, which the
    compiler vectorises (an index that numba must check for wrapping around does not).
    """
    g = segment_rows
    width = line.shape[1]
    lo = width - count - g + 1
    means = np.empty(count)
    bracket = np.empty(n_candidates)
    newest = count - 1 - g * (points - 1)
    for s in range(line.shape[0]):
        row = line[s]
        first = row[lo : lo + count]
        for x in range(count):
            means[x] = first[x]
        for lag in range(1, g):
            rows = row[lo + lag : lo + lag + count]
            for x in range(count):
                means[x] += rows[x]
        oldest = newest_rows[s] - (count - 1)  # the row of the first mean
        if oldest >= g - 1:  # every segment is whole
            if g > 1:
                for x in range(count):
                    means[x] /= g
        else:  # a young series: segments cut at its start, rows before it as row 0
            for x in range(count):
                means[x] /= min(max(oldest + x + 1, 1), g)
            if oldest < 0:
                for x in range(-oldest):
                    means[x] = means[-oldest]
        # Candidate c ends at row oldest + c + g*(points-1): none before the start, and
        # those are neither summed nor searched (a young series has few candidates).
        first_candidate = min(max(0, -oldest - g * (points - 1)), n_candidates)
        live = bracket[first_candidate:n_candidates]
        for c in range(live.shape[0]):
            live[c] = 0.0
        norm = 0.0
        for t in range(points):
            q = means[newest + g * t]
            norm += q * q
            twice = -2.0 * q
            shifted = means[g * t + first_candidate : g * t + n_candidates]
            for c in range(live.shape[0]):
                v = shifted[c]
                live[c] += v * v + v * twice
        least = np.inf
        for c in range(live.shape[0]):
            if live[c] < least:
                least = live[c]
        out[s] = least + norm


# Compiled lazily; ``boundscheck`` off as numba's default, spelled out since the loops'
# bounds are what the wrapper checks.
_compiled: Any = numba.njit(nogil=True, boundscheck=False)(_scan)


def nearest_squared(
    line: F64,
    newest_rows: NDArray[np.int64],
    *,
    segment_rows: int,
    points: int,
    n_candidates: int,
    count: int,
) -> F64:
    """(series,) squared distance of each series' newest shape to its nearest candidate
    (infinity where it has none yet).

    ``line``: (series, columns) compressed rows, the newest last (row ``newest_rows``
    of each series; columns before its row 0 hold 0), at least ``count + segment_rows
    - 1`` columns; ``count``: segment means searched (the newest shape and its
    candidates, ``history_rows + span`` rows); candidate ``c`` is the shape ending at
    mean ``c + span - 1``, for ``c < n_candidates``. As ``univariate.shapes_of`` pads
    a series, a segment cut by the series' start is the mean of its rows since the
    start, and means before the start are the first row's; a candidate ending before
    the start is none.
    """
    if line.shape[1] < count + segment_rows - 1:
        raise ValueError(f"line: {count + segment_rows - 1} columns needed, got {line.shape[1]}")
    if n_candidates < 1 or n_candidates + segment_rows * (points - 1) > count:
        raise ValueError(f"{n_candidates} candidates do not fit {count} means")
    if newest_rows.shape != (len(line),) or (len(line) and int(newest_rows.min()) < 0):
        raise ValueError(f"newest_rows: {len(line)} rows of at least 0 expected")
    out = np.empty(len(line))
    rows = np.ascontiguousarray(newest_rows, dtype=np.int64)
    _compiled(np.ascontiguousarray(line), rows, segment_rows, points, n_candidates, count, out)
    return out
