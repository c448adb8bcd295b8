"""``healer gate``: a pipeline's question "is the release I just shipped healthy?".

The gate waits for the workload's rollout to complete (as ``kubectl rollout status``
judges it), learns the previous revision's normal from the history Prometheus holds
before the rollout began (the streaming detector's baselines, the daemon's own), then
scores each new sample of the new revision against it and runs a sequential test
(``detect.sequential``) on the scores until the verdict is clear or the window ends:

- **healthy** (exit 0): the new revision's samples look like the old one's;
- **unhealthy** (exit 1): they lean away from it on a harmful side (errors, latency,
  restarts, readiness, CPU, memory: every signal the detector scores), or the rollout
  did not complete within the window; with ``rollback`` the previous revision is
  restored first, as ``kubectl rollout undo`` does;
- **could not judge** (exit 2): too little history of the previous revision for the
  detector to be warm ("not enough history to judge": never a pass), no metrics for
  the workload since the rollout, or the window ended before the test was sure.

No threshold is set here: the detector learns each signal's level and spread, the test
has two stated error rates.

Decisions:

- The baseline is the previous revision's alone: samples from the rollout itself (old
  and new pods side by side) are neither learned nor judged; judging starts when the
  rollout is complete. The detector's shape stage (days of history, daily shapes) is
  not used: a release is judged over minutes, against the last hour.
- The gate joins the collect, detect and act steps, as the daemon does, so it sits
  beside the daemon's composition root, not in a step. Its collaborators are passed in
  (``GateDeps``), so the tests run it on a fake cluster and a fake clock.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

import numpy as np

from healer.act.kube import KubeActuator, api_client
from healer.actions.rollback import rollback_revision
from healer.collect.prometheus import PrometheusSource
from healer.collect.source import MetricsSource
from healer.config import DetectorSettings, Settings
from healer.detect.sequential import Decision, Running, SequentialTest
from healer.detect.streaming import F64, StreamingDetector
from healer.errors import CollectError, ConfigError, HealerError
from healer.types import (
    ActionKind,
    ActionRecord,
    ActionStatus,
    Frame,
    JsonObject,
    Mode,
    Plan,
    Signal,
    WorkloadRef,
    WorkloadState,
)

NOT_ENOUGH_HISTORY = "not enough history to judge"


class Cluster(Protocol):
    """What the gate asks of the cluster: the workload's state, and a rollback."""

    def read_state(self, workload: WorkloadRef) -> WorkloadState: ...

    def apply(self, plan: Plan, *, now: datetime) -> ActionRecord: ...


@dataclass(frozen=True)
class GateDeps:
    cluster: Cluster
    history: MetricsSource
    """Where the previous revision's history is read (one long read)."""
    live: MetricsSource
    """Where the new revision's samples are read, again and again (incremental)."""
    clock: Callable[[], datetime]
    sleep: Callable[[float], None]


@dataclass(frozen=True)
class GateSettings:
    window_s: float
    """``--for``: the longest the gate waits for the rollout and judges, in all."""
    step_s: float
    """How often the gate reads new samples: the metrics' step."""
    thin_s: float
    """Judged samples are at least this far apart: the rate window (``sequential``)."""
    detector: DetectorSettings
    test: SequentialTest = field(default_factory=SequentialTest)
    rollback: bool = False
    history_s: float | None = None
    """How much history before the rollout to learn from; None: two baseline half-lives,
    at least twice the detector's warm-up."""

    @property
    def learn_s(self) -> float:
        d = self.detector
        return self.history_s or max(2 * d.baseline_half_life_s, 2 * d.warmup_s)


@dataclass(frozen=True)
class Evidence:
    """One signal's worst harmful deviation over the judged samples."""

    signal: Signal
    value: float
    baseline: float
    deviation: float
    """In learned spreads, signed (positive: up)."""


