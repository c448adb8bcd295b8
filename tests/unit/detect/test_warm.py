"""Warming a detector from history: warm afterwards, silent while warming, gaps harmless."""

from __future__ import annotations

import numpy as np
from histories import F64, LEVEL, NOISE, SIGNALS, T0

from healer.config import DetectorSettings
from healer.detect.combined import build_detector
from healer.detect.shaped import ShapedDetector
from healer.detect.streaming import StreamingDetector
from healer.detect.warm import onto, wanted, warm
from healer.types import Frame, Signal, WorkloadRef

A = WorkloadRef("shop", "Deployment", "checkout")
B = WorkloadRef("shop", "Deployment", "search")
BUCKET_S = 300.0
SCRAPE_S = 15.0
# A short warm-up, so that a test of a day sees the shape stage take over.
QUICK = DetectorSettings(shape_warmup_buckets=200)


def signals(times: F64, workloads: int, seed: int) -> F64:
    """(W, S, T): every signal at its level with noise, CPU on a daily cycle."""
    rng = np.random.default_rng(seed)
    out = np.empty((workloads, len(SIGNALS), len(times)))
    for s, sig in enumerate(SIGNALS):
        out[:, s, :] = LEVEL[sig] * (1 + NOISE[sig] * rng.standard_normal((workloads, len(times))))
    cpu = SIGNALS.index(Signal.CPU)
    out[:, cpu, :] *= 1 + 0.3 * np.sin(2 * np.pi * times / 86_400.0)
    return out


def frames(start_s: float, end_s: float, step_s: float, *, chunk: int, seed: int) -> list[Frame]:
    """Frames of (start, end] on the step, ``chunk`` steps each, for workloads A and B."""
    times = start_s + step_s * np.arange(1, round((end_s - start_s) / step_s) + 1)
    data = signals(times, 2, seed)
    return [
        Frame(times[i : i + chunk], (A, B), SIGNALS, data[:, :, i : i + chunk])
        for i in range(0, len(times), chunk)
    ]


def shaped(settings: DetectorSettings = QUICK) -> ShapedDetector:
    detector = build_detector(settings)
    assert isinstance(detector, ShapedDetector)
    return detector


def test_wanted_covers_the_shape_stage_and_an_hour_of_scrapes() -> None:
    span = wanted(DetectorSettings())
    assert span.past_s >= 600 * BUCKET_S  # shape_warmup_buckets
    assert 7 * 86_400 < span.past_s < 9 * 86_400  # a week and its slack
    assert span.recent_s == 3600.0
    assert wanted(DetectorSettings(shape_enabled=False)).past_s == 0.0
    assert wanted(DetectorSettings(warm_s=7200)).past_s == 7200.0


def test_a_warmed_detector_has_its_shape_rows_and_a_warm_baseline() -> None:
    now = T0 + 86_400.0
    detector = shaped()
    report = warm(
        detector,
        past=frames(T0, now - 3600, BUCKET_S, chunk=100, seed=1),
        recent=frames(now - 3600, now, SCRAPE_S, chunk=60, seed=2),
        wanted_s=wanted(QUICK).total_s,
    )
    rows = detector.shape_rows()
    assert set(rows) == {(w, s) for w in (A, B) for s in SIGNALS if s is not Signal.REQUEST_RATE}
    assert min(rows.values()) >= QUICK.shape_warmup_buckets
    assert (detector.streaming.seen_s_ >= QUICK.warmup_s).all()
    assert report.workloads == 2 and report.short  # a day, where 8.5 days are wanted
    assert report.first_s == T0 + BUCKET_S and report.last_s == now
    # The live cycle after warming judges with the shape stage, and finds nothing.
    live = frames(now, now + 600, SCRAPE_S, chunk=40, seed=3)
    detection = detector.update(live[0])
    assert not detection.findings
    assert detection.fresh.all()


def test_no_finding_while_warming_nor_from_a_fault_in_the_history() -> None:
    now = T0 + 86_400.0
    recent = frames(now - 3600, now, SCRAPE_S, chunk=20, seed=4)
    for frame in recent[-6:]:  # the last half hour: checkout's errors at 30%
        frame.values[0, SIGNALS.index(Signal.ERROR_RATIO), :] = 0.3
    detector = shaped()
    report = warm(detector, past=frames(T0, now - 3600, BUCKET_S, chunk=50, seed=5), recent=recent)
    assert report.findings_dropped > 0
    # Warming forgot the anomalous run: a finding needs persistence_s of live data.
    live = frames(now, now + 45, SCRAPE_S, chunk=3, seed=6)[0]
    live.values[0, SIGNALS.index(Signal.ERROR_RATIO), :] = 0.3
    assert not detector.update(live).findings


