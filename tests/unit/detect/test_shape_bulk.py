"""The shape stage fed a history in bulk: the state bucket-by-bucket feeding builds."""

from __future__ import annotations

import numpy as np
import pytest

from healer.detect.shape import ShapeStage
from healer.detect.shape_bulk import learn_history
from healer.detect.univariate import DiscordLikelihood

# Small hyperparameters, so that a test's rows wrap every ring and cross refractories.
SMALL = DiscordLikelihood(
    shape_points=8,
    segment_s=(0.0, 1200.0),
    history_s=120 * 300.0,
    min_history_rows=1,
    recent_s=3 * 300.0,
    refractory_s=20 * 300.0,
)
START_S = 1_772_449_200.0
STATE = (
    "rows_",
    "sum_squares_",
    "u_",
    "settle_",
    "last_row_t_",
    "spacing_s_",
    "last_alarm_",
    "calmed_",
    "score_",
    "bucket_end_",
    "closed_end_",
    "bucket_sum_",
    "bucket_count_",
)
PER_SCALE = ("recent_", "block_sum_", "block_squares_", "block_count_")


def histories(rows: int, *, step_s: float = 300.0) -> tuple[np.ndarray, np.ndarray]:
    """Six series at ``step_s``: cyclic ones with an anomaly; one with a gap of a few
    hours; one whose counter resets (a rate that drops to 0 for a bucket, then a spike);
    one that starts late; one with scattered missing samples."""
    rng = np.random.default_rng(7)
    t = np.arange(rows)
    day = 288 * 300.0 / step_s
    values = np.stack(
        [50.0 + 20.0 * np.sin(2 * np.pi * t / (day / (k + 1))) for k in range(6)]
    ) + rng.normal(0.0, 1.0, (6, rows))
    values[0, rows // 2 : rows // 2 + 20] += 40.0  # an anomaly: alarms and refractories
    values[1, rows // 3 : rows // 3 + 40] = np.nan  # a gap
    values[2, rows // 4] = 0.0  # a counter reset read as a rate
    values[2, rows // 4 + 1] = 5_000.0
    values[3, : rows // 5] = np.nan  # a workload that appears later
    values[4, rng.choice(rows, rows // 20, replace=False)] = np.nan
    return START_S + step_s * (t + 1), values


def stages(detector: DiscordLikelihood) -> tuple[ShapeStage, ShapeStage]:
    offsets = np.array([0.0, 0.0, 30.0, 30.0, 150.0, 270.0])
    return tuple(ShapeStage(6, detector=detector, offsets_s=offsets) for _ in range(2))  # type: ignore[return-value]


def assert_same_state(bulk: ShapeStage, live: ShapeStage) -> None:
    for name in STATE:
        np.testing.assert_allclose(
            getattr(bulk, name), getattr(live, name), rtol=1e-6, atol=1e-9, err_msg=name
        )
    for name in PER_SCALE:
        for scale, (a, b) in enumerate(zip(getattr(bulk, name), getattr(live, name), strict=True)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7, err_msg=f"{name}[{scale}]")
    assert bulk.last_t_ == live.last_t_


@pytest.mark.parametrize("chunk", [1, 37, 10_000])
def test_history_in_bulk_builds_the_state_of_bucket_by_bucket(chunk: int) -> None:
    times, values = histories(500)
    bulk, live = stages(SMALL)
    for t in range(len(times)):
        live.observe(float(times[t]), values[:, t])
    for lo in range(0, len(times), chunk):
        learn_history(bulk, times[lo : lo + chunk], values[:, lo : lo + chunk])
    assert (live.last_alarm_ >= 0).any()  # the refractory is exercised
    assert live.rows_.min() > 3 * SMALL.windows(300.0).history_rows  # rings wrapped
    assert_same_state(bulk, live)


def test_scrape_step_samples_in_bulk_close_the_same_buckets() -> None:
    times, values = histories(2400, step_s=60.0)
    bulk, live = stages(SMALL)
    for t in range(len(times)):
        live.observe(float(times[t]), values[:, t])
    for lo in range(0, len(times), 500):
        learn_history(bulk, times[lo : lo + 500], values[:, lo : lo + 500])
    assert_same_state(bulk, live)


def test_the_daemons_windows_in_bulk_build_the_same_state() -> None:
    """The default detector: two scales, a week and a half day of history."""
    times, values = histories(2700)
    bulk, live = stages(DiscordLikelihood())
    for t in range(len(times)):
        live.observe(float(times[t]), values[:, t])
    for lo in range(0, len(times), 288):
        learn_history(bulk, times[lo : lo + 288], values[:, lo : lo + 288])
    assert_same_state(bulk, live)
    # The next live row scores the same on both.
    row = np.full(6, 50.0)
    np.testing.assert_allclose(bulk.peek(row, np.arange(6)), live.peek(row, np.arange(6)))


def test_times_already_observed_are_skipped_and_nothing_new_commits_nothing() -> None:
    times, values = histories(200)
    bulk, live = stages(SMALL)
    learn_history(bulk, times, values)
    for t in range(len(times)):
        live.observe(float(times[t]), values[:, t])
    assert not learn_history(bulk, times[:50], values[:, :50]).any()
    assert not learn_history(bulk, times[:0], values[:, :0]).any()
    assert_same_state(bulk, live)


def test_values_of_another_shape_are_refused() -> None:
    bulk, _ = stages(SMALL)
    with pytest.raises(ValueError, match=r"values: \(6, 3\) expected"):
        learn_history(bulk, np.arange(3.0), np.zeros((5, 3)))
