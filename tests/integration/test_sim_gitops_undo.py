"""healer's rollback in the cluster alone, on a workload Git owns: the actuator's
``rollout undo`` lands, then the syncer puts the bad release back (Argo CD's self-heal
within seconds, Flux at its Kustomization's interval), as a real cluster would, and the
fault returns; without self-heal the undo stays, Argo CD showing the drift."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from healer.act.kube import KubeActuator
from healer.sim.cluster import Cluster
from healer.sim.controllers.sampler import SIGNALS
from healer.sim.scenario import load_scenario
from healer.types import ActionKind, ActionStatus, Mode, Plan, Signal, WorkloadRef

CART = WorkloadRef("shop", "Deployment", "cart")
GOOD, BAD = "registry.local/shop/cart:2.4.1", "registry.local/shop/cart:2.5.0"
MERGE = "application/merge-patch+json"


def image(cluster: Cluster) -> str:
    dep = cluster.store.get("deployments", "shop", "cart")
    return str(dep["spec"]["template"]["spec"]["containers"][0]["image"])


def error_ratio(cluster: Cluster) -> float:
    return float(cluster.samples[-1][0, SIGNALS.index(Signal.ERROR_RATIO)])


def undo(kube_api: Any, cluster: Cluster) -> None:
    rollback = Plan(
        CART, "test", ActionKind.ROLLBACK, {"to_revision": 1}, Mode.AUTO, (), "t", 600.0
    )
    record = KubeActuator(kube_api).apply(rollback, now=datetime.now(UTC))
    assert record.status is ActionStatus.SUCCEEDED, record.error
    assert image(cluster) == GOOD


@pytest.fixture
def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Cluster:
    return Cluster(load_scenario(request.param), git_root=tmp_path / "git")


@pytest.mark.parametrize("cluster", ["gitops-bad-release"], indirect=True)
def test_argo_cd_self_heal_reverts_the_undo_and_the_fault_returns(
    kube_api: Any, cluster: Cluster
) -> None:
    cluster.advance(1800 + 600)
    assert image(cluster) == BAD and error_ratio(cluster) > 0.1
    undo(kube_api, cluster)
    cluster.advance(15)
    assert image(cluster) == BAD  # self-heal, 5 s after the drift
    cluster.advance(600)
    assert error_ratio(cluster) > 0.1


@pytest.mark.parametrize("cluster", ["gitops-bad-release"], indirect=True)
def test_without_self_heal_the_undo_stays_and_the_fault_ends(
    kube_api: Any, cluster: Cluster
) -> None:
    patch = {"spec": {"syncPolicy": {"automated": {"selfHeal": False}}}}
    cluster.patch_object("applications", "argocd", "cart", patch, MERGE, dry_run=False)
    cluster.advance(1800 + 600)
    undo(kube_api, cluster)
    cluster.advance(900)
    assert image(cluster) == GOOD and error_ratio(cluster) < 0.05
    status = cluster.get_object("applications", "argocd", "cart")["status"]
    assert status["sync"]["status"] == "OutOfSync"


@pytest.mark.parametrize("cluster", ["flux-bad-release"], indirect=True)
def test_flux_reverts_the_undo_at_its_interval(kube_api: Any, cluster: Cluster) -> None:
    cluster.advance(1800 + 600)
    assert image(cluster) == BAD
    undo(kube_api, cluster)
    cluster.advance(60)
    assert image(cluster) == GOOD  # Flux does not watch the workload
    cluster.advance(600)  # the Kustomization's 10m interval
    assert image(cluster) == BAD
