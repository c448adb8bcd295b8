"""The loop with a trained joint model named in the settings, on a simulated fault.

Trains a version on a benign simulated day, registers it, and runs the memory-leak
scenario with ``detector.model_version`` naming it: the leak is found by the combined
detector (with the shape stage, still warming up), healed by a restart, and the finding
records the model version.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from healer.audit.store import AuditStore
from healer.config import load_settings
from healer.detect.train import train
from healer.harness import SimHarness
from healer.history import sim_history
from healer.sim.scenario import load_scenario
from healer.types import OutcomeKind

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 3, 3, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimHarness]:
    folder = tmp_path_factory.mktemp("loop-model")
    models = folder / "models"
    train(sim_history("benign-day", duration_s=3 * 3600), now=NOW, models_dir=models)
    settings = load_settings(
        None,
        guards={"mode": "auto"},
        detector={"model_version": "joint-1", "models_dir": str(models)},
        playbooks_dir=str(REPO / "playbooks"),
    )
    store = AuditStore(f"sqlite:///{folder / 'audit.db'}")
    run = SimHarness.start(
        load_scenario("memory-leak"), settings=settings, store=store, workdir=folder
    )
    run.run_for(5400)
    yield run
    run.close()
    store.close()


def test_the_leak_is_found_with_the_model_and_healed(harness: SimHarness) -> None:
    summaries = harness.store.list_incidents(limit=50)
    orders = [s for s in summaries if s.workload.name == "orders"]
    assert orders, [str(s.workload) for s in summaries]
    detail = harness.store.get_incident(orders[0].id)
    assert detail is not None
    finding = next(step for step in detail.timeline if step.kind == "finding")
    assert finding.data["model_version"] == "streaming-baseline/1+joint-1+shape"
    assert detail.summary.outcome == OutcomeKind.HEALED


def test_the_status_names_the_model_in_service(harness: SimHarness) -> None:
    assert harness.healer.status()["model_version"] == "streaming-baseline/1+joint-1+shape"
