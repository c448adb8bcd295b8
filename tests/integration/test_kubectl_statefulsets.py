"""kubectl on StatefulSets against the simulated API server: create, get (with
ControllerRevisions), scale, set image, and every ``rollout`` subcommand, run by the real
binary and checked through the official client."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from test_kubectl import KUBECTL, kubectl_on, needs_openapi_v3

from healer.sim.cluster import Cluster

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed"),
    needs_openapi_v3,  # the StatefulSet is made with create -f, validated through it
]

MANIFEST = """\
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
  namespace: shop
spec:
  replicas: 3
  serviceName: db
  selector:
    matchLabels: {app: db}
  template:
    metadata:
      labels: {app: db}
    spec:
      containers:
        - name: db
          image: registry.local/shop/db:1.0
"""


@pytest.fixture
def kubectl(kubeconfig: Path, tmp_path: Path, cluster: Cluster) -> Any:
    """kubectl, with the StatefulSet ``shop/db`` created through it and rolled out."""
    run = kubectl_on(kubeconfig, tmp_path)
    manifest = tmp_path / "db.yaml"
    manifest.write_text(MANIFEST)
    assert "statefulset.apps/db created" in run("create", "-f", str(manifest)).stdout
    for _ in range(6):
        cluster.advance(15)
    return run


@pytest.fixture
def apps(kube_api: Any) -> client.AppsV1Api:
    return client.AppsV1Api(kube_api)


def image_of(apps: client.AppsV1Api) -> str:
    sts = apps.read_namespaced_stateful_set("db", "shop")
    return str(sts.spec.template.spec.containers[0].image)


def revisions(apps: client.AppsV1Api) -> dict[int, str]:
    found = apps.list_namespaced_controller_revision("shop", label_selector="app=db").items
    return {r.revision: r.data["spec"]["template"]["spec"]["containers"][0]["image"] for r in found}


@pytest.fixture
def time_passes(cluster: Cluster) -> Iterator[None]:
    """Simulated time moves on in the background, as a live cluster's would."""
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(0.2):
            cluster.advance(15)

    clock = threading.Thread(target=run)
    clock.start()
    yield
    stop.set()
    clock.join()


def test_get_statefulsets_and_their_revisions(kubectl: Any) -> None:
    out = kubectl("get", "sts,controllerrevisions", "-n", "shop").stdout.splitlines()
    header = next(line for line in out if line.startswith("NAME") and "READY" in line)
    assert header.split() == ["NAME", "READY", "AGE"]
    assert any(line.split()[:2] == ["statefulset.apps/db", "3/3"] for line in out)
    revision = next(line for line in out if line.startswith("controllerrevision.apps/db-"))
    assert revision.split()[1:3] == ["statefulset.apps/db", "1"]
    pods = kubectl("get", "pods", "-n", "shop", "-l", "app=db", "-o", "name").stdout.split()
    assert pods == ["pod/db-0", "pod/db-1", "pod/db-2"]


def test_scale(kubectl: Any, apps: client.AppsV1Api, cluster: Cluster) -> None:
    out = kubectl("scale", "statefulset/db", "-n", "shop", "--replicas=5").stdout
    assert "statefulset.apps/db scaled" in out
    for _ in range(8):
        cluster.advance(15)
    sts = apps.read_namespaced_stateful_set("db", "shop")
    assert (sts.spec.replicas, sts.status.ready_replicas) == (5, 5)


def test_set_image_then_undo_at_once_restores_the_template(
    kubectl: Any, apps: client.AppsV1Api
) -> None:
    kubectl("set", "image", "statefulset/db", "db=registry.local/shop/db:2.0", "-n", "shop")
    assert revisions(apps) == {1: "registry.local/shop/db:1.0", 2: "registry.local/shop/db:2.0"}
    out = kubectl("rollout", "undo", "statefulset/db", "-n", "shop").stdout
    assert "statefulset.apps/db rolled back" in out
    assert image_of(apps) == "registry.local/shop/db:1.0"
    # The first revision came back as the newest, as the controller renumbers it.
    assert revisions(apps) == {3: "registry.local/shop/db:1.0", 2: "registry.local/shop/db:2.0"}


def test_rollout_history_lists_and_shows_revisions(kubectl: Any) -> None:
    kubectl("set", "image", "statefulset/db", "db=registry.local/shop/db:2.0", "-n", "shop")
    out = kubectl("rollout", "history", "statefulset/db", "-n", "shop").stdout
    numbers = [line.split()[0] for line in out.splitlines()[2:] if line.strip()]
    assert numbers == ["1", "2"]
    detail = kubectl("rollout", "history", "statefulset/db", "-n", "shop", "--revision=1").stdout
    assert "registry.local/shop/db:1.0" in detail
    to_one = kubectl("rollout", "undo", "statefulset/db", "-n", "shop", "--to-revision=1")
    assert "rolled back" in to_one.stdout


def test_rollout_restart_stamps_the_template(kubectl: Any, apps: client.AppsV1Api) -> None:
    out = kubectl("rollout", "restart", "statefulset/db", "-n", "shop").stdout
    assert "statefulset.apps/db restarted" in out
    sts = apps.read_namespaced_stateful_set("db", "shop")
    assert "kubectl.kubernetes.io/restartedAt" in sts.spec.template.metadata.annotations
    assert sorted(revisions(apps)) == [1, 2]


@pytest.mark.usefixtures("time_passes")
def test_rollout_status_follows_an_ordered_rolling_update(kubectl: Any) -> None:
    kubectl("set", "image", "statefulset/db", "db=registry.local/shop/db:2.0", "-n", "shop")
    done = kubectl("rollout", "status", "statefulset/db", "-n", "shop", "--timeout=60s")
    lines = done.stdout.splitlines()
    assert any("Waiting for" in line for line in lines)
    assert lines[-1] == "partitioned roll out complete: 3 new pods have been updated..."


def test_explain_reads_the_statefulset_schema(kubectl: Any) -> None:
    out = kubectl("explain", "statefulset.spec.updateStrategy.rollingUpdate").stdout
    assert "KIND:       StatefulSet" in out
    assert "partition" in out and "maxUnavailable" in out
