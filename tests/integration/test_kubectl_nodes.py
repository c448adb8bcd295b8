"""kubectl on Nodes against the simulated API server: get (wide), describe, cordon,
uncordon and drain (through the Eviction API, held back by a disruption budget until
its ``--timeout``), run by the real binary and checked through the official client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from test_kubectl import KUBECTL, kubectl_on

from healer.sim.cluster import Cluster

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed"),
]

DRAIN = ("--ignore-daemonsets", "--delete-emptydir-data")


@pytest.fixture
def kubectl(kubeconfig: Path, tmp_path: Path) -> Any:
    return kubectl_on(kubeconfig, tmp_path)


@pytest.fixture
def core(kube_api: Any) -> client.CoreV1Api:
    return client.CoreV1Api(kube_api)


def on_node(core: client.CoreV1Api, node: str) -> list[str]:
    pods = core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}").items
    return sorted(p.metadata.name for p in pods)


def test_get_nodes_wide_shows_status_version_and_addresses(kubectl: Any) -> None:
    lines = kubectl("get", "nodes", "-o", "wide").stdout.splitlines()
    assert lines[0].split() == [
        "NAME",
        "STATUS",
        "ROLES",
        "AGE",
        "VERSION",
        "INTERNAL-IP",
        "EXTERNAL-IP",
        "OS-IMAGE",
        "KERNEL-VERSION",
        "CONTAINER-RUNTIME",
    ]
    first = lines[1].split()
    assert first[:3] == ["node-00", "Ready", "<none>"]
    assert first[4:7] == ["v1.31.0", "10.0.0.2", "<none>"]
    assert first[-1] == "containerd://1.7.24"
    assert len(lines) == 4
    pods = kubectl("get", "pods", "-n", "shop", "-o", "wide").stdout.splitlines()
    assert pods[0].split()[5:7] == ["IP", "NODE"]
    assert all(row.split()[6].startswith("node-0") for row in pods[1:])


def test_describe_node_shows_conditions_capacity_and_its_pods(
    kubectl: Any, core: client.CoreV1Api
) -> None:
    text = kubectl("describe", "node", "node-01").stdout
    assert "Taints:             <none>" in text
    assert "Unschedulable:      false" in text
    for line in (
        "MemoryPressure   False",
        "KubeletHasSufficientMemory",
        "Ready            True",
        "kubelet is posting ready status",
        "InternalIP:  10.0.0.3",
        "Kubelet Version:            v1.31.0",
    ):
        assert line in text
    pods = on_node(core, "node-01")
    assert f"Non-terminated Pods:          ({len(pods)} in total)" in text
    assert all(name in text for name in pods)


def test_cordon_and_uncordon(kubectl: Any, core: client.CoreV1Api) -> None:
    assert kubectl("cordon", "node-01").stdout.strip() == "node/node-01 cordoned"
    row = kubectl("get", "node", "node-01", "--no-headers").stdout.split()
    assert row[1] == "Ready,SchedulingDisabled"
    node = core.read_node("node-01")
    assert node.spec.unschedulable is True
    assert [(t.key, t.effect) for t in node.spec.taints] == [
        ("node.kubernetes.io/unschedulable", "NoSchedule")
    ]
    assert kubectl("cordon", "node-01").stdout.strip() == "node/node-01 already cordoned"
    assert kubectl("uncordon", "node-01").stdout.strip() == "node/node-01 uncordoned"
    node = core.read_node("node-01")
    assert not node.spec.unschedulable and not node.spec.taints


def test_drain_evicts_every_pod_and_their_controllers_place_them_elsewhere(
    kubectl: Any, core: client.CoreV1Api, kube_api: Any, cluster: Cluster
) -> None:
    before = on_node(core, "node-02")
    done = kubectl("drain", "node-02", *DRAIN)
    assert done.stdout.splitlines()[0] == "node/node-02 cordoned"
    assert done.stdout.splitlines()[-1] == "node/node-02 drained"
    assert {f"pod/{name} evicted" for name in before} <= set(done.stdout.splitlines())
    assert on_node(core, "node-02") == []
    cluster.advance(30)
    apps = client.AppsV1Api(kube_api)
    for dep in apps.list_deployment_for_all_namespaces().items:
        assert dep.status.ready_replicas == dep.spec.replicas
    assert kubectl("uncordon", "node-02").stdout.strip() == "node/node-02 uncordoned"


def test_a_disruption_budget_holds_a_drain_back_until_its_timeout(
    kubectl: Any, core: client.CoreV1Api, kube_api: Any
) -> None:
    policy = client.PolicyV1Api(kube_api)
    policy.create_namespaced_pod_disruption_budget(
        "shop",
        {
            "metadata": {"name": "cart"},
            "spec": {"maxUnavailable": 0, "selector": {"matchLabels": {"app": "cart"}}},
        },
    )
    held = [name for name in on_node(core, "node-00") if name.startswith("cart-")]
    assert len(held) == 1
    done = kubectl("drain", "node-00", *DRAIN, "--timeout=6s", check=False)
    assert done.returncode != 0
    assert "Cannot evict pod as it would violate the pod's disruption budget." in done.stderr
    assert "global timeout reached: 6s" in done.stderr
    assert on_node(core, "node-00") == held  # the rest went, the budget's pod stayed
    assert core.read_node("node-00").spec.unschedulable is True
