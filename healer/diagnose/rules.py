"""Rule-based diagnosis: what a finding most likely means, and how sure we are.

Each cause is recognised by the evidence an SRE would look for first:

* bad_release: error ratio or latency up, and the workload's current revision was
  rolled out shortly before the anomaly began, with an older revision to return to;
* memory_leak: memory up and still climbing while traffic and CPU are not, with the
  projected time until the container limit;
* overload: CPU and latency (or errors) up together with incoming traffic;
* cpu_hog: CPU up without more traffic (nor a new release): the work per request did not
  change, so something in the containers burns CPU besides serving; a restart clears a
  runaway thread, more replicas would only host more of them;
* crash_loop: containers restarting without a memory build-up (the restarts signal), or
  unready pods restarting while the ready ratio drops: a StatefulSet's rollout stalled on
  a pod that never becomes Ready, or a DaemonSet's bad release replacing a node's pod
  before the new one is ready, shows so before the restarts add up. Sure (0.8) when it began
  soon after a rollout with an older revision to return to, as a release that exits on
  start does; unsure (0.5) otherwise, which no playbook acts on: a person must look.

Anything else is ``unknown``, which the planner escalates instead of guessing.
Confidence grows with how many pieces of evidence agree and how strong they are.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from healer.types import (
    Cause,
    Diagnosis,
    Direction,
    Finding,
    Frame,
    Revision,
    Signal,
    SignalDeviation,
    WorkloadState,
)

# A rollout counts as the likely cause when the anomaly began within this long after it.
RELEASE_WINDOW = timedelta(minutes=20)
# Deviation, in learned spreads, that counts as a clear signal in a diagnosis.
CLEAR = 5.0
# Memory slope is measured over this much recent history.
TREND_WINDOW_S = 600.0
# ... starting this long before the anomaly's onset, so that a young anomaly has samples.
ONSET_MARGIN_S = 60.0


def _up(finding: Finding, signal: Signal, at_least: float = CLEAR) -> SignalDeviation | None:
    d = finding.deviation(signal)
    return d if d and d.direction == Direction.UP and d.deviation >= at_least else None


def _strength(*deviations: SignalDeviation | None) -> float:
    """0..1 from how far the strongest supporting signal stands out."""
    best = max((d.deviation for d in deviations if d), default=0.0)
    return float(min(1.0, best / (4 * CLEAR)))


def explain(finding: Finding, frame: Frame, state: WorkloadState) -> Diagnosis:
    """Diagnose one finding; pure, deterministic, cheap."""
    for rule in (_bad_release, _crash_loop, _memory_leak, _cpu_hog, _overload):
        diagnosis = rule(finding, frame, state)
        if diagnosis is not None:
            return diagnosis
    named = (
        ", ".join(f"{d.signal} {d.direction} {abs(d.deviation):.0f}σ" for d in finding.signals[:3])
        or "no single signal"
    )
    return Diagnosis(
        finding.workload,
        Cause.UNKNOWN,
        0.3,
        f"Anomalous ({named}) but the pattern matches no known cause.",
    )


def _bad_release(finding: Finding, frame: Frame, state: WorkloadState) -> Diagnosis | None:
    current, previous = state.current_revision, state.previous_revision
    errors, latency = _up(finding, Signal.ERROR_RATIO), _up(finding, Signal.LATENCY_P99)
    if current is None or previous is None or not (errors or latency):
        return None
    lag = finding.onset - current.created
    if not timedelta(0) - timedelta(minutes=1) <= lag <= RELEASE_WINDOW:
        return None
    load = _up(finding, Signal.REQUEST_RATE, at_least=3.0)
    confidence = 0.6 + 0.25 * _strength(errors, latency) + (0.1 if errors and latency else 0.0)
    confidence -= 0.2 if load else 0.0
    seen = " and ".join(
        f"{d.signal} rose to {d.value:.3g} from {d.baseline:.3g}" for d in (errors, latency) if d
    )
    images = ", ".join(current.images)
    return Diagnosis(
        finding.workload,
        Cause.BAD_RELEASE,
        round(min(confidence, 0.95), 2),
        f"{seen} {max(0, int(lag.total_seconds() // 60))} min after revision "
        f"{current.number} ({images}) rolled out; revision {previous.number} "
        "ran without these symptoms.",
    )


def _crash_loop(finding: Finding, frame: Frame, state: WorkloadState) -> Diagnosis | None:
    if _up(finding, Signal.MEMORY, at_least=3.0):
        return None
    seen = _crashing(finding, state)
    if seen is None:
        return None
    release = _recent_release(finding, state)
    if release is None:
        return Diagnosis(
            finding.workload,
            Cause.CRASH_LOOP,
            0.5,
            f"{seen}; no recent rollout explains it.",
        )
    current, previous, lag_min = release
    return Diagnosis(
        finding.workload,
        Cause.CRASH_LOOP,
        0.8,
        f"{seen}, {lag_min} min after revision {current.number} "
        f"({', '.join(current.images)}) rolled out; revision {previous.number} ran "
        "without crashing.",
    )


def _crashing(finding: Finding, state: WorkloadState) -> str | None:
    """What shows the containers crashing: the restarts signal up, or (before it has
    climbed) the ready ratio down with the unready pods restarting, as a DaemonSet's
    bad release shows first: it replaces a node's pod before the new one is ready."""
    restarts = _up(finding, Signal.RESTARTS, at_least=3.0)
    if restarts is not None:
        return (
            f"Containers are restarting ({restarts.value:.1f}/min) without a memory "
            "build-up: the process is crashing"
        )
    ready = finding.deviation(Signal.READY_RATIO)
    crashing = [p for p in state.pods if not p.ready and p.restarts > 0 and not p.terminating]
    if ready is None or ready.direction != Direction.DOWN or not crashing:
        return None
    if len(crashing) == 1:
        stuck = crashing[0]
        return (
            f"Pod {stuck.name} has restarted {stuck.restarts} times and never became "
            "Ready, holding the rollout: the process is crashing"
        )
    return (
        f"{len(crashing)} of {len(state.pods)} pods are not ready and restarting "
        f"({sum(p.restarts for p in crashing)} restarts) without a memory build-up: "
        "the process is crashing"
    )


