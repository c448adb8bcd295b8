"""kubectl on DaemonSets against the simulated API server: create, get (with
ControllerRevisions), set image, and every ``rollout`` subcommand, run by the real binary
and checked through the official client."""

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
    needs_openapi_v3,  # the DaemonSet is made with create -f, validated through it
]

MANIFEST = """\
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
  namespace: shop
spec:
  selector:
    matchLabels: {app: agent}
  template:
    metadata:
      labels: {app: agent}
    spec:
      containers:
        - name: agent
          image: registry.local/infra/agent:1.0
"""


@pytest.fixture
def kubectl(kubeconfig: Path, tmp_path: Path, cluster: Cluster) -> Any:
    """kubectl, with the DaemonSet ``shop/agent`` created through it and rolled out."""
    run = kubectl_on(kubeconfig, tmp_path)
    manifest = tmp_path / "agent.yaml"
    manifest.write_text(MANIFEST)
    assert "daemonset.apps/agent created" in run("create", "-f", str(manifest)).stdout
    for _ in range(2):
        cluster.advance(15)
    return run


@pytest.fixture
def apps(kube_api: Any) -> client.AppsV1Api:
    return client.AppsV1Api(kube_api)


def nodes(kube_api: Any) -> list[str]:
    return sorted(n.metadata.name for n in client.CoreV1Api(kube_api).list_node().items)


def image_of(apps: client.AppsV1Api) -> str:
    ds = apps.read_namespaced_daemon_set("agent", "shop")
    return str(ds.spec.template.spec.containers[0].image)


def revisions(apps: client.AppsV1Api) -> dict[int, str]:
    found = apps.list_namespaced_controller_revision("shop", label_selector="app=agent").items
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


def test_get_daemonsets_their_pods_on_every_node_and_revisions(kubectl: Any, kube_api: Any) -> None:
    count = str(len(nodes(kube_api)))
    out = kubectl("get", "ds,controllerrevisions", "-n", "shop").stdout.splitlines()
    header = next(line for line in out if line.startswith("NAME") and "DESIRED" in line)
    assert header.split() == [
        "NAME",
        "DESIRED",
        "CURRENT",
        "READY",
        "UP-TO-DATE",
        "AVAILABLE",
        "NODE",
        "SELECTOR",
        "AGE",
    ]
    row = next(line for line in out if line.startswith("daemonset.apps/agent"))
    assert row.split()[1:7] == [count, count, count, count, count, "<none>"]
    revision = next(line for line in out if line.startswith("controllerrevision.apps/agent-"))
    assert revision.split()[1:3] == ["daemonset.apps/agent", "1"]
    wide = kubectl("get", "pods", "-n", "shop", "-l", "app=agent", "-o", "wide").stdout
    on = sorted(line.split()[6] for line in wide.splitlines()[1:])
    assert on == nodes(kube_api)


def test_set_image_then_undo_at_once_restores_the_template(
    kubectl: Any, apps: client.AppsV1Api
) -> None:
    kubectl("set", "image", "daemonset/agent", "agent=registry.local/infra/agent:2.0", "-n", "shop")
    assert revisions(apps) == {
        1: "registry.local/infra/agent:1.0",
        2: "registry.local/infra/agent:2.0",
    }
    out = kubectl("rollout", "undo", "daemonset/agent", "-n", "shop").stdout
    assert "daemonset.apps/agent rolled back" in out
    assert image_of(apps) == "registry.local/infra/agent:1.0"
    # The first revision came back as the newest, as the controller renumbers it.
    assert revisions(apps) == {
        3: "registry.local/infra/agent:1.0",
        2: "registry.local/infra/agent:2.0",
    }


def test_rollout_history_lists_and_shows_revisions(kubectl: Any) -> None:
    kubectl("set", "image", "daemonset/agent", "agent=registry.local/infra/agent:2.0", "-n", "shop")
    out = kubectl("rollout", "history", "daemonset/agent", "-n", "shop").stdout
    numbers = [line.split()[0] for line in out.splitlines()[2:] if line.strip()]
    assert numbers == ["1", "2"]
    detail = kubectl("rollout", "history", "daemonset/agent", "-n", "shop", "--revision=1").stdout
    assert "registry.local/infra/agent:1.0" in detail
    to_one = kubectl("rollout", "undo", "daemonset/agent", "-n", "shop", "--to-revision=1")
    assert "rolled back" in to_one.stdout


def test_rollout_restart_stamps_the_template(kubectl: Any, apps: client.AppsV1Api) -> None:
    out = kubectl("rollout", "restart", "daemonset/agent", "-n", "shop").stdout
    assert "daemonset.apps/agent restarted" in out
    ds = apps.read_namespaced_daemon_set("agent", "shop")
    assert "kubectl.kubernetes.io/restartedAt" in ds.spec.template.metadata.annotations
    assert sorted(revisions(apps)) == [1, 2]


@pytest.mark.usefixtures("time_passes")
def test_rollout_status_follows_the_rolling_update_node_by_node(kubectl: Any) -> None:
    kubectl("set", "image", "daemonset/agent", "agent=registry.local/infra/agent:2.0", "-n", "shop")
    done = kubectl("rollout", "status", "daemonset/agent", "-n", "shop", "--timeout=60s")
    lines = done.stdout.splitlines()
    assert any("Waiting for daemon set" in line for line in lines)
    assert lines[-1] == 'daemon set "agent" successfully rolled out'


def test_explain_reads_the_daemonset_schema(kubectl: Any) -> None:
    out = kubectl("explain", "daemonset.spec.updateStrategy.rollingUpdate").stdout
    assert "KIND:       DaemonSet" in out
    assert "maxSurge" in out and "maxUnavailable" in out
