"""kubectl against the simulated API server, through the kubeconfig it writes.

Each test runs the real kubectl binary, then checks the result through the official
client, advancing simulated time between steps as a live cluster would move on.
Skipped when kubectl is not installed, except in CI (``CI=true``), where that fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from daemons import Process, wait_for
from kubernetes import client

from healer.sim.cluster import Cluster

KUBECTL = shutil.which("kubectl")

if KUBECTL is None and os.environ.get("CI", "").lower() == "true":
    pytest.fail("kubectl is required in CI (make test installs it)", pytrace=False)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed"),
]


@pytest.fixture
def kubectl(kubeconfig: Path, tmp_path: Path) -> Any:
    """Run kubectl with its discovery cache and home in the test's directory."""
    return kubectl_on(kubeconfig, tmp_path)


def kubectl_on(kubeconfig: Path, tmp_path: Path) -> Any:
    """A kubectl runner for the cluster ``kubeconfig`` points at."""

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert KUBECTL is not None
        done = subprocess.run(
            [
                KUBECTL,
                "--kubeconfig",
                str(kubeconfig),
                "--cache-dir",
                str(tmp_path / "cache"),
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env={"HOME": str(tmp_path), "PATH": os.environ.get("PATH", "")},
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {done.stderr}")
        return done

    return run


def image_of(apps: client.AppsV1Api, name: str) -> str:
    return str(apps.read_namespaced_deployment(name, "shop").spec.template.spec.containers[0].image)


def set_image(apps: client.AppsV1Api, name: str, image: str) -> None:
    patch = {"spec": {"template": {"spec": {"containers": [{"name": name, "image": image}]}}}}
    apps.patch_namespaced_deployment(
        name, "shop", patch, _content_type="application/strategic-merge-patch+json"
    )


def test_get_deployments_in_all_namespaces(kubectl: Any) -> None:
    out = kubectl("get", "deployments", "-A").stdout.splitlines()
    assert out[0].split() == ["NAMESPACE", "NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    rows = {tuple(line.split()[:3]) for line in out[1:]}
    assert ("shop", "cart", "3/3") in rows
    assert ("web", "storefront", "4/4") in rows
    assert len(rows) == 5


def test_get_with_short_names_and_selectors(kubectl: Any) -> None:
    pods = kubectl("get", "po", "-n", "shop", "-l", "app in (cart,search)", "-o", "name").stdout
    assert len(pods.split()) == 6
    assert all(
        line.startswith("pod/cart-") or line.startswith("pod/search-") for line in pods.split()
    )
    one = kubectl("get", "deploy", "cart", "-n", "shop", "-o", "jsonpath={.spec.replicas}")
    assert one.stdout == "3"


def test_rollout_restart_rolls_new_pods(kubectl: Any, kube_api: Any, cluster: Cluster) -> None:
    apps = client.AppsV1Api(kube_api)
    before = {
        p.metadata.name
        for p in client.CoreV1Api(kube_api)
        .list_namespaced_pod("shop", label_selector="app=cart")
        .items
    }
    out = kubectl("rollout", "restart", "deployment/cart", "-n", "shop").stdout
    assert "deployment.apps/cart restarted" in out
    template = apps.read_namespaced_deployment("cart", "shop").spec.template
    assert "kubectl.kubernetes.io/restartedAt" in template.metadata.annotations
    cluster.advance(300)
    after = {
        p.metadata.name
        for p in client.CoreV1Api(kube_api)
        .list_namespaced_pod("shop", label_selector="app=cart")
        .items
    }
    assert len(after) == 3
    assert not before & after


def test_scale_changes_replicas(kubectl: Any, kube_api: Any, cluster: Cluster) -> None:
    out = kubectl("scale", "deployment/search", "-n", "shop", "--replicas=5").stdout
    assert "deployment.apps/search scaled" in out
    cluster.advance(60)
    dep = client.AppsV1Api(kube_api).read_namespaced_deployment("search", "shop")
    assert dep.spec.replicas == 5
    assert dep.status.ready_replicas == 5
    # A precondition that does not hold is refused, as against a real server.
    refused = kubectl(
        "scale",
        "deployment/search",
        "-n",
        "shop",
        "--current-replicas=2",
        "--replicas=1",
        check=False,
    )
    assert refused.returncode != 0


def test_rollout_history_lists_revisions(kubectl: Any, kube_api: Any, cluster: Cluster) -> None:
    apps = client.AppsV1Api(kube_api)
    apps.patch_namespaced_deployment(
        "catalog",
        "shop",
        {"metadata": {"annotations": {"kubernetes.io/change-cause": "release 9.9.9"}}},
        _content_type="application/merge-patch+json",
    )
    set_image(apps, "catalog", "registry.local/shop/catalog:9.9.9")
    cluster.advance(120)
    out = kubectl("rollout", "history", "deployment/catalog", "-n", "shop").stdout
    rows = [line.split(None, 1) for line in out.splitlines()[2:] if line.strip()]
    assert rows == [["1", "<none>"], ["2", "release 9.9.9"]]
    detail = kubectl(
        "rollout", "history", "deployment/catalog", "-n", "shop", "--revision=2"
    ).stdout
    assert "registry.local/shop/catalog:9.9.9" in detail


def test_rollout_undo_restores_the_previous_template(
    kubectl: Any, kube_api: Any, cluster: Cluster
) -> None:
    apps = client.AppsV1Api(kube_api)
    original = image_of(apps, "cart")
    set_image(apps, "cart", "registry.local/shop/cart:bad")
    cluster.advance(180)
    out = kubectl("rollout", "undo", "deployment/cart", "-n", "shop").stdout
    assert "deployment.apps/cart rolled back" in out
    assert image_of(apps, "cart") == original
    cluster.advance(180)
    dep = apps.read_namespaced_deployment("cart", "shop")
    assert dep.status.updated_replicas == dep.status.available_replicas == 3
    pods = client.CoreV1Api(kube_api).list_namespaced_pod("shop", label_selector="app=cart").items
    assert {p.spec.containers[0].image for p in pods} == {original}
    # The old ReplicaSet was reused, renumbered: revisions 2 (bad) and 3 (the original).
    sets = apps.list_namespaced_replica_set("shop", label_selector="app=cart").items
    numbers = {
        rs.spec.template.spec.containers[0].image: rs.metadata.annotations[
            "deployment.kubernetes.io/revision"
        ]
        for rs in sets
    }
    assert numbers == {original: "3", "registry.local/shop/cart:bad": "2"}


def test_rollout_undo_to_revision(kubectl: Any, kube_api: Any, cluster: Cluster) -> None:
    apps = client.AppsV1Api(kube_api)
    original = image_of(apps, "checkout")
    for tag in ("2", "3"):
        set_image(apps, "checkout", f"registry.local/shop/checkout:{tag}")
        cluster.advance(180)
    kubectl("rollout", "undo", "deployment/checkout", "-n", "shop", "--to-revision=1")
    assert image_of(apps, "checkout") == original
    cluster.advance(180)
    kubectl("rollout", "undo", "deployment/checkout", "-n", "shop", "--to-revision=2")
    assert image_of(apps, "checkout") == "registry.local/shop/checkout:2"
    missing = kubectl(
        "rollout", "undo", "deployment/checkout", "-n", "shop", "--to-revision=9", check=False
    )
    assert missing.returncode != 0
    assert "unable to find specified revision 9" in missing.stderr


def test_get_events(kubectl: Any, kube_api: Any) -> None:
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_event(
        "shop",
        client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name="cart."),
            involved_object=client.V1ObjectReference(
                kind="Deployment", name="cart", namespace="shop"
            ),
            reason="HealerRestart",
            message="restarted by healer",
            type="Normal",
        ),
    )
    out = kubectl("get", "events", "-n", "shop").stdout.splitlines()
    assert out[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert out[1].split()[1:] == [
        "Normal",
        "HealerRestart",
        "deployment/cart",
        "restarted",
        "by",
        "healer",
    ]


def test_get_autoscaling_and_policy_objects(kubectl: Any, kube_api: Any, cluster: Cluster) -> None:
    client.AutoscalingV2Api(kube_api).create_namespaced_horizontal_pod_autoscaler(
        "shop",
        {
            "metadata": {"name": "cart"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "cart"},
                "minReplicas": 3,
                "maxReplicas": 6,
            },
        },
    )
    cluster.advance(30)
    out = kubectl("get", "hpa", "-n", "shop").stdout.splitlines()
    assert out[0].split()[:3] == ["NAME", "REFERENCE", "TARGETS"]
    assert out[1].split()[:2] == ["cart", "Deployment/cart"]
    assert kubectl("get", "pdb,leases", "-n", "shop").returncode == 0


def _client_minor() -> int:
    if KUBECTL is None:
        return 0
    done = subprocess.run(
        [KUBECTL, "version", "--client", "-o", "json"], capture_output=True, text=True, timeout=30
    )
    minor = json.loads(done.stdout or "{}").get("clientVersion", {}).get("minor", "0")
    return int("".join(ch for ch in minor if ch.isdigit()) or 0)


# kubectl reads OpenAPI v3 (which the simulator serves) for validation and explain from
# 1.27; older ones, such as Debian's kubernetes-client 1.20, ask for v2 as protobuf only.
needs_openapi_v3 = pytest.mark.skipif(
    _client_minor() < 27,
    reason="this kubectl validates and explains with OpenAPI v2 (protobuf), not served",
)

MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: extra, namespace: shop, labels: {app: extra}}
spec:
  replicas: 2
  selector: {matchLabels: {app: extra}}
  template:
    metadata: {labels: {app: extra}}
    spec: {containers: [{name: extra, image: "registry.local/shop/extra:1.0"}]}
