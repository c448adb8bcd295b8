"""The shape stage: DiscordLikelihood's scores, online, bucket by bucket, for many series."""

from __future__ import annotations

import numpy as np
import pytest

from healer.detect.shape import PHASES, SERIES_BLOCK, ShapeStage
from healer.detect.univariate import DiscordLikelihood

DAY_ROWS = 288
# Small hyperparameters, so that a test's rows wrap every ring and cross refractories.
SMALL = DiscordLikelihood(
    shape_points=8,
    segment_s=(0.0, 1200.0),
    history_s=120 * 300.0,
    min_history_rows=1,
    recent_s=3 * 300.0,
    refractory_s=20 * 300.0,
)
ROWS = SMALL.windows(300.0)


def cyclic(n: int, seed: int, period: int = 48) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    values = 50.0 + 20.0 * np.sin(2 * np.pi * t / period) + rng.normal(0.0, 1.0, n)
    values[n // 2 : n // 2 + 15] += 40.0  # an anomaly, so alarms and refractories happen
    return values


def test_rows_pushed_one_by_one_score_as_the_whole_series() -> None:
    values = cyclic(700, seed=1, period=DAY_ROWS)
    stage = ShapeStage(1)
    online = np.array([stage.push(np.array([v]))[0] for v in values])
    np.testing.assert_allclose(online, DiscordLikelihood().score(values), rtol=0, atol=1e-9)


def test_many_series_of_different_lengths_each_score_as_alone() -> None:
    series = [cyclic(400, seed=s) for s in range(4)]
    starts = [0, 0, 30, 170]  # series that begin later have fewer rows at each push
    stage = ShapeStage(4, detector=SMALL)
    online = [[] for _ in series]
    for row in range(400 + max(starts)):
        ids = np.array([k for k in range(4) if 0 <= row - starts[k] < 400])
        scores = stage.push(np.array([series[k][row - starts[k]] for k in ids]), ids)
        for k, score in zip(ids, scores, strict=True):
            online[k].append(score)
    for k, values in enumerate(series):
        expected = SMALL.score(values)
        assert (expected >= SMALL.alarm_level).any()  # the refractory is exercised
        np.testing.assert_allclose(online[k], expected, rtol=0, atol=1e-9)


def test_samples_in_buckets_score_as_the_bucket_means() -> None:
    rng = np.random.default_rng(3)
    rows, per_bucket, step_s = 300, 5, 60.0
    values = cyclic(rows, seed=2).repeat(per_bucket) + rng.normal(0, 0.5, rows * per_bucket)
    values[7] = np.nan  # a missing sample: the bucket's mean is of the others
    start_s = 1_772_449_200.0 + 17.0  # off the grid of buckets
    stage = ShapeStage(1, detector=SMALL, bucket_s=per_bucket * step_s)
    closed = []
    for k, v in enumerate(values):
        if stage.observe(start_s + k * step_s, np.array([v]))[0]:
            closed.append(stage.score_[0])
    first_end = np.ceil(start_s / 300.0) * 300.0
    bucket = np.floor((start_s + np.arange(rows * per_bucket) * step_s - first_end - 1e-9) / 300)
    means = [np.nanmean(values[bucket == b]) for b in np.unique(bucket)]
    expected = SMALL.score(np.array(means))
    # Every bucket but the last has closed (the last closes with its final sample).
    np.testing.assert_allclose(closed, expected[: len(closed)], rtol=0, atol=1e-9)
    assert len(closed) == len(means)


def test_a_bucket_closes_with_the_sample_at_its_end_five_minute_rows_at_once() -> None:
    stage = ShapeStage(1, detector=SMALL)
    t0 = 1_396_310_520.0  # 00:02 on a 5-minute series: off the grid by 2 minutes
    assert not stage.observe(t0, np.array([1.0]))[0]  # no spacing known yet
    for k in range(1, 6):
        assert stage.observe(t0 + 300.0 * k, np.array([1.0 + k]))[0]
    assert stage.rows_[0] == 6  # the first bucket closed when the second sample arrived


def test_a_repeated_or_older_time_is_ignored() -> None:
    stage = ShapeStage(1, detector=SMALL)
    for k in range(3):
        stage.observe(300.0 * k, np.array([float(k)]))
    before = stage.rows_.copy(), stage.bucket_count_.copy()
    assert not stage.observe(300.0, np.array([99.0])).any()
    assert (stage.rows_ == before[0]).all() and (stage.bucket_count_ == before[1]).all()


def test_peek_scores_the_next_row_and_changes_nothing() -> None:
    values = cyclic(300, seed=4)
    stage, reference = ShapeStage(2, detector=SMALL), ShapeStage(2, detector=SMALL)
    for v in values[:-1]:
        stage.push(np.array([v, 2 * v]))
        reference.push(np.array([v, 2 * v]))
    peeked = stage.peek(np.array([2 * values[-1]]), np.array([1]))
    assert stage.rows_.tolist() == reference.rows_.tolist()
    for name in ("recent_", "block_sum_", "block_squares_", "block_count_"):
        for mine, theirs in zip(getattr(stage, name), getattr(reference, name), strict=True):
            assert np.array_equal(mine, theirs, equal_nan=True)
    assert peeked[0] == pytest.approx(stage.push(np.array([values[-1], 2 * values[-1]]))[1])


def test_series_that_stay_keep_their_state_when_others_come_and_go() -> None:
    a, b, c = cyclic(300, seed=5), cyclic(300, seed=6), cyclic(300, seed=7)
    alone = ShapeStage(1, detector=SMALL)
    expected = [alone.push(np.array([v]))[0] for v in a]
    stage = ShapeStage(2, detector=SMALL)  # a and b
    got = [stage.push(np.array([a[k], b[k]]))[0] for k in range(150)]
    stage = stage.take(np.array([-1, 0]))  # b leaves, c arrives before a
    got += [stage.push(np.array([c[k], a[k]]))[1] for k in range(150, 300)]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_state_size_is_what_the_arrays_hold() -> None:
    stage = ShapeStage(3)
    one = ShapeStage(1)
    assert stage.state_bytes() == pytest.approx(3 * one.state_bytes(), rel=0.01)
    # A week of rows at 5-minute buckets: the ring of compressed values (4 bytes a row)
    # and, per scale, the sums of the past's blocks (17 bytes a block of 12 rows).
    assert 15_000 < one.state_bytes() < 17_000


def test_rows_after_a_gap_settle_as_in_the_whole_series() -> None:
    values = cyclic(400, seed=8)
    gaps = np.array([150, 300])  # rows that follow a gap in time
    stage = ShapeStage(1, detector=SMALL)
    online = [
        stage.push(np.array([v]), after_gap=np.array([k in gaps]))[0] for k, v in enumerate(values)
    ]
    expected = SMALL.score_rows(values, ROWS, gaps)
    np.testing.assert_allclose(online, expected, rtol=0, atol=1e-9)
    # Settling rows give no evidence: the jump across a gap is not an anomaly.
    assert (expected[150 : 150 + ROWS.settle_rows(1)] < SMALL.alarm_level).all()


def test_a_gap_in_the_samples_is_a_gap_in_the_rows() -> None:
    values = cyclic(300, seed=9)
    stamps = 300.0 * np.arange(300)
    stamps[200:] += 300.0 * 12  # an hour without a sample
    stage = ShapeStage(1, detector=SMALL)
    for t, v in zip(stamps, values, strict=True):
        stage.observe(t + 1.0, np.array([v]))
    assert stage.rows_[0] >= 299
    expected = SMALL.score_rows(values, ROWS, np.array([200]))
    np.testing.assert_allclose(stage.score_[0], expected[int(stage.rows_[0]) - 1], atol=1e-9)


def test_an_hourly_series_has_no_gap_between_its_rows() -> None:
    stage = ShapeStage(1, detector=SMALL)
    for k in range(40):
        stage.observe(3600.0 * k, np.array([float(k % 5)]))
    assert stage.rows_[0] >= 39
    assert stage.settle_[0] == 0  # hourly rows are no gaps (only the second row settled)


def test_series_on_shifted_grids_score_as_their_own_bucket_means() -> None:
    rng = np.random.default_rng(10)
    rows, per_bucket, step_s = 200, 10, 30.0
    offsets = np.array([0.0, 30.0, 170.0])
    base = cyclic(rows, seed=11).repeat(per_bucket)
    values = base[None, :] + rng.normal(0, 0.5, (3, rows * per_bucket))
    start_s = 1_772_449_200.0 + 5.0
    stage = ShapeStage(3, detector=SMALL, offsets_s=offsets)
    stamps = start_s + np.arange(rows * per_bucket) * step_s
    closings = np.zeros(len(stamps), dtype=int)
    scores: list[list[float]] = [[], [], []]
    for k, t in enumerate(stamps):
        closed = stage.observe(t, values[:, k])
        closings[k] = closed.sum()
        for s in np.flatnonzero(closed):
            scores[s].append(stage.score_[s])
    assert closings.max() == 1  # the three grids never close in the same cycle
    for s, offset in enumerate(offsets):
        first_end = np.ceil((start_s - offset) / 300.0) * 300.0 + offset
        bucket = np.ceil((stamps - first_end) / 300.0)
        means = [values[s, bucket == b].mean() for b in np.unique(bucket)]
        expected = SMALL.score(np.array(means))
        assert (expected >= SMALL.alarm_level).any()
        np.testing.assert_allclose(scores[s], expected[: len(scores[s])], rtol=0, atol=1e-9)
        assert len(scores[s]) >= len(means) - 1


def test_blocks_of_series_close_their_buckets_in_turns() -> None:
    n = PHASES * SERIES_BLOCK
    stage = ShapeStage(n, detector=SMALL)
    closed = [int(stage.observe(30.0 * k, np.ones(n)).sum()) for k in range(1, 41)]
    # Once the spacing of samples is known (the second one), every 30 s sample closes
    # the buckets of one block: a row per series every 5 minutes.
    assert closed[2:] == [SERIES_BLOCK] * 38
    assert set(stage.rows_.tolist()) <= {3, 4}


def test_offsets_out_of_a_bucket_are_refused() -> None:
    with pytest.raises(ValueError, match="offsets_s"):
        ShapeStage(2, offsets_s=np.array([0.0, 300.0]))


def test_series_keep_their_grid_when_others_come_and_go() -> None:
    stage = ShapeStage(2, offsets_s=np.array([0.0, 120.0]))
    moved = stage.take(np.array([1, -1, 0]))
    assert moved.offset_s_.tolist() == [120.0, 0.0, 0.0]
