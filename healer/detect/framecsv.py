"""Workload history as CSV: training data from files, and history saved for later.

One row per workload and time::

    timestamp,namespace,workload,cpu,memory,restarts,request_rate,error_ratio,latency_p99,ready_ratio

``timestamp`` is UNIX seconds or ISO 8601 (UTC when no offset is given); the signal
columns are those of ``healer.types.Signal`` (any subset; missing ones are gaps), and an
empty cell is a gap. A workload's rows must be in time order without repeats. Input is
untrusted, so the first fault ends reading with the file, line and column named.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from healer.detect.csvscore import read_rows
from healer.errors import SeriesError
from healer.types import Frame, Signal, WorkloadRef

KEY_COLUMNS = ("timestamp", "namespace", "workload")


def _timestamp(path: Path, line: int, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise SeriesError(
            f"{path}: line {line}, column 'timestamp': {text!r} is not a timestamp"
        ) from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _number(path: Path, line: int, column: str, text: str) -> float:
    if not text.strip():
        return float("nan")
    try:
        value = float(text)
    except ValueError:
        raise SeriesError(
            f"{path}: line {line}, column {column!r}: {text!r} is not a number"
        ) from None
    if np.isinf(value):
        raise SeriesError(f"{path}: line {line}, column {column!r}: {text!r} is not finite")
    return value


def read_frame_csv(path: Path) -> Frame:
    """Read one history file into a Frame on the union of its timestamps."""
    rows = read_rows(path)
    if not rows:
        raise SeriesError(f"{path}: empty file, expected a header: {','.join(KEY_COLUMNS)},...")
    header = [h.strip() for h in rows[0]]
    for column in KEY_COLUMNS:
        if column not in header:
            raise SeriesError(f"{path}: line 1: no {column!r} column")
    known = {str(s) for s in Signal}
    extra = [h for h in header if h not in known and h not in KEY_COLUMNS]
    if extra:
        raise SeriesError(f"{path}: line 1: unknown column {extra[0]!r}; signals: {sorted(known)}")
    signals = tuple(Signal(h) for h in header if h in known)
    if not signals or len(rows) < 2:
        raise SeriesError(f"{path}: no signal columns or no data rows")
    return _assemble(path, header, signals, rows[1:])


def _assemble(
    path: Path, header: list[str], signals: tuple[Signal, ...], rows: list[list[str]]
) -> Frame:
    at = {name: header.index(name) for name in (*KEY_COLUMNS, *map(str, signals))}
    stamps: list[float] = []
    owners: list[WorkloadRef] = []
    data: list[list[float]] = []
    last: dict[WorkloadRef, float] = {}
    for line, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise SeriesError(
                f"{path}: line {line}: expected {len(header)} columns, got {len(row)}"
            )
        when = _timestamp(path, line, row[at["timestamp"]])
        ref = WorkloadRef(row[at["namespace"]].strip(), "Deployment", row[at["workload"]].strip())
        if ref in last and when <= last[ref]:
            word = "repeats" if when == last[ref] else "is earlier than"
            raise SeriesError(
                f"{path}: line {line}, column 'timestamp': {row[at['timestamp']]!r} {word} "
                f"the previous row of {ref}"
            )
        last[ref] = when
        stamps.append(when)
        owners.append(ref)
        data.append([_number(path, line, str(s), row[at[str(s)]]) for s in signals])
    times = np.unique(np.array(stamps))
    workloads = tuple(sorted(last))
    values = np.full((len(workloads), len(signals), len(times)), np.nan)
    w_index = {w: i for i, w in enumerate(workloads)}
    rows_w = np.array([w_index[o] for o in owners])
    rows_t = np.searchsorted(times, np.array(stamps))
    values[rows_w, :, rows_t] = np.array(data)
    return Frame(times, workloads, signals, values)


def write_frame_csv(path: Path, frame: Frame) -> None:
    """Write a Frame in the format ``read_frame_csv`` reads (gaps as empty cells)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        out = csv.writer(fh, lineterminator="\n")
        out.writerow((*KEY_COLUMNS, *map(str, frame.signals)))
        for w, ref in enumerate(frame.workloads):
            for t, when in enumerate(frame.timestamps):
                cells = ("" if np.isnan(v) else repr(float(v)) for v in frame.values[w, :, t])
                out.writerow((repr(float(when)), ref.namespace, ref.name, *cells))


def concat_frames(frames: Sequence[Frame]) -> Frame:
    """One Frame over the union of workloads and timestamps (later frames win on overlap)."""
    if not frames:
        raise ValueError("no frames to join")
    signals = frames[0].signals
    if any(f.signals != signals for f in frames):
        raise ValueError("frames with different signals cannot be joined")
    times = np.unique(np.concatenate([f.timestamps for f in frames]))
    workloads = tuple(sorted({w for f in frames for w in f.workloads}))
    values = np.full((len(workloads), len(signals), len(times)), np.nan)
    index = {w: i for i, w in enumerate(workloads)}
    for f in frames:
        rows = np.array([index[w] for w in f.workloads], dtype=np.int64)
        cols = np.searchsorted(times, f.timestamps)
        values[np.ix_(rows, np.arange(len(signals)), cols)] = f.values
    return Frame(times, workloads, signals, values)