@dataclass(frozen=True)
class Verdict:
    workload: WorkloadRef
    decision: Decision
    """HEALTHY, UNHEALTHY, or UNDECIDED (could not judge)."""
    reason: str
    revision: int | None = None
    images: tuple[str, ...] = ()
    rollout_s: float | None = None
    """From the gate's start to the rollout's completion (0 if complete at the start)."""
    judged_s: float | None = None
    """From the rollout's completion to the verdict: the time to verdict."""
    evidence: tuple[Evidence, ...] = ()
    ratio: float = 0.0
    samples: int = 0
    p_values: tuple[float, ...] = ()
    """Each judged sample's p-value against the previous revision's baselines."""
    rolled_back_to: int | None = None
    rollback_error: str | None = None

    @property
    def exit_code(self) -> int:
        return {Decision.HEALTHY: 0, Decision.UNHEALTHY: 1, Decision.UNDECIDED: 2}[self.decision]

    def to_json(self) -> JsonObject:
        w = self.workload
        return {
            "workload": f"{w.namespace}/{w.kind}/{w.name}",
            "verdict": self.decision.value,
            "exit_code": self.exit_code,
            "reason": self.reason,
            "revision": self.revision,
            "images": list(self.images),
            "rollout_s": self.rollout_s,
            "time_to_verdict_s": self.judged_s,
            "log_likelihood_ratio": round(self.ratio, 3),
            "samples": self.samples,
            "p_values": list(self.p_values),
            "evidence": [
                {
                    "signal": e.signal.value,
                    "value": e.value,
                    "baseline": e.baseline,
                    "deviation": round(e.deviation, 2),
                }
                for e in self.evidence
            ],
            "rolled_back_to": self.rolled_back_to,
            "rollback_error": self.rollback_error,
        }


def run_gate(workload: WorkloadRef, settings: GateSettings, deps: GateDeps) -> Verdict:
    """Wait, learn, judge, and roll back if asked and unhealthy; see the module's doc."""
    start = deps.clock()
    deadline = start + timedelta(seconds=settings.window_s)
    state = _await_rollout(workload, deadline, settings, deps)
    current = state.current_revision
    if not state.rollout_complete or current is None:
        verdict = Verdict(
            workload,
            Decision.UNHEALTHY,
            f"the rollout did not complete within {settings.window_s:g} s: "
            f"{state.updated_replicas}/{state.replicas} updated, "
            f"{state.available_replicas} available",
            revision=current.number if current else None,
        )
        return _rolled_back(verdict, state, settings, deps)
    complete = deps.clock()
    found = Judging(workload, settings, deps, state, rollout_s=(complete - start).total_seconds())
    verdict = found.judge(complete, deadline)
    return _rolled_back(verdict, state, settings, deps)


def _await_rollout(
    workload: WorkloadRef, deadline: datetime, settings: GateSettings, deps: GateDeps
) -> WorkloadState:
    state = deps.cluster.read_state(workload)
    while not state.rollout_complete and deps.clock() < deadline:
        deps.sleep(min(settings.step_s, 1.0))
        state = deps.cluster.read_state(workload)
    return state