def _recent_release(
    finding: Finding, state: WorkloadState
) -> tuple[Revision, Revision, int] | None:
    """The current and previous revisions and the minutes between the rollout and the
    anomaly, when the anomaly began within RELEASE_WINDOW of a rollout."""
    current, previous = state.current_revision, state.previous_revision
    if current is None or previous is None:
        return None
    lag = finding.onset - current.created
    if not -timedelta(minutes=1) <= lag <= RELEASE_WINDOW:
        return None
    return current, previous, max(0, int(lag.total_seconds() // 60))


def _memory_leak(finding: Finding, frame: Frame, state: WorkloadState) -> Diagnosis | None:
    memory = _up(finding, Signal.MEMORY)
    if memory is None or _up(finding, Signal.REQUEST_RATE, at_least=3.0):
        return None
    slope = slope_per_s(frame, finding, Signal.MEMORY)
    if slope <= 0:
        return None
    to_limit_min = max(0.0, (1.0 - memory.value) / slope / 60.0)
    cpu = _up(finding, Signal.CPU)
    confidence = 0.65 + 0.25 * _strength(memory) - (0.15 if cpu else 0.0)
    return Diagnosis(
        finding.workload,
        Cause.MEMORY_LEAK,
        round(min(confidence, 0.95), 2),
        f"Memory climbs steadily ({slope * 6000:.2f}% of the limit per minute) to "
        f"{memory.value:.0%} of the limit with steady traffic; at this rate the "
        f"containers are OOM-killed in about {to_limit_min:.0f} min.",
    )


def _cpu_hog(finding: Finding, frame: Frame, state: WorkloadState) -> Diagnosis | None:
    cpu = _up(finding, Signal.CPU)
    if cpu is None or _up(finding, Signal.REQUEST_RATE, at_least=3.0):
        return None
    if _up(finding, Signal.MEMORY, at_least=3.0):
        return None
    pain = _up(finding, Signal.LATENCY_P99) or _up(finding, Signal.ERROR_RATIO)
    confidence = 0.6 + 0.25 * _strength(cpu) + (0.1 if pain else 0.0)
    hurt = f"; {pain.signal} up {pain.deviation:.0f}σ" if pain else ""
    return Diagnosis(
        finding.workload,
        Cause.CPU_HOG,
        round(min(confidence, 0.95), 2),
        f"CPU at {cpu.value:.0%} of requests (baseline {cpu.baseline:.0%}) with traffic "
        f"not unusual and no recent rollout{hurt}: something in the containers burns "
        "CPU besides serving requests.",
    )


def _overload(finding: Finding, frame: Frame, state: WorkloadState) -> Diagnosis | None:
    cpu = _up(finding, Signal.CPU)
    pain = _up(finding, Signal.LATENCY_P99) or _up(finding, Signal.ERROR_RATIO)
    if cpu is None or pain is None:
        return None
    load = _up(finding, Signal.REQUEST_RATE, at_least=3.0)
    confidence = 0.55 + 0.25 * _strength(cpu, pain) + (0.15 if load else -0.15)
    traffic = (
        f"traffic is {load.value / max(load.baseline, 1e-9):.1f}x its baseline"
        if load
        else "traffic is not unusual"
    )
    return Diagnosis(
        finding.workload,
        Cause.OVERLOAD,
        round(min(confidence, 0.95), 2),
        f"CPU at {cpu.value:.0%} of requests (baseline {cpu.baseline:.0%}) and "
        f"{pain.signal} up {pain.deviation:.0f}σ on {state.replicas} replicas; "
        f"{traffic}.",
    )


def slope_per_s(frame: Frame, finding: Finding, signal: Signal) -> float:
    """Least-squares slope of the signal over the recent window, per second."""
    series = frame.series(finding.workload, signal)
    if not series.size:
        return 0.0
    # From just before the anomaly began (the trend before it is not the fault's), at most
    # TREND_WINDOW_S back.
    since = max(finding.onset.timestamp() - ONSET_MARGIN_S, frame.timestamps[-1] - TREND_WINDOW_S)
    recent = frame.timestamps >= since
    t, y = frame.timestamps[recent], series[recent]
    ok = np.isfinite(y)
    if ok.sum() < 3:
        return 0.0
    return float(np.polyfit(t[ok] - t[ok][0], y[ok], 1)[0])
