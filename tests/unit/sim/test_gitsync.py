"""The simulated cluster's Git syncer on the scenario gitops-bad-release: commits synced
at Argo CD's poll, drift reverted by self-heal (and not without it), a hard refresh
served at once, Flux's sources and Kustomizations, and bad input shown on the owner's
status while the cluster runs on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from healer.errors import ConfigError
from healer.sim.cluster import Cluster
from healer.sim.controllers.gitsync import GitSync
from healer.sim.gitrepo import commit, git, read_file
from healer.sim.gitstatus import parse_duration
from healer.sim.objects import K8s
from healer.sim.scenario import Event, load_scenario

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
GOOD, BAD = "registry.local/shop/cart:2.4.1", "registry.local/shop/cart:2.5.0"
POLL_S = 180.0


@pytest.fixture
def cluster(tmp_path: Path) -> Cluster:
    return Cluster(load_scenario("gitops-bad-release"), git_root=tmp_path / "git")


def image(cluster: Cluster) -> str:
    dep = cluster.store.get("deployments", "shop", "cart")
    return str(dep["spec"]["template"]["spec"]["containers"][0]["image"])


def app(cluster: Cluster, name: str = "cart") -> K8s:
    return cluster.get_object("applications", "argocd", name)


def release(cluster: Cluster, new_image: str) -> str:
    """The pipeline's commit of ``new_image`` for shop/cart, at the cluster's clock."""
    assert cluster.gitops is not None
    event = Event(
        at_s=0, kind="release", via="git", workload="shop/cart", image=new_image, expect="none"
    )
    return cluster.gitops.release(event, at=cluster.clock.now())


def pipeline(cluster: Cluster) -> Path:
    assert cluster.gitops is not None
    return cluster.gitops.repositories["cart"].pipeline


def test_the_cluster_starts_synced_healthy_and_tracked(cluster: Cluster) -> None:
    status = app(cluster)["status"]
    assert (status["sync"]["status"], status["health"]["status"]) == ("Synced", "Healthy")
    head = git("rev-parse", "main", cwd=cluster.gitops.repositories["cart"].remote)  # type: ignore[union-attr]
    assert status["sync"]["revision"] == head.decode().strip()
    assert status["sourceType"] == "Kustomize"
    assert status["summary"]["images"] == [GOOD]
    meta = cluster.store.get("deployments", "shop", "cart")["metadata"]
    assert meta["labels"]["app.kubernetes.io/instance"] == "cart"
    assert meta["annotations"]["argocd.argoproj.io/tracking-id"] == "cart:apps/Deployment:shop/cart"
    assert meta["generation"] == 1  # stamping the marks changed no pod template
    checkout = cluster.store.get("deployments", "shop", "checkout")["metadata"]
    assert "app.kubernetes.io/instance" not in checkout["labels"]
    url = app(cluster)["spec"]["source"]["repoURL"]
    assert url == cluster.git_remotes["cart"] and url.startswith("file://")


def test_the_scenario_release_arrives_by_commit_and_rolls_out_at_the_poll(
    cluster: Cluster,
) -> None:
    cluster.advance(1785)
    assert image(cluster) == GOOD
    cluster.advance(15)  # the release's commit, at 1800 s, which is also a poll
    assert image(cluster) == BAD
    status = app(cluster)["status"]
    assert status["sync"]["status"] == "Synced"
    assert status["operationState"]["phase"] == "Succeeded"
    assert [h["revision"] for h in status["history"]][-1] == status["sync"]["revision"]
    log = git("log", "--format=%s", "main", cwd=cluster.gitops.repositories["cart"].remote)  # type: ignore[union-attr]
    assert log.decode().splitlines() == [f"Release cart {BAD}", "Initial release"]
    kustomization = yaml.safe_load(read_file(pipeline(cluster), "apps/cart/kustomization.yaml"))
    assert kustomization["images"] == [{"name": "registry.local/shop/cart", "newTag": "2.5.0"}]


def test_a_commit_between_polls_waits_for_the_next_poll(cluster: Cluster) -> None:
    cluster.advance(30)
    release(cluster, BAD)
    cluster.advance(POLL_S - 60)  # the clock at 150 s: no poll since the commit
    assert image(cluster) == GOOD
    cluster.advance(30)  # 180 s: Argo CD's poll
    assert image(cluster) == BAD


def test_self_heal_reverts_a_rollback_made_in_the_cluster(cluster: Cluster) -> None:
    cluster.advance(1800)
    assert image(cluster) == BAD
    undo = {"spec": {"template": {"spec": {"containers": [{"name": "cart", "image": GOOD}]}}}}
    cluster.patch_workload("deployments", "shop", "cart", undo, STRATEGIC)
    assert image(cluster) == GOOD
    assert app(cluster)["status"]["sync"]["status"] == "OutOfSync"  # seen at once
    cluster.advance(15)  # past the 5 s self-heal delay
    assert image(cluster) == BAD
    status = app(cluster)["status"]
    assert status["sync"]["status"] == "Synced"
    assert len(status["history"]) == 3  # the initial sync, the release, the self-heal


def test_without_self_heal_the_drift_stays_out_of_sync(cluster: Cluster) -> None:
    cluster.patch_object(
        "applications",
        "argocd",
        "cart",
        {"spec": {"syncPolicy": {"automated": {"selfHeal": False}}}},
        MERGE,
        dry_run=False,
    )
    cluster.advance(1800)
    undo = {"spec": {"template": {"spec": {"containers": [{"name": "cart", "image": GOOD}]}}}}
    cluster.patch_workload("deployments", "shop", "cart", undo, STRATEGIC)
    cluster.advance(2 * POLL_S)
    assert image(cluster) == GOOD
    status = app(cluster)["status"]
    assert status["sync"]["status"] == "OutOfSync"
    assert status["resources"][0]["status"] == "OutOfSync"
    release(cluster, "registry.local/shop/cart:2.6.0")  # a new revision is still synced
    cluster.advance(POLL_S)
    assert image(cluster) == "registry.local/shop/cart:2.6.0"


def test_a_hard_refresh_syncs_a_new_commit_at_once_and_is_removed(cluster: Cluster) -> None:
    cluster.advance(30)
    revision = release(cluster, BAD)
    patch = {"metadata": {"annotations": {"argocd.argoproj.io/refresh": "hard"}}}
    cluster.patch_object("applications", "argocd", "cart", patch, MERGE, dry_run=False)
    assert image(cluster) == BAD  # in the write's reaction, before any tick
    found = app(cluster)
    assert "argocd.argoproj.io/refresh" not in (found["metadata"].get("annotations") or {})
    assert found["status"]["sync"]["revision"] == revision
    assert found["status"]["reconciledAt"] == "2026-03-05T14:00:30Z"


def test_a_rollback_pushed_to_git_sticks(cluster: Cluster, tmp_path: Path) -> None:
    """What healer's Git path does: clone, change the tag back, push, refresh."""
    cluster.advance(1800)
    clone = tmp_path / "clone"
    git("clone", "--quiet", cluster.git_remotes["cart"], str(clone), cwd=tmp_path)
    path = clone / "apps/cart/kustomization.yaml"
    path.write_text(path.read_text().replace("2.5.0", "2.4.1"))
    git("commit", "--quiet", "-am", "Roll cart back to 2.4.1", cwd=clone)
    git("push", "--quiet", "origin", "HEAD:main", cwd=clone)
    patch = {"metadata": {"annotations": {"argocd.argoproj.io/refresh": "hard"}}}
    cluster.patch_object("applications", "argocd", "cart", patch, MERGE, dry_run=False)
    assert image(cluster) == GOOD
    cluster.advance(4 * POLL_S)
    assert image(cluster) == GOOD
    assert app(cluster)["status"]["sync"]["status"] == "Synced"


