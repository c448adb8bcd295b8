"""Detection benchmark: NAB-rule scores on the development set, and score-csv speed.

Prints the three profile scores (standard, reward_low_FP_rate, reward_low_FN_rate) of the
default univariate detector on the labelled series in ``HEALER_EVAL_DATA`` (default
``../shared/data/nab-dev``), per category as well as overall, then the rows per second
of `healer score-csv` on a 20,000-row series (reading, scoring and writing the CSV).
Where the data is absent it says so and prints the speed alone.

    python bench/detection.py [--detector discord] [--data DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from healer.detect.csvscore import labelled_files, read_labels, read_series, score_csv, window_rows
from healer.detect.nab import LabelledScores, evaluate
from healer.detect.univariate import DEFAULT_DETECTOR, DETECTORS

REPO = Path(__file__).resolve().parent.parent
SPEED_ROWS = 20_000
STEP_MINUTES = 5


def dev_scores(data: Path, detector: str) -> None:
    labels_path = data / "labels" / "combined_windows.json"
    labels = read_labels(labels_path)
    score = DETECTORS[detector]
    items: list[LabelledScores] = []
    for key, path in labelled_files(data / "data"):
        if key in labels:
            series = read_series(path)
            windows = window_rows(series, labels[key], labels_path)
            items.append(LabelledScores(key, score(series.values), windows))
    groups = {"all": items}
    for category in sorted({item.key.split("/")[0] for item in items}):
        groups[category] = [item for item in items if item.key.startswith(category + "/")]
    # The series without anomalies count only through their false positives.
    groups["artificial (both)"] = [item for item in items if item.key.startswith("artificial")]
    print(f"NAB-rule scores of {detector!r} on {data} (standard / low FP / low FN)")
    for name, group in groups.items():
        if not any(item.windows for item in group):
            continue  # a set without anomalies has no normalised score
        results = evaluate(group)
        cells = " / ".join(f"{r.normalized:5.1f}" for r in results)
        print(f"  {name:<24} {len(group):3d} files  {cells}")
    print("  (Numenta HTM on the same set: 72.3 / 69.1 / 76.0)")


def speed(detector: str) -> None:
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
        took_s = []
        for _ in range(5):
            started = time.perf_counter()
            score_csv(source, Path(folder) / "out.csv", detector=detector)
            took_s.append(time.perf_counter() - started)
    best, median = min(took_s), float(np.median(took_s))
    print(
        f"score-csv on {SPEED_ROWS:,} rows: {best:.3f} s best, {median:.3f} s median of 5 "
        f"({SPEED_ROWS / median:,.0f} rows/s median; target under 1 s)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", default=DEFAULT_DETECTOR, choices=sorted(DETECTORS))
    default_data = os.environ.get("HEALER_EVAL_DATA", str(REPO.parent / "shared/data/nab-dev"))
    parser.add_argument("--data", type=Path, default=Path(default_data))
    args = parser.parse_args()
    if (args.data / "labels" / "combined_windows.json").is_file():
        dev_scores(args.data, args.detector)
    else:
        print(f"no evaluation data at {args.data} (set HEALER_EVAL_DATA); scores skipped")
        if os.environ.get("CI", "").lower() == "true":
            return 1
    speed(args.detector)
    return 0


if __name__ == "__main__":
    sys.exit(main())
