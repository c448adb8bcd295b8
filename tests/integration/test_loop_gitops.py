"""The loop heals a release that arrived through Git by committing the rollback to Git.

On ``gitops-bad-release`` the simulated Argo CD applies the cart Deployment from a bare
repository on disk, with self-heal. healer, with ``gitops.enabled`` and in auto mode,
reads the Application through the official client (``CustomObjectsApi`` over HTTP),
commits the previous image to the repository with its trailers, pushes it, and asks for
a hard refresh; the syncer rolls the release back, and it stays back.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from healer.act.customobjects import CustomObjects
from healer.act.kube import api_client
from healer.audit.store import AuditStore
from healer.config import load_settings
from healer.errors import PermanentActionError
from healer.harness import SimHarness
from healer.sim.scenario import load_scenario
from healer.types import ActionKind, ActionStatus, ObjectRef, OutcomeKind, WorkloadRef

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CART = WorkloadRef("shop", "Deployment", "cart")
GOOD, BAD = "registry.local/shop/cart:2.4.1", "registry.local/shop/cart:2.5.0"


def _run(
    folder: Path, scenario: str = "gitops-bad-release", **gitops: object
) -> tuple[SimHarness, AuditStore]:
    settings = load_settings(
        None,
        guards={"mode": "auto", "gitops_mode": "auto"},
        gitops={"enabled": True, "cache_dir": str(folder / "git"), **gitops},
        playbooks_dir=str(REPO / "playbooks"),
    )
    store = AuditStore(f"sqlite:///{folder / 'audit.db'}")
    running = SimHarness.start(
        load_scenario(scenario), settings=settings, store=store, workdir=folder
    )
    running.run_for(1.5 * 3600)
    return running, store


@pytest.fixture(scope="module", params=["gitops-bad-release", "flux-bad-release"])
def harness(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SimHarness]:
    running, store = _run(tmp_path_factory.mktemp("gitops-loop"), request.param)
    yield running
    running.close()
    store.close()


def _remote(harness: SimHarness) -> Path:
    return Path(urlsplit(harness.cluster.git_remotes["cart"]).path)


def test_the_rollback_is_a_commit_with_its_trailers_and_the_release_stays_back(
    harness: SimHarness,
) -> None:
    [summary] = harness.store.list_incidents(limit=50)
    assert (summary.workload, summary.action) == (CART, ActionKind.ROLLBACK)
    assert summary.action_status == ActionStatus.SUCCEEDED
    assert summary.outcome == OutcomeKind.HEALED
    detail = harness.store.get_incident(summary.id)
    assert detail is not None
    [action] = detail.actions
    commit = action.request["commit"]
    assert isinstance(commit, dict)
    remote = _remote(harness)
    body = subprocess.run(
        ["git", "log", "-1", "--format=%B", str(commit["sha"])],
        cwd=remote, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert f"Healer-Incident: {summary.id}" in body and "Healer-Action: rollback" in body
    sync = action.request["sync"]
    assert isinstance(sync, list) and all(isinstance(s, dict) and "error" not in s for s in sync)
    if harness.cluster.scenario.name == "gitops-bad-release":
        assert sync == [
            {
                "object": "applications.argoproj.io/argocd/cart",
                "annotations": {"argocd.argoproj.io/refresh": "hard"},
            }
        ]
    else:  # Flux: the source, then the Kustomization, with the same stamp
        objects = [s["object"] for s in sync if isinstance(s, dict)]
        assert objects == [
            "gitrepositories.source.toolkit.fluxcd.io/flux-system/cart",
            "kustomizations.kustomize.toolkit.fluxcd.io/flux-system/cart",
        ]
    pods = harness.cluster.state.pods_of(harness.cluster.state.workload("shop", "cart"))
    assert pods and {p["spec"]["containers"][0]["image"] for p in pods} == {GOOD}


def test_custom_objects_read_and_annotate_the_owner_over_http(harness: SimHarness) -> None:
    objects = CustomObjects(api_client(harness.kubeconfig))
    url = harness.cluster.git_remotes["cart"]
    if harness.cluster.scenario.name == "gitops-bad-release":
        kind = ("argoproj.io", "v1alpha1", "applications", "argocd")
        found = objects.get(ObjectRef(*kind, "cart"))
        assert found["spec"]["source"]["repoURL"] == url  # type: ignore[index,call-overload]
    else:
        kind = ("source.toolkit.fluxcd.io", "v1", "gitrepositories", "flux-system")
        assert objects.get(ObjectRef(*kind, "cart"))["spec"]["url"] == url  # type: ignore[index,call-overload]
    objects.annotate(ObjectRef(*kind, "cart"), {"healer.io/probe": "1"})
    again = objects.get(ObjectRef(*kind, "cart"))
    assert again["metadata"]["annotations"]["healer.io/probe"] == "1"  # type: ignore[index,call-overload]
    with pytest.raises(PermanentActionError, match="/gone: 404"):
        objects.get(ObjectRef(*kind, "gone"))


def test_credentials_that_cannot_be_read_escalate_and_leave_the_cluster_alone(
    tmp_path: Path,
) -> None:
    running, store = _run(tmp_path, token_file=str(tmp_path / "absent"), undo_first=True)
    try:
        [summary] = store.list_incidents(limit=50)
        assert summary.action_status == ActionStatus.FAILED
        assert summary.outcome == OutcomeKind.ESCALATED
        outcome = store.incident(summary.id).outcome
        assert outcome is not None
        assert "gitops.token_file" in outcome.evidence
        assert "nothing changed in the cluster" in outcome.evidence
        pods = running.cluster.state.pods_of(running.cluster.state.workload("shop", "cart"))
        assert {p["spec"]["containers"][0]["image"] for p in pods} == {BAD}  # no undo
    finally:
        running.close()
        store.close()
