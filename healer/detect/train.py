"""Training: the one function behind `healer train` and the notebooks.

``train`` takes workload history (Frames, wherever they came from: the simulator run in
virtual time, Prometheus over a time range, CSV files; see ``healer.history``), the
labelled windows it knows of (a simulated fault's ground truth, operators' feedback),
fits the joint model on the normal rows, evaluates the detector the daemon would run
with it against the streaming detector alone, and saves and registers the version.

Feedback is training data. A window an operator confirmed as a real problem stays out
of the normal set; a confirmed false positive joins it with a guaranteed share of the
fit and its own calibration block, so after retraining the model is quieter on that
pattern (``JointModel.fit``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from healer.config import DetectorSettings
from healer.detect import registry
from healer.detect.combined import score_history
from healer.detect.features import frame_step_s, window_features
from healer.detect.model import JointModel
from healer.detect.nab import LabelledScores
from healer.detect.nab import evaluate as nab_evaluate
from healer.errors import DetectError
from healer.types import Feedback, Frame, JsonObject, Verdict, WorkloadRef

F64 = NDArray[np.float64]

# Calibration blocks: one per workload per hour of history.
BLOCK_S = 3600.0


@dataclass(frozen=True)
class LabelledWindow:
    """A stretch of one workload's history that someone has labelled."""

    workload: WorkloadRef
    start_s: float
    end_s: float
    anomalous: bool
    """True: a real problem (kept out of the normal set, and a window to detect).
    False: confirmed normal, a false positive the model must learn to accept."""


@dataclass(frozen=True)
class History:
    frame: Frame
    windows: tuple[LabelledWindow, ...] = ()
    source: str = ""
    """Where it came from, for the model card: ``sim:memory-leak``, a URL, a file."""


@dataclass(frozen=True)
class Evaluation:
    """How the detector does on labelled history, at the configured threshold."""

    workload_hours: float
    false_alarms: int
    """Times a workload crossed the threshold outside every anomaly window."""
    windows: int
    detected: int
    median_delay_s: float | None
    nab_standard: float | None
    """NAB-rule standard score over the workloads' series, when there are windows."""

    @property
    def false_alarms_per_100_workload_hours(self) -> float:
        return 100.0 * self.false_alarms / max(self.workload_hours, 1e-9)

    def as_json(self) -> JsonObject:
        out: JsonObject = dict(asdict(self))
        out["false_alarms_per_100_workload_hours"] = self.false_alarms_per_100_workload_hours
        return out


@dataclass(frozen=True)
class TrainResult:
    model: JointModel
    card: JsonObject
    candidate: Evaluation
    """The streaming detector with the new model."""
    in_service: Evaluation
    """The detector in service on the same history (a given model, or streaming alone)."""
    version: str | None = None
    card_path: Path | None = None
    unmatched_feedback: tuple[int, ...] = field(default=())


def feedback_windows(feedback: Sequence[Feedback]) -> tuple[LabelledWindow, ...]:
    return tuple(
        LabelledWindow(
            f.workload,
            f.window_start.timestamp(),
            f.window_end.timestamp(),
            anomalous=f.verdict == Verdict.TRUE_POSITIVE,
        )
        for f in feedback
    )


def _in_windows(
    frame: Frame, windows: Sequence[LabelledWindow], *, anomalous: bool
) -> NDArray[np.bool_]:
    """(W, T) rows inside windows of the given kind."""
    mask = np.zeros((len(frame.workloads), len(frame.timestamps)), dtype=bool)
    index = {w: i for i, w in enumerate(frame.workloads)}
    for win in windows:
        if win.anomalous == anomalous and win.workload in index:
            inside = (frame.timestamps >= win.start_s) & (frame.timestamps <= win.end_s)
            mask[index[win.workload]] |= inside
    return mask


def _covers(histories: Sequence[History], f: Feedback) -> bool:
    return any(
        f.workload in h.frame.workloads
        and len(h.frame.timestamps)
        and h.frame.timestamps[0] <= f.window_end.timestamp()
        and h.frame.timestamps[-1] >= f.window_start.timestamp()
        for h in histories
    )


