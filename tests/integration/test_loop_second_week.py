"""A daemon in its second week: faults met with days of history, on a small cluster.

The ``second-week`` scenario has three quiet days, then a bad release and, ninety
minutes later, a memory leak on another of its four workloads. Here the loop starts two
quiet hours before the first fault, its detector warmed as ``healer run`` warms one from
Prometheus (``SimHarness.warm``: the workloads' days before that start, without events,
one sample per shape bucket; three days at the 15-s scrape would take minutes of CPU),
and runs the faults at the scrape interval against the simulated API server over HTTP.

What it guards against: the rolled-back workload's return to its old levels opening an
incident of its own (the shape stage, blind to direction, found that return as novel as
the fault), and that lasting anomaly then counting toward the anomaly brake, which held
the leak's restart until the containers were OOM-killed.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from healer.audit.store import AuditStore
from healer.config import load_settings
from healer.daemon import Step
from healer.detect.shaped import ShapedDetector
from healer.harness import SimHarness
from healer.sim.scenario import Scenario, load_scenario
from healer.types import ActionKind, ActionStatus, Cause, OutcomeKind

REPO = Path(__file__).resolve().parents[2]
LEAD_S = 2 * 3600.0
"""The quiet time the loop runs at the scrape interval before the first fault."""
AFTER_S = 4 * 3600.0
"""How long the loop runs after the first fault: the leak would OOM-kill within one."""


def from_(scenario: Scenario, offset_s: float) -> Scenario:
    """The scenario as seen from ``offset_s`` after its start."""
    events = [e.model_copy(update={"at_s": e.at_s - offset_s}) for e in scenario.events]
    start = scenario.start + timedelta(seconds=offset_s)
    return scenario.model_copy(update={"start": start, "events": events})


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SimHarness, list[Step]]]:
    folder = tmp_path_factory.mktemp("second-week")
    settings = load_settings(None, guards={"mode": "auto"}, playbooks_dir=str(REPO / "playbooks"))
    scenario = load_scenario("second-week")
    first_fault_s = min(e.at_s for e in scenario.events)
    warm_s = first_fault_s - LEAD_S
    store = AuditStore(f"sqlite:///{folder / 'audit.db'}")
    steps: list[Step] = []
    harness = SimHarness.start(
        from_(scenario, warm_s), settings=settings, store=store, report=steps.append, workdir=folder
    )
    harness.warm()
    harness.run_for(LEAD_S + AFTER_S)
    yield harness, steps
    harness.close()
    store.close()


def incidents_of(harness: SimHarness, workload: str):  # type: ignore[no-untyped-def]
    summaries = harness.store.list_incidents(limit=500)
    return [harness.store.get_incident(s.id) for s in summaries if str(s.workload) == workload]


def test_the_detector_met_the_faults_warm(run: tuple[SimHarness, list[Step]]) -> None:
    harness, _ = run
    detector = harness.healer.detector
    assert isinstance(detector, ShapedDetector) and detector.stage_ is not None
    days = detector.stage_.rows_.min() * detector.settings.shape_bucket_s / 86_400
    assert days > 3.0, "three quiet days and the faults' hours, as shape-stage rows"


def test_the_bad_release_is_rolled_back_once_and_the_workload_left_alone_after(
    run: tuple[SimHarness, list[Step]],
) -> None:
    harness, _ = run
    [incident] = incidents_of(harness, "shop/cart")
    assert incident.summary.cause == Cause.BAD_RELEASE
    assert incident.summary.action == ActionKind.ROLLBACK
    assert incident.summary.outcome == OutcomeKind.HEALED


def test_the_leak_is_restarted_before_any_container_is_oom_killed(
    run: tuple[SimHarness, list[Step]],
) -> None:
    harness, _ = run
    [incident] = incidents_of(harness, "shop/checkout")
    assert incident.summary.cause == Cause.MEMORY_LEAK
    assert incident.summary.action == ActionKind.RESTART
    assert incident.summary.action_status == ActionStatus.SUCCEEDED
    assert incident.summary.outcome == OutcomeKind.HEALED
    pods = harness.cluster.pods_of("shop", "checkout")
    assert all("kubectl.kubernetes.io/restartedAt" in p["metadata"]["annotations"] for p in pods)
    assert all(p["status"]["containerStatuses"][0]["restartCount"] == 0 for p in pods)


def test_the_quiet_workloads_are_left_alone(run: tuple[SimHarness, list[Step]]) -> None:
    harness, steps = run
    workloads = {str(s.workload) for s in harness.store.list_incidents(limit=500)}
    assert workloads == {"shop/cart", "shop/checkout"}
    assert [s.kind for s in steps].count("outcome") == 2
