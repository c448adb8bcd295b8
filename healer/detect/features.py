"""Windowed per-workload features for the multivariate model, computed from Frames.

The per-signal streaming detector asks "is this signal far from its own baseline?". The
multivariate model asks "is this combination of signals unusual?", so its features
describe how the signals move together: each signal's change over a short trailing
window against a longer one, the change of the CPU spent per request (which moves when
a workload burns CPU its traffic does not explain), and the level of the signals whose
level means the same for every workload (error and ready ratios, restarts). Levels of
CPU, memory, traffic and latency belong to each workload, so they are left out: one
model then serves every workload of a class, including ones it never saw.

Every feature at time t is computed from rows up to t only (trailing windows), on the
whole (workload x signal x time) array at once. Windows are in seconds and turned into
rows with the Frame's step, so a model trained on 15 s scrapes serves 30 s scrapes with
the same meaning. The feature names carry the window lengths: a model card records them,
and a model whose features disagree with the code that serves it is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from healer.detect.signals import ABSOLUTE_FLOOR, RELATIVE_FLOOR
from healer.types import Frame, Signal

F64 = NDArray[np.float64]

# One minute of scrapes: long enough to average out one noisy sample, short enough that a
# fault shows within the streaming detector's persistence time.
SHORT_WINDOW_S = 60.0
# Fifteen minutes: the recent past a change is measured against.
LONG_WINDOW_S = 900.0
# Added before dividing CPU by requests so that an idle workload gives a finite value:
# a hundredth of a request per second, and of a CPU request.
PER_REQUEST_EPS = 0.01

# Resolution of the change of CPU per request (a log ratio): half a percent. Both are
# rates of counters over the same window, so their shared noise cancels in the ratio.
COST_FLOOR = 0.005

# Signals spanning orders of magnitude are compared on a log scale.
_LOG_SIGNALS = frozenset({Signal.RESTARTS, Signal.REQUEST_RATE, Signal.LATENCY_P99})
# Signals whose level is comparable between workloads; the others (CPU, memory, traffic,
# latency) have a level of their own per workload, so only their changes are features.
_SCALE_FREE = frozenset({Signal.RESTARTS, Signal.ERROR_RATIO, Signal.READY_RATIO})


@dataclass(frozen=True)
class FeatureSpec:
    """Which features, over which windows; part of a model's identity."""

    short_window_s: float = SHORT_WINDOW_S
    long_window_s: float = LONG_WINDOW_S
    signals: tuple[Signal, ...] = tuple(Signal)

    @property
    def level_signals(self) -> tuple[Signal, ...]:
        """Signals whose level means the same for every workload (shares and counts)."""
        return tuple(s for s in self.signals if s in _SCALE_FREE)

    @property
    def names(self) -> tuple[str, ...]:
        short, long = f"{self.short_window_s:g}s", f"{self.long_window_s:g}s"
        changes = tuple(f"change_{short}_vs_{long}:{s}" for s in self.signals)
        levels = tuple(f"mean_{short}:{s}" for s in self.level_signals)
        return (*changes, *levels, f"change_{short}_vs_{long}:cpu_per_request")

    def signal_weights(self) -> F64:
        """(F, S): how much of each feature belongs to each signal, for attributions."""
        n, levels = len(self.signals), self.level_signals
        weights = np.zeros((len(self.names), n))
        weights[np.arange(n), np.arange(n)] = 1.0
        for k, signal in enumerate(levels):
            weights[n + k, self.signals.index(signal)] = 1.0
        for signal in (Signal.CPU, Signal.REQUEST_RATE):
            if signal in self.signals:
                weights[-1, self.signals.index(signal)] = 0.5
        return weights

    def floors(self) -> F64:
        """(F,) resolution of each feature, on its own scale: no spread is taken as smaller.

        The signals' measurement floors (``detect.signals``); on a log scale a floor is a
        relative change, at least ``RELATIVE_FLOOR``; CPU per request has ``COST_FLOOR``.
        """
        floor = {
            s: max(RELATIVE_FLOOR, float(np.log1p(ABSOLUTE_FLOOR[s])))
            if s in _LOG_SIGNALS
            else ABSOLUTE_FLOOR[s]
            for s in self.signals
        }
        per_feature = [floor[s] for s in (*self.signals, *self.level_signals)]
        out: F64 = np.array([*per_feature, COST_FLOOR])
        return out

    def directions(self, features: F64) -> F64:
        """(..., S) sign of each signal's change feature: which way it moved."""
        return np.sign(np.nan_to_num(features[..., : len(self.signals)]))


def frame_step_s(frame: Frame) -> float:
    """The scrape step of a frame: the median gap between its timestamps."""
    if len(frame.timestamps) < 2:
        return 15.0  # one sample: any window holds just it
    return float(np.median(np.diff(frame.timestamps)))


