"""A cluster-wide slowdown: every workload looks sick at once, and nothing is touched.

The ``mass-slowdown`` scenario slows every one of its four workloads down five minutes
after a good release of one of them, which then looks like a bad release. The anomaly
brake holds every action, the rollback included, with one escalation for the event.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from healer.audit.store import AuditStore
from healer.config import load_settings
from healer.decide.escalation import Escalation
from healer.harness import SimHarness
from healer.sim.scenario import load_scenario
from healer.types import ActionStatus, Cause, OutcomeKind

REPO = Path(__file__).resolve().parents[2]
NINETY_MINUTES_S = 90 * 60


@dataclass
class RecordingNotifier:
    sent: list[Escalation] = field(default_factory=list)

    def notify(self, escalation: Escalation) -> list[str]:
        self.sent.append(escalation)
        return []


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SimHarness, RecordingNotifier]]:
    folder = tmp_path_factory.mktemp("slowdown")
    settings = load_settings(None, guards={"mode": "auto"}, playbooks_dir=str(REPO / "playbooks"))
    store = AuditStore(f"sqlite:///{folder / 'audit.db'}")
    harness = SimHarness.start(
        load_scenario("mass-slowdown"), settings=settings, store=store, workdir=folder
    )
    notifier = RecordingNotifier()
    harness.healer.notifier = notifier
    harness.run_for(NINETY_MINUTES_S)
    yield harness, notifier
    harness.close()
    store.close()


def test_every_workload_is_found_and_held(run: tuple[SimHarness, RecordingNotifier]) -> None:
    harness, _ = run
    incidents = harness.store.list_incidents(limit=500)
    assert {str(i.workload) for i in incidents} == {
        "shop/catalog",
        "shop/search",
        "shop/cart",
        "web/storefront",
    }
    assert {i.outcome for i in incidents} == {OutcomeKind.ESCALATED}
    assert harness.store.actions(status=ActionStatus.SUCCEEDED) == []


def test_the_released_workload_is_not_rolled_back(
    run: tuple[SimHarness, RecordingNotifier],
) -> None:
    harness, _ = run
    [catalog] = [i for i in harness.store.list_incidents() if i.workload.name == "catalog"]
    assert catalog.cause == Cause.BAD_RELEASE, "a release just before the slowdown"
    detail = harness.store.get_incident(catalog.id)
    assert detail is not None
    plan = next(s.data for s in detail.timeline if s.kind == "plan")
    assert plan["action"] == "rollback"
    blocked = [g["guard"] for g in plan["guard_results"] if not g["passed"]]  # type: ignore[index, union-attr, call-overload]
    assert blocked == ["anomaly_brake"]
    deployment = harness.cluster.get_object("deployments", "shop", "catalog")
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "registry.local/shop/catalog:3.1.0"


def test_one_escalation_for_the_whole_event(run: tuple[SimHarness, RecordingNotifier]) -> None:
    _, notifier = run
    [sent] = notifier.sent
    assert "anomaly_brake" in sent.reason
    assert "upstream or monitoring fault" in sent.reason
