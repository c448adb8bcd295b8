"""The daemon's detector with the shape stage: online, deterministic, and quiet on a cycle."""

from __future__ import annotations

import numpy as np
from histories import F64, LEVEL, NOISE, SIGNALS, T0

from healer.config import DetectorSettings
from healer.detect.combined import build_detector
from healer.detect.shaped import ShapedDetector
from healer.detect.signals import POLARITY
from healer.detect.streaming import Detection
from healer.types import Direction, Frame, Signal, WorkloadRef

A = WorkloadRef("shop", "Deployment", "checkout")
B = WorkloadRef("shop", "Deployment", "search")
C = WorkloadRef("web", "Deployment", "storefront")
STEP_S = 60.0
# A short warm-up, so that a test of a few hours sees the shape stage score.
QUICK = DetectorSettings(shape_warmup_buckets=12)
DAY_S = 86_400.0


def values(samples: int, workloads: int, seed: int) -> F64:
    """(W, S, T): signals at their levels and noise; CPU on a cycle, a fault at 70%."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples)
    out = np.empty((workloads, len(SIGNALS), samples))
    for s, sig in enumerate(SIGNALS):
        noise = 1 + NOISE[sig] * rng.standard_normal((workloads, samples))
        out[:, s, :] = LEVEL[sig] * noise
    cpu = SIGNALS.index(Signal.CPU)
    out[:, cpu, :] *= 1 + 0.3 * np.sin(2 * np.pi * t * STEP_S / (4 * 3600.0))
    out[0, cpu, int(0.7 * samples) :] *= 3.0
    return out


def feed(
    detector: ShapedDetector,
    data: F64,
    workloads: tuple[WorkloadRef, ...] = (A, B),
    *,
    every: int = 2,
    window: int = 20,
) -> list[Detection]:
    """Like the daemon: each cycle a frame of the last ``window`` samples, ``every`` later."""
    out = []
    for end in range(every, data.shape[2] + 1, every):
        start = max(0, end - window)
        stamps = T0 + STEP_S * np.arange(start, end)
        frame = Frame(stamps, workloads[: data.shape[0]], SIGNALS, data[:, :, start:end])
        out.append(detector.update(frame))
    return out


def shaped(settings: DetectorSettings = QUICK) -> ShapedDetector:
    detector = build_detector(settings)
    assert isinstance(detector, ShapedDetector)
    return detector


def test_the_shape_stage_warms_and_scores() -> None:
    # A day: the row scale learns its reference from its 48th row on, and has the
    # spread of a dozen hours of distances by the fault at 70%.
    detector = shaped()
    detections = feed(detector, values(1440, 2, seed=1))
    assert detector.stage_ is not None
    assert (detector.stage_.rows_ >= QUICK.shape_warmup_buckets).all()
    assert all(np.all((d.scores >= 0) & (d.scores <= 1)) for d in detections)
    found = [k for k, d in enumerate(detections) if d.findings]
    assert found and 2 * found[0] >= int(0.7 * 1440)  # not before the fault
    assert {d.findings[0].workload for d in detections if d.findings} == {A}


def test_no_look_ahead_a_cut_frame_scores_the_same() -> None:
    data = values(240, 2, seed=2)
    full = feed(shaped(), data)
    cut = feed(shaped(), data[:, :, :150])
    assert len(cut) == 75
    for mine, theirs in zip(cut, full, strict=False):
        assert mine.at == theirs.at
        assert np.array_equal(mine.scores, theirs.scores)
        assert mine.findings == theirs.findings


def test_the_same_data_gives_the_same_scores() -> None:
    data = values(200, 2, seed=3)
    first, second = feed(shaped(), data), feed(shaped(), data)
    assert [d.scores.tolist() for d in first] == [d.scores.tolist() for d in second]


def test_a_workload_keeps_its_state_when_others_come_and_go() -> None:
    data = values(240, 3, seed=4)
    reference = feed(shaped(), data[:1], (A,))
    detector = shaped()
    both = feed(detector, data[:2, :, :120], (A, B))
    stamps = T0 + STEP_S * np.arange(100, 240)
    moved = data[[2, 0], :, 100:]  # B leaves, C arrives before A
    later = []
    for end in range(22, 141, 2):
        frame = Frame(stamps[end - 20 : end], (C, A), SIGNALS, moved[:, :, end - 20 : end])
        later.append(detector.update(frame))
    got = [d.score_of(A) for d in both] + [d.score_of(A) for d in later]
    assert got == [d.score_of(A) for d in reference]


def test_a_daily_cycle_is_not_a_finding_once_the_shape_is_warm() -> None:
    """Streaming baselines flag the daily peaks of a sharp cycle; the shape stage has seen
    them before. Two days warm it up; the third is watched."""
    step_s, days = 300.0, 3
    samples = int(days * DAY_S / step_s)
    rng = np.random.default_rng(5)
    t = np.arange(samples) * step_s
    data = np.empty((1, len(SIGNALS), samples))
    for s, sig in enumerate(SIGNALS):
        data[0, s] = LEVEL[sig] * (1 + NOISE[sig] * rng.standard_normal(samples))
    peak = np.exp(-0.5 * (((t % DAY_S) - 0.6 * DAY_S) / 1800.0) ** 2)  # an hour-wide peak
    data[0, SIGNALS.index(Signal.CPU)] *= 1 + 2.0 * peak
    found = {}
    for name, settings in (("shape", DetectorSettings()), ("streaming", None)):
        detector = build_detector(settings or DetectorSettings(shape_enabled=False))
        third_day = []
        for k in range(samples):
            frame = Frame(T0 + t[k : k + 1], (A,), SIGNALS, data[:, :, k : k + 1])
            detection = detector.update(frame)
            if t[k] >= 2 * DAY_S + 3600.0:
                third_day.extend(detection.findings)
        found[name] = third_day
    assert found["streaming"]
    assert found["shape"] == []


def fault_then_fix(
    days: float,
    fault_at_s: float,
    fault_s: float,
    seed: int,
    *,
    signal: Signal = Signal.ERROR_RATIO,
    factor: float = 50.0,
) -> tuple[F64, F64]:
    """(timestamps, (1, S, T) values) at 5-minute steps: levels and noise, and ``signal``
    (by default the error ratio) ``factor`` times its level for ``fault_s`` from
    ``fault_at_s``, then back."""
    step_s = 300.0
    t = np.arange(int(days * DAY_S / step_s)) * step_s
    rng = np.random.default_rng(seed)
    data = np.empty((1, len(SIGNALS), len(t)))
    for s, sig in enumerate(SIGNALS):
        data[0, s] = LEVEL[sig] * (1 + NOISE[sig] * rng.standard_normal(len(t)))
    data[0, SIGNALS.index(Signal.ERROR_RATIO)] = np.abs(data[0, SIGNALS.index(Signal.ERROR_RATIO)])
    fault = (t >= fault_at_s) & (t < fault_at_s + fault_s)
    data[0, SIGNALS.index(signal), fault] *= factor
    return T0 + t, data


def findings_of(detector: ShapedDetector, stamps: F64, data: F64) -> list[Detection]:
    out = []
    for k in range(len(stamps)):
        frame = Frame(stamps[k : k + 1], (A,), SIGNALS, data[:, :, k : k + 1])
        out.append(detector.update(frame))
    return out


def test_a_signal_back_at_its_level_after_a_fault_is_a_recovery_not_a_finding() -> None:
    """The shape of a fault and of its end are both novel for hours; only the fault,
    while the error ratio stands above its baseline, is a finding."""
    fault_at_s, fault_s = 2.5 * DAY_S, 1800.0
    stamps, data = fault_then_fix(3.5, fault_at_s, fault_s, seed=6)
    detections = findings_of(shaped(DetectorSettings(shape_warmup_buckets=400)), stamps, data)
    fixed_at = T0 + fault_at_s + fault_s
    during = [f for d in detections for f in d.findings if d.at.timestamp() < fixed_at]
    after = [f for d in detections for f in d.findings if d.at.timestamp() >= fixed_at]
    assert during, "the fault is found"
    assert during[0].signals[0].signal == Signal.ERROR_RATIO
    assert during[0].signals[0].direction == Direction.UP
    assert after == []


def test_every_finding_is_explained_by_a_harmful_deviation_it_lists() -> None:
    """Whatever fires, the finding names a signal on its harmful side by three spreads
    or more: never a score of 1.00 explained by an error ratio zero spreads below its level."""
    stamps, data = fault_then_fix(3.5, 2.5 * DAY_S, 1800.0, seed=7)
    detector = shaped(DetectorSettings(shape_warmup_buckets=400))
    findings = [f for d in findings_of(detector, stamps, data) for f in d.findings]
    assert findings
    for finding in findings:
        top = finding.signals[0]
        harm = top.deviation * POLARITY[top.signal]
        assert harm >= 3.0, finding


def test_a_lasting_shift_counts_against_the_level_before_it_and_its_end_does_not() -> None:
    """Latency 30% up for six hours, some eight spreads: within four hours the streaming
    baseline has learned the new level (the deviation it reads falls under three
    spreads) while the shape stage's alarm episode goes on. Judged against the baseline
    from before the shift, the latency still stands on its harmful side: the finding
    stays, and names it. Its return down to the old level is a novel shape as well, on
    the harmless side: no finding."""
    shift_at_s, shift_s = 2.5 * DAY_S, 6 * 3600.0
    stamps, data = fault_then_fix(
        3.0, shift_at_s, shift_s, seed=8, signal=Signal.LATENCY_P99, factor=1.3
    )
    detector = shaped(DetectorSettings(shape_warmup_buckets=400))
    detections = findings_of(detector, stamps, data)
    latency = SIGNALS.index(Signal.LATENCY_P99)
    shifted_from, back_at = T0 + shift_at_s, T0 + shift_at_s + shift_s
    caught_up = [
        d
        for d in detections
        if shifted_from <= d.at.timestamp() < back_at and d.deviations[0, latency] < 3.0
    ]
    assert caught_up, "the streaming baseline learns the shifted level"
    kept = [d.findings[0] for d in caught_up if d.findings]
    assert kept, "the shift is still a finding once the baseline has learned it"
    for finding in kept:
        top = finding.signals[0]
        assert top.signal == Signal.LATENCY_P99 and top.direction == Direction.UP
        assert top.deviation >= 3.0 and top.baseline < 1.1 * LEVEL[Signal.LATENCY_P99]
    after = [f for d in detections for f in d.findings if d.at.timestamp() >= back_at]
    assert after == []


def test_a_spike_over_before_its_shape_alarm_is_found_at_the_spike() -> None:
    """Latency half as high again for one 5-minute sample, then back: the shape stage
    alarms a sample later, when the latency stands at its level again. The alarm is the
    spike's: a finding, naming the latency as it stood at the spike."""
    spike_at_s, spike_s = 2.5 * DAY_S, 300.0
    stamps, data = fault_then_fix(
        3.0, spike_at_s, spike_s, seed=9, signal=Signal.LATENCY_P99, factor=1.5
    )
    detector = shaped(DetectorSettings(shape_warmup_buckets=400))
    detections = findings_of(detector, stamps, data)
    back_at = T0 + spike_at_s + spike_s
    found = [f for d in detections for f in d.findings if d.at.timestamp() >= back_at]
    assert found, "the spike is found after it is over"
    latency = SIGNALS.index(Signal.LATENCY_P99)
    at_level = [d for d in detections if d.findings and d.at.timestamp() >= back_at]
    assert abs(at_level[0].deviations[0, latency]) < 3.0, "found once back at its level"
    top = found[0].signals[0]
    assert top.signal == Signal.LATENCY_P99 and top.direction == Direction.UP
    assert top.deviation >= 3.0 and top.value > 1.3 * LEVEL[Signal.LATENCY_P99]


