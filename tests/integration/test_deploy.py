"""The kustomize base in deploy/: valid Kubernetes objects, least-privilege RBAC.

* Every rendered manifest validates against the Kubernetes 1.31 OpenAPI schemas
  (kubernetes-validate, strict: unknown fields are errors).
* The RBAC rules are exactly the requests healer makes: the simulated API server
  records every request while the actuator takes each action (and its dry run) and the
  elector acquires, renews and releases the Lease, and the policy watch lists, watches
  and writes status; each request maps to (API group,
  resource, verb), and the rules must cover all of them and grant nothing else.
* The rules grant what every action kind's module declares (``healer.actions``).
* The playbooks ConfigMap carries the repository's playbooks/ files, unchanged.

Rendering uses `kubectl kustomize` (required in CI, as for the kubectl tests).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes import client
from kubernetes import config as kube_config

from healer.act.kube import KubeActuator
from healer.act.lease import KubeLeases, KubeMembers, server_version
from healer.act.policy_api import KubePolicyApi
from healer.actions import rbac_rules
from healer.api.server import ServerThread, bind
from healer.config import LeaderSettings
from healer.leader import LeaderElector
from healer.lifecycle import policy_watch
from healer.membership import Membership
from healer.sim.apiserver import create_api, write_kubeconfig
from healer.sim.cluster import Cluster
from healer.sim.scenario import load_scenario
from healer.types import (
    ActionKind,
    ActionRecord,
    ActionStatus,
    JsonValue,
    Mode,
    Plan,
    WorkloadRef,
    node_ref,
)

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
KUBERNETES_VERSION = "1.31.0"
KUBECTL = shutil.which("kubectl")
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

pytestmark = pytest.mark.integration


def kustomize(path: Path, *extra: str) -> list[dict[str, Any]]:
    if KUBECTL is None:
        if os.environ.get("CI") == "true":
            pytest.fail("kubectl is required in CI (make test installs it)", pytrace=False)
        pytest.skip("kubectl is not installed")
    result = subprocess.run(
        [KUBECTL, "kustomize", str(path), *extra],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def render_playbooks_configmap() -> str:
    """deploy/playbooks-configmap.yaml as it must read (regenerate it with this)."""
    data = {p.name: p.read_text() for p in sorted((REPO / "playbooks").glob("*.yaml"))}
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "healer-playbooks"},
        "data": data,
    }
    header = (
        "# The files of playbooks/, mounted at /etc/healer/playbooks (playbooks_dir).\n"
        "# Generated: tests/integration/test_deploy.py checks it matches playbooks/.\n"
    )
    return header + yaml.dump(config_map, Dumper=_LiteralDumper, sort_keys=False)


class _LiteralDumper(yaml.SafeDumper):
    """Multi-line strings as ``|`` blocks, so the ConfigMap reads like the files."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_LiteralDumper.add_representer(str, _str)


@pytest.fixture(scope="module")
def base() -> list[dict[str, Any]]:
    return kustomize(DEPLOY)


@pytest.fixture(scope="module")
def with_sqlite(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    overlay = tmp_path_factory.mktemp("overlay")
    overlay.joinpath("kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(DEPLOY, overlay)],
                "components": [os.path.relpath(DEPLOY / "components" / "sqlite", overlay)],
            }
        )
    )
    return kustomize(overlay, "--load-restrictor", "LoadRestrictionsNone")


def test_every_manifest_validates_against_the_kubernetes_schemas(
    base: list[dict[str, Any]], with_sqlite: list[dict[str, Any]]
) -> None:
    for doc in [*base, *with_sqlite]:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in base)
    assert kinds == [
        "ClusterRole/healer",
        "ClusterRoleBinding/healer",
        "ConfigMap/healer-config",
        "ConfigMap/healer-playbooks",
        "CustomResourceDefinition/clusterhealingpolicies.healer.io",
        "CustomResourceDefinition/healingpolicies.healer.io",
        "Deployment/healer",
        "Namespace/healer",
        "Role/healer-leader-election",
        "RoleBinding/healer-leader-election",
        "Secret/healer-store",
        "Service/healer",
        "ServiceAccount/healer",
    ]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind]
    return found