def new_app(cluster: Cluster, name: str, **source: Any) -> K8s:
    body = {
        "metadata": {"name": name},
        "spec": {
            "project": "default",
            "source": {"repoURL": cluster.git_remotes["cart"], "path": "apps/other", **source},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": "web"},
            "syncPolicy": {"automated": {"selfHeal": True}},
        },
    }
    cluster.create_object("applications", "argocd", body, dry_run=False)
    return app(cluster, name)


def condition(found: K8s) -> tuple[str, str]:
    (only,) = found["status"]["conditions"]
    return only["type"], only["message"]


@pytest.mark.parametrize(
    ("source", "files", "kind", "message"),
    [
        ({"repoURL": "file:///nowhere/repo.git"}, {}, "ComparisonError", "repository not found"),
        ({"repoURL": "https://git.example/repo.git"}, {}, "ComparisonError", "only file://"),
        ({"targetRevision": "no-such-branch"}, {}, "ComparisonError", "unable to resolve"),
        ({"path": "apps/missing"}, {}, "ComparisonError", "app path does not exist"),
        ({}, {"apps/other/web.yaml": "kind: [broken"}, "ComparisonError", "not a valid manifest"),
        (
            {},
            {
                "apps/other/widget.yaml": "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n"
                "  name: w\n"
            },
            "ComparisonError",
            "could not find the requested resource",
        ),
        (
            {},
            {
                "apps/other/lease.yaml": "apiVersion: coordination.k8s.io/v1\nkind: Lease\n"
                "metadata: {name: l}\nspec: {leaseDurationSeconds: -1}\n"
            },
            "SyncError",
            "spec.leaseDurationSeconds",
        ),
    ],
)
def test_bad_input_is_a_condition_on_the_application_and_the_cluster_runs_on(
    cluster: Cluster, source: dict[str, str], files: dict[str, str], kind: str, message: str
) -> None:
    if files:
        commit(pipeline(cluster), files, "Add other", at=cluster.clock.now())
    found = new_app(cluster, "other", **source)
    assert condition(found)[0] == kind
    assert message in condition(found)[1]
    if kind == "SyncError":
        assert found["status"]["operationState"]["phase"] == "Failed"
        assert found["status"]["sync"]["status"] == "OutOfSync"
    else:
        assert found["status"]["sync"]["status"] == "Unknown"
    cluster.advance(2 * POLL_S)
    assert condition(app(cluster, "other"))[0] == kind
    assert app(cluster)["status"]["sync"]["status"] == "Synced"  # the other app is fine


