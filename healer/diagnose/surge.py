"""Early overload evidence: a surge of requests heading past the replicas' capacity.

An HPA on CPU reacts to the average utilisation of the last sync period, within a 10%
tolerance, and its new pods serve only once ready: by the time it moves, a fast surge
has already pushed latency up. The anomaly detector waits for its persistence before it
reports anything. Both are right to be slow for a signal they cannot explain; a surge
of requests explains itself. What an SRE watching the dashboards acts on is earlier:

* the request rate stands well above where it was (``min_rise_sigma`` robust spreads
  and ``min_rise_ratio`` times its median over ``reference_s``) for ``samples``
  consecutive scrapes, and it is still climbing, each scrape at least
  ``min_step_ratio`` times the one before (a one-scrape burst is one sample; bursts in
  a row do not keep climbing, and the daily cycle moves a few percent an hour);
* CPU per replica stands out with it: the extra requests land on the pods;
* carried forward over ``lead_s`` (until added replicas would serve), that demand puts
  each replica past its capacity: the HPA's CPU target, or ``target_utilisation``.

``find_surges`` checks the first two on the whole frame at once (numpy over
workloads, no loop per workload); ``diagnose`` adds the third from the workload's
state, and ``demand_of`` measures what the scale-up is sized from: requests now, their
trend carried over the lead time, and CPU per request.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from numpy.typing import NDArray

from healer.config import SurgeSettings
from healer.types import (
    Cause,
    Demand,
    Diagnosis,
    Direction,
    Finding,
    Frame,
    Signal,
    SignalDeviation,
    WorkloadState,
)

MODEL_VERSION = "surge"
"""The ``model_version`` of a surge's finding: the rule that made it, not a trained model."""
SURGE_SCORE = 0.99
"""A surge's finding score: every condition above held, which is as sure as the
detector's calibrated threshold (0.95) and then some."""
SURGE_CONFIDENCE = 0.8
"""Diagnosis confidence of a surge heading past capacity: the cause is measured, not
inferred, but the trend is young; above the scale playbooks' 0.6."""
MIN_REFERENCE_SAMPLES = 8
"""At least two minutes of finite samples (at 15 s) before a median and spread mean
anything; fewer and no surge is reported."""
MAD_TO_SIGMA = 1.4826
"""Median absolute deviation to standard deviation, for normal noise."""
TREND_SAMPLES = 4
"""The request rate's trend: least squares over the last minute (four 15 s scrapes)."""


@dataclass(frozen=True)
class Surge:
    """A workload whose requests and CPU climb together; not yet judged against capacity."""

    workload_index: int
    finding: Finding
    rps_before: float
    """Median request rate over the reference window."""
    rps: float
    """Request rate of the latest sample."""
    cpu_before: float
    cpu: float
    """CPU per replica, fraction of its request: reference median and latest sample."""
    since_s: float
    """Seconds from the surge's first sample to the latest."""


def find_surges(frame: Frame, settings: SurgeSettings) -> list[Surge]:
    """Every workload whose latest samples show a surge; pure and vectorised."""
    if Signal.REQUEST_RATE not in frame.signals or Signal.CPU not in frame.signals:
        return []
    k, t = settings.samples, frame.timestamps
    if t.size < k + MIN_REFERENCE_SAMPLES + 1:
        return []
    all_rates = frame.values[:, frame.signals.index(Signal.REQUEST_RATE), :]
    with np.errstate(invalid="ignore", divide="ignore"):
        steps = all_rates[:, -k:] / all_rates[:, -k - 1 : -1]
    # Climbing is the cheap test that rules out nearly every workload: the medians below
    # are computed for the few left (a cycle may watch 10,000 workloads).
    candidates = np.flatnonzero(np.all(steps >= settings.min_step_ratio, axis=1))  # NaN: no
    if candidates.size == 0:
        return []
    rate = all_rates[candidates]
    cpu = frame.values[candidates, frame.signals.index(Signal.CPU), :]
    before = (t >= t[-k] - settings.reference_s) & (t < t[-k])
    rate_ref, rate_spread = _reference(rate[:, before])
    cpu_ref, cpu_spread = _reference(cpu[:, before])
    with np.errstate(invalid="ignore"):
        ok = (rate_ref > 0) & (cpu_ref > 0)
    ok &= _stands_out(rate[:, -k:], rate_ref, rate_spread, settings)
    ok &= _stands_out(cpu[:, -k:], cpu_ref, cpu_spread, settings)
    at = datetime.fromtimestamp(float(t[-1]), UTC)
    onset = datetime.fromtimestamp(float(t[-k]), UTC)
    out = []
    for w in np.flatnonzero(ok):
        index = int(candidates[w])
        rps, now_cpu = float(rate[w, -1]), float(cpu[w, -1])
        deviations = (
            _deviation(Signal.REQUEST_RATE, rps, rate_ref[w], rate_spread[w]),
            _deviation(Signal.CPU, now_cpu, cpu_ref[w], cpu_spread[w]),
        )
        finding = Finding(
            frame.workloads[index],
            at,
            SURGE_SCORE,
            tuple(sorted(deviations, key=lambda d: -d.deviation)),
            onset,
            MODEL_VERSION,
        )
        out.append(
            Surge(
                index,
                finding,
                float(rate_ref[w]),
                rps,
                float(cpu_ref[w]),
                now_cpu,
                float(t[-1] - t[-k]),
            )
        )
    return out