def test_a_drift_after_a_fixed_fault_is_not_judged_against_the_level_before_it() -> None:
    """Latency half as high again for a quarter of an hour, then fixed; from half an hour
    later it drifts up by five spreads over three hours, as a daily cycle does, slowly
    enough for its baseline to follow. The shape stage's alarm episode about the fault
    lasts hours longer; the fault it was about is over, so the drift is judged against
    where the latency stands now, not against its level from before the fault."""
    fault_at_s, fault_s = 2.5 * DAY_S, 900.0
    stamps, data = fault_then_fix(
        3.5, fault_at_s, fault_s, seed=10, signal=Signal.LATENCY_P99, factor=1.5
    )
    latency = SIGNALS.index(Signal.LATENCY_P99)
    drift_from = T0 + fault_at_s + fault_s + 1800.0
    rise = np.clip((stamps - drift_from) / (3 * 3600.0), 0.0, 1.0)
    data[0, latency] += 5 * NOISE[Signal.LATENCY_P99] * LEVEL[Signal.LATENCY_P99] * rise
    detector = shaped(DetectorSettings(shape_warmup_buckets=400))
    detections, spent = [], []
    for k in range(len(stamps)):
        frame = Frame(stamps[k : k + 1], (A,), SIGNALS, data[:, :, k : k + 1])
        detections.append(detector.update(frame))
        spent.append(bool(detector.spent_[0, latency]))
    fixed_at = T0 + fault_at_s + fault_s
    during = [f for d in detections for f in d.findings if d.at.timestamp() < fixed_at]
    assert during, "the fault is found"
    risen = int(np.searchsorted(stamps, drift_from + 3 * 3600.0))
    assert spent[risen], "the episode about the fault goes on, spent, once the drift is up"
    after = [f for d in detections for f in d.findings if d.at.timestamp() >= fixed_at + 600.0]
    assert after == []