def test_an_application_creates_what_git_has_and_the_condition_clears(cluster: Cluster) -> None:
    found = new_app(cluster, "other")
    assert "app path does not exist" in condition(found)[1]
    lease = "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {name: web-lock}\n"
    commit(
        pipeline(cluster), {"apps/other/lease.yaml": lease}, "Add a lease", at=cluster.clock.now()
    )
    cluster.advance(POLL_S)
    status = app(cluster, "other")["status"]
    assert "conditions" not in status
    assert (status["sync"]["status"], status["health"]["status"]) == ("Synced", "Healthy")
    made = cluster.get_object("leases", "web", "web-lock")["metadata"]
    assert made["annotations"]["argocd.argoproj.io/tracking-id"] == (
        "other:coordination.k8s.io/Lease:web/web-lock"
    )


# ---- Flux ------------------------------------------------------------------------------


def flux(cluster: Cluster, *, interval: str = "10m") -> None:
    source = {
        "metadata": {"name": "web"},
        "spec": {"interval": "1m", "url": cluster.git_remotes["cart"], "ref": {"branch": "main"}},
    }
    cluster.create_object("gitrepositories", "flux-system", source, dry_run=False)
    ks = {
        "metadata": {"name": "web"},
        "spec": {
            "interval": interval,
            "path": "./apps/web",
            "prune": True,
            "targetNamespace": "web",
            "sourceRef": {"kind": "GitRepository", "name": "web"},
        },
    }
    cluster.create_object("kustomizations", "flux-system", ks, dry_run=False)


def web_deployment(tag: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": f"web:{tag}"}]},
                },
            },
        }
    )


def ready(obj: K8s) -> K8s:
    (found,) = [c for c in obj["status"]["conditions"] if c["type"] == "Ready"]
    return found


