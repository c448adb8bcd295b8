"""Joint-model benchmark: quality on simulated faults, training time, cycle time at scale.

Trains a version on a benign simulated day, then prints, for each fault scenario, what
the daemon's detector finds with it and with the streaming baselines alone (faults found,
median time to the first alarm, false alarms per 100 workload-hours, NAB-rule standard
score over the workloads' series), and the time of one detector update on a Frame of
10,000 workloads x 7 signals (one new row, an hour of history), median of several.

    python bench/joint.py [--train-hours 12] [--hours 3] [--workloads 10000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime

import numpy as np

from healer.detect.combined import CombinedDetector
from healer.detect.streaming import StreamingDetector
from healer.detect.train import Evaluation, evaluate, train
from healer.history import sim_history
from healer.types import Frame, Signal, WorkloadRef

SCENARIOS = ("memory-leak", "cpu-hog", "bad-release", "overload", "crash-loop", "weekend")


def row(name: str, e: Evaluation) -> str:
    delay = "-" if e.median_delay_s is None else f"{e.median_delay_s:.0f}"
    nab = "-" if e.nab_standard is None else f"{e.nab_standard:.1f}"
    rate = e.false_alarms_per_100_workload_hours
    return f"  {name:<18}{e.detected:>3}/{e.windows:<3}{delay:>9}{rate:>13.2f}{nab:>9}"


def quality(train_hours: float, hours: float) -> CombinedDetector:
    started = time.perf_counter()
    history = sim_history("benign-day", duration_s=train_hours * 3600)
    simulated = time.perf_counter() - started
    started = time.perf_counter()
    result = train(history, now=datetime.now(UTC))
    print(
        f"trained on {train_hours:g} h of benign-day ({history.frame.values.shape[0]} workloads):"
        f" simulated in {simulated:.1f} s, fitted and self-evaluated in "
        f"{time.perf_counter() - started:.1f} s"
    )
    print(f"  {'':<18}{'found':>7}{'delay s':>9}{'FA/100 wl-h':>13}{'NAB std':>9}")
    for name in SCENARIOS:
        held = sim_history(name, duration_s=hours * 3600)
        print(name)
        print(row("streaming alone", evaluate(None, held)))
        print(row("with joint model", evaluate(result.model, held)))
    return CombinedDetector(result.model, version="bench")


# Typical level and relative noise of each signal, in Signal order: a healthy fleet.
LEVELS = np.array([0.5, 0.4, 0.0, 100.0, 0.002, 0.08, 1.0])
NOISE = np.array([0.04, 0.005, 0.0, 0.04, 0.3, 0.04, 0.0])


def frame(workloads: int, steps: int, seed: int) -> Frame:
    rng = np.random.default_rng(seed)
    refs = tuple(WorkloadRef("bench", "Deployment", f"w{i}") for i in range(workloads))
    shape = (workloads, len(Signal), steps)
    values = LEVELS[None, :, None] * (1 + NOISE[None, :, None] * rng.standard_normal(shape))
    timestamps = 1_772_449_200.0 + 15.0 * np.arange(steps)
    return Frame(timestamps, refs, tuple(Signal), values)


def cycle_time(combined: CombinedDetector, workloads: int, repeats: int = 7) -> None:
    hour = frame(workloads, 240 + repeats, seed=1)
    for name, detector in (
        ("streaming alone", StreamingDetector()),
        ("with joint model", CombinedDetector(combined.model, version="bench")),
    ):
        first = Frame(hour.timestamps[:240], hour.workloads, hour.signals, hour.values[:, :, :240])
        detector.update(first)
        times = []
        for k in range(241, 241 + repeats):
            window = Frame(
                hour.timestamps[k - 240 : k],
                hour.workloads,
                hour.signals,
                hour.values[:, :, k - 240 : k],
            )
            started = time.perf_counter()
            detector.update(window)
            times.append(time.perf_counter() - started)
        median = statistics.median(times)
        print(
            f"  {name:<18} {median * 1000:8.1f} ms per cycle "
            f"({workloads * len(Signal) / median:,.0f} points/s)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-hours", type=float, default=12.0)
    parser.add_argument("--hours", type=float, default=3.0)
    parser.add_argument("--workloads", type=int, default=10_000)
    args = parser.parse_args()
    combined = quality(args.train_hours, args.hours)
    print(f"one detector update, {args.workloads:,} workloads x {len(Signal)} signals, 1 h window:")
    cycle_time(combined, args.workloads)


if __name__ == "__main__":
    main()