def _reference(values: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per row: median and robust spread (NaN when too few finite samples)."""
    enough = np.sum(np.isfinite(values), axis=1) >= MIN_REFERENCE_SAMPLES
    rows = values[enough]
    median = np.full(values.shape[0], np.nan)
    spread = np.full(values.shape[0], np.nan)
    if rows.size:
        m = np.nanmedian(rows, axis=1)
        median[enough] = m
        spread[enough] = MAD_TO_SIGMA * np.nanmedian(np.abs(rows - m[:, None]), axis=1)
    return median, spread


def _stands_out(
    recent: NDArray[np.float64],
    median: NDArray[np.float64],
    spread: NDArray[np.float64],
    settings: SurgeSettings,
) -> NDArray[np.bool_]:
    floor = np.maximum(median + settings.min_rise_sigma * spread, median * settings.min_rise_ratio)
    with np.errstate(invalid="ignore"):
        out: NDArray[np.bool_] = np.all(recent >= floor[:, None], axis=1)  # NaN: no
    return out


def _deviation(signal: Signal, value: float, median: float, spread: float) -> SignalDeviation:
    # A spread of 0 (a flat series) still gets a finite, large deviation.
    sigma = spread if spread > 0 else max(abs(median) * 1e-3, 1e-9)
    return SignalDeviation(signal, value, median, (value - median) / sigma, Direction.UP)


def demand_of(frame: Frame, workload_index: int, replicas: int, lead_s: float) -> Demand | None:
    """Requests now, their rising trend carried over ``lead_s``, and CPU per request.

    CPU per request comes from the latest samples (CPU per replica times ``replicas``
    over the request rate), so it is what each request costs now, whatever the image.
    None when the latest samples lack a request rate or CPU to measure from.
    """
    if Signal.REQUEST_RATE not in frame.signals or Signal.CPU not in frame.signals:
        return None
    rate = frame.values[workload_index, frame.signals.index(Signal.REQUEST_RATE)]
    cpu = frame.values[workload_index, frame.signals.index(Signal.CPU)]
    t = frame.timestamps
    recent = slice(max(0, t.size - TREND_SAMPLES), t.size)
    r, c, tt = rate[recent], cpu[recent], t[recent]
    both = np.isfinite(r) & np.isfinite(c) & (r > 0)
    if not both.any() or not math.isfinite(float(rate[-1])) or replicas < 1:
        return None
    rps = float(rate[-1])
    cpu_per_rps = float(np.median(c[both] * replicas / r[both]))
    slope = 0.0
    finite = np.isfinite(r)
    if finite.sum() >= 2:
        slope = float(np.polyfit(tt[finite] - tt[finite][0], r[finite], 1)[0])
    projected = rps + max(0.0, slope) * lead_s
    return Demand(rps=rps, projected_rps=projected, cpu_per_rps=cpu_per_rps)


def capacity_target(state: WorkloadState, settings: SurgeSettings) -> float:
    """CPU per replica a scale-up aims at: the HPA's target, or ``target_utilisation``."""
    hpa = state.hpa
    if hpa is not None and hpa.target_cpu_utilisation:
        return hpa.target_cpu_utilisation
    return settings.target_utilisation


def diagnose(
    surge: Surge, demand: Demand | None, state: WorkloadState, settings: SurgeSettings
) -> Diagnosis | None:
    """An overload when the surge, carried forward, puts each replica past capacity;
    None when the replicas running absorb it (no action is due: the HPA's business)."""
    if demand is None or state.replicas < 1:
        return None
    target = capacity_target(state, settings)
    heading = demand.projected_rps * demand.cpu_per_rps / state.replicas
    if heading < target:
        return None
    return Diagnosis(
        surge.finding.workload,
        Cause.OVERLOAD,
        SURGE_CONFIDENCE,
        f"Requests surged from {surge.rps_before:.0f} to {surge.rps:.0f}/s in "
        f"{surge.since_s:.0f} s and are still climbing; CPU per replica rose from "
        f"{surge.cpu_before:.0%} to {surge.cpu:.0%} of requests. At this trend, "
        f"{demand.projected_rps:.0f} requests/s within {settings.lead_s:.0f} s put each of "
        f"{state.replicas} replicas at {heading:.0%} of requests, past the "
        f"{target:.0%} they can take.",
    )