@dataclass
class Judging:
    """The judged part of a gate: the detector warmed on the previous revision, the
    sequential test, the worst deviations seen."""

    workload: WorkloadRef
    settings: GateSettings
    deps: GateDeps
    state: WorkloadState
    rollout_s: float
    detector: StreamingDetector = field(init=False)
    running: Running = field(init=False)
    worst: dict[Signal, Evidence] = field(default_factory=dict)
    p_values: list[float] = field(default_factory=list)
    """Each judged sample's p-value, in order: the test's whole input, for the record."""
    last_t: float = -math.inf
    """The newest sample read."""
    last_judged: float = -math.inf
    """The newest sample judged (judged samples are ``thin_s`` apart)."""

    def __post_init__(self) -> None:
        self.detector = StreamingDetector(self.settings.detector)
        self.running = Running(self.settings.test)

    def judge(self, complete: datetime, deadline: datetime) -> Verdict:
        current = self.state.current_revision
        assert current is not None  # checked by run_gate
        try:
            short = self._learn(until=current.created)
        except CollectError as exc:
            return self._verdict(Decision.UNDECIDED, f"history unreadable: {exc}", None)
        if short is not None:
            return self._verdict(Decision.UNDECIDED, f"{NOT_ENOUGH_HISTORY}: {short}", None)
        seen = False
        after = complete.timestamp()
        while True:
            now = self.deps.clock()
            try:
                frame = self.deps.live.fetch(
                    until=now, window_s=max(now.timestamp() - after, 0) + self.settings.step_s
                )
            except CollectError as exc:
                return self._verdict(Decision.UNDECIDED, f"metrics unreadable: {exc}", None)
            seen = bool(self._feed(frame, after)) or seen
            judged_s = (now - complete).total_seconds()
            decision = self.running.decision
            if decision is not Decision.UNDECIDED:
                return self._verdict(decision, self._because(decision), judged_s)
            if now >= deadline:
                return self._undecided(seen, judged_s)
            self.deps.sleep(self.settings.step_s)

    def _learn(self, *, until: datetime) -> str | None:
        """Warm the detector on the history before ``until``; why it is too short, or
        None. CollectError when Prometheus cannot be read (that is no verdict on history)."""
        learn_s = self.settings.learn_s
        frame = self.deps.history.fetch(until=until, window_s=learn_s)
        row = frame.workload_rows.get(self.workload)
        if row is None:
            return f"no metrics of {self.workload} in the {learn_s:g} s before the rollout"
        self.detector.update(frame)
        seen = self.detector.seen_s_[self.detector.rows_[self.workload]]
        scored = seen[self.detector.polarity_ != 0]
        need = self.settings.detector.warmup_s
        if not scored.size or float(scored.max()) < need:
            have = float(scored.max()) if scored.size else 0.0
            return (
                f"{have:.0f} s of the previous revision's metrics before the rollout; "
                f"the detector needs {need:g} s"
            )
        return None

    def _feed(self, frame: Frame, after: float) -> list[float]:
        """The times of the new samples of the workload, from the rollout's completion on,
        each judged against the previous revision's baselines (which learn nothing more)."""
        row = frame.workload_rows.get(self.workload)
        if row is None:
            return []
        polarity = self.detector.polarity_ != 0
        out = []
        for i in np.flatnonzero(frame.timestamps > max(self.last_t, after - 1e-9)):
            self.last_t = t = float(frame.timestamps[i])
            values = frame.values[row, :, i]
            if not np.isfinite(values[polarity]).any():
                continue  # no data: a gap says nothing either way
            if t - self.last_judged >= self.settings.thin_s:
                self.last_judged = t
                self._count(values)
            out.append(t)
        return out

    def _count(self, values: F64) -> None:
        """Judge one sample of the workload: its p-value into the test, its harmful
        deviations into the evidence."""
        here = self.detector.rows_[self.workload]
        everything = np.full((len(self.detector.workloads_), len(values)), np.nan)
        everything[here] = values
        z, scores = self.detector.judge(everything)
        p = 1.0 - float(scores[here])
        self.p_values.append(round(p, 6))
        self.running.add(p)
        levels = self.detector.level_[here]
        for s, signal in enumerate(self.detector.signals_):
            harm = float(z[here, s]) * float(self.detector.polarity_[s])
            if harm <= 0 or not math.isfinite(harm):
                continue
            kept = self.worst.get(signal)
            if kept is None or abs(z[here, s]) > abs(kept.deviation):
                self.worst[signal] = Evidence(
                    signal, float(values[s]), float(levels[s]), float(z[here, s])
                )

    def _because(self, decision: Decision) -> str:
        t = self.running
        if decision is Decision.UNHEALTHY:
            return (
                f"the new revision's samples lean away from the previous revision's normal: "
                f"log-likelihood ratio {t.ratio:.2f} ≥ {t.test.upper:.2f} over {t.samples} "
                f"samples (false-fail rate {t.test.false_fail:.0%})"
            )
        return (
            f"the new revision's samples look like the previous revision's: log-likelihood "
            f"ratio {t.ratio:.2f} ≤ {t.test.lower:.2f} over {t.samples} samples "
            f"(false-pass rate {t.test.false_pass:.0%})"
        )

    def _undecided(self, seen: bool, judged_s: float) -> Verdict:
        if not seen:
            why = f"no metrics of {self.workload} since the rollout completed"
        else:
            why = (
                f"the window ended before the test was sure (log-likelihood ratio "
                f"{self.running.ratio:.2f} over {self.running.samples} samples, leaning "
                f"{self.running.leaning.value}); a longer --for decides"
            )
        return self._verdict(Decision.UNDECIDED, why, judged_s)

    def _verdict(self, decision: Decision, reason: str, judged_s: float | None) -> Verdict:
        current = self.state.current_revision
        harmful = sorted(self.worst.values(), key=lambda e: -abs(e.deviation))
        shown = tuple(e for e in harmful if abs(e.deviation) >= 3.0) or tuple(harmful[:1])
        return Verdict(
            self.workload,
            decision,
            reason,
            revision=current.number if current else None,
            images=current.images if current else (),
            rollout_s=self.rollout_s,
            judged_s=judged_s,
            evidence=shown if decision is not Decision.HEALTHY else tuple(harmful[:3]),
            ratio=self.running.ratio,
            samples=self.running.samples,
            p_values=tuple(self.p_values),
        )


