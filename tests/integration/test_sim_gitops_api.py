"""Argo CD's and Flux's kinds on the simulated API server, through the official client's
CustomObjectsApi and through kubectl: create, get, list, watch, patch (merge and JSON;
strategic refused as for any custom resource), the status subresource, delete, discovery
and the printed columns, on the scenario gitops-bad-release."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from test_kubectl import KUBECTL, kubectl_on

from healer.api.server import ServerThread
from healer.sim.cluster import Cluster
from healer.sim.scenario import load_scenario

ARGO = ("argoproj.io", "v1alpha1")
KS = ("kustomize.toolkit.fluxcd.io", "v1")
SOURCE = ("source.toolkit.fluxcd.io", "v1")


@pytest.fixture
def cluster(tmp_path: Path) -> Cluster:
    return Cluster(load_scenario("gitops-bad-release"), git_root=tmp_path / "git")


@pytest.fixture
def custom(kube_api: Any) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube_api)


def application(name: str, repo_url: str, path: str = "apps/cart") -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name},
        "spec": {
            "project": "default",
            "source": {"repoURL": repo_url, "path": path, "targetRevision": "main"},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": "shop"},
        },
    }


def test_the_scenario_application_reads_as_argo_cd_writes_it(
    custom: client.CustomObjectsApi, cluster: Cluster
) -> None:
    listed = custom.list_namespaced_custom_object(*ARGO, "argocd", "applications")
    assert listed["kind"] == "ApplicationList"
    (app,) = listed["items"]
    assert app["spec"]["source"]["repoURL"] == cluster.git_remotes["cart"]
    assert app["spec"]["syncPolicy"]["automated"] == {"prune": False, "selfHeal": True}
    status = custom.get_namespaced_custom_object_status(*ARGO, "argocd", "applications", "cart")
    assert status["status"]["sync"]["status"] == "Synced"
    assert status["status"]["health"]["status"] == "Healthy"
    everywhere = custom.list_cluster_custom_object(*ARGO, "applications")
    assert [a["metadata"]["name"] for a in everywhere["items"]] == ["cart"]


def test_create_patch_status_and_delete_an_application(
    custom: client.CustomObjectsApi, cluster: Cluster, sim_server: ServerThread
) -> None:
    body = application("other", cluster.git_remotes["cart"], "apps/absent")
    created = custom.create_namespaced_custom_object(*ARGO, "argocd", "applications", body)
    assert created["metadata"]["generation"] == 1
    got = custom.get_namespaced_custom_object(*ARGO, "argocd", "applications", "other")
    (condition,) = got["status"]["conditions"]  # reconciled as the create returned
    assert condition["type"] == "ComparisonError"
    assert "apps/absent: app path does not exist" in condition["message"]

    merged = custom.patch_namespaced_custom_object(
        *ARGO, "argocd", "applications", "other", {"spec": {"source": {"path": "apps/none"}}}
    )  # the client sends a merge patch to a custom resource's object body
    assert merged["metadata"]["generation"] == 2
    ops = [{"op": "replace", "path": "/spec/project", "value": "shop"}]
    custom.patch_namespaced_custom_object(
        *ARGO, "argocd", "applications", "other", ops, _content_type="application/json-patch+json"
    )
    got = custom.get_namespaced_custom_object(*ARGO, "argocd", "applications", "other")
    assert got["spec"]["project"] == "shop"
    assert "apps/none" in got["status"]["conditions"][0]["message"]

    refused = httpx.patch(
        f"{sim_server.url}/apis/argoproj.io/v1alpha1/namespaces/argocd/applications/other",
        content=json.dumps({"spec": {"project": "x"}}),
        headers={"Content-Type": "application/strategic-merge-patch+json"},
    )
    assert refused.status_code == 415
    assert refused.json()["reason"] == "UnsupportedMediaType"

    written = custom.patch_namespaced_custom_object_status(
        *ARGO, "argocd", "applications", "other", {"status": {"health": {"status": "Degraded"}}}
    )
    assert written["status"]["health"]["status"] == "Degraded"
    assert written["metadata"]["generation"] == 3  # a status write moves no generation

    custom.delete_namespaced_custom_object(*ARGO, "argocd", "applications", "other")
    with pytest.raises(ApiException) as gone:
        custom.get_namespaced_custom_object(*ARGO, "argocd", "applications", "other")
    assert gone.value.status == 404


def test_an_application_without_a_project_or_a_readable_spec_is_refused_or_shown(
    custom: client.CustomObjectsApi, cluster: Cluster
) -> None:
    body = application("bad", cluster.git_remotes["cart"])
    del body["spec"]["project"]
    with pytest.raises(ApiException) as invalid:
        custom.create_namespaced_custom_object(*ARGO, "argocd", "applications", body)
    assert invalid.value.status == 422
    assert "spec.project: Required value" in json.loads(invalid.value.body)["message"]
    odd = application("odd", cluster.git_remotes["cart"])
    odd["spec"]["source"]["directory"] = "recurse please"
    custom.create_namespaced_custom_object(*ARGO, "argocd", "applications", odd)
    got = custom.get_namespaced_custom_object(*ARGO, "argocd", "applications", "odd")
    assert got["status"]["conditions"][0]["type"] == "InvalidSpecError"
    cluster.advance(60)  # and the cluster runs on


def test_a_watch_sees_the_syncer_write_the_status(
    custom: client.CustomObjectsApi, cluster: Cluster
) -> None:
    listed = custom.list_namespaced_custom_object(*ARGO, "argocd", "applications")
    version = listed["metadata"]["resourceVersion"]
    patch = {"metadata": {"annotations": {"argocd.argoproj.io/refresh": "hard"}}}
    custom.patch_namespaced_custom_object(*ARGO, "argocd", "applications", "cart", patch)
    stream = watch.Watch().stream(
        custom.list_namespaced_custom_object,
        *ARGO,
        "argocd",
        "applications",
        resource_version=version,
        timeout_seconds=2,
    )
    events = [(e["type"], e["object"]["metadata"]["name"]) for e in stream]
    assert events and set(events) == {("MODIFIED", "cart")}


def test_flux_kinds_are_served_with_their_status(
    custom: client.CustomObjectsApi, cluster: Cluster
) -> None:
    source = {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {"name": "cart"},
        "spec": {"interval": "1m", "url": cluster.git_remotes["cart"], "ref": {"branch": "main"}},
    }
    custom.create_namespaced_custom_object(*SOURCE, "flux-system", "gitrepositories", source)
    got = custom.get_namespaced_custom_object_status(
        *SOURCE, "flux-system", "gitrepositories", "cart"
    )
    assert got["status"]["artifact"]["revision"].startswith("main@sha1:")
    ks = {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": "cart"},
        "spec": {"interval": "10m", "path": "./apps/cart", "sourceRef": {"kind": "GitRepository"}},
    }
    with pytest.raises(ApiException) as invalid:
        custom.create_namespaced_custom_object(*KS, "flux-system", "kustomizations", ks)
    assert invalid.value.status == 422  # no prune, no sourceRef.name
    ks["spec"].update(
        prune=False, sourceRef={"kind": "GitRepository", "name": "cart"}, suspend=True
    )
    custom.create_namespaced_custom_object(*KS, "flux-system", "kustomizations", ks)
    listed = custom.list_namespaced_custom_object(*KS, "flux-system", "kustomizations")
    assert [k["metadata"]["name"] for k in listed["items"]] == ["cart"]
    assert "status" not in listed["items"][0] or not listed["items"][0]["status"]  # suspended


def test_discovery_names_the_gitops_groups(kube_api: Any, sim_server: ServerThread) -> None:
    groups = {g.name: g for g in client.ApisApi(kube_api).get_api_versions().groups}
    assert groups["argoproj.io"].preferred_version.version == "v1alpha1"
    resources = httpx.get(f"{sim_server.url}/apis/argoproj.io/v1alpha1").json()
    names = {r["name"]: r for r in resources["resources"]}
    assert names["applications"]["shortNames"] == ["app", "apps"]
    assert "applications/status" in names


pytestmark_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")


@pytestmark_kubectl
def test_kubectl_gets_describes_and_refreshes_an_application(
    kubeconfig: Path, tmp_path: Path, cluster: Cluster
) -> None:
    run = kubectl_on(kubeconfig, tmp_path)
    lines = run("get", "applications", "-n", "argocd").stdout.splitlines()
    assert lines[0].split() == ["NAME", "SYNC", "STATUS", "HEALTH", "STATUS"]
    assert lines[1].split() == ["cart", "Synced", "Healthy"]
    wide = run("get", "app", "-n", "argocd", "-o", "wide").stdout.splitlines()
    assert wide[1].split()[3:] == [
        cluster.store.get("applications", "argocd", "cart")["status"]["sync"]["revision"],
        "default",
    ]
    described = run("describe", "application", "cart", "-n", "argocd").stdout
    assert "Repo URL:" in described and "Sync Status" not in described
    assert "Status:               Synced" in described
    cluster.advance(30)
    revision = cluster.gitops.release(  # type: ignore[union-attr]
        load_scenario("gitops-bad-release").events[0], at=cluster.clock.now()
    )
    out = run("annotate", "application", "cart", "-n", "argocd", "argocd.argoproj.io/refresh=hard")
    assert "annotated" in out.stdout
    after = json.loads(run("get", "application", "cart", "-n", "argocd", "-o", "json").stdout)
    assert "argocd.argoproj.io/refresh" not in (after["metadata"].get("annotations") or {})
    assert after["status"]["sync"]["revision"] == revision
    patch = '{"metadata":{"annotations":{"argocd.argoproj.io/refresh":"normal"}}}'
    patched = run("patch", "app", "cart", "-n", "argocd", "--type", "merge", "-p", patch)
    assert "patched" in patched.stdout
    annotations = run(
        "get", "app", "cart", "-n", "argocd", "-o", "jsonpath={.metadata.annotations}"
    ).stdout
    assert "argocd.argoproj.io/refresh" not in annotations  # served and removed at once
    image = run(
        "get",
        "deploy",
        "cart",
        "-n",
        "shop",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ).stdout
    assert image == "registry.local/shop/cart:2.5.0"


@pytestmark_kubectl
def test_kubectl_prints_flux_columns(kubeconfig: Path, tmp_path: Path, cluster: Cluster) -> None:
    run = kubectl_on(kubeconfig, tmp_path)
    manifest = tmp_path / "flux.yaml"
    manifest.write_text(
        f"""\
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {{name: cart, namespace: flux-system}}
spec: {{interval: 1m, url: "{cluster.git_remotes["cart"]}", ref: {{branch: main}}}}
"""
    )
    run("create", "-f", str(manifest), "--validate=false")
    lines = run("get", "gitrepositories", "-n", "flux-system").stdout.splitlines()
    assert lines[0].split() == ["NAME", "URL", "AGE", "READY", "STATUS"]
    assert lines[1].split()[:4] == ["cart", cluster.git_remotes["cart"], "0s", "True"]
    assert "stored artifact for revision 'main@sha1:" in lines[1]
