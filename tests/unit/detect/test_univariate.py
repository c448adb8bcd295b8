"""The univariate detector and the `score-csv` contract: rows, timestamps, range, online."""

from __future__ import annotations

import csv
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from healer.detect.csvscore import read_series, score_csv
from healer.detect.univariate import (
    DEFAULT_DETECTOR,
    DETECTORS,
    PERIOD_ROWS,
    DiscordLikelihood,
    fill_gaps,
    left_discord,
    past_mean_std,
    refractory,
    shapes_of,
)

ROWS = 3000
DAY_ROWS = 288  # 5-minute samples


def daily_series(n: int = ROWS, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 50.0 + 20.0 * np.sin(2 * np.pi * t / DAY_ROWS) + rng.normal(0.0, 1.0, n)


def write_csv(path: Path, values: np.ndarray, stamps: list[str] | None = None) -> Path:
    start = datetime(2014, 4, 1)
    stamps = stamps or [
        f"{start + timedelta(minutes=5 * i):%Y-%m-%d %H:%M:%S}" for i in range(len(values))
    ]
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(("timestamp", "value"))
        writer.writerows(zip(stamps, (repr(float(v)) for v in values), strict=True))
    return path


def read_output(path: Path) -> list[list[str]]:
    with path.open(newline="") as fh:
        return list(csv.reader(fh))


def test_default_detector_is_registered() -> None:
    assert DEFAULT_DETECTOR in DETECTORS


def test_scores_are_in_unit_range_one_per_row() -> None:
    scores = DiscordLikelihood().score(daily_series())
    assert scores.shape == (ROWS,)
    assert np.all((scores >= 0.0) & (scores <= 1.0))


def test_no_look_ahead_a_prefix_scores_the_same() -> None:
    x = daily_series()
    x[2000:2100] += 30.0
    full = DiscordLikelihood().score(x)
    for cut in (1, 25, 600, 1999, 2050, 2511):
        np.testing.assert_array_equal(DiscordLikelihood().score(x[:cut]), full[:cut])


def test_a_level_shift_scores_higher_than_any_normal_day() -> None:
    x = daily_series()
    x[2200:] += 15.0
    scores = DiscordLikelihood().score(x)
    probation = int(0.15 * ROWS)
    assert scores[2200:2230].max() >= DiscordLikelihood().alarm_level
    assert scores[2200:2230].max() > scores[probation:2200].max()


def test_a_repeating_cycle_stays_quiet() -> None:
    scores = DiscordLikelihood().score(daily_series(seed=3))
    assert np.count_nonzero(scores[450:] >= DiscordLikelihood().alarm_level) <= 2


def test_a_weekly_cycle_stays_quiet_once_a_week_has_been_seen() -> None:
    # Weekdays swing, weekends are nearly flat: the first Monday after the first weekend
    # is new; the following ones are last week's Monday again.
    week_rows = 7 * DAY_ROWS
    t = np.arange(4 * week_rows)
    weekend = (t // DAY_ROWS) % 7 >= 5
    swing = 20.0 * np.sin(2 * np.pi * t / DAY_ROWS) * np.where(weekend, 0.2, 1.0)
    x = 50.0 + swing + np.random.default_rng(1).normal(0.0, 1.0, len(t))
    scores = DiscordLikelihood().score(x)
    assert np.count_nonzero(scores[week_rows + DAY_ROWS :] >= DiscordLikelihood().alarm_level) == 0


def test_units_do_not_matter() -> None:
    x = daily_series()
    x[2200:2230] += 40.0
    scores = DiscordLikelihood().score(x)
    np.testing.assert_allclose(DiscordLikelihood().score(x * 1e6), scores, atol=1e-9)
    np.testing.assert_allclose(DiscordLikelihood().score(x / 1e3), scores, atol=1e-9)


def test_a_burst_long_ago_does_not_deafen_the_detector() -> None:
    # A burst of a million times the noise inflates the running RMS for good (the units
    # of the compressed series). Until the rows before the burst, in the old units, have
    # left the history, the spread of distances is theirs and the series looks calm;
    # after that, a shift must stand out clearly again.
    x = daily_series()
    x[150:153] += 1e6
    shift = 150 + DiscordLikelihood().windows(300.0).history_rows + 50
    x[shift:] += 15.0
    scores = DiscordLikelihood().score(x)
    assert scores[shift : shift + 30].max() > 0.95
    assert scores[600:shift].max() < 0.6  # quiet again once the burst has passed


def test_flat_and_constant_series_are_finite() -> None:
    for x in (np.zeros(500), np.full(500, 7.0), np.repeat([0.0, 1.0], 250)):
        scores = DiscordLikelihood().score(x)
        assert np.all(np.isfinite(scores))
        assert np.all((scores >= 0.0) & (scores <= 1.0))


def test_left_discord_is_zero_on_a_repeat_and_sees_a_new_shape() -> None:
    x = np.tile([0.0, 1.0, 2.0, 1.0], 50)
    assert np.all(left_discord(shapes_of(x, 4, 1), 4, 100)[8:] == 0.0)
    x[150] = 5.0
    assert left_discord(shapes_of(x, 4, 1), 4, 100)[150] > 1.0


def test_shapes_of_segments_are_trailing_means() -> None:
    shapes = shapes_of(np.arange(10.0), points=3, segment_rows=2)
    np.testing.assert_array_equal(shapes[9], [4.5, 6.5, 8.5])
    np.testing.assert_array_equal(shapes[0], [0.0, 0.0, 0.0])


def test_past_statistics_exclude_the_row_itself() -> None:
    mean, std, count = past_mean_std(np.array([1.0, 3.0, 100.0]), rows=10)
    assert mean[2] == pytest.approx(2.0)
    assert std[2] == pytest.approx(1.0)
    assert count[2] == 2


def test_past_statistics_leave_out_values_not_learned_from() -> None:
    mean, _, count = past_mean_std(np.array([1.0, np.nan, 3.0, 100.0]), rows=10)
    assert mean[3] == pytest.approx(2.0)
    assert count[3] == 2


def test_the_windows_follow_the_sampling_period() -> None:
    detector = DiscordLikelihood()
    five = detector.windows(300.0)
    assert five.segment_rows == (1, 12) and five.history_rows == 2160
    assert five.refractory_rows == 150 and five.recent_rows == 5
    hourly = detector.windows(3600.0)
    # An hour is a row: the rows scale keeps its span of hours with a shorter shape.
    assert hourly.segment_rows == (1, 1) and hourly.scale_points == (4, 24)
    assert five.scale_points == (24, 24)
    assert hourly.recent_rows == 1
    assert hourly.history_rows == detector.min_history_rows
    assert hourly.refractory_rows == 12
    assert detector.windows(60.0).history_rows == detector.max_history_rows
    second = detector.windows(1.0)  # hourly means would not fit the longest history
    assert second.segment_rows == (1,) and second.history_rows == detector.max_history_rows


def test_an_hourly_series_is_judged_in_hours() -> None:
    # A daily cycle sampled hourly, shifted up on day 40: the shift is seen, and the
    # days before it are quiet although the history in rows is short.
    rng = np.random.default_rng(5)
    t = np.arange(60 * 24)
    x = 50.0 + 20.0 * np.sin(2 * np.pi * t / 24) + rng.normal(0.0, 1.0, len(t))
    x[40 * 24 :] += 25.0
    scores = DiscordLikelihood().score(x, 3600.0 * t)
    alarm = DiscordLikelihood().alarm_level
    assert scores[40 * 24 : 40 * 24 + 6].max() >= alarm
    # The hours scale's short shapes of pure noise: about one false alarm in ten days.
    assert np.count_nonzero(scores[int(0.15 * len(t)) : 40 * 24] >= alarm) <= 3


def test_an_hour_out_of_line_is_seen_in_an_hourly_series() -> None:
    # A noisy level with a burst of a few hours each day, sampled hourly, two weeks long
    # as an hourly export often is: one hour eight times the noise above the level is an
    # anomaly, though it is a twenty-fourth of a day's shape.
    rng = np.random.default_rng(8)
    t = np.arange(14 * 24)
    x = 50.0 + 10.0 * (np.sin(2 * np.pi * t / 24) > 0.8) + rng.normal(0.0, 1.0, len(t))
    x[250] += 8.0
    scores = DiscordLikelihood().score(x, 3600.0 * t)
    alarm = DiscordLikelihood().alarm_level
    assert scores[250:253].max() >= alarm
    assert np.count_nonzero(scores[int(0.15 * len(t)) : 250] >= alarm) == 0


def test_a_gap_is_not_an_anomaly() -> None:
    # A sensor drops out for six hours and comes back at another point of its cycle.
    x = daily_series()
    stamps = 300.0 * np.arange(ROWS)
    stamps[2000:] += 6 * 3600.0
    scores = DiscordLikelihood().score(x, stamps)
    assert scores[2000:2030].max() < DiscordLikelihood().alarm_level


def test_missing_samples_are_put_back_on_a_line_and_a_long_run_is_a_gap() -> None:
    x, stamps = np.array([0.0, 1.0, 4.0, 5.0]), np.array([0.0, 300.0, 1200.0, 1500.0])
    filled = fill_gaps(x, stamps, 300.0, most_rows=2)
    np.testing.assert_array_equal(filled.values, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    assert filled.real.tolist() == [True, True, False, False, True, True]
    assert len(filled.gaps) == 0
    kept = fill_gaps(x, stamps, 300.0, most_rows=1)  # three periods: a gap
    assert kept.real.all() and kept.gaps.tolist() == [2]


def test_a_cycle_that_goes_flat_is_seen_when_samples_go_missing() -> None:
    # One sample in ten lost at random, as a sensor drops them: a day of rows is no
    # longer a day, unless the missing rows are put back.
    rng = np.random.default_rng(0)
    x = daily_series(seed=0)
    x[2000 : 2000 + DAY_ROWS // 2] = x[2000]  # the cycle goes flat for half a day
    keep = rng.random(ROWS) >= 0.1
    keep[0] = True
    scores = DiscordLikelihood().score(x[keep], 300.0 * np.flatnonzero(keep))
    alarms = np.flatnonzero(keep)[scores >= DiscordLikelihood().alarm_level]
    assert ((alarms >= 2000) & (alarms < 2000 + DAY_ROWS // 2)).any()
    assert not ((alarms >= int(0.15 * ROWS)) & (alarms < 2000)).any()


def test_with_timestamps_no_look_ahead_and_warm_up() -> None:
    x = daily_series()
    stamps = 300.0 * np.arange(ROWS) + np.random.default_rng(2).uniform(-60, 60, ROWS)
    x[2000:2100] += 30.0
    full = DiscordLikelihood().score(x, stamps)
    assert (full[:PERIOD_ROWS] == 0.0).all()
    for cut in (1, 20, 600, 2050):
        np.testing.assert_array_equal(DiscordLikelihood().score(x[:cut], stamps[:cut]), full[:cut])


def test_refractory_keeps_only_the_first_alarm_of_an_event() -> None:
    scores = np.array([0.1, 0.99, 0.995, 0.2, 0.999, 0.999, 0.999, 0.999, 0.5, 0.999])
    out = refractory(scores, 0.99, rows=3, rearm=0.9)
    assert list(np.flatnonzero(out >= 0.99)) == [1, 5, 9]
    # Without a calm spell in between, an alarm does not re-arm, however long it lasts.
    out = refractory(np.full(10, 0.999), 0.99, rows=3, rearm=0.9)
    assert list(np.flatnonzero(out >= 0.99)) == [0]


def test_score_csv_copies_timestamps_and_values(tmp_path: Path) -> None:
    stamps = [f"2014-02-14T14:{m:02d}:00Z" for m in range(60)]
    values = ["1", "2.50", "-3e2"] * 20
    src = tmp_path / "in.csv"
    src.write_text(
        "timestamp,value\n" + "".join(f"{t},{v}\n" for t, v in zip(stamps, values, strict=True))
    )
    score_csv(src, tmp_path / "out.csv")
    rows = read_output(tmp_path / "out.csv")
    assert rows[0] == ["timestamp", "value", "anomaly_score"]
    assert [r[0] for r in rows[1:]] == stamps
    assert [r[1] for r in rows[1:]] == values
    assert all(0.0 <= float(r[2]) <= 1.0 for r in rows[1:])


def test_score_csv_output_of_a_prefix_is_a_prefix(tmp_path: Path) -> None:
    x = daily_series(1200)
    x[900:] *= 1.5
    full = write_csv(tmp_path / "full.csv", x)
    lines = full.read_text().splitlines(keepends=True)
    cut = tmp_path / "cut.csv"
    cut.write_text("".join(lines[:951]))  # header and 950 rows
    score_csv(full, tmp_path / "full-out.csv")
    score_csv(cut, tmp_path / "cut-out.csv")
    assert read_output(tmp_path / "cut-out.csv") == read_output(tmp_path / "full-out.csv")[:951]


def test_repeated_timestamps_are_kept_row_for_row(tmp_path: Path) -> None:
    stamps = ["2014-03-09 01:59:00"] + ["2014-03-09 03:00:00"] * 3 + ["2014-03-09 03:05:00"]
    src = write_csv(tmp_path / "in.csv", np.arange(5.0), stamps)
    assert read_series(src).timestamps == tuple(stamps)


def test_same_seed_same_scores_other_seed_other_scores(tmp_path: Path) -> None:
    # Nothing in the detector is random: a series made from one seed scores the same,
    # bit for bit and byte for byte in the output file, however often it is scored.
    first = write_csv(tmp_path / "a.csv", daily_series(seed=11))
    again = write_csv(tmp_path / "b.csv", daily_series(seed=11))
    other = write_csv(tmp_path / "c.csv", daily_series(seed=12))
    for path in (first, again, other):
        score_csv(path, path.with_suffix(".out"))
    assert first.with_suffix(".out").read_bytes() == again.with_suffix(".out").read_bytes()
    np.testing.assert_array_equal(
        DiscordLikelihood().score(daily_series(seed=11)),
        DiscordLikelihood().score(daily_series(seed=11)),
    )
    scores = [float(r[2]) for r in read_output(first.with_suffix(".out"))[1:]]
    assert scores != [float(r[2]) for r in read_output(other.with_suffix(".out"))[1:]]


def test_no_look_ahead_on_real_series(eval_data: Path) -> None:
    # Real series reach the alarm and re-arm paths that synthetic ones may not.
    for name in (
        "realAWSCloudwatch/grok_asg_anomaly.csv",
        "realAWSCloudwatch/ec2_network_in_5abac7.csv",
    ):
        x = read_series(eval_data / "data" / name).values
        full = DiscordLikelihood().score(x)
        assert np.count_nonzero(full >= DiscordLikelihood().alarm_level) >= 2
        for cut in (700, 1178, 2000, 3331, len(x) - 1):
            np.testing.assert_array_equal(DiscordLikelihood().score(x[:cut]), full[:cut])
