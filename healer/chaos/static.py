"""The ``static`` contender: threshold alerts wired to healer's playbooks.

What many teams run today: a few Prometheus alerting rules, each routed by Alertmanager
to a webhook that runs a remediation. The rules, as PromQL-style alerts on healer's
signals (``healer.types.Signal``):

===================  ======================================  =====  ==============  ========
alert                expression                              for    stands for      playbook
===================  ======================================  =====  ==============  ========
HighErrorRatio       error_ratio > 0.05                      5m     bad_release     rollback
MemoryNearLimit      memory > 0.90 (of the limit)            0      memory_leak     restart
CpuOverRequests      cpu > 0.80 (of the requests)            5m     overload        scale
===================  ======================================  =====  ==============  ========

An alert fires when every sample of the last ``for`` is above its threshold (with
``for: 0``, the latest sample); a gap in the data resets it, as an absent series
resolves a Prometheus alert. The remediation runs once when an alert starts firing, as
a webhook receiver does, through the same path healer's own plans take: the playbook
matching the alert's cause, the same guardrails (cooldown, rate limit, anomaly brake,
rollback only to an existing revision), the same actuator. The scale playbook sizes from
CPU over the alert's threshold. There is no verification and no escalation: alerts
have no memory of what the webhook did.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from healer import decide
from healer.collect.source import MetricsSource
from healer.config import GuardSettings
from healer.daemon import Actuator
from healer.decide import Playbook
from healer.errors import HealerError
from healer.types import (
    ActionHistory,
    ActionStatus,
    Cause,
    Diagnosis,
    Direction,
    Finding,
    Frame,
    Signal,
    SignalDeviation,
    WorkloadRef,
)


@dataclass(frozen=True)
class Rule:
    name: str
    signal: Signal
    threshold: float
    """The alert fires above this value."""
    for_s: float
    """How long the expression must hold before the alert fires."""
    cause: Cause
    """What the alert's runbook assumes, which selects the playbook."""


RULES = (
    Rule("HighErrorRatio", Signal.ERROR_RATIO, 0.05, 300.0, Cause.BAD_RELEASE),
    Rule("MemoryNearLimit", Signal.MEMORY, 0.90, 0.0, Cause.MEMORY_LEAK),
    Rule("CpuOverRequests", Signal.CPU, 0.80, 300.0, Cause.OVERLOAD),
)
WINDOW_S = 900.0
"""History each evaluation reads: more than the longest ``for``."""


@dataclass(frozen=True)
class Firing:
    workload: WorkloadRef
    rule: Rule
    value: float
    """The latest value of the rule's signal."""


def firing(frame: Frame, rules: Sequence[Rule] = RULES, *, step_s: float) -> list[Firing]:
    """The alerts firing at the frame's last sample; pure.

    An alert with ``for_s`` needs ``for_s / step_s + 1`` samples, one scrape step apart and
    all above the threshold: a shorter history, or a NaN among them, holds it back.
    """
    out: list[Firing] = []
    if frame.timestamps.size == 0:
        return out
    for rule in rules:
        need = math.floor(rule.for_s / step_s + 1e-9) + 1
        if frame.timestamps.size < need:
            continue
        if frame.timestamps[-1] - frame.timestamps[-need] > rule.for_s + step_s / 2:
            continue  # samples missing in between: the series had a gap
        s = frame.signals.index(rule.signal)
        window = frame.values[:, s, -need:]
        with np.errstate(invalid="ignore"):
            above = np.all(window > rule.threshold, axis=1)  # NaN compares False
        for w in np.flatnonzero(above):
            out.append(Firing(frame.workloads[w], rule, float(window[w, -1])))
    return out


@dataclass(frozen=True)
class StaticAction:
    at: datetime
    workload: WorkloadRef
    rule: str
    action: str
    status: str


@dataclass
class StaticRules:
    """Evaluate the rules every cycle and run the playbook of each alert that starts firing."""

    source: MetricsSource
    actuator: Actuator
    playbooks: Sequence[Playbook]
    guards: GuardSettings
    step_s: float
    rules: Sequence[Rule] = RULES
    active: set[tuple[WorkloadRef, str]] = field(default_factory=set)
    fired: list[tuple[datetime, WorkloadRef, str]] = field(default_factory=list)
    """Every alert that started firing: when, on which workload, which rule."""
    actions: list[StaticAction] = field(default_factory=list)

    def cycle(self, now: datetime) -> None:
        frame = self.source.fetch(until=now, window_s=WINDOW_S)
        alerts = firing(frame, self.rules, step_s=self.step_s)
        current = {(a.workload, a.rule.name) for a in alerts}
        new = [a for a in alerts if (a.workload, a.rule.name) not in self.active]
        self.active = current
        anomalous = len({a.workload for a in alerts})
        for alert in new:
            self.fired.append((now, alert.workload, alert.rule.name))
            try:
                self._remediate(alert, anomalous, len(frame.workloads), now)
            except HealerError:
                continue  # a webhook that fails does not stop the others

    def _remediate(self, alert: Firing, anomalous: int, watched: int, now: datetime) -> None:
        rule = alert.rule
        deviation = SignalDeviation(
            rule.signal,
            value=alert.value,
            baseline=rule.threshold,
            deviation=alert.value / rule.threshold,
            direction=Direction.UP,
        )
        finding = Finding(alert.workload, now, 1.0, (deviation,), now, f"static:{rule.name}")
        diagnosis = Diagnosis(alert.workload, rule.cause, 1.0, f"alert {rule.name} firing")
        state = self.actuator.read_state(alert.workload)
        plan = decide.plan(
            diagnosis,
            finding,
            state,
            playbooks=self.playbooks,
            guards=self.guards,
            history=self._history(),
            anomalous_workloads=anomalous,
            watched_workloads=watched,
            now=now,
        )
        if plan is None or not plan.allowed:
            return
        record = self.actuator.apply(plan, now=now)
        self.actions.append(
            StaticAction(now, alert.workload, rule.name, str(plan.action), str(record.status))
        )

    def _history(self) -> ActionHistory:
        taken = [a for a in self.actions if a.status == ActionStatus.SUCCEEDED]
        return ActionHistory(
            last_action_at={a.workload: a.at for a in taken},
            recent_action_times=tuple(a.at for a in taken),
            in_flight=0,  # nothing verifies a webhook's action, so nothing is in flight
        )