def test_a_gap_in_the_history_teaches_nothing_and_raises_nothing() -> None:
    now = T0 + 86_400.0
    past = frames(T0, now - 3600, BUCKET_S, chunk=288, seed=7)
    whole = past[0]
    whole.values[:, :, 100:160] = np.nan  # five hours without metrics
    detector = shaped()
    report = warm(detector, past=past, recent=frames(now - 3600, now, SCRAPE_S, chunk=20, seed=8))
    rows = detector.shape_rows()
    # A row per bucket of the past and of the recent hour (12), none for an empty bucket.
    assert max(rows.values()) == len(whole.timestamps) + 12 - 60
    assert report.findings_dropped == 0
    detection = detector.update(frames(now, now + 600, SCRAPE_S, chunk=40, seed=9)[0])
    assert not detection.findings


def test_a_workload_missing_from_a_chunk_keeps_what_it_learned() -> None:
    now = T0 + 86_400.0
    past = frames(T0, now - 3600, BUCKET_S, chunk=50, seed=10)
    middle = past[2]
    past[2] = Frame(middle.timestamps, (A,), SIGNALS, middle.values[:1])
    detector = shaped()
    warm(detector, past=past)
    rows = detector.shape_rows()
    assert rows[(B, Signal.CPU)] == rows[(A, Signal.CPU)] - 50


def test_a_streaming_detector_skips_the_past() -> None:
    detector = StreamingDetector(QUICK)
    now = T0 + 86_400.0
    report = warm(
        detector,
        past=frames(T0, now - 3600, BUCKET_S, chunk=100, seed=11),
        recent=frames(now - 3600, now, SCRAPE_S, chunk=60, seed=12),
    )
    assert report.first_s == now - 3600 + SCRAPE_S
    assert (detector.seen_s_ >= QUICK.warmup_s).all()


def test_onto_lays_a_frame_on_more_workloads() -> None:
    frame = frames(T0, T0 + 60, SCRAPE_S, chunk=4, seed=13)[0]
    one = Frame(frame.timestamps, (B,), SIGNALS, frame.values[1:])
    laid = onto(one, (A, B))
    assert np.isnan(laid.values[0]).all()
    np.testing.assert_array_equal(laid.values[1], frame.values[1])


def test_warming_in_bulk_builds_the_state_of_bucket_by_bucket_learning() -> None:
    """The shape stage warmed in bulk against the same frames fed as the live cycle
    feeds them (a bucket at a time, through ``learn_shapes`` and ``update``), with a
    gap, a counter reset (a rate that drops to 0, then a spike) and a workload that
    joins late."""
    now = T0 + 1.5 * 86_400.0
    past = frames(T0, now - 3600, BUCKET_S, chunk=100, seed=14)
    cpu, errors = SIGNALS.index(Signal.CPU), SIGNALS.index(Signal.ERROR_RATIO)
    past[1].values[0, :, 20:50] = np.nan  # checkout's metrics missing for 2.5 hours
    past[2].values[1, errors, 40] = 0.0
    past[2].values[1, errors, 41] = 50.0
    past[0] = Frame(past[0].timestamps, (A,), SIGNALS, past[0].values[:1])  # search joins
    past[3].values[0, cpu, 60:] *= 3.0  # an anomaly in the history: alarms and refractories
    recent = frames(now - 3600, now, SCRAPE_S, chunk=60, seed=15)
    bulk, live = shaped(), shaped()
    warm(bulk, past=past, recent=recent)
    for frame in past:
        live.learn_shapes(onto(frame, (A, B)))
    for frame in recent:
        live.update(frame)
    live.clear_onsets()
    a, b = bulk.stage_, live.stage_
    assert a is not None and b is not None
    assert (b.last_alarm_ >= 0).any()
    np.testing.assert_array_equal(a.rows_, b.rows_)
    for name in ("sum_squares_", "u_", "score_", "settle_", "last_alarm_", "calmed_"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-6, err_msg=name)
    for name in ("recent_", "block_sum_", "block_squares_", "block_count_"):
        for x, y in zip(getattr(a, name), getattr(b, name), strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7, err_msg=name)
    after = frames(now, now + 600, SCRAPE_S, chunk=40, seed=16)[0]
    np.testing.assert_allclose(bulk.update(after).scores, live.update(after).scores, rtol=1e-6)