def test_the_deployment_runs_two_hardened_replicas_with_probes(base: list[dict[str, Any]]) -> None:
    deployment = one(base, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {"requests", "limits"} <= container["resources"].keys()
    assert container["args"] == ["run", "--config", "/etc/healer/healer.yaml"]
    assert all(d["metadata"].get("namespace", "healer") == "healer" for d in base)


def test_the_settings_in_the_configmap_load(base: list[dict[str, Any]], tmp_path: Path) -> None:
    from healer.config import load_settings

    (config,) = [d for d in base if d["metadata"]["name"] == "healer-config"]
    path = tmp_path / "healer.yaml"
    path.write_text(config["data"]["healer.yaml"])
    settings = load_settings(path)
    assert settings.api.host == "0.0.0.0"
    assert str(settings.playbooks_dir) == "/etc/healer/playbooks"


def test_the_sqlite_component_runs_one_replica_on_a_volume(
    with_sqlite: list[dict[str, Any]],
) -> None:
    deployment = one(with_sqlite, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["HEALER_STORE__URL"]["value"].startswith("sqlite:////var/lib/healer/")
    assert one(with_sqlite, "PersistentVolumeClaim")["metadata"]["name"] == "healer-store"
    assert not [d for d in with_sqlite if d["kind"] == "Secret"]


def test_the_playbooks_configmap_matches_playbooks() -> None:
    expected = render_playbooks_configmap()
    assert (DEPLOY / "playbooks-configmap.yaml").read_text() == expected, (
        "deploy/playbooks-configmap.yaml is out of date: "
        "python tests/integration/test_deploy.py regenerates it from playbooks/"
    )


# ---- RBAC: every request healer makes, and nothing more --------------------------------


class Recorder:
    """ASGI middleware noting (method, path) of every Kubernetes API request."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.requests: list[tuple[str, str]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            watching = b"watch=" in scope.get("query_string", b"")
            self.requests.append((scope["method"], scope["path"] + ("?watch" if watching else "")))
        await self.app(scope, receive, send)


def rbac_request(method: str, path: str) -> tuple[str, str, str] | None:
    """(apiGroup, resource[/subresource], verb) of a request; None for non-resource URLs."""
    path, watching = path.removesuffix("?watch"), path.endswith("?watch")
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) > 2:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) > 3:
        group, rest = parts[1], parts[3:]
    else:
        return None  # /version, discovery: allowed to every authenticated client
    if rest[0] == "namespaces" and len(rest) > 2:
        rest = rest[2:]
    resource = rest[0] + (f"/{rest[2]}" if len(rest) > 2 else "")
    named = len(rest) > 1
    verb = {
        "GET": "get" if named else "watch" if watching else "list",
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete",
    }[method]
    return group, resource, verb


def granted(docs: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    out = set()
    for doc in docs:
        if doc["kind"] in ("ClusterRole", "Role"):
            for rule in doc["rules"]:
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        for verb in rule["verbs"]:
                            out.add((group, resource, verb))
    return out


@pytest.fixture
def recorded(tmp_path: Path) -> Iterator[tuple[Recorder, Any, Cluster]]:
    cluster = Cluster(load_scenario("default"))
    recorder = Recorder(create_api(cluster))
    server = ServerThread(recorder, bind("127.0.0.1", 0)).start()
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", server.url)
    api = kube_config.new_client_from_config(config_file=str(kubeconfig))
    yield recorder, api, cluster
    api.close()
    server.stop()


def statefulset(name: str) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": name, "image": f"{name}:1"}]},
            },
        },
    }


def daemonset(name: str) -> dict[str, Any]:
    body = statefulset(name)
    body["spec"].pop("replicas")
    return body


def intent(plan: Plan) -> ActionRecord:
    request: dict[str, Any] = {"action": plan.action.value, "params": dict(plan.params)}
    return ActionRecord(plan.action, plan.workload, request, ActionStatus.INTENDED, NOW, NOW)


def exercise_nodes(actuator: KubeActuator, cluster: Cluster) -> None:
    """What the node watch sends: cordon, one drain eviction, uncordon, each checked as
    after a crash, in each mode; the pods of a node listed as ``kubectl drain`` does."""
    name = next(p["spec"]["nodeName"] for p in cluster.list_objects("pods", "shop"))
    node = node_ref(name)
    for mode in (Mode.DRY_RUN, Mode.AUTO):
        [pod, *_] = actuator.pods_on_node(name)
        for action, params in (
            (ActionKind.CORDON, {}),
            (ActionKind.DRAIN, {"namespace": pod.namespace, "pod": pod.name}),
            (ActionKind.UNCORDON, {}),
        ):
            plan = Plan(node, "test", action, params, mode, (), "test", 600.0)
            assert actuator.apply(plan, now=NOW).error is None
            actuator.already_applied(intent(plan))


def exercise_everything(api: Any, cluster: Cluster) -> None:
    """Every request healer makes: each action in each mode, with and without an HPA,
    whether it landed (as after a crash), the Lease acquired, renewed, confirmed and
    released, the start-up probe."""
    search = WorkloadRef("shop", "Deployment", "search")
    cart = WorkloadRef("shop", "Deployment", "cart")
    db = WorkloadRef("shop", "StatefulSet", "db")
    agent = WorkloadRef("shop", "DaemonSet", "agent")
    actuator = KubeActuator(api)
    server_version(api)
    cluster.patch_deployment(
        "shop",
        "cart",
        {"spec": {"template": {"spec": {"containers": [{"name": "cart", "image": "cart:9"}]}}}},
        "application/strategic-merge-patch+json",
    )
    cluster.create_workload("statefulsets", "shop", statefulset("db"))
    cluster.patch_workload(
        "statefulsets",
        "shop",
        "db",
        {"spec": {"template": {"spec": {"containers": [{"name": "db", "image": "db:9"}]}}}},
        "application/strategic-merge-patch+json",
    )
    cluster.create_workload("daemonsets", "shop", daemonset("agent"))
    cluster.patch_workload(
        "daemonsets",
        "shop",
        "agent",
        {"spec": {"template": {"spec": {"containers": [{"name": "agent", "image": "agent:9"}]}}}},
        "application/strategic-merge-patch+json",
    )
    for mode in (Mode.DRY_RUN, Mode.AUTO):
        for workload, action, params in (
            (search, ActionKind.RESTART, {}),
            (search, ActionKind.SCALE, {"replicas": 4}),
            (cart, ActionKind.ROLLBACK, {"to_revision": 1}),
            (db, ActionKind.RESTART, {}),
            (db, ActionKind.SCALE, {"replicas": 4}),
            (db, ActionKind.ROLLBACK, {"to_revision": 1, "from_revision": 2}),
            (agent, ActionKind.RESTART, {}),
            (agent, ActionKind.ROLLBACK, {"to_revision": 1, "from_revision": 2}),
        ):
            actuator.read_state(workload)
            plan = Plan(workload, "test", action, params, mode, (), "test", 600.0)
            assert actuator.apply(plan, now=NOW).error is None
            actuator.already_applied(intent(plan))
        pod = actuator.read_state(cart).pods[0].name
        assert actuator.owner_of_pod("shop", pod) == cart  # an alert naming a pod
        agent_pod = actuator.read_state(agent).pods[0].name
        assert actuator.owner_of_pod("shop", agent_pod) == agent
        plan = Plan(cart, "test", ActionKind.EVICT, {"pod": pod}, mode, (), "test", 600.0)
        record = actuator.apply(plan, now=NOW)
        assert record.error is None
        assert actuator.already_applied(intent(plan)) is (mode is Mode.AUTO)
    # A StatefulSet's pod of the revision rolled back from, never Ready: deleted after.
    queue = WorkloadRef("shop", "StatefulSet", "queue")
    cluster.create_workload("statefulsets", "shop", statefulset("queue"))
    cluster.patch_workload(
        "statefulsets",
        "shop",
        "queue",
        {"spec": {"template": {"spec": {"containers": [{"name": "queue", "image": "q:9"}]}}}},
        "application/strategic-merge-patch+json",
    )
    params: dict[str, JsonValue] = {"to_revision": 2, "from_revision": 1}
    plan = Plan(queue, "test", ActionKind.ROLLBACK, params, Mode.AUTO, (), "test", 600.0)
    record = actuator.apply(plan, now=NOW)
    assert record.error is None and record.request["then"]
    exercise_nodes(actuator, cluster)
    hpa = client.V2HorizontalPodAutoscaler(
        metadata=client.V1ObjectMeta(name="search"),
        spec=client.V2HorizontalPodAutoscalerSpec(
            scale_target_ref=client.V2CrossVersionObjectReference(
                api_version="apps/v1", kind="Deployment", name="search"
            ),
            min_replicas=2,
            max_replicas=10,
        ),
    )
    cluster.create_object(
        "horizontalpodautoscalers",
        "shop",
        client.ApiClient().sanitize_for_serialization(hpa),
        dry_run=False,
    )
    assert actuator.read_state(search).hpa is not None
    plan = Plan(
        search, "test", ActionKind.SCALE, {"replicas": 5, "hpa": "search"}, Mode.AUTO, (), "t", 1
    )
    assert actuator.apply(plan, now=NOW).error is None
    assert actuator.already_applied(intent(plan))
    elector = LeaderElector(
        KubeLeases(api, namespace="healer", name="healer"),
        identity="healer-0",
        settings=LeaderSettings(),
    )
    assert elector.tick(NOW)
    assert elector.tick(NOW + timedelta(seconds=2))
    assert elector.confirm(NOW + timedelta(seconds=3)) is None
    assert elector.release(NOW + timedelta(seconds=4))
    exercise_membership(api)
    exercise_policies(api, cluster)


def exercise_membership(api: Any) -> None:
    """Sharded replicas list the group's membership Leases, renew their own and delete
    one whose replica stopped."""
    settings = LeaderSettings()
    members = KubeMembers(api, namespace="healer", group="healer")
    gone = Membership(members, identity="gone", base="healer", settings=settings, settle_s=0)
    gone.tick(NOW)
    mine = Membership(members, identity="mine", base="healer", settings=settings, settle_s=0)
    mine.tick(NOW)
    mine.tick(NOW + timedelta(seconds=settings.lease_duration_s + 1))
    assert set(members.members()) == {"healer-member-mine"}


def exercise_policies(api: Any, cluster: Cluster) -> None:
    """The policy watch: each kind listed and watched, each status written (with the
    workloads listed to count the matches)."""
    for crd in sorted((DEPLOY / "crds").glob("*.yaml")):
        cluster.create_object(
            "customresourcedefinitions", "", yaml.safe_load(crd.read_text()), dry_run=False
        )
    policies = KubePolicyApi(api)
    book = policy_watch.PolicyBook()
    for plural, namespace in (("healingpolicies", "shop"), ("clusterhealingpolicies", "")):
        body = {"metadata": {"name": "p"}, "spec": {"mode": "approval"}}
        cluster.create_object(plural, namespace, body, dry_run=False)
        items, version = policies.list_all(plural)
        book.replace_all(plural, items)
        assert list(policies.watch(plural, version, timeout_s=0)) == []
    assert policy_watch.write_statuses(policies, book, now=NOW) == 2


# Granted although no request above makes them. Each is in the permission set agreed
# for healer's actions; none is used by today's actuator. A rule that starts being used
# must leave this table (the test says so); one that is neither used nor listed fails.
RESERVED = {
    ("apps", "deployments/scale", "get"): "kubectl scale's read of the scale",
    ("apps", "deployments/scale", "update"): "kubectl scale's replace of the scale",
}


def test_rbac_covers_every_request_healer_makes_and_nothing_more(
    base: list[dict[str, Any]], recorded: tuple[Recorder, Any, Cluster]
) -> None:
    recorder, api, cluster = recorded
    exercise_everything(api, cluster)
    made = {r for r in (rbac_request(m, p) for m, p in recorder.requests) if r is not None}
    rules = granted(base)
    assert made <= rules, f"requests the RBAC rules do not allow: {sorted(made - rules)}"
    unused = rules - made
    assert unused <= RESERVED.keys(), f"rules no request needs: {sorted(unused - RESERVED.keys())}"
    assert not (made & RESERVED.keys()), "a reserved rule is used now: drop it from RESERVED"


def test_rbac_grants_what_every_action_kind_declares(base: list[dict[str, Any]]) -> None:
    needed = {(r.group, r.resource, verb) for r in rbac_rules() for verb in r.verbs}
    missing = needed - granted(base)
    assert not missing, f"deploy/rbac.yaml lacks rules the action kinds declare: {sorted(missing)}"


if __name__ == "__main__":
    (DEPLOY / "playbooks-configmap.yaml").write_text(render_playbooks_configmap())