def test_flux_applies_its_path_follows_new_commits_and_corrects_drift(cluster: Cluster) -> None:
    sha = commit(
        pipeline(cluster), {"apps/web/web.yaml": web_deployment("1")}, "web", at=cluster.clock.now()
    )
    flux(cluster)
    repo = cluster.get_object("gitrepositories", "flux-system", "web")
    assert repo["status"]["artifact"]["revision"] == f"main@sha1:{sha}"
    assert ready(repo)["status"] == "True"
    ks = cluster.get_object("kustomizations", "flux-system", "web")
    assert ready(ks)["message"] == f"Applied revision: main@sha1:{sha}"
    assert ks["status"]["inventory"]["entries"] == [{"id": "web_web_apps_Deployment", "v": "v1"}]
    dep = cluster.get_object("deployments", "web", "web")
    assert dep["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/name"] == "web"
    assert dep["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/namespace"] == "flux-system"
    events = cluster.list_objects("events", "flux-system")
    assert [(e["reason"], e["message"]) for e in events] == [
        ("Progressing", "Deployment/web/web created")
    ]
    commit(
        pipeline(cluster),
        {"apps/web/web.yaml": web_deployment("2")},
        "web 2",
        at=cluster.clock.now(),
    )
    cluster.advance(60)  # the source's interval; the Kustomization follows its new revision
    dep = cluster.get_object("deployments", "web", "web")
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "web:2"
    drift = {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "web:1"}]}}}}
    cluster.patch_workload("deployments", "web", "web", drift, STRATEGIC)
    cluster.advance(300)
    dep = cluster.get_object("deployments", "web", "web")
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "web:1"  # not yet
    cluster.advance(300)  # the Kustomization's 10m interval
    dep = cluster.get_object("deployments", "web", "web")
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "web:2"


def test_flux_reconcile_request_is_served_at_once_and_recorded(cluster: Cluster) -> None:
    commit(
        pipeline(cluster), {"apps/web/web.yaml": web_deployment("1")}, "web", at=cluster.clock.now()
    )
    flux(cluster)
    cluster.advance(30)
    sha = commit(
        pipeline(cluster),
        {"apps/web/web.yaml": web_deployment("2")},
        "web 2",
        at=cluster.clock.now(),
    )
    at = "2026-03-05T14:00:31Z"
    patch = {"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": at}}}
    cluster.patch_object("gitrepositories", "flux-system", "web", patch, MERGE, dry_run=False)
    cluster.patch_object("kustomizations", "flux-system", "web", patch, MERGE, dry_run=False)
    repo = cluster.get_object("gitrepositories", "flux-system", "web")
    assert repo["status"]["lastHandledReconcileAt"] == at
    assert repo["status"]["artifact"]["revision"] == f"main@sha1:{sha}"
    ks = cluster.get_object("kustomizations", "flux-system", "web")
    assert ks["status"]["lastHandledReconcileAt"] == at
    assert ks["status"]["lastAppliedRevision"] == f"main@sha1:{sha}"
    dep = cluster.get_object("deployments", "web", "web")
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "web:2"


def test_flux_shows_a_missing_source_and_a_broken_path_as_not_ready(cluster: Cluster) -> None:
    ks = {
        "metadata": {"name": "lost"},
        "spec": {
            "interval": "5m",
            "prune": False,
            "sourceRef": {"kind": "GitRepository", "name": "nowhere"},
        },
    }
    cluster.create_object("kustomizations", "flux-system", ks, dry_run=False)
    lost = ready(cluster.get_object("kustomizations", "flux-system", "lost"))
    assert (lost["status"], lost["reason"]) == ("False", "ArtifactFailed")
    commit(pipeline(cluster), {"apps/web/web.yaml": "kind: [broken"}, "bad", at=cluster.clock.now())
    flux(cluster)
    broken = ready(cluster.get_object("kustomizations", "flux-system", "web"))
    assert (broken["status"], broken["reason"]) == ("False", "BuildFailed")
    assert "web.yaml: not a valid manifest" in broken["message"]
    cluster.advance(600)
    assert ready(cluster.get_object("kustomizations", "flux-system", "web"))["reason"] == (
        "BuildFailed"
    )


def test_go_durations() -> None:
    assert parse_duration("1m") == 60
    assert parse_duration("5m0s") == 300
    assert parse_duration("1h30m") == 5400
    assert parse_duration("soon") == 60  # unreadable: a minute, never a busy loop


def test_a_sync_posts_argo_cd_events_on_the_application(cluster: Cluster) -> None:
    cluster.advance(1800)
    revision = app(cluster)["status"]["sync"]["revision"]
    events = [
        (e["reason"], e["message"])
        for e in cluster.list_objects("events", "argocd")
        if e["involvedObject"]["name"] == "cart" and revision in e["message"]
    ]
    assert events == [
        ("OperationStarted", f"Initiated automated sync to '{revision}'"),
        ("OperationCompleted", f"Sync operation to {revision} succeeded"),
    ]


