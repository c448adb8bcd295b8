"""Watches on the simulated API server, through the official client and kubectl."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from healer.sim.cluster import Cluster

MERGE = "application/merge-patch+json"

pytestmark = pytest.mark.integration


def test_a_watch_from_a_lists_version_sees_the_writes_after_it(
    kube_api: Any, cluster: Cluster
) -> None:
    apps = client.AppsV1Api(kube_api)
    listed = apps.list_namespaced_deployment("shop")
    apps.patch_namespaced_deployment_scale(
        "cart", "shop", {"spec": {"replicas": 5}}, _content_type=MERGE
    )
    cluster.advance(15)
    seen = [
        (e["type"], e["object"].metadata.name, e["object"].spec.replicas)
        for e in watch.Watch().stream(
            apps.list_namespaced_deployment,
            "shop",
            resource_version=listed.metadata.resource_version,
            timeout_seconds=1,
        )
    ]
    assert ("MODIFIED", "cart", 5) in seen
    assert {name for _, name, _ in seen} == {"cart"}  # the others did not change
    versions = [
        int(e["object"].metadata.resource_version)
        for e in watch.Watch().stream(
            apps.list_namespaced_deployment,
            "shop",
            resource_version=listed.metadata.resource_version,
            timeout_seconds=1,
        )
    ]
    assert versions == sorted(versions) and versions[0] > int(listed.metadata.resource_version)


def test_a_watch_without_a_version_starts_with_what_exists_and_filters(
    kube_api: Any, cluster: Cluster
) -> None:
    core = client.CoreV1Api(kube_api)
    events = list(
        watch.Watch().stream(
            core.list_namespaced_pod, "shop", label_selector="app=cart", timeout_seconds=1
        )
    )
    assert events and {e["type"] for e in events} == {"ADDED"}
    assert {e["object"].metadata.labels["app"] for e in events} == {"cart"}
    assert len(events) == len(cluster.pods_of("shop", "cart"))


def test_writes_while_watching_arrive_live(kube_api: Any, cluster: Cluster) -> None:
    core = client.CoreV1Api(kube_api)
    version = core.list_namespaced_pod("shop").metadata.resource_version
    doomed = cluster.pods_of("shop", "search")[0]["metadata"]["name"]

    def later() -> None:
        time.sleep(0.3)
        core.delete_namespaced_pod(doomed, "shop")
        with cluster.lock:
            cluster.advance(15)

    worker = threading.Thread(target=later)
    worker.start()
    seen = [
        (e["type"], e["object"].metadata.name)
        for e in watch.Watch().stream(
            core.list_namespaced_pod,
            "shop",
            resource_version=version,
            label_selector="app=search",
            timeout_seconds=2,
        )
    ]
    worker.join()
    assert ("DELETED", doomed) in seen
    assert any(kind == "ADDED" and name != doomed for kind, name in seen)  # its replacement


def test_a_version_older_than_the_history_is_410_expired(kube_api: Any) -> None:
    apps = client.AppsV1Api(kube_api)
    with pytest.raises(ApiException) as gone:
        list(
            watch.Watch().stream(
                apps.list_namespaced_deployment, "shop", resource_version="1", timeout_seconds=1
            )
        )
    assert gone.value.status == 410


def test_watch_parameters_are_checked_before_streaming(sim_server: Any) -> None:
    base = f"{sim_server.url}/apis/apps/v1/namespaces/shop/deployments?watch=true"
    for query, code in (("&timeoutSeconds=soon", 400), ("&fieldSelector=spec.paused%3Dtrue", 400)):
        answer = httpx.get(base + query)
        assert answer.status_code == code
        assert answer.json()["kind"] == "Status"
    # timeoutSeconds=0: the current objects, then the stream ends at once.
    answer = httpx.get(f"{sim_server.url}/api/v1/namespaces/shop/pods?watch=1&timeoutSeconds=0")
    events = [json.loads(line) for line in answer.text.splitlines()]
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    assert events and {e["type"] for e in events} == {"ADDED"}
    assert {e["object"]["kind"] for e in events} == {"Pod"}


KUBECTL = shutil.which("kubectl")


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
def test_kubectl_get_watch_prints_the_list_then_changes(
    kubeconfig: Path, kube_api: Any, cluster: Cluster, tmp_path: Path
) -> None:
    assert KUBECTL is not None
    watching = subprocess.Popen(
        [
            *(KUBECTL, "--kubeconfig", str(kubeconfig), "--cache-dir", str(tmp_path / "cache")),
            *("get", "deployments", "-n", "shop", "-w"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"HOME": str(tmp_path), "PATH": os.environ.get("PATH", "")},
    )
    try:
        time.sleep(2.0)  # kubectl lists, then watches from the list's version
        apps = client.AppsV1Api(kube_api)
        apps.patch_namespaced_deployment_scale(
            "cart", "shop", {"spec": {"replicas": 6}}, _content_type=MERGE
        )
        time.sleep(1.0)
    finally:
        watching.terminate()
        out, err = watching.communicate(timeout=10)
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["NAME", "READY"], err
    assert sum(line.startswith("NAME") for line in lines) == 1  # headers printed once
    listed = {line.split()[0] for line in lines[1:5]}
    assert listed == {"cart", "catalog", "checkout", "search"}
    changed = [line.split() for line in lines[5:] if line.startswith("cart")]
    assert changed and changed[-1][1].endswith("/6"), out


def test_an_object_leaving_or_joining_the_selector_is_deleted_or_added(kube_api: Any) -> None:
    apps = client.AppsV1Api(kube_api)
    version = apps.list_namespaced_deployment("shop").metadata.resource_version
    for tier in (None, "frontend", "backend"):
        patch = {"metadata": {"labels": {"tier": tier}}}
        apps.patch_namespaced_deployment("cart", "shop", patch, _content_type=MERGE)
    seen = [
        (e["type"], e["object"].metadata.labels.get("tier"))
        for e in watch.Watch().stream(
            apps.list_namespaced_deployment,
            "shop",
            resource_version=version,
            label_selector="tier=backend",
            timeout_seconds=1,
        )
        if e["object"].metadata.name == "cart"
    ]
    # The first write drops the label (the object as it last matched is reported gone),
    # the second changes nothing the selector sees, the third brings it back.
    assert seen == [("DELETED", "backend"), ("ADDED", "backend")]
