"""kubectl and the policy CRDs against ``healer sim serve``: the real binary applies
deploy/crds/ and the example policies, lists them with their printer columns, is refused
an invalid policy with the field named, and reads the status healer's policy watch
writes back (``kubectl get -o yaml``)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from daemons import Process, wait_for
from test_kubectl import KUBECTL, kubectl_on

from healer.act.kube import api_client
from healer.act.policy_api import KubePolicyApi
from healer.lifecycle import policy_watch

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed"),
]

REPO = Path(__file__).resolve().parents[2]
CRDS = str(REPO / "deploy" / "crds")
EXAMPLES = str(REPO / "deploy" / "policies")
CONTRADICTS = """\
apiVersion: healer.io/v1alpha1
kind: HealingPolicy
metadata: {name: upside-down, namespace: shop}
spec:
  mode: auto
  limits: {minReplicas: 8, maxReplicas: 4}
"""


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path]]:
    """``healer sim serve`` with the CRDs and the example policies applied by kubectl."""
    folder = tmp_path_factory.mktemp("policies")
    config = folder / "sim.kubeconfig"
    server = Process.start(
        "sim", ["sim", "serve", "--port", "0", "--kubeconfig-out", str(config)], folder, {}
    )
    try:
        wait_for("the simulated cluster", lambda: config.exists() and "API" in server.stdout(), 60)
        kubectl = kubectl_on(config, folder)
        crds = kubectl("apply", "-f", CRDS).stdout.splitlines()
        kind = "customresourcedefinition.apiextensions.k8s.io"
        assert crds == [
            f"{kind}/clusterhealingpolicies.healer.io created",
            f"{kind}/healingpolicies.healer.io created",
        ]
        examples = kubectl("apply", "-f", EXAMPLES).stdout.splitlines()
        assert examples == [
            "healingpolicy.healer.io/cautious created",
            "clusterhealingpolicy.healer.io/replica-bounds created",
        ]
        yield kubectl, config
    finally:
        server.terminate()


@pytest.fixture(scope="module")
def watched(sim: tuple[Any, Path]) -> Iterator[policy_watch.PolicyBook]:
    """healer's policy watch on the simulated cluster, writing status as the leader."""
    _, config = sim
    stop, book = threading.Event(), policy_watch.PolicyBook()
    policy_watch.start(
        KubePolicyApi(api_client(config)),
        book,
        stop=stop,
        leading=lambda: True,
        now=lambda: datetime.now(UTC),
        status_interval_s=0.5,
    )
    yield book
    stop.set()


def test_get_healingpolicies_in_all_namespaces_prints_the_crds_columns(
    sim: tuple[Any, Path],
) -> None:
    kubectl, _ = sim
    lines = kubectl("get", "healingpolicies", "-A").stdout.splitlines()
    assert lines[0].split() == ["NAMESPACE", "NAME", "MODE", "READY", "MATCHED", "AGE"]
    assert lines[1].split()[:3] == ["shop", "cautious", "approval"]
    wide = kubectl("get", "clusterhealingpolicies", "-o", "wide").stdout.splitlines()
    assert wide[0].split() == ["NAME", "MODE", "READY", "MATCHED", "REASON", "AGE"]
    assert wide[1].split()[0] == "replica-bounds"
    by_category = kubectl("get", "healer", "-A", "-o", "name").stdout.split()
    assert sorted(by_category) == [
        "clusterhealingpolicy.healer.io/replica-bounds",
        "healingpolicy.healer.io/cautious",
    ]


def test_a_policy_the_schema_refuses_names_each_field(sim: tuple[Any, Path]) -> None:
    kubectl, config = sim
    bad = config.parent / "bad.yaml"
    bad.write_text(
        "apiVersion: healer.io/v1alpha1\nkind: HealingPolicy\n"
        "metadata: {name: bad, namespace: shop}\n"
        "spec:\n  mode: yolo\n  limits: {cooldownSeconds: -5}\n"
        "  maintenanceWindows: [{start: '25:00', end: '04:00'}]\n"
    )
    done = kubectl("apply", "-f", str(bad), check=False)
    assert done.returncode != 0
    assert 'The HealingPolicy "bad" is invalid' in done.stderr
    assert 'spec.mode: Unsupported value: "yolo": supported values: "auto", "approval"' in (
        done.stderr
    )
    assert "spec.limits.cooldownSeconds: Invalid value: -5" in done.stderr
    assert 'spec.maintenanceWindows[0].start: Invalid value: "25:00"' in done.stderr
    typo = config.parent / "typo.yaml"
    typo.write_text(
        "apiVersion: healer.io/v1alpha1\nkind: HealingPolicy\n"
        "metadata: {name: typo, namespace: shop}\nspec: {mode: auto, mood: calm}\n"
    )
    done = kubectl("apply", "-f", str(typo), check=False)
    assert done.returncode != 0
    assert 'unknown field "spec.mood"' in done.stderr
    assert "bad" not in kubectl("get", "hp", "-n", "shop", "-o", "name").stdout


def test_healer_writes_each_policys_status_visible_with_get_o_yaml(
    sim: tuple[Any, Path], watched: policy_watch.PolicyBook
) -> None:
    kubectl, config = sim
    in_shop = kubectl("get", "deployments,statefulsets", "-n", "shop", "-o", "name").stdout.split()

    def status() -> dict[str, Any] | None:
        got = yaml.safe_load(kubectl("get", "hp", "cautious", "-n", "shop", "-o", "yaml").stdout)
        return got.get("status")

    found = wait_for("the status of shop/cautious", status, 20)
    assert found["observedGeneration"] == 1
    assert found["matchedWorkloads"] == len(in_shop)
    ready = {c["type"]: c for c in found["conditions"]}
    assert (ready["Ready"]["status"], ready["Ready"]["reason"]) == ("True", "Accepted")
    assert ready["Invalid"]["status"] == "False"

    upside = config.parent / "upside-down.yaml"
    upside.write_text(CONTRADICTS)
    kubectl("apply", "-f", str(upside))  # valid for the schema
    wait_for(
        "upside-down judged invalid",
        lambda: "MinReplicasAboveMax" in kubectl("get", "hp", "-n", "shop", "-o", "wide").stdout,
        20,
    )
    rows = {r.split()[0]: r.split() for r in kubectl("get", "hp", "-n", "shop").stdout.splitlines()}
    assert rows["upside-down"][1:3] == ["auto", "False"]
    assert rows["cautious"][1:3] == ["approval", "True"]
    got = json.loads(kubectl("get", "hp", "upside-down", "-n", "shop", "-o", "json").stdout)
    invalid = next(c for c in got["status"]["conditions"] if c["type"] == "Invalid")
    assert invalid["status"] == "True"
    assert invalid["message"] == "spec.limits.minReplicas (8) is above spec.limits.maxReplicas (4)"
    assert [p.ref for p in watched.current()] == [
        "ClusterHealingPolicy replica-bounds",
        "HealingPolicy shop/cautious",
    ]  # the invalid one ignored, the others apply

    kubectl(
        "patch",
        "hp",
        "cautious",
        "-n",
        "shop",
        "--type",
        "merge",
        "-p",
        '{"spec":{"mode":"dry-run"}}',
    )

    def observed() -> int | None:
        got = json.loads(kubectl("get", "hp", "cautious", "-n", "shop", "-o", "json").stdout)
        seen = got["status"]["observedGeneration"]
        return seen if got["metadata"]["generation"] == 2 and seen == 2 else None

    assert wait_for("observedGeneration 2", observed, 20) == 2