def training_rows(
    histories: Sequence[History], model: JointModel, extra: Sequence[LabelledWindow] = ()
) -> tuple[F64, NDArray[np.int64], F64]:
    """Normal rows, their calibration blocks, and the confirmed-normal rows."""
    rows, blocks, confirmed = [], [], []
    next_block = 0
    for h in histories:
        features = window_features(h.frame, model.spec)
        windows = (*h.windows, *extra)
        bad = _in_windows(h.frame, windows, anomalous=True)
        good = _in_windows(h.frame, windows, anomalous=False) & ~bad
        warm = max(1, round(model.long_window_s / frame_step_s(h.frame)))
        settled = np.arange(len(h.frame.timestamps)) >= warm - 1
        hour = ((h.frame.timestamps - h.frame.timestamps[0]) // BLOCK_S).astype(np.int64)
        block = next_block + np.arange(len(h.frame.workloads))[:, None] * (hour.max() + 1) + hour
        seen = np.isfinite(features).any(axis=2)
        normal = settled & seen & ~bad & ~good
        rows.append(features[normal])
        blocks.append(block[normal])
        confirmed.append(features[good & seen])
        next_block = int(block.max()) + 1
    X = np.concatenate(rows) if rows else np.empty((0, len(model.spec.names)))
    if not len(X):
        raise DetectError("no normal history to train on (every row is labelled or warming up)")
    return X, np.concatenate(blocks), np.concatenate(confirmed)


def evaluate(
    model: JointModel | None,
    histories: History | Sequence[History],
    *,
    settings: DetectorSettings | None = None,
    progress: bool = False,
) -> Evaluation:
    """Replay the service detector (streaming, plus ``model`` when given) over labelled history."""
    settings = settings or DetectorSettings()
    items = [histories] if isinstance(histories, History) else list(histories)
    hours, alarms = 0.0, 0
    delays: list[float | None] = []
    nab_items: list[LabelledScores] = []
    with _progress(progress) as bar:
        for i, h in enumerate(items):
            task = bar.add_task(
                f"scoring {h.source or f'history {i}'}", total=h.frame.values.shape[2]
            )
            scores = score_history(
                h.frame, model, settings=settings, advance=partial(bar.advance, task)
            )
            hot = scores >= settings.score_threshold
            bad = _in_windows(h.frame, h.windows, anomalous=True)
            rising = hot & ~np.concatenate([np.zeros((len(hot), 1), bool), hot[:, :-1]], axis=1)
            alarms += int((rising & ~bad).sum())
            hours += float(
                len(h.frame.workloads) * len(h.frame.timestamps) * frame_step_s(h.frame) / 3600.0
            )
            delays += _first_alarms(h, hot)
            nab_items += _nab_items(h, scores, i)
    found = [d for d in delays if d is not None]
    return Evaluation(
        workload_hours=hours,
        false_alarms=alarms,
        windows=len(delays),
        detected=len(found),
        median_delay_s=float(np.median(found)) if found else None,
        nab_standard=nab_evaluate(nab_items)[0].normalized if delays else None,
    )


def _first_alarms(h: History, hot: NDArray[np.bool_]) -> list[float | None]:
    """Seconds from each anomaly window's start to its first alarm; None when missed."""
    out: list[float | None] = []
    for win in h.windows:
        if not win.anomalous or win.workload not in h.frame.workloads:
            continue
        w = h.frame.workloads.index(win.workload)
        inside = (h.frame.timestamps >= win.start_s) & (h.frame.timestamps <= win.end_s)
        flagged = np.flatnonzero(inside & hot[w])
        out.append(float(h.frame.timestamps[flagged[0]] - win.start_s) if flagged.size else None)
    return out


def _nab_items(h: History, scores: F64, i: int) -> list[LabelledScores]:
    out = []
    for w, ref in enumerate(h.frame.workloads):
        rows = []
        for win in h.windows:
            if win.anomalous and win.workload == ref:
                idx = np.flatnonzero(
                    (h.frame.timestamps >= win.start_s) & (h.frame.timestamps <= win.end_s)
                )
                if idx.size:
                    rows.append((int(idx[0]), int(idx[-1])))
        out.append(LabelledScores(f"{i}/{ref}", scores[w], tuple(rows)))
    return out


def train(
    history: History | Sequence[History],
    *,
    now: datetime,
    feedback: Sequence[Feedback] = (),
    evaluate_on: History | Sequence[History] | None = None,
    in_service: JointModel | None = None,
    models_dir: Path | None = None,
    version: str | None = None,
    settings: DetectorSettings | None = None,
    params: dict[str, Any] | None = None,
    progress: bool = False,
) -> TrainResult:
    """Fit, evaluate, and (with ``models_dir``) save and register a joint-model version.

    ``evaluate_on`` defaults to the training history itself (the card says which).
    ``in_service`` is the model the daemon runs today (None: the streaming detector
    alone); the card records both evaluations, so a version is promoted knowingly.
    """
    histories = [history] if isinstance(history, History) else list(history)
    if not histories:
        raise DetectError("no history to train on")
    model = JointModel(**(params or {}))
    unmatched = tuple(f.incident_id for f in feedback if not _covers(histories, f))
    X, blocks, confirmed = training_rows(histories, model, feedback_windows(feedback))
    with _progress(progress) as bar:
        bar.add_task(f"fitting on {len(X)} rows", total=None)
        model.fit(X, blocks=blocks, normal=confirmed if len(confirmed) else None)
    held = histories if evaluate_on is None else evaluate_on
    candidate = evaluate(model, held, settings=settings, progress=progress)
    current = evaluate(in_service, held, settings=settings, progress=progress)
    card = _card(histories, X, confirmed, feedback, unmatched, candidate, current, now, evaluate_on)
    result = TrainResult(model, card, candidate, current, unmatched_feedback=unmatched)
    if models_dir is None:
        return result
    chosen = version or registry.next_version(models_dir)
    card_path = registry.save(model, models_dir=models_dir, version=chosen, card=card)
    registry.register(models_dir, chosen, at=now)
    return TrainResult(model, card, candidate, current, chosen, card_path, unmatched)


def _card(
    histories: Sequence[History],
    X: F64,
    confirmed: F64,
    feedback: Sequence[Feedback],
    unmatched: tuple[int, ...],
    candidate: Evaluation,
    current: Evaluation,
    now: datetime,
    evaluate_on: object,
) -> JsonObject:
    starts = [h.frame.timestamps[0] for h in histories if len(h.frame.timestamps)]
    ends = [h.frame.timestamps[-1] for h in histories if len(h.frame.timestamps)]
    return {
        "created": now.isoformat(),
        "training": {
            "sources": [h.source for h in histories],
            "from": _iso(min(starts)) if starts else None,
            "to": _iso(max(ends)) if ends else None,
            "workloads": len({w for h in histories for w in h.frame.workloads}),
            "normal_rows": len(X),
            "confirmed_normal_rows": len(confirmed),
            "feedback": {
                "false_positive": sum(f.verdict == Verdict.FALSE_POSITIVE for f in feedback),
                "true_positive": sum(f.verdict == Verdict.TRUE_POSITIVE for f in feedback),
                "not_covered_by_history": list(unmatched),
            },
        },
        "scores": {
            "evaluated_on": "training history" if evaluate_on is None else "held-out history",
            "candidate": candidate.as_json(),
            "in_service": current.as_json(),
        },
    }


def _iso(unix_s: float) -> str:
    return datetime.fromtimestamp(float(unix_s), UTC).isoformat()


@contextmanager
def _progress(enabled: bool) -> Iterator[Any]:
    """A rich progress bar on stderr, or one that shows nothing."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not enabled,
        transient=True,
    )
    with bar:
        yield bar
