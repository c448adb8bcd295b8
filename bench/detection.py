"""Detection benchmark: NAB-rule scores on the development set, and detection speed.

healer has two detectors of one series, and this prints the figures of both:

- the univariate detector behind `healer score-csv` (``--detector``, default the
  default one), which NAB's rules judge: its three profile scores (standard,
  reward_low_FP_rate, reward_low_FN_rate) on the labelled series in
  ``HEALER_EVAL_DATA`` (default ``../shared/data/nab-dev``), per category and overall,
  and their spread over random half splits of the files, each half with its own
  threshold (as a held-out set of the same size would be scored) and with the threshold
  of the other half;
- the detector the daemon runs, exactly as ``build_detector(DetectorSettings())`` builds
  it (streaming baselines and the shape stage): the same scores, each series fed to its
  own detector as one workload, one sample per cycle at the series' own timestamps, the
  value as a signal harmful upwards (cpu) and one harmful downwards (ready_ratio), since
  a NAB series may break either way.

Then the costs: points per second of the per-signal streaming detector on a Frame of
10,000 workloads x 7 signals, one new timestamp per cycle as in the daemon (one thread);
the shape stage's time per closed bucket and its state for the same Frame (its scored signals); and
`healer score-csv` on a 20,000-row file (reading, scoring and writing the CSV).

Beside the whole-set scores, both detectors are judged as on kinds of series never tuned
on: leave one category out (each category scored at the threshold best on the others;
the mean and spread over the categories with anomalies), and variants derived from the
development files alone: every realAWSCloudwatch series as hourly means (label windows
kept in time), and every series with jittered timestamps, dropped rows and gaps of
half an hour to half a day. They are printed at their own best threshold and at the
whole development set's.

Where the data is absent it says so and prints the speeds alone; in CI (``CI=true``) a
missing data folder is a failure (exit code 1).

Commands behind the figures in the README and the issue notes, from the repository
(``LABELS`` is ``../shared/data/nab-dev/labels/combined_windows.json``):

    PYTHONPATH=$PWD python bench/detection.py --splits 10 --out /tmp/det --daemon-variants
    python3 ../shared/tools/nab_score.py /tmp/det --labels LABELS   # the same scores
    PYTHONPATH=$PWD python bench/detection.py --no-daemon --no-speed   # score-csv alone
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits

from healer.config import DetectorSettings
from healer.detect.combined import build_detector
from healer.detect.csvscore import (
    labelled_files,
    read_labels,
    read_series,
    score_csv,
    seconds,
    window_rows,
    write_scores,
)
from healer.detect.nab import LabelledScores, evaluate, evaluate_at
from healer.detect.shape import ShapeStage
from healer.detect.signals import polarity
from healer.detect.streaming import StreamingDetector
from healer.detect.univariate import DEFAULT_DETECTOR, DETECTORS, PAST_BLOCK_ROWS
from healer.types import Frame, Signal, WorkloadRef

REPO = Path(__file__).resolve().parent.parent
SPEED_ROWS = 20_000
STEP_MINUTES = 5
FRAME_WORKLOADS = 10_000
FRAME_CYCLES = 30  # timed cycles, one new timestamp each
FRAME_HISTORY = 20  # timestamps learned before the timed cycles
SCRAPE_S = 15.0
SHAPE_SERIES = 2_000  # series the shape stage's cost is measured on
SHAPE_CLOSINGS = 5
HTM = "72.3 / 69.1 / 76.0"
F64 = NDArray[np.float64]


@dataclass(frozen=True)
class Case:
    """One labelled series: values, timestamps in seconds, and its windows as rows."""

    key: str
    values: F64
    seconds: F64
    windows: tuple[tuple[int, int], ...]

    @property
    def category(self) -> str:
        return self.key.split("/")[0]

    def time_windows(self) -> list[tuple[float, float]]:
        return [(float(self.seconds[lo]), float(self.seconds[hi])) for lo, hi in self.windows]


def read_dev_set(data: Path) -> list[Case]:
    labels_path = data / "labels" / "combined_windows.json"
    labels = read_labels(labels_path)
    return [
        Case(
            path.relative_to(data / "data").as_posix(),
            series.values,
            seconds(series),
            window_rows(series, labels[key], labels_path),
        )
        for key, path in labelled_files(data / "data")
        if key in labels
        for series in (read_series(path),)
    ]


def rows_in(stamps: F64, windows: list[tuple[float, float]]) -> tuple[tuple[int, int], ...]:
    """Label windows given in time as row ranges of a new sampling of the series: the rows
    whose time falls inside; a window left without a row is dropped."""
    out = []
    for start, end in windows:
        lo = int(np.searchsorted(stamps, start, side="left"))
        hi = int(np.searchsorted(stamps, end, side="right")) - 1
        if hi >= lo:
            out.append((lo, hi))
    return tuple(out)


def hourly(case: Case) -> Case:
    """The series as hourly means, each stamped at the start of its hour; a window holds the
    hours that overlap it. NAB's windows are a share of a file's length, so kept in time
    they are what NAB would have drawn on the hourly file."""
    hour = np.floor(case.seconds / 3600.0)
    first, index = np.unique(hour, return_inverse=True)
    means = np.bincount(index, case.values) / np.bincount(index)
    stamps = first * 3600.0
    windows = [(np.floor(a / 3600.0) * 3600.0, b) for a, b in case.time_windows()]
    return Case(case.key, means, stamps, rows_in(stamps, windows))


def gappy(case: Case, seed: int) -> Case:
    """The series with irregular timestamps and gaps, as a sensor that drops out: every
    timestamp moved by up to a fifth of the median spacing, 5% of the rows dropped
    alone, and eight gaps of half an hour to half a day."""
    rng = np.random.default_rng(seed)
    n = len(case.values)
    step = float(np.median(np.diff(case.seconds)))
    keep = rng.random(n) >= 0.05
    for start, hours in zip(rng.integers(0, n, 8), rng.uniform(0.5, 12.0, 8), strict=True):
        keep[start : start + int(hours * 3600.0 / step)] = False
    keep[0] = True
    stamps = case.seconds + rng.uniform(-0.2, 0.2, n) * step
    stamps = stamps[keep]
    return Case(case.key, case.values[keep], stamps, rows_in(stamps, case.time_windows()))


def variants(dev: list[Case]) -> dict[str, list[Case]]:
    """Series derived from the development files alone, modelling kinds they lack."""
    return {
        "hourly means of realAWSCloudwatch": [
            hourly(c) for c in dev if c.category == "realAWSCloudwatch"
        ],
        "irregular timestamps and gaps, every file": [gappy(c, seed) for seed, c in enumerate(dev)],
    }


def print_scores(title: str, items: Sequence[LabelledScores]) -> None:
    groups = {"all": list(items)}
    for category in sorted({item.key.split("/")[0] for item in items}):
        groups[category] = [item for item in items if item.key.startswith(category + "/")]
    # The series without anomalies count only through their false positives.
    groups["artificial (both)"] = [item for item in items if item.key.startswith("artificial")]
    print(title)
    for name, group in groups.items():
        if not any(item.windows for item in group):
            continue  # a set without anomalies has no normalised score
        cells = " / ".join(f"{r.normalized:5.1f}" for r in evaluate(group))
        print(f"  {name:<24} {len(group):3d} files  {cells}")


def print_loco(items: Sequence[LabelledScores]) -> dict[str, F64]:
    """Leave one category out: each category scored at the threshold (per profile) that
    is best on the other categories, as a kind of series never tuned on would be.

    A category without anomalies has no normalised score; its false-positive rows at
    that threshold are printed. Returns the threshold per profile chosen on all files.
    """
    categories = sorted({item.key.split("/")[0] for item in items})
    print("  leave one category out (threshold from the others; standard / low FP / low FN):")
    held_scores = []
    for category in categories:
        held = [item for item in items if item.key.split("/")[0] == category]
        rest = [item for item in items if item.key.split("/")[0] != category]
        results = [
            evaluate_at(held, fitted.threshold, (fitted.profile,))[0] for fitted in evaluate(rest)
        ]
        if any(item.windows for item in held):
            cells = " / ".join(f"{r.normalized:5.1f}" for r in results)
            held_scores.append([r.normalized for r in results])
        else:
            cells = " / ".join(
                f"{sum(f.false_positives for f in r.files)} FP rows" for r in results
            )
        chosen = ", ".join(f"{r.threshold:.6g}" for r in results)
        print(f"    {category:<24} {len(held):3d} files  {cells}  (thresholds {chosen})")
    table = np.array(held_scores)
    mean = " / ".join(f"{v:5.1f}" for v in table.mean(axis=0))
    spread = " / ".join(f"{v:5.1f}" for v in table.max(axis=0) - table.min(axis=0))
    print(f"    {'mean of the scored':<24}            {mean}  (spread max-min {spread})")
    return {r.profile.name: np.array(r.threshold) for r in evaluate(items)}


def print_variants(
    name: str, score: Callable[[Case], F64], dev: list[Case], thresholds: dict[str, F64]
) -> None:
    """The derived variants: own best thresholds, and the development set's thresholds."""
    for title, cases in variants(dev).items():
        items = [LabelledScores(c.key, score(c), c.windows) for c in cases]
        fitted = evaluate(items)
        own = " / ".join(f"{r.normalized:5.1f}" for r in fitted)
        fixed = [
            evaluate_at(items, float(thresholds[r.profile.name]), (r.profile,))[0] for r in fitted
        ]
        at_dev = " / ".join(f"{r.normalized:5.1f}" for r in fixed)
        print(f"  {name}, {title} ({len(items)} files): own threshold {own}; dev's {at_dev}")