def transform(frame: Frame, spec: FeatureSpec) -> F64:
    """(W, S, T) values on the scale the features use, in ``spec.signals`` order (a copy)."""
    values = frame.values[:, [frame.signals.index(s) for s in spec.signals], :]
    logged = [k for k, s in enumerate(spec.signals) if s in _LOG_SIGNALS]
    values[:, logged, :] = np.log1p(np.maximum(values[:, logged, :], 0.0))
    out: F64 = values
    return out


def trailing_mean(x: F64, rows: int) -> F64:
    """Mean of the last ``rows`` finite values along the last axis (NaN when none)."""
    finite = np.isfinite(x)
    sums = np.cumsum(np.where(finite, x, 0.0), axis=-1)
    counts = np.cumsum(finite, axis=-1, dtype=np.float64)
    if rows < x.shape[-1]:
        sums[..., rows:] = sums[..., rows:] - sums[..., :-rows].copy()
        counts[..., rows:] = counts[..., rows:] - counts[..., :-rows].copy()
    with np.errstate(invalid="ignore", divide="ignore"):
        mean: F64 = np.where(counts > 0, sums / np.maximum(counts, 1.0), np.nan)
    return mean


def window_features(frame: Frame, spec: FeatureSpec | None = None) -> F64:
    """(W, T, F) features of every workload at every time of the frame.

    Row t uses rows up to t only. The first rows of a frame see shorter windows than
    the spec's; a NaN feature (a signal with no data in its window) means "unknown".
    """
    spec = spec or FeatureSpec()
    short, long = _rows(frame, spec)
    x, cost = _inputs(frame, spec)
    features = _combine(
        trailing_mean(x, short),
        trailing_mean(x, long),
        trailing_mean(cost, short),
        trailing_mean(cost, long),
        spec,
        axis=1,
    )
    out: F64 = np.ascontiguousarray(features.transpose(0, 2, 1))
    return out


def latest_features(frame: Frame, spec: FeatureSpec | None = None) -> F64:
    """(W, F) features at the frame's newest time: ``window_features(frame)[:, -1]``.

    Reads only the rows the windows need, so a cycle over 10,000 workloads costs a few
    milliseconds rather than a pass over the whole window.
    """
    spec = spec or FeatureSpec()
    if not len(frame.timestamps):
        return np.full((len(frame.workloads), len(spec.names)), np.nan)
    short, long = _rows(frame, spec)
    tail = Frame(
        frame.timestamps[-long:], frame.workloads, frame.signals, frame.values[:, :, -long:]
    )
    x, cost = _inputs(tail, spec)
    return _combine(*_last_means(x, short), *_last_means(cost, short), spec, axis=1)


def _rows(frame: Frame, spec: FeatureSpec) -> tuple[int, int]:
    missing = [s for s in spec.signals if s not in frame.signals]
    if missing:
        raise ValueError(f"the frame has no {', '.join(map(str, missing))} signal")
    step_s = frame_step_s(frame)
    short = max(1, round(spec.short_window_s / step_s))
    return short, max(short, round(spec.long_window_s / step_s))


def _inputs(frame: Frame, spec: FeatureSpec) -> tuple[F64, F64]:
    """The transformed signals (W, S, T) and the log CPU per request (W, T)."""
    return transform(frame, spec), _per_request(frame, spec)


def _combine(
    level: F64, long: F64, cost: F64, cost_long: F64, spec: FeatureSpec, *, axis: int
) -> F64:
    scale_free = [spec.signals.index(s) for s in spec.level_signals]
    change = level - long
    levels = np.take(level, scale_free, axis=axis)
    out: F64 = np.concatenate([change, levels, np.expand_dims(cost - cost_long, axis)], axis=axis)
    return out


def _last_means(x: F64, short: int) -> tuple[F64, F64]:
    """Means of the finite values among the last ``short`` rows and among all rows
    (the last axis); NaN where a window has none. One pass over one contiguous copy."""
    finite = np.isfinite(x)
    filled = np.where(finite, x, 0.0)
    means = []
    for rows in (short, x.shape[-1]):
        counts = finite[..., -rows:].sum(axis=-1)
        sums = filled[..., -rows:].sum(axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            means.append(np.where(counts > 0, sums / np.maximum(counts, 1), np.nan))
    return means[0], means[1]


def _per_request(frame: Frame, spec: FeatureSpec) -> F64:
    """(W, T) log of CPU (share of requests) per request per second."""
    if Signal.CPU not in spec.signals or Signal.REQUEST_RATE not in spec.signals:
        return np.full((len(frame.workloads), len(frame.timestamps)), np.nan)
    cpu = frame.values[:, frame.signals.index(Signal.CPU)]
    rate = frame.values[:, frame.signals.index(Signal.REQUEST_RATE)]
    with np.errstate(invalid="ignore"):
        out: F64 = np.log(
            (np.maximum(cpu, 0.0) + PER_REQUEST_EPS) / (np.maximum(rate, 0.0) + PER_REQUEST_EPS)
        )
    return out