@pytest.mark.parametrize("prune", [True, False])
def test_what_leaves_git_is_pruned_only_with_prune(cluster: Cluster, prune: bool) -> None:
    lease = "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {name: web-lock}\n"
    commit(pipeline(cluster), {"apps/other/lease.yaml": lease}, "Add", at=cluster.clock.now())
    new_app(cluster, "other")
    patch = {"spec": {"syncPolicy": {"automated": {"prune": prune}}}}
    cluster.patch_object("applications", "argocd", "other", patch, MERGE, dry_run=False)
    assert cluster.store.find("leases", "web", "web-lock") is not None
    keep = "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {name: keep}\n"
    files = {"apps/other/lease.yaml": None, "apps/other/keep.yaml": keep}
    commit(pipeline(cluster), files, "Replace the lease", at=cluster.clock.now())
    cluster.advance(POLL_S)
    status = app(cluster, "other")["status"]
    assert cluster.store.find("leases", "web", "keep") is not None
    if prune:
        assert cluster.store.find("leases", "web", "web-lock") is None
        assert status["sync"]["status"] == "Synced"
        pruned = status["operationState"]["syncResult"]["resources"][-1]
        assert (pruned["name"], pruned["status"]) == ("web-lock", "Pruned")
    else:
        assert cluster.store.find("leases", "web", "web-lock") is not None
        assert status["sync"]["status"] == "OutOfSync"
        left = [r for r in status["resources"] if r.get("requiresPruning")]
        assert [r["name"] for r in left] == ["web-lock"]


def test_a_cluster_started_again_on_the_same_root_keeps_git_history(tmp_path: Path) -> None:
    first = Cluster(load_scenario("gitops-bad-release"), git_root=tmp_path / "git")
    revision = release(first, BAD)
    again = Cluster(load_scenario("gitops-bad-release"), git_root=tmp_path / "git")
    assert app(again)["status"]["sync"]["revision"] == revision
    assert image(again) == BAD  # what Git says, applied at start


def test_a_root_git_cannot_use_is_a_config_error(tmp_path: Path) -> None:
    root = tmp_path / "git"
    (root / "cart.git").mkdir(parents=True)
    (root / "cart.git" / "HEAD").write_text("not a repository\n")
    with pytest.raises(ConfigError, match=r"gitops repository .*cart\.git"):
        Cluster(load_scenario("gitops-bad-release"), git_root=root)