def print_spread(items: Sequence[LabelledScores], splits: int) -> None:
    """Standard-profile scores of random halves: own threshold, and the other half's."""
    rng = np.random.default_rng(0)
    own, other = [], []
    for _ in range(splits):
        order = rng.permutation(len(items))
        halves = [
            [items[i] for i in order[: len(items) // 2]],
            [items[i] for i in order[len(items) // 2 :]],
        ]
        fitted = [evaluate(half)[0] for half in halves]
        for half, mine, theirs in zip(halves, fitted, fitted[::-1], strict=True):
            own.append(mine.normalized)
            other.append(evaluate_at(half, theirs.threshold)[0].normalized)
    for name, values in (("own threshold", own), ("other half's threshold", other)):
        low, mid, high = np.percentile(values, [10, 50, 90])
        print(
            f"  {splits} random half splits, {name}: standard median {mid:5.1f}, "
            f"10th-90th percentile {low:5.1f} .. {high:5.1f}"
        )


def univariate_scores(
    dev: list[Case], data: Path, detector: str, splits: int, out: Path | None
) -> None:
    score = DETECTORS[detector]
    items = [LabelledScores(c.key, score(c.values, c.seconds), c.windows) for c in dev]
    print_scores(f"score-csv detector {detector!r} on {data} (standard / low FP / low FN)", items)
    thresholds = print_loco(items)
    print_spread(items, splits)
    print_variants("score-csv", lambda c: score(c.values, c.seconds), dev, thresholds)
    if out is not None:
        for c, item in zip(dev, items, strict=True):
            series = read_series(data / "data" / c.key)
            write_scores(out / c.key, series, item.scores)
        print(f"  score-csv outputs written to {out} (check: ../shared/tools/nab_score.py {out})")


def daemon_score(case: Case) -> F64:
    """One series through its own daemon detector, one row per update, as a daemon
    scraping at the series' own timestamps would feed it; a row's score is the
    workload's score after its update (a timestamp not after the last is not new data:
    it scores 0)."""
    workloads = (WorkloadRef("nab", "Deployment", "series"),)
    signals = (Signal.CPU, Signal.READY_RATIO)
    detector = build_detector(DetectorSettings())
    scores = np.zeros(len(case.values))
    for i, value in enumerate(case.values):
        frame = Frame(case.seconds[i : i + 1], workloads, signals, np.full((1, 2, 1), value))
        scores[i] = detector.update(frame).scores[0]
    return scores


def daemon_scores(dev: list[Case], data: Path, with_variants: bool) -> None:
    with threadpool_limits(limits=1):
        items = [LabelledScores(c.key, daemon_score(c), c.windows) for c in dev]
        print_scores(f"daemon's detector on {data} (standard / low FP / low FN)", items)
        thresholds = print_loco(items)
        if with_variants:
            print_variants("daemon", daemon_score, dev, thresholds)


def frame_speed() -> None:
    rng = np.random.default_rng(0)
    signals = tuple(Signal)
    steps = FRAME_HISTORY + FRAME_CYCLES
    shape = (FRAME_WORKLOADS, len(signals), steps)
    values = 1.0 + 0.05 * rng.standard_normal(shape)
    workloads = tuple(WorkloadRef("bench", "Deployment", f"w{i}") for i in range(FRAME_WORKLOADS))
    timestamps = 1.7e9 + SCRAPE_S * np.arange(steps)
    detector = StreamingDetector()
    took_s = []
    with threadpool_limits(limits=1):
        detector.update(
            Frame(timestamps[:FRAME_HISTORY], workloads, signals, values[..., :FRAME_HISTORY])
        )
        for end in range(FRAME_HISTORY + 1, steps + 1):
            frame = Frame(
                timestamps[end - FRAME_HISTORY : end],
                workloads,
                signals,
                values[..., end - FRAME_HISTORY : end],
            )
            took_s.append(timed(lambda frame=frame: detector.update(frame)))
    wall, cpu = np.median(took_s, axis=0)
    points = FRAME_WORKLOADS * len(signals)
    print(
        f"streaming detector, {FRAME_WORKLOADS:,} workloads x {len(signals)} signals, one new "
        f"timestamp per cycle, median of {FRAME_CYCLES} cycles: {wall * 1e3:.1f} ms "
        f"({points / wall:,.0f} points/s), CPU {cpu * 1e3:.1f} ms ({points / cpu:,.0f} "
        "points/s per core); target 1,000,000 points/s or more on one core"
    )


def shape_cost() -> None:
    """Time of one closed bucket for every series of 10,000 workloads' scored signals.

    The state of that many series is several GB, so the time is measured on
    ``SHAPE_SERIES`` series with full histories (random rings: the work does not depend
    on the values) and scaled; the work is linear in the number of series.
    """
    rng = np.random.default_rng(0)
    stage = ShapeStage(SHAPE_SERIES)
    for ring in (stage.u_, *stage.recent_, *stage.block_sum_, *stage.block_squares_):
        ring[:] = rng.random(ring.shape)
    for counts in stage.block_count_:
        counts[:] = PAST_BLOCK_ROWS
    stage.rows_[:] = 10 * stage.windows_.history_rows
    stage.sum_squares_[:] = stage.rows_
    took_s = []
    with threadpool_limits(limits=1):
        for _ in range(SHAPE_CLOSINGS):
            values = rng.random(SHAPE_SERIES)
            took_s.append(timed(lambda values=values: stage.push(values)))
    wall, cpu = np.median(took_s, axis=0)
    # The daemon's stage holds the signals that are scored (a polarity), not all seven.
    scored = int(np.count_nonzero(polarity(tuple(Signal))))
    series = FRAME_WORKLOADS * scored
    per_series = stage.state_bytes() / SHAPE_SERIES
    scaled_s = cpu * series / SHAPE_SERIES
    print(
        f"shape stage, one closed bucket (every {DetectorSettings().shape_bucket_s:.0f} s), "
        f"median of {SHAPE_CLOSINGS} on {SHAPE_SERIES:,} series: {wall * 1e3:.0f} ms wall, "
        f"{cpu * 1e3:.0f} ms CPU ({cpu / SHAPE_SERIES * 1e6:.0f} us per series); for "
        f"{FRAME_WORKLOADS:,} workloads x {scored} scored signals: {scaled_s:.1f} s "
        f"CPU per bucket, state {per_series / 1e3:.0f} kB per series, "
        f"{per_series * series / 1e9:.1f} GB"
    )


def csv_speed(detector: str) -> None:
    rng = np.random.default_rng(0)
    t = np.arange(SPEED_ROWS)
    values = 50 + 20 * np.sin(2 * np.pi * t / 288) + rng.normal(0, 2, SPEED_ROWS)
    start = datetime(2014, 1, 1)
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "series.csv"
        lines = (
            f"{start + timedelta(minutes=STEP_MINUTES * i):%Y-%m-%d %H:%M:%S},{v:.3f}\n"
            for i, v in enumerate(values)
        )
        source.write_text("timestamp,value\n" + "".join(lines))
        score_csv(source, Path(folder) / "warm.csv", detector=detector)
        target = Path(folder) / "out.csv"
        took_s = [timed(lambda: score_csv(source, target, detector=detector)) for _ in range(5)]
    wall, cpu = np.median(took_s, axis=0)
    print(
        f"score-csv on {SPEED_ROWS:,} rows, median of 5: {wall:.3f} s ({SPEED_ROWS / wall:,.0f} "
        f"rows/s), CPU {cpu:.3f} s; target under 1 s"
    )


def timed(work: Callable[[], object]) -> tuple[float, float]:
    """Wall-clock and CPU seconds of one call. On a shared machine the wall clock counts
    the time other processes had the core; the CPU time is this process's own work."""
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--detector", default=DEFAULT_DETECTOR, choices=sorted(DETECTORS))
    default_data = os.environ.get("HEALER_EVAL_DATA", str(REPO.parent / "shared/data/nab-dev"))
    parser.add_argument("--data", type=Path, default=Path(default_data))
    parser.add_argument("--splits", type=int, default=40, help="random half splits")
    parser.add_argument("--out", type=Path, help="write the score-csv outputs here")
    parser.add_argument(
        "--daemon-variants", action="store_true", help="score the variants with the daemon too"
    )
    parser.add_argument("--no-daemon", action="store_true", help="skip the daemon's detector")
    parser.add_argument("--no-speed", action="store_true", help="skip the speed figures")
    args = parser.parse_args()
    status = 0
    if (args.data / "labels" / "combined_windows.json").is_file():
        dev = read_dev_set(args.data)
        univariate_scores(dev, args.data, args.detector, args.splits, args.out)
        if not args.no_daemon:
            daemon_scores(dev, args.data, args.daemon_variants)
        print(f"(Numenta HTM on the same set: {HTM})")
    else:
        print(f"no evaluation data at {args.data} (set HEALER_EVAL_DATA); scores skipped")
        if os.environ.get("CI", "").lower() == "true":
            status = 1
    if not args.no_speed:
        frame_speed()
        shape_cost()
        csv_speed(args.detector)
    return status


if __name__ == "__main__":
    sys.exit(main())
