"""`healer score-csv` and `healer eval`: univariate detectors over labelled CSV series.

The contract is NAB's (``EVAL.md``): ``timestamp,value`` in, ``timestamp,value,
anomaly_score`` out, the timestamp and value text copied byte for byte, one row per
input row. Input is untrusted, so reading checks everything once and names the file,
line and column of the first fault: a missing column, an unparsable or non-finite
value, an unparsable or unsorted timestamp, an empty file.

A repeated timestamp, or one that steps back, is scored by default, and reported: NAB's
own real series have repeats (the twelve samples of the hour a daylight-saving change
skips, all stamped 03:00, in ``ec2_disk_write_bytes_1ef3de.csv``), real exports step
back an hour once when the clock goes back, the contract is one score per row, and a
file refused is a file not scored at all. Such rows are scored in file order; the
detector reads the time between rows as no time at all where it is not positive.
``strict_timestamps`` (``--strict-timestamps``) makes either an error naming the file
and line, for pipelines whose series must be strictly increasing.

Scores are written at full precision (the shortest text that reads back as the same
float), so that a file scored from its CSV gets the NAB result it got in memory, and a
score held just below an alarm level is not rounded up to it.

Timestamps are parsed only to check their order and to place label windows on rows;
the detectors see row order alone, as NAB's do.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from healer.detect.nab import LabelledScores, ProfileResult, evaluate
from healer.detect.univariate import DEFAULT_DETECTOR, DETECTORS
from healer.errors import SeriesError

F64 = NDArray[np.float64]


@dataclass(frozen=True)
class Series:
    path: Path
    timestamps: tuple[str, ...]
    """The timestamp text of each row, exactly as read."""
    value_text: tuple[str, ...]
    values: F64
    repeated_lines: tuple[int, ...] = ()
    """File lines (1 is the header) whose timestamp equals the row before's."""
    earlier_lines: tuple[int, ...] = ()
    """File lines whose timestamp is earlier than the row before's (a clock set back)."""

    def timestamps_summary(self) -> str | None:
        """One line on the repeated and earlier timestamps, or None when there are none."""
        parts = [
            f"line {lines[0]}, column 'timestamp': {self.timestamps[lines[0] - 2]!r} {what} "
            f"the row before ({len(lines)} {kind} in all)"
            for lines, what, kind in (
                (self.repeated_lines, "repeats", "repeated rows"),
                (self.earlier_lines, "is earlier than", "rows earlier than the row before"),
            )
            if lines
        ]
        if not parts:
            return None
        return f"{self.path}: {'; '.join(parts)}; every row is scored in file order"


def _parse_time(text: str) -> datetime:
    cleaned = text.strip().replace("T", " ")
    return datetime.fromisoformat(cleaned.removesuffix("Z"))


def seconds(series: Series) -> F64:
    """Each row's timestamp in seconds since the epoch, the text read as UTC."""
    return np.array([_parse_time(t).replace(tzinfo=UTC).timestamp() for t in series.timestamps])


def read_rows(path: Path) -> list[list[str]]:
    """All rows of a CSV file; ``SeriesError`` naming the file when it cannot be read."""
    try:
        with path.open(newline="") as fh:
            return list(csv.reader(fh))
    except OSError as exc:
        raise SeriesError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, csv.Error) as exc:
        raise SeriesError(f"{path}: not a readable CSV file: {exc}") from exc


def read_series(path: Path, *, strict_timestamps: bool = False) -> Series:
    """Read and check a ``timestamp,value`` CSV; raise ``SeriesError`` at the first fault.

    ``strict_timestamps``: a timestamp equal to or earlier than the row before's is a
    fault too; otherwise such rows are recorded on the series.
    """
    rows = read_rows(path)
    if not rows:
        raise SeriesError(f"{path}: empty file, expected a 'timestamp,value' header")
    header = [name.strip() for name in rows[0]]
    for column in ("timestamp", "value"):
        if column not in header:
            raise SeriesError(f"{path}: line 1: no '{column}' column (header: {','.join(header)})")
    t_col, v_col = header.index("timestamp"), header.index("value")
    if len(rows) < 2:
        raise SeriesError(f"{path}: no data rows after the header")
    width = max(t_col, v_col) + 1
    stamps: list[str] = []
    texts: list[str] = []
    previous: datetime | None = None
    repeated: list[int] = []
    earlier: list[int] = []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) < width:
            raise SeriesError(
                f"{path}: line {line}: expected {len(header)} columns, got {len(row)}"
            )
        stamp, text = row[t_col], row[v_col]
        when = _checked_time(path, line, stamp)
        if previous is not None and when <= previous:
            what = "repeats" if when == previous else "is earlier than"
            if strict_timestamps:
                raise SeriesError(
                    f"{path}: line {line}, column 'timestamp': {stamp!r} {what} the row before"
                )
            (repeated if when == previous else earlier).append(line)
        previous = when
        stamps.append(stamp)
        texts.append(text)
    values = _checked_values(path, texts)
    return Series(path, tuple(stamps), tuple(texts), values, tuple(repeated), tuple(earlier))


def _checked_time(path: Path, line: int, stamp: str) -> datetime:
    try:
        return _parse_time(stamp)
    except ValueError:
        raise SeriesError(
            f"{path}: line {line}, column 'timestamp': {stamp!r} is not a timestamp"
        ) from None


