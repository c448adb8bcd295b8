"""The loop names the pipeline behind a bad release it rolls back.

The bad-release scenario in virtual time, with the simulated cluster's API over HTTP:
a pipeline told healer of the release (``record_release``, as ``POST /api/v1/releases``
does) just after it rolled out; the incident's diagnosis says which pipeline, commit,
author and link, the incident's page data carries the release, and the rollback heals.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from healer.audit.store import AuditStore
from healer.config import load_settings
from healer.harness import SimHarness
from healer.sim.scenario import load_scenario
from healer.types import Cause, OutcomeKind, Release, ReleaseSource, WorkloadRef

REPO = Path(__file__).resolve().parents[2]
CART = WorkloadRef("shop", "Deployment", "cart")


def test_the_bad_release_diagnosis_names_its_pipeline(tmp_path: Path) -> None:
    scenario = load_scenario("bad-release")
    settings = load_settings(None, guards={"mode": "auto"}, playbooks_dir=str(REPO / "playbooks"))
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    harness = SimHarness.start(scenario, settings=settings, store=store, workdir=tmp_path)
    try:
        shipped = scenario.start + timedelta(seconds=1800 + 40)
        store.record_release(
            Release(
                workload=CART,
                at=shipped,
                source=ReleaseSource.PLAIN,
                image="registry.local/shop/cart:2.5.0",
                commit="5e0f1d2c3b4a59687766554433221100ffeeddcc",
                author="ada",
                pipeline="shop-cart-deploy",
                pipeline_url="https://jenkins.example/job/shop-cart-deploy/88/",
            ),
            known=True,
            sender="jenkins",
            at=shipped,
        )
        harness.run_for(3600)
        [summary] = [s for s in store.list_incidents() if s.workload == CART]
        assert summary.cause is Cause.BAD_RELEASE and summary.outcome is OutcomeKind.HEALED
        detail = store.get_incident(summary.id)
        assert detail is not None
        [diagnosis] = [s.data for s in detail.timeline if s.kind == "diagnosis"][:1]
        assert str(diagnosis["explanation"]).endswith(
            "Released by plain pipeline shop-cart-deploy (commit 5e0f1d2c3b4a by ada): "
            "https://jenkins.example/job/shop-cart-deploy/88/."
        ), diagnosis
        assert [r.release.pipeline for r in detail.releases] == ["shop-cart-deploy"]
    finally:
        harness.close()
        store.close()
