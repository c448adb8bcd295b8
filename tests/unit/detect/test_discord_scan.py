"""The compiled discord search: the squared distance to the nearest earlier shape."""

from __future__ import annotations

import numpy as np
import pytest

from healer.detect.discord_scan import nearest_squared


def direct(line: np.ndarray, g: int, points: int, n_candidates: int, count: int) -> np.ndarray:
    """The same search written out: segment means, every candidate's distance, least."""
    width = line.shape[1]
    means = np.stack(
        [
            line[:, width - count - g + 1 + x : width - count + 1 + x].mean(axis=1)
            for x in range(count)
        ],
        axis=1,
    )
    offsets = g * np.arange(points)
    query = means[:, count - 1 - offsets[::-1]]
    shapes = np.stack([means[:, c + offsets] for c in range(n_candidates)], axis=1)
    out: np.ndarray = ((shapes - query[:, None, :]) ** 2).sum(axis=2).min(axis=1)
    return out


@pytest.mark.parametrize(("g", "points", "n_candidates"), [(1, 6, 40), (3, 4, 25), (12, 5, 9)])
def test_nearest_squared_is_the_least_distance_of_a_direct_search(
    g: int, points: int, n_candidates: int
) -> None:
    rng = np.random.default_rng(g)
    span = g * (points - 1) + 1
    count = n_candidates + 2 * span  # the candidates, a gap and the query
    line = rng.standard_normal((5, count + g + 3)).astype(np.float32).astype(np.float64)
    line[2, -span:] += 3.0  # a novel shape, far from every candidate
    got = nearest_squared(
        line,
        np.full(5, 10 * count),
        segment_rows=g,
        points=points,
        n_candidates=n_candidates,
        count=count,
    )
    expected = direct(line, g, points, n_candidates, count)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    assert got[2] == max(got)


def test_a_shape_repeated_exactly_is_at_distance_zero() -> None:
    period, points = 7, 4
    line = np.tile(np.arange(period, dtype=np.float64), 10)[None, :]
    got = nearest_squared(
        line, np.array([69]), segment_rows=1, points=points, n_candidates=40, count=60
    )
    assert got[0] == 0.0


def test_a_line_too_short_for_its_means_is_refused() -> None:
    with pytest.raises(ValueError, match="columns needed"):
        nearest_squared(
            np.zeros((1, 20)), np.array([50]), segment_rows=3, points=4, n_candidates=5, count=19
        )
    with pytest.raises(ValueError, match="do not fit"):
        nearest_squared(
            np.zeros((1, 40)), np.array([50]), segment_rows=3, points=4, n_candidates=30, count=30
        )
    with pytest.raises(ValueError, match="newest_rows"):
        nearest_squared(
            np.zeros((1, 40)), np.array([-1]), segment_rows=1, points=4, n_candidates=5, count=30
        )


def test_a_young_series_is_searched_over_the_candidates_after_its_start() -> None:
    """Candidates that end before a series' first row are none; the others are searched
    as for an old series (the means before the start read as its first row)."""
    points, n_candidates = 4, 30
    count = n_candidates + 2 * points
    line = np.random.default_rng(9).standard_normal((2, count + 4))
    age = 10  # rows: the first mean is row -10, the series starts at mean 10
    rows = np.array([count - 1 - age, points - 2])  # the second: younger than any candidate
    line[:, 4 : 4 + age] = line[:, 4 + age, None]
    got = nearest_squared(
        line, rows, segment_rows=1, points=points, n_candidates=n_candidates, count=count
    )
    means = line[0, 4:]
    query = means[count - points :]
    first = age - (points - 1)  # candidate c ends at mean c + points - 1
    expected = min(((means[c : c + points] - query) ** 2).sum() for c in range(first, n_candidates))
    assert got[0] == pytest.approx(expected, rel=1e-12)
    assert np.isinf(got[1])
