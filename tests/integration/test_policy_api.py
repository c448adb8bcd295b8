"""The policy requests through the official client against the simulated API server:
404 before the CRDs are installed, list and watch from the list's version after, 410
Gone for a version older than the server's watch cache, status written through the
subresource without moving the generation."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from healer.act.policy_api import KubePolicyApi
from healer.errors import PoliciesMissing, PolicyWatchExpired
from healer.sim.cluster import Cluster

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def install(cluster: Cluster) -> None:
    for crd in sorted((REPO / "deploy" / "crds").glob("*.yaml")):
        cluster.create_object(
            "customresourcedefinitions", "", yaml.safe_load(crd.read_text()), dry_run=False
        )


def test_not_installed_is_a_404_told_apart(kube_api: Any) -> None:
    with pytest.raises(PoliciesMissing):
        KubePolicyApi(kube_api).list_all("healingpolicies")


def test_list_then_watch_from_the_version_and_410_for_an_old_one(
    kube_api: Any, cluster: Cluster
) -> None:
    install(cluster)
    api = KubePolicyApi(kube_api)
    body = {"metadata": {"name": "a"}, "spec": {"mode": "approval"}}
    cluster.create_object("healingpolicies", "shop", body, dry_run=False)
    items, version = api.list_all("healingpolicies")
    assert [i["metadata"]["name"] for i in items] == ["a"]

    def change() -> None:
        patch = {"spec": {"mode": "auto"}}
        cluster.patch_object(
            "healingpolicies", "shop", "a", patch, "application/merge-patch+json", dry_run=False
        )

    threading.Timer(0.3, change).start()
    seen = list(api.watch("healingpolicies", version, timeout_s=2))
    assert [(kind, obj["spec"]["mode"]) for kind, obj in seen] == [("MODIFIED", "auto")]
    with pytest.raises(PolicyWatchExpired):
        list(api.watch("healingpolicies", "1", timeout_s=2))

    api.write_status("healingpolicies", seen[0][1], {"matchedWorkloads": 4})
    stored = cluster.get_object("healingpolicies", "shop", "a")
    assert stored["status"] == {"matchedWorkloads": 4}
    assert stored["metadata"]["generation"] == 2  # the spec change, not the status