"""


@needs_openapi_v3
def test_create_and_apply_from_a_file_validate_through_openapi(
    kubectl: Any, kube_api: Any, cluster: Cluster, tmp_path: Path
) -> None:
    manifest = tmp_path / "extra.yaml"
    manifest.write_text(MANIFEST)
    assert "deployment.apps/extra created" in kubectl("create", "-f", str(manifest)).stdout
    manifest.write_text(MANIFEST.replace("replicas: 2", "replicas: 3"))
    applied = kubectl("apply", "-f", str(manifest))
    assert "deployment.apps/extra configured" in applied.stdout
    cluster.advance(60)
    dep = client.AppsV1Api(kube_api).read_namespaced_deployment("extra", "shop")
    assert dep.spec.replicas == 3 and dep.status.ready_replicas == 3
    assert "kubectl.kubernetes.io/last-applied-configuration" in dep.metadata.annotations


@needs_openapi_v3
def test_a_manifest_with_an_unknown_field_is_refused(kubectl: Any, tmp_path: Path) -> None:
    manifest = tmp_path / "typo.yaml"
    manifest.write_text(MANIFEST.replace("replicas: 2", "replicas: 2\n  replica: 2"))
    refused = kubectl("create", "-f", str(manifest), check=False)
    assert refused.returncode != 0
    assert 'unknown field "spec.replica"' in refused.stderr
    warned = kubectl("create", "-f", str(manifest), "--validate=warn")
    assert "deployment.apps/extra created" in warned.stdout
    assert 'unknown field "spec.replica"' in warned.stderr


@needs_openapi_v3
def test_explain_reads_the_schema(kubectl: Any) -> None:
    out = kubectl("explain", "deployment.spec.strategy.rollingUpdate").stdout
    assert "KIND:       Deployment" in out
    assert "maxSurge" in out and "maxUnavailable" in out


def test_rollout_status_follows_the_rollout_through_a_watch(kubectl: Any, cluster: Cluster) -> None:
    kubectl("rollout", "restart", "deployment/cart", "-n", "shop")
    stop = threading.Event()

    def time_passes() -> None:
        while not stop.wait(0.2):
            cluster.advance(15)

    clock = threading.Thread(target=time_passes)
    clock.start()
    try:
        done = kubectl("rollout", "status", "deployment/cart", "-n", "shop", "--timeout=60s")
    finally:
        stop.set()
        clock.join()
    lines = done.stdout.splitlines()
    assert any("new replicas have been updated" in line for line in lines)
    assert lines[-1] == 'deployment "cart" successfully rolled out'


# ---- the control plane reacts to writes (no tick between the kubectl commands) -------------


def revisions_of(apps: client.AppsV1Api, app: str) -> dict[int, Any]:
    sets = apps.list_namespaced_replica_set("shop", label_selector=f"app={app}").items
    return {int(rs.metadata.annotations["deployment.kubernetes.io/revision"]): rs for rs in sets}


def test_restart_then_set_image_make_two_new_revisions(kubectl: Any, kube_api: Any) -> None:
    # No tick between the commands: as at speed 1, when the second comes 2 s after the first.
    apps = client.AppsV1Api(kube_api)
    original = image_of(apps, "cart")
    kubectl("rollout", "restart", "deployment/cart", "-n", "shop")
    started = revisions_of(apps, "cart")
    assert sorted(started) == [1, 2]
    assert started[2].spec.replicas == 1  # the rollout began with the write (maxSurge 25%)
    kubectl("set", "image", "deployment/cart", "*=registry.local/shop/cart:2.4.2", "-n", "shop")
    sets = revisions_of(apps, "cart")
    assert sorted(sets) == [1, 2, 3]
    restarted, released = sets[2].spec.template, sets[3].spec.template
    assert restarted.spec.containers[0].image == original
    assert "kubectl.kubernetes.io/restartedAt" in restarted.metadata.annotations
    assert released.spec.containers[0].image == "registry.local/shop/cart:2.4.2"
    history = kubectl("rollout", "history", "deployment/cart", "-n", "shop").stdout
    assert [line.split()[0] for line in history.splitlines()[2:] if line.strip()] == [
        "1",
        "2",
        "3",
    ]


def test_rollout_undo_right_after_set_image(kubectl: Any, kube_api: Any) -> None:
    apps = client.AppsV1Api(kube_api)
    original = image_of(apps, "cart")
    kubectl("set", "image", "deployment/cart", "cart=registry.local/shop/cart:bad", "-n", "shop")
    out = kubectl("rollout", "undo", "deployment/cart", "-n", "shop").stdout
    assert "deployment.apps/cart rolled back" in out
    assert image_of(apps, "cart") == original
    # The first ReplicaSet came back as revision 3, at once.
    sets = revisions_of(apps, "cart")
    assert sorted(sets) == [2, 3]
    assert sets[3].spec.template.spec.containers[0].image == original


def test_set_image_gives_no_warning(kubectl: Any, kube_api: Any) -> None:
    done = kubectl(
        "set", "image", "deployment/search", "*=registry.local/shop/search:9", "-n", "shop"
    )
    assert done.stderr == ""
    assert "deployment.apps/search image updated" in done.stdout
    assert image_of(client.AppsV1Api(kube_api), "search") == "registry.local/shop/search:9"


@pytest.mark.parametrize(
    ("kind", "body", "problem"),
    [
        ("json", '{"spec": {"replicas": 2}}', "cannot unmarshal object"),
        ("merge", '[{"spec": {"replicas": 2}}]', "cannot unmarshal array"),
        ("strategic", '"replicas"', "cannot unmarshal string"),
    ],
)
def test_a_patch_body_of_the_wrong_shape_is_a_bad_request(
    kubectl: Any, kube_api: Any, kind: str, body: str, problem: str
) -> None:
    done = kubectl(
        "patch", "deployment/cart", "-n", "shop", "--type", kind, "-p", body, check=False
    )
    assert done.returncode != 0
    assert problem in done.stderr
    assert client.AppsV1Api(kube_api).read_namespaced_deployment("cart", "shop").spec.replicas == 3


def test_sim_serve_reacts_to_a_restart_and_a_set_image_2_s_apart(tmp_path: Path) -> None:
    """``healer sim serve`` at speed 1 ticks every 15 s of wall time; the writes 2 s apart
    still make a revision each, and ``rollout undo`` right after finds the previous one."""
    config = tmp_path / "sim.kubeconfig"
    server = Process.start(
        "sim", ["sim", "serve", "--port", "0", "--kubeconfig-out", str(config)], tmp_path, {}
    )
    try:
        wait_for("the simulated cluster", lambda: config.exists() and "API" in server.stdout(), 60)
        kubectl = kubectl_on(config, tmp_path)
        kubectl("rollout", "restart", "deployment/cart", "-n", "shop")
        time.sleep(2)
        done = kubectl(
            "set", "image", "deployment/cart", "*=registry.local/shop/cart:2.4.2", "-n", "shop"
        )
        assert done.stderr == ""
        history = kubectl("rollout", "history", "deployment/cart", "-n", "shop").stdout
        numbers = [line.split()[0] for line in history.splitlines()[2:] if line.strip()]
        assert numbers == ["1", "2", "3"]
        kubectl("rollout", "undo", "deployment/cart", "-n", "shop")
        image = kubectl(
            "get",
            "deployment/cart",
            "-n",
            "shop",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ).stdout
        assert image == "registry.local/shop/cart:2.4.1"
    finally:
        server.terminate()
