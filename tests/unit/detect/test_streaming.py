"""StreamingDetector on synthetic frames: quiet on noise and slow drift, quick on faults."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from histories import F64, LEVEL, NOISE, PER_HOUR, SIGNALS, STEP_S, T0
from scipy.special import stdtr

from healer.config import DetectorSettings
from healer.detect.streaming import T_DOF, Detection, StreamingDetector, student_t3_tail
from healer.types import Direction, Frame, Signal, WorkloadRef

A = WorkloadRef("shop", "Deployment", "checkout")
B = WorkloadRef("shop", "Deployment", "search")
C = WorkloadRef("web", "Deployment", "storefront")
SETTINGS = DetectorSettings()


def noise(samples: int, workloads: int = 2, seed: int = 0) -> F64:
    """(W, S, T) values: every signal at its level with its relative noise."""
    rng = np.random.default_rng(seed)
    values = np.empty((workloads, len(SIGNALS), samples))
    for s, sig in enumerate(SIGNALS):
        values[:, s, :] = LEVEL[sig] * (1 + NOISE[sig] * rng.standard_normal((workloads, samples)))
    return values


def frame(values: F64, workloads: tuple[WorkloadRef, ...] = (A, B), start: int = 0) -> Frame:
    timestamps = T0 + STEP_S * np.arange(start, start + values.shape[2])
    return Frame(timestamps, workloads[: values.shape[0]], SIGNALS, values)


def feed(
    detector: StreamingDetector,
    values: F64,
    workloads: tuple[WorkloadRef, ...] = (A, B),
    every: int = 2,
    window: int | None = None,
) -> list[Detection]:
    """Feed like the daemon: a frame ending ``every`` samples later each cycle.

    The frame grows from the first sample, or slides with ``window`` samples.
    """
    out = []
    total = values.shape[2]
    ends = [*range(every, total + 1, every)]
    if not ends or ends[-1] != total:
        ends.append(total)
    for end in ends:
        start = 0 if window is None else max(0, end - window)
        out.append(detector.update(frame(values[:, :, start:end], workloads, start)))
    return out


def findings(detections: list[Detection]) -> list[tuple[float, WorkloadRef]]:
    return [(d.at.timestamp(), f.workload) for d in detections for f in d.findings]


def t(index: int) -> float:
    return T0 + STEP_S * index


def col(signal: Signal) -> int:
    return SIGNALS.index(signal)


# ---- quiet ------------------------------------------------------------------------------


def test_pure_noise_for_hours_gives_no_findings() -> None:
    detections = feed(
        StreamingDetector(), noise(6 * PER_HOUR, workloads=3, seed=1), workloads=(A, B, C)
    )
    assert findings(detections) == []


def test_slow_daily_ramp_in_cpu_and_latency_gives_no_findings() -> None:
    values = noise(6 * PER_HOUR, seed=2)
    ramp = np.ones(values.shape[2])
    start, length = 2 * PER_HOUR, 2 * PER_HOUR
    ramp[start : start + length] = 1.0 + 0.5 * np.arange(length) / length
    ramp[start + length :] = 1.5
    values[:, col(Signal.CPU)] *= ramp
    values[:, col(Signal.LATENCY_P99)] *= ramp
    assert findings(feed(StreamingDetector(), values)) == []


def test_single_sample_spike_gives_no_finding() -> None:
    values = noise(3 * PER_HOUR, seed=3)
    k = 2 * PER_HOUR
    values[0, col(Signal.ERROR_RATIO), k] = 0.5
    detections = feed(StreamingDetector(), values, every=1)
    assert detections[k].score_of(A) >= SETTINGS.score_threshold  # seen, but not lasting
    assert findings(detections) == []


@pytest.mark.parametrize(("burst", "found"), [(4, False), (6, True)])
def test_findings_need_the_anomaly_to_last_persistence_s(burst: int, found: bool) -> None:
    values = noise(3 * PER_HOUR, seed=4)
    k = 2 * PER_HOUR
    values[0, col(Signal.ERROR_RATIO), k : k + burst] = 0.3
    assert bool(findings(feed(StreamingDetector(), values, every=1))) is found


def test_step_down_in_memory_gives_no_finding() -> None:
    values = noise(4 * PER_HOUR, seed=5)
    values[0, col(Signal.MEMORY), 2 * PER_HOUR :] *= 0.5
    assert findings(feed(StreamingDetector(), values)) == []


def test_request_rate_alone_never_gives_a_finding() -> None:
    values = noise(4 * PER_HOUR, seed=6)
    values[0, col(Signal.REQUEST_RATE), 2 * PER_HOUR :] *= 5.0
    values[1, col(Signal.REQUEST_RATE), 2 * PER_HOUR :] *= 0.1
    detections = feed(StreamingDetector(), values, every=1)
    assert findings(detections) == []
    assert max(float(d.scores.max()) for d in detections) < SETTINGS.score_threshold


# ---- faults ---------------------------------------------------------------------------


def test_error_ratio_step_is_found_quickly_and_attributed() -> None:
    values = noise(3 * PER_HOUR, seed=7)
    k = 2 * PER_HOUR
    values[0, col(Signal.ERROR_RATIO), k:] = 0.2
    detections = feed(StreamingDetector(), values)
    found = findings(detections)
    assert found, "the error step was not found"
    first_at, workload = found[0]
    assert workload == A
    assert all(w == A for _, w in found)
    assert t(k) <= first_at <= t(k) + SETTINGS.persistence_s + 2 * STEP_S
    finding = next(f for d in detections for f in d.findings)
    assert finding.signals[0].signal == Signal.ERROR_RATIO
    assert finding.signals[0].direction == Direction.UP
    assert finding.signals[0].value == pytest.approx(0.2)
    assert finding.signals[0].baseline == pytest.approx(0.002, abs=0.002)
    assert finding.onset == datetime.fromtimestamp(t(k), UTC)
    assert finding.score >= SETTINGS.score_threshold
    assert finding.model_version == StreamingDetector.model_version


def test_ready_ratio_drop_is_found_with_direction_down() -> None:
    values = noise(3 * PER_HOUR, seed=8)
    values[1, col(Signal.READY_RATIO), 2 * PER_HOUR :] = 0.5
    detections = feed(StreamingDetector(), values)
    found = [f for d in detections for f in d.findings]
    assert found and {f.workload for f in found} == {B}
    assert found[0].signals[0].signal == Signal.READY_RATIO
    assert found[0].signals[0].direction == Direction.DOWN


def test_no_findings_during_warmup() -> None:
    values = noise(PER_HOUR, seed=9)
    values[0, col(Signal.ERROR_RATIO), 20:] = 0.3  # 5 min in, before the 15 min warm-up
    detections = feed(StreamingDetector(), values, every=1)
    warm = int(SETTINGS.warmup_s / STEP_S)
    assert all(not d.findings for d in detections[:warm])


# ---- online, incremental, shapes --------------------------------------------------------


def test_scores_at_t_do_not_depend_on_later_samples() -> None:
    full = noise(3 * PER_HOUR, seed=10)
    cut = 2 * PER_HOUR
    full[0, col(Signal.ERROR_RATIO), cut + 5 :] = 0.4  # a fault after the cut
    prefix = full[:, :, :cut].copy()
    with_future = feed(StreamingDetector(), full, every=1)
    without = feed(StreamingDetector(), prefix, every=1)
    assert len(without) == cut
    for a, b in zip(with_future[:cut], without, strict=True):
        assert a.at == b.at
        np.testing.assert_array_equal(a.scores, b.scores)
        np.testing.assert_array_equal(a.deviations, b.deviations)


@pytest.mark.parametrize(("every", "window"), [(1, None), (2, None), (2, PER_HOUR), (7, 40)])
def test_incremental_feeding_matches_all_at_once(every: int, window: int | None) -> None:
    values = noise(3 * PER_HOUR, seed=11)
    values[1, col(Signal.LATENCY_P99), 3 * PER_HOUR - 30 :] *= 4.0
    at_once = StreamingDetector().update(frame(values))
    last = feed(StreamingDetector(), values, every=every, window=window)[-1]
    assert last.at == at_once.at == datetime.fromtimestamp(t(values.shape[2] - 1), UTC)
    np.testing.assert_array_equal(last.scores, at_once.scores)
    np.testing.assert_array_equal(last.deviations, at_once.deviations)
    np.testing.assert_array_equal(last.levels, at_once.levels)
    assert last.findings == at_once.findings
    assert [f.workload for f in at_once.findings] == [B]


def test_a_frame_without_new_samples_learns_nothing() -> None:
    values = noise(PER_HOUR, seed=12)
    detector = StreamingDetector()
    detector.update(frame(values))
    level = detector.level_.copy()
    again = detector.update(frame(values))
    np.testing.assert_array_equal(detector.level_, level)
    assert again.findings == ()


def test_added_workload_keeps_the_learned_state_of_the_others() -> None:
    values = noise(3 * PER_HOUR, workloads=3, seed=13)
    half = PER_HOUR + PER_HOUR // 2
    values[0, col(Signal.ERROR_RATIO), 2 * PER_HOUR :] = 0.2  # A fails after C appears
    old = values[:2]  # A, B
    reference = feed(StreamingDetector(), old, every=2)

    detector = StreamingDetector()
    before = feed(detector, old[:, :, :half], every=2)
    # C appears, listed first, so that every index moves.
    grown = np.concatenate([values[2:3], values[:2]])
    after = [
        detector.update(frame(grown[:, :, :end], (C, A, B)))
        for end in range(half + 2, values.shape[2] + 1, 2)
    ]
    assert len(before) + len(after) == len(reference)
    for mine, ref in zip(after, reference[len(before) :], strict=True):
        assert mine.workloads == (C, A, B)
        np.testing.assert_array_equal(mine.scores[1:], ref.scores)
        np.testing.assert_array_equal(mine.deviations[1:], ref.deviations)
        assert [f for f in mine.findings if f.workload != C] == list(ref.findings)
    assert any(f.workload == A for d in after for f in d.findings)
    assert not any(f.workload == C for d in after for f in d.findings)


def test_removed_workload_keeps_the_learned_state_of_the_others() -> None:
    values = noise(2 * PER_HOUR, seed=14)
    reference = feed(StreamingDetector(), values[1:2], workloads=(B,), every=2)
    detector = StreamingDetector()
    half = PER_HOUR
    feed(detector, values[:, :, :half], every=2)
    after = [
        detector.update(frame(values[1:2, :, :end], (B,)))
        for end in range(half + 2, values.shape[2] + 1, 2)
    ]
    # B's baseline was learned identically with or without A alongside it.
    np.testing.assert_array_equal(after[-1].levels, reference[-1].levels)
    np.testing.assert_array_equal(after[-1].scores, reference[-1].scores)


def test_changed_signals_are_refused() -> None:
    detector = StreamingDetector()
    detector.update(frame(noise(10)))
    fewer = Frame(T0 + STEP_S * np.arange(10, 20), (A, B), SIGNALS[:-1], noise(10)[:, :-1, :])
    with pytest.raises(ValueError, match="signals"):
        detector.update(fewer)


def test_nan_gaps_do_not_raise_or_give_findings() -> None:
    values = noise(4 * PER_HOUR, workloads=3, seed=15)
    rng = np.random.default_rng(16)
    values[rng.random(values.shape) < 0.1] = np.nan  # scattered lost scrapes
    values[0, col(Signal.ERROR_RATIO), :PER_HOUR] = np.nan  # no traffic for an hour
    values[1, :, 2 * PER_HOUR : 2 * PER_HOUR + 80] = np.nan  # a workload gone for 20 min
    values[2, :, :30] = np.nan  # a workload that appears late
    values[2, col(Signal.LATENCY_P99), -40:] = np.inf  # a broken query
    detections = feed(StreamingDetector(), values, workloads=(A, B, C))
    assert findings(detections) == []
    for d in detections:
        assert np.all(np.isfinite(d.scores))
        assert np.all(np.isfinite(d.deviations))


def test_scores_are_probabilities_even_for_extreme_values() -> None:
    values = noise(3 * PER_HOUR, workloads=3, seed=17)
    values[0, col(Signal.ERROR_RATIO), 2 * PER_HOUR :] = 1.0
    values[1, col(Signal.CPU), 2 * PER_HOUR :: 7] = 1e12
    values[2, col(Signal.MEMORY), 2 * PER_HOUR :] = -5.0
    values[2, col(Signal.RESTARTS), -20:] = 1e6
    detections = feed(StreamingDetector(), values, workloads=(A, B, C), every=1)
    scores = np.array([d.scores for d in detections])
    assert scores.shape == (len(detections), 3)
    assert np.all((scores >= 0.0) & (scores <= 1.0))
    for d in detections:
        assert d.deviations.shape == (3, len(SIGNALS))
        for f in d.findings:
            assert 0.0 <= f.score <= 1.0
            deviations = [abs(s.deviation) for s in f.signals]
            assert deviations == sorted(deviations, reverse=True)


def test_detection_reports_the_latest_timestamp_and_per_workload_scores() -> None:
    values = noise(100, seed=18)
    detection = StreamingDetector(SETTINGS).update(frame(values))
    assert detection.at == datetime.fromtimestamp(t(99), UTC)
    assert detection.workloads == (A, B)
    assert detection.signals == SIGNALS
    assert detection.score_of(B) == float(detection.scores[1])
    assert detection.anomalous_count == 0


def test_workloads_are_looked_up_by_value_and_an_unknown_one_is_not_observed() -> None:
    values = noise(100, seed=19)
    values[0, col(Signal.CPU), -1] = np.nan  # A's newest sample of one signal is missing
    data = frame(values)
    detection = StreamingDetector(SETTINGS).update(data)
    same_b = WorkloadRef("shop", "Deployment", "search")  # equal to B, not B itself
    assert detection.score_of(same_b) == float(detection.scores[1])
    assert detection.observed(same_b)
    assert not detection.observed(WorkloadRef("shop", "Deployment", "cart"))
    np.testing.assert_array_equal(data.series(same_b, Signal.CPU), values[1, col(Signal.CPU)])


def test_score_steps_keeps_every_step_and_learns_as_update_does() -> None:
    values = noise(2 * PER_HOUR, seed=13)
    values[1, col(Signal.LATENCY_P99), PER_HOUR:] *= 4.0
    stepped, updated = StreamingDetector(), StreamingDetector()
    scores = stepped.score_steps(frame(values[:, :, :PER_HOUR]))
    assert scores.shape == (2, PER_HOUR)
    last = feed(updated, values[:, :, :PER_HOUR], every=1)[-1]
    np.testing.assert_array_equal(scores[:, -1], last.scores)
    later = stepped.score_steps(frame(values))
    assert np.all(np.isnan(later[:, :PER_HOUR]))  # scored by the first call
    assert later[1, PER_HOUR + 2] >= SETTINGS.score_threshold > later[0, PER_HOUR + 2]
    np.testing.assert_array_equal(updated.update(frame(values)).scores, later[:, -1])


def test_same_seed_same_scores() -> None:
    runs = [StreamingDetector().score_steps(frame(noise(PER_HOUR, seed=s))) for s in (5, 5, 6)]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


@pytest.mark.parametrize(("gap_h", "found"), [(3.0, False), (0.1, True)])
def test_a_long_gap_starts_the_series_over_a_short_one_does_not(gap_h: float, found: bool) -> None:
    """Latency 50% higher after a gap: after three hours unseen, the series may have
    moved anywhere (no finding from the gap); after six minutes, it is a fault."""
    values = noise(4 * PER_HOUR)
    gap = slice(2 * PER_HOUR, 2 * PER_HOUR + round(gap_h * PER_HOUR))
    values[0, :, gap] = np.nan
    values[0, SIGNALS.index(Signal.LATENCY_P99), gap.stop :] *= 1.5
    detections = feed(StreamingDetector(SETTINGS), values)
    assert any(d.findings for d in detections) is found


def back_after_a_gap(gap_h: float = 3.0) -> tuple[F64, int]:
    """Two hours of noise, ``gap_h`` hours without data on A, then fresh pods: memory at
    60% of its level, climbing back over ten minutes. Returns the values and the first
    sample after the gap."""
    values = noise(int((4 + gap_h) * PER_HOUR))
    back = 2 * PER_HOUR + round(gap_h * PER_HOUR)
    values[0, :, 2 * PER_HOUR : back] = np.nan
    climb = 40  # ten minutes of samples
    values[0, col(Signal.MEMORY), back : back + climb] *= np.linspace(0.6, 1.0, climb)
    return values, back


def test_a_workload_back_after_a_long_gap_warms_up_again_before_it_is_scored() -> None:
    """Fresh pods after three hours unseen: memory climbing back from 60% to normal is
    their warm-up, not a fault, however small the spread learned before the gap."""
    values, back = back_after_a_gap()
    returning = StreamingDetector(SETTINGS)
    feed(returning, values[:, :, : back + 1])
    assert returning.seen_s_[0].max() < SETTINGS.warmup_s  # starting over
    assert returning.seen_s_[1].min() >= SETTINGS.warmup_s
    detector = StreamingDetector(SETTINGS)
    assert findings(feed(detector, values)) == []
    assert (detector.seen_s_[0] >= SETTINGS.warmup_s).all()


def test_a_workload_back_after_a_long_gap_is_scored_again_once_warm() -> None:
    values, back = back_after_a_gap()
    later = back + PER_HOUR
    values[0, col(Signal.LATENCY_P99), later:] *= 4.0
    found = findings(feed(StreamingDetector(SETTINGS), values))
    assert found and all(w == A and at >= t(later) for at, w in found)


def test_closed_form_tail_is_the_student_t_tail() -> None:
    """The tail the deviations are read against is scipy's Student-t with 3 degrees of
    freedom, from a hundredth of a spread to deviations of billions and infinity."""
    t = np.concatenate((np.logspace(-2, 9, 500), [np.inf]))
    np.testing.assert_allclose(student_t3_tail(t), 1.0 - stdtr(T_DOF, t), rtol=0, atol=1e-15)
    harm = np.array([[-2.0, 0.0, np.nan, 3.0]])
    tail = StreamingDetector._tail(harm)
    assert tail[0, :2].tolist() == [0.5, 0.5] and np.isnan(tail[0, 2])
    assert tail[0, 3] == pytest.approx(1.0 - float(stdtr(T_DOF, 3.0)), abs=1e-15)


def test_judge_scores_a_sample_against_the_baselines_and_learns_nothing() -> None:
    detector = StreamingDetector(SETTINGS)
    history = noise(PER_HOUR)
    detector.update(frame(history))
    kept = (detector.level_.copy(), detector.spread_.copy(), detector.seen_s_.copy())
    sample = history[:, :, -1].copy()
    errors = SIGNALS.index(Signal.ERROR_RATIO)
    sample[0, errors] = LEVEL[Signal.ERROR_RATIO] * 30  # A's release fails many requests
    z, scores = detector.judge(sample)
    assert scores[0] > SETTINGS.score_threshold > scores[1]
    assert z[0, errors] > 10
    for before, after in zip(
        kept, (detector.level_, detector.spread_, detector.seen_s_), strict=True
    ):
        np.testing.assert_array_equal(before, after)
    # A sample without values, or a detector not yet warm, scores nothing.
    gap = np.full_like(sample, np.nan)
    assert (detector.judge(gap)[1] == 0).all()
    cold = StreamingDetector(SETTINGS)
    cold.update(frame(history[:, :, :3]))
    assert (cold.judge(sample)[1] == 0).all()
