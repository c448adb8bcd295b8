"""Labelled diagnoses from the simulator's ground truth, to train the learned diagnoser.

Each scenario runs in virtual time with healer in dry-run mode, so the faults are never
remedied and every finding is seen at its natural course. At each diagnosis the
features are recorded with the cause the scenario says the workload had: the fault
active on it (a release is a bad release only when its scenario expects a rollback), or
``unknown`` when no fault was (a benign release, the daily peak, a slow-down: what
must never be acted on). Operators' feedback adds examples the same way
(``examples_from_feedback``; ``examples_from_store`` reads them with the feature
rows the daemon kept in the audit store).

This module sits beside the harness, above the steps: only the edges import ``sim``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from healer.audit.roles import TrainingLabels
from healer.audit.store import AuditStore
from healer.config import load_settings
from healer.diagnose.features import FEATURES, features
from healer.diagnose.learned import Example
from healer.diagnose.rules import explain
from healer.harness import SimHarness
from healer.sim.scenario import Event, Scenario, load_scenario
from healer.types import Cause, Diagnosis, Feedback, Finding, Frame, Verdict, WorkloadState

FAULT_CAUSES: Mapping[str, Cause] = {
    "memory_leak": Cause.MEMORY_LEAK,
    "overload": Cause.OVERLOAD,
    "crash_loop": Cause.CRASH_LOOP,
    "cpu_hog": Cause.CPU_HOG,
    "pod_leak": Cause.POD_OUTLIER,
    "pod_slow": Cause.POD_OUTLIER,
}
FAULT_SPAN_S = 3 * 3600.0
"""A fault left alone is still the cause of what is seen this long after it began."""


def cause_at(scenario: Scenario, workload: str, elapsed_s: float) -> Cause:
    """The ground-truth cause of an anomaly of ``workload`` at ``elapsed_s``."""
    active = [
        e
        for e in scenario.events
        if e.workload == workload and e.at_s <= elapsed_s < e.at_s + FAULT_SPAN_S
    ]
    for event in sorted(active, key=lambda e: -e.at_s):
        cause = _cause_of(event)
        if cause is not None:
            return cause
    return Cause.UNKNOWN


def _cause_of(event: Event) -> Cause | None:
    if event.kind == "release":
        return Cause.BAD_RELEASE if event.expect == "rollback" else None
    return FAULT_CAUSES.get(event.kind)


def examples_from_scenario(
    scenario: Scenario, *, hours: float, playbooks_dir: Path, seed: int | None = None
) -> list[Example]:
    """Run ``scenario`` in dry-run mode and label every diagnosis it makes."""
    if seed is not None:
        scenario = scenario.model_copy(update={"seed": seed})
    folder = Path(tempfile.mkdtemp(prefix="healer-groundtruth-"))
    settings = load_settings(None, guards={"mode": "dry_run"}, playbooks_dir=str(playbooks_dir))
    store = AuditStore(f"sqlite:///{folder / 'audit.db'}")
    examples: list[Example] = []

    def record(finding: Finding, frame: Frame, state: WorkloadState, share: float) -> Diagnosis:
        elapsed_s = (finding.onset - scenario.start).total_seconds()
        cause = cause_at(scenario, str(finding.workload), elapsed_s)
        row = features(finding, frame, state, share)
        rules = explain(finding, frame, state)
        examples.append(Example(row, cause, f"sim:{scenario.name}", rules.cause))
        return rules

    harness = SimHarness.start(scenario, settings=settings, store=store, workdir=folder)
    harness.healer.diagnose = record
    try:
        harness.run_for(hours * 3600)
    finally:
        harness.close()
        store.close()
    return examples


def examples_from_scenarios(
    names: Iterable[str], *, hours: float, playbooks_dir: Path, seeds: Sequence[int] = (0,)
) -> list[Example]:
    return [
        example
        for name in names
        for seed in seeds
        for example in examples_from_scenario(
            load_scenario(name), hours=hours, playbooks_dir=playbooks_dir, seed=seed
        )
    ]


def examples_from_feedback(
    feedback: Iterable[Feedback], rows: Mapping[int, NDArray[np.float64]]
) -> list[Example]:
    """Operators' labels: a confirmed cause for a true positive, ``unknown`` for a false
    one. ``rows`` holds the features recorded for each incident at its diagnosis;
    feedback on an incident without them is skipped."""
    examples = []
    for label in feedback:
        row = rows.get(label.incident_id)
        if row is None:
            continue
        if label.verdict is Verdict.FALSE_POSITIVE:
            cause = Cause.UNKNOWN
        elif label.cause is not None:
            cause = label.cause
        else:
            continue
        examples.append(Example(row, cause, f"feedback:{label.incident_id}"))
    return examples


def examples_from_store(store: TrainingLabels) -> list[Example]:
    """Operators' labels from the audit store, each with the feature row the daemon
    kept at the incident's diagnosis. The latest label of an incident wins; an incident
    diagnosed before rows were kept, or with other ``FEATURES``, is skipped."""
    latest = {label.incident_id: label for label in store.feedback()}
    rows = {
        incident_id: np.array([kept[name] for name in FEATURES], dtype=np.float64)
        for incident_id, kept in store.diagnosis_features().items()
        if set(kept) == set(FEATURES)
    }
    return examples_from_feedback(latest.values(), rows)


__all__ = [
    "FAULT_CAUSES",
    "cause_at",
    "examples_from_feedback",
    "examples_from_scenario",
    "examples_from_scenarios",
    "examples_from_store",
]
