"""ShapeStage.take copies kept series' state in blocks of rows, as one gather would."""

from __future__ import annotations

import numpy as np
import pytest

from healer.detect import shape
from healer.detect.shape import ShapeStage
from healer.detect.univariate import DiscordLikelihood

SMALL = DiscordLikelihood(
    shape_points=8,
    segment_s=(0.0, 1200.0),
    history_s=120 * 300.0,
    min_history_rows=1,
    recent_s=3 * 300.0,
    refractory_s=20 * 300.0,
)
ARRAYS = ("rows_", "sum_squares_", "u_", "last_alarm_", "calmed_", "score_", "settle_")
ARRAYS += ("last_row_t_", "spacing_s_", "bucket_sum_", "bucket_count_", "bucket_end_")
LISTS = ("recent_", "block_sum_", "block_squares_", "block_count_")


def test_take_in_blocks_keeps_each_series_state_as_a_single_gather(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(shape, "TAKE_ROWS", 3)  # several blocks, one of them partial
    rng = np.random.default_rng(4)
    stage = ShapeStage(11, detector=SMALL)
    for t in range(40):
        stage.observe(300.0 * t, rng.normal(50.0, 5.0, 11))
    keep = np.array([7, -1, 0, 10, 3, -1, 9, 1, 2, 8, -1, 5, 4, 6, -1], dtype=np.int64)
    taken = stage.take(keep)
    kept, old = np.flatnonzero(keep >= 0), keep[keep >= 0]
    fresh = ShapeStage(1, detector=SMALL)
    for name in ARRAYS:
        mine, before, empty = getattr(taken, name), getattr(stage, name), getattr(fresh, name)
        assert np.array_equal(mine[kept], before[old], equal_nan=True), name
        assert all(
            np.array_equal(mine[j], empty[0], equal_nan=True) for j in np.flatnonzero(keep < 0)
        )
    for name in LISTS:
        for mine, before in zip(getattr(taken, name), getattr(stage, name), strict=True):
            assert np.array_equal(mine[kept], before[old], equal_nan=True), name
    assert taken.rows_[kept].min() > 0  # the state copied is a learned one