def _rolled_back(
    verdict: Verdict, state: WorkloadState, settings: GateSettings, deps: GateDeps
) -> Verdict:
    """Roll back an unhealthy release when asked; the verdict says how it went."""
    if not settings.rollback or verdict.decision is not Decision.UNHEALTHY:
        return verdict
    target, current = rollback_revision(state), state.current_revision
    if target is None or current is None:
        return _replace(verdict, rollback_error="no earlier revision to roll back to")
    plan = Plan(
        workload=verdict.workload,
        playbook="healer-gate",
        action=ActionKind.ROLLBACK,
        params={"to_revision": target.number, "from_revision": current.number},
        mode=Mode.AUTO,
        guard_results=(),
        reason=f"healer gate: {verdict.reason}",
        verify_within_s=0.0,
    )
    try:
        record = deps.cluster.apply(plan, now=deps.clock())
    except HealerError as exc:
        return _replace(verdict, rollback_error=str(exc))
    if record.status is not ActionStatus.SUCCEEDED:
        return _replace(verdict, rollback_error=record.error or str(record.status))
    return _replace(verdict, rolled_back_to=target.number)


def _replace(verdict: Verdict, **changes: int | str | None) -> Verdict:
    return replace(verdict, **changes)  # type: ignore[arg-type] # fields named by the callers


def describe(verdict: Verdict) -> list[str]:
    """The verdict as a pipeline's log shows it: a headline, then its evidence."""
    w, d = verdict.workload, verdict.decision
    head = {
        Decision.HEALTHY: "HEALTHY",
        Decision.UNHEALTHY: "UNHEALTHY",
        Decision.UNDECIDED: "COULD NOT JUDGE",
    }[d]
    what = f" revision {verdict.revision}" if verdict.revision is not None else ""
    images = f" ({', '.join(verdict.images)})" if verdict.images else ""
    lines = [f"healer gate {w.namespace}/{w.name}{what}{images}: {head}"]
    lines.append(f"  {verdict.reason}")
    if verdict.rollout_s is not None:
        lines.append(f"  rollout complete after {verdict.rollout_s:.1f} s")
    if verdict.judged_s is not None:
        lines.append(f"  time to verdict: {verdict.judged_s:.1f} s after the rollout completed")
    for e in verdict.evidence:
        lines.append(
            f"  {e.signal}: {e.value:.4g} against a baseline of {e.baseline:.4g} "
            f"({e.deviation:+.1f} spreads)"
        )
    if verdict.rolled_back_to is not None:
        lines.append(f"  rolled back to revision {verdict.rolled_back_to}")
    if verdict.rollback_error is not None:
        lines.append(f"  rollback failed: {verdict.rollback_error}")
    return lines


def deps_from_settings(settings: Settings) -> GateDeps:
    """The real collaborators: the cluster of ``settings.cluster`` through the official
    client, and two Prometheus readers of ``settings.prometheus``."""
    if not settings.prometheus.url:
        raise ConfigError("healer gate needs prometheus.url (or --prometheus URL)")
    api = api_client(settings.cluster.kubeconfig, settings.cluster.context)
    return GateDeps(
        cluster=KubeActuator(api, component="healer-gate"),
        history=PrometheusSource.from_settings(settings.prometheus),
        live=PrometheusSource.from_settings(settings.prometheus),
        clock=lambda: datetime.now(UTC),
        sleep=time.sleep,
    )


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``10m``, ``1.5h`` in seconds; ValueError naming the shape."""
    found = re.fullmatch(r"(\d+(?:\.\d+)?)([smh]?)", text.strip())
    if found is None or float(found[1]) <= 0:
        raise ValueError(f"{text!r} is not a duration such as 90s, 10m or 1h")
    return float(found[1]) * {"": 1, "s": 1, "m": 60, "h": 3600}[found[2]]
