"""The composition root: the one place the loop is wired, for every entry point.

``healer run`` (runner), ``healer demo`` and the test harness (harness), and the
benchmarks build their cycle here, each passing its own edges: where metrics come from
(Prometheus or the simulator), the cluster the actuator reaches, the audit store, and
how steps are told to people. What the loop is made of from there (its detector, its
diagnoser and escalation queue from the settings, the lifecycle's collaborators) is
decided here and in ``Healer`` only, so an entry point never wires a part of its own.

Decisions: the edges are typed by their protocols (``MetricsSource``, ``Actuator``),
never by the concrete Prometheus or Kubernetes adapters, so a test passes a fake; the
playbooks come in validated, since each entry point loads them first to stop a bad one
before anything starts.
"""

from __future__ import annotations

from collections.abc import Sequence

from healer.audit.roles import DaemonStore
from healer.collect.source import MetricsSource
from healer.config import Settings
from healer.daemon import Actuator, Detector, Healer, Reporter, Step
from healer.decide import Playbook
from healer.detect.combined import build_detector


def _unreported(step: Step) -> None:
    """Steps go to the log only (``healer run``: the log is the operator's view)."""


def build_loop(
    settings: Settings,
    *,
    source: MetricsSource,
    actuator: Actuator,
    store: DaemonStore,
    playbooks: Sequence[Playbook],
    report: Reporter | None = None,
    detector: Detector | None = None,
) -> Healer:
    """The loop on ``settings`` between these edges; a fresh detector unless one (warmed
    already) is given. Nothing is resumed: the caller resumes the store's open
    incidents when it starts acting (at once, or on taking the lead)."""
    return Healer(
        source=source,
        detector=detector if detector is not None else build_detector(settings.detector),
        actuator=actuator,
        store=store,
        playbooks=playbooks,
        settings=settings,
        report=report or _unreported,
    )