def _checked_values(path: Path, texts: list[str]) -> F64:
    try:
        values = np.array(texts, dtype=np.float64)
    except ValueError:
        for line, text in enumerate(texts, start=2):
            try:
                float(text)
            except ValueError:
                raise SeriesError(
                    f"{path}: line {line}, column 'value': {text!r} is not a number"
                ) from None
        raise  # numpy refused what float() accepts: a bug, not bad input
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        line, text = int(bad[0]) + 2, texts[int(bad[0])]
        raise SeriesError(f"{path}: line {line}, column 'value': {text!r} is not finite")
    return values


def write_scores(path: Path, series: Series, scores: F64) -> None:
    """Write ``timestamp,value,anomaly_score``; the first two columns as they were read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with path.open("w", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(("timestamp", "value", "anomaly_score"))
            writer.writerows(
                zip(
                    series.timestamps,
                    series.value_text,
                    (repr(float(s)) for s in scores),
                    strict=True,
                )
            )
    except OSError as exc:
        raise SeriesError(f"{path}: cannot write: {exc.strerror or exc}") from exc


def detector_function(name: str) -> Callable[[F64, F64], F64]:
    try:
        return DETECTORS[name]
    except KeyError:
        known = ", ".join(sorted(DETECTORS))
        raise SeriesError(f"unknown detector {name!r}; known: {known}") from None


def score_csv(
    source: Path,
    target: Path,
    *,
    detector: str = DEFAULT_DETECTOR,
    strict_timestamps: bool = False,
) -> Series:
    """Score one file online and write the result. Returns the series read."""
    score = detector_function(detector)
    series = read_series(source, strict_timestamps=strict_timestamps)
    write_scores(target, series, score(series.values, seconds(series)))
    return series


def labelled_files(directory: Path) -> Iterator[tuple[str, Path]]:
    """``category/name.csv`` keys and paths of the CSV files under a NAB-like folder."""
    for path in sorted(directory.rglob("*.csv")):
        yield path.relative_to(directory).as_posix(), path


def read_labels(path: Path) -> dict[str, list[tuple[str, str]]]:
    try:
        raw = json.loads(path.read_text())
    except OSError as exc:
        raise SeriesError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise SeriesError(f"{path}: line {exc.lineno}: not JSON: {exc.msg}") from exc
    if not isinstance(raw, dict):
        raise SeriesError(f"{path}: expected an object of file -> windows")
    out: dict[str, list[tuple[str, str]]] = {}
    for key, windows in raw.items():
        try:
            out[str(key)] = [(str(a), str(b)) for a, b in windows]
        except (TypeError, ValueError):
            raise SeriesError(f"{path}: {key}: windows must be [start, end] pairs") from None
    return out


def window_rows(
    series: Series, windows: list[tuple[str, str]], labels: Path
) -> tuple[tuple[int, int], ...]:
    """Label windows as inclusive row ranges of the series."""
    row_of: dict[datetime, int] = {}
    for i, stamp in enumerate(series.timestamps):
        row_of.setdefault(_parse_time(stamp), i)
    out = []
    for start, end in windows:
        try:
            out.append((row_of[_parse_time(start)], row_of[_parse_time(end)]))
        except (KeyError, ValueError):
            raise SeriesError(
                f"{labels}: window {start}..{end} does not match a row of {series.path}"
            ) from None
    return tuple(out)


@dataclass(frozen=True)
class Evaluation:
    results: tuple[ProfileResult, ...]
    unlabelled: tuple[str, ...]
    """Files found under the folder that the labels do not name, so were not scored."""


def evaluate_folder(
    directory: Path,
    labels_path: Path,
    *,
    detector: str = DEFAULT_DETECTOR,
    out: Path | None = None,
) -> Evaluation:
    """Score every labelled CSV under ``directory`` and apply the NAB rules to the corpus."""
    labels = read_labels(labels_path)
    score = detector_function(detector)
    items, unlabelled = [], []
    for key, path in labelled_files(directory):
        if key not in labels:
            unlabelled.append(key)
            continue
        series = read_series(path)
        scores = score(series.values, seconds(series))
        if out is not None:
            write_scores(out / key, series, scores)
        items.append(LabelledScores(key, scores, window_rows(series, labels[key], labels_path)))
    if not items:
        raise SeriesError(f"{directory}: no CSV file named in {labels_path}")
    return Evaluation(evaluate(items), tuple(unlabelled))


def report(evaluation: Evaluation) -> list[str]:
    """The printed form of an evaluation: the profile scores, then one line per file.

    A file's line gives its windows, and the windows missed and false-positive rows at the
    first profile's threshold, then its raw score under each profile.
    """
    results = evaluation.results
    lines = [f"{'profile':<20} {'score':>7} {'threshold':>10} {'raw':>9}"]
    for r in results:
        lines.append(f"{r.profile.name:<20} {r.normalized:7.1f} {r.threshold:10.6g} {r.raw:9.3f}")
    head = "  ".join(f"{r.profile.name:>18}" for r in results)
    lines += ["", f"{'file':<58} {'windows':>7} {'missed':>6} {'FP rows':>7}  raw: {head}"]
    for rows in zip(*(r.files for r in results), strict=True):
        first = rows[0]
        cells = "  ".join(f"{f.raw:18.3f}" for f in rows)
        total = first.detected + first.missed
        lines.append(
            f"{first.key:<58} {total:7d} {first.missed:6d} {first.false_positives:7d}       {cells}"
        )
    if evaluation.unlabelled:
        lines.append(f"not in the labels, not scored: {', '.join(evaluation.unlabelled)}")
    return lines