def test_the_pipeline_commits_on_top_of_a_push_that_came_in_between(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from healer.sim import gitrepo

    other = tmp_path / "other"
    git("clone", "--quiet", cluster.git_remotes["cart"], str(other), cwd=tmp_path)
    real = gitrepo.git
    raced: list[str] = []

    def racing(*args: str, **kwargs: Any) -> bytes:
        if args[0] == "push" and not raced:  # someone pushes just before the pipeline
            (other / "NOTES").write_text("hotfix\n")
            real("add", "NOTES", cwd=other)
            real("commit", "--quiet", "-m", "Someone else's change", cwd=other)
            real("push", "--quiet", "origin", "HEAD:main", cwd=other)
            raced.append("pushed")
        return real(*args, **kwargs)

    monkeypatch.setattr(gitrepo, "git", racing)
    release(cluster, BAD)
    log = real("log", "--format=%s", "main", cwd=cluster.gitops.repositories["cart"].remote)  # type: ignore[union-attr]
    assert log.decode().splitlines() == [
        f"Release cart {BAD}",
        "Someone else's change",
        "Initial release",
    ]


def test_a_refresh_does_not_sync_drift_without_self_heal(cluster: Cluster) -> None:
    patch = {"spec": {"syncPolicy": {"automated": {"selfHeal": False}}}}
    cluster.patch_object("applications", "argocd", "cart", patch, MERGE, dry_run=False)
    cluster.advance(1800)
    undo = {"spec": {"template": {"spec": {"containers": [{"name": "cart", "image": GOOD}]}}}}
    cluster.patch_workload("deployments", "shop", "cart", undo, STRATEGIC)
    refresh = {"metadata": {"annotations": {"argocd.argoproj.io/refresh": "hard"}}}
    cluster.patch_object("applications", "argocd", "cart", refresh, MERGE, dry_run=False)
    cluster.advance(15)
    assert image(cluster) == GOOD
    assert app(cluster)["status"]["sync"]["status"] == "OutOfSync"


@pytest.mark.parametrize("in_git", [False, True])
def test_scaling_is_fought_only_when_git_sets_the_replicas(tmp_path: Path, in_git: bool) -> None:
    scenario = load_scenario("gitops-bad-release")
    assert scenario.gitops is not None
    apps = [a.model_copy(update={"replicas_in_git": in_git}) for a in scenario.gitops.applications]
    gitops = scenario.gitops.model_copy(update={"applications": apps})
    cluster = Cluster(scenario.model_copy(update={"gitops": gitops}), git_root=tmp_path / "git")
    cluster.patch_scale("shop", "cart", {"spec": {"replicas": 6}}, MERGE)
    cluster.advance(15)
    replicas = cluster.store.get("deployments", "shop", "cart")["spec"]["replicas"]
    assert replicas == (4 if in_git else 6)
    assert app(cluster)["status"]["sync"]["status"] == "Synced"


@pytest.mark.parametrize("respect", [False, True])
def test_ignore_differences_hides_drift_and_with_respect_keeps_it_on_sync(
    tmp_path: Path, respect: bool
) -> None:
    scenario = load_scenario("gitops-bad-release")
    assert scenario.gitops is not None
    apps = [a.model_copy(update={"replicas_in_git": True}) for a in scenario.gitops.applications]
    gitops = scenario.gitops.model_copy(update={"applications": apps})
    cluster = Cluster(scenario.model_copy(update={"gitops": gitops}), git_root=tmp_path / "git")
    ignore = [{"group": "apps", "kind": "Deployment", "jsonPointers": ["/spec/replicas"]}]
    options = ["RespectIgnoreDifferences=true"] if respect else []
    patch = {"spec": {"ignoreDifferences": ignore, "syncPolicy": {"syncOptions": options}}}
    cluster.patch_object("applications", "argocd", "cart", patch, MERGE, dry_run=False)
    cluster.patch_scale("shop", "cart", {"spec": {"replicas": 6}}, MERGE)
    cluster.advance(15)
    assert cluster.store.get("deployments", "shop", "cart")["spec"]["replicas"] == 6
    assert app(cluster)["status"]["sync"]["status"] == "Synced"
    cluster.advance(1800)  # the release's sync applies the manifest
    dep = cluster.store.get("deployments", "shop", "cart")
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == BAD
    assert dep["spec"]["replicas"] == (6 if respect else 4)


def test_a_cluster_without_gitops_objects_runs_as_if_the_syncer_were_absent() -> None:
    """The syncer draws nothing and writes nothing where there is nothing to sync, so
    the scenarios without a gitops section keep their samples to the bit."""
    import numpy as np

    with_syncer = Cluster(load_scenario("bad-release"))
    without = Cluster(load_scenario("bad-release"))
    without.tick = tuple(p for p in without.tick if not isinstance(p, GitSync))
    without.on_write = [c for c in without.on_write if not isinstance(c, GitSync)]
    for cluster in (with_syncer, without):
        cluster.advance(2400)  # past the release at 1800 s
    assert np.array_equal(np.stack(with_syncer.samples), np.stack(without.samples))
    assert with_syncer.store.resource_version == without.store.resource_version
    assert with_syncer.state.rng.bit_generator.state == without.state.rng.bit_generator.state


def test_flux_image_overrides_apply_on_top_of_git(cluster: Cluster) -> None:
    files = {"apps/web/web.yaml": web_deployment("1")}
    commit(pipeline(cluster), files, "web", at=cluster.clock.now())
    flux(cluster)
    images = {"spec": {"images": [{"name": "web", "newName": "mirror/web", "newTag": "9"}]}}
    cluster.patch_object("kustomizations", "flux-system", "web", images, MERGE, dry_run=False)
    dep = cluster.get_object("deployments", "web", "web")
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "mirror/web:9"
    nameless = {"spec": {"images": [{"newTag": "9"}]}}
    cluster.patch_object("kustomizations", "flux-system", "web", nameless, MERGE, dry_run=False)
    broken = ready(cluster.get_object("kustomizations", "flux-system", "web"))
    assert (broken["reason"], broken["message"]) == (
        "BuildFailed",
        "images: {'newTag': '9'}: an entry needs a name",
    )
