"""CustomResourceDefinitions in the simulated cluster: a CRD serves its kind, whose
objects are pruned, defaulted and validated against its schema, keep status apart from
spec, and go with their CRD; a CRD the server would refuse names its field."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from healer.sim import crds, discovery
from healer.sim.cluster import Cluster
from healer.sim.objects import MERGE_PATCH, ApiError
from healer.sim.schema import prune, validate
from healer.sim.tables import human_duration, table

REPO = Path(__file__).resolve().parents[3]


def crd(name: str = "healingpolicies") -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "deploy" / "crds" / f"{name}.yaml").read_text())
    return loaded


def installed(cluster: Cluster) -> Cluster:
    for name in ("healingpolicies", "clusterhealingpolicies"):
        cluster.create_object("customresourcedefinitions", "", crd(name), dry_run=False)
    return cluster


def hp(spec: dict[str, Any], name: str = "p") -> dict[str, Any]:
    return {
        "apiVersion": "healer.io/v1alpha1",
        "kind": "HealingPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }


def test_a_crd_serves_its_kind_and_is_established(cluster: Cluster) -> None:
    installed(cluster)
    stored = cluster.get_object("customresourcedefinitions", "", "healingpolicies.healer.io")
    conditions = {c["type"]: c["status"] for c in stored["status"]["conditions"]}
    assert conditions == {"NamesAccepted": "True", "Established": "True"}
    kinds = cluster.custom.kinds()
    assert [(k.kind, k.namespaced) for k in kinds] == [
        ("HealingPolicy", True),
        ("ClusterHealingPolicy", False),
    ]
    groups = [g["name"] for g in discovery.api_group_list(kinds)["groups"]]
    assert groups[-1] == "healer.io"
    listing = discovery.api_resource_list("healer.io/v1alpha1", kinds)["resources"]
    assert {r["name"] for r in listing} == {
        "healingpolicies",
        "healingpolicies/status",
        "clusterhealingpolicies",
        "clusterhealingpolicies/status",
    }


def test_objects_are_pruned_and_their_status_left_to_the_subresource(cluster: Cluster) -> None:
    installed(cluster)
    body = hp({"mode": "auto", "colour": "blue", "limits": {"cooldownSeconds": 5, "x": 1}})
    body["status"] = {"matchedWorkloads": 99}
    created = cluster.create_object("healingpolicies", "shop", body, dry_run=False)
    assert created["spec"] == {"mode": "auto", "limits": {"cooldownSeconds": 5}}
    assert "status" not in created
    unknown = crds.unknown_fields(cluster.custom.served["healingpolicies"], body)
    assert unknown == ["spec.colour", "spec.limits.x"]


def test_generation_follows_the_spec_and_status_is_written_apart(cluster: Cluster) -> None:
    installed(cluster)
    cluster.create_object("healingpolicies", "shop", hp({"mode": "auto"}), dry_run=False)
    labelled = {"metadata": {"labels": {"team": "shop"}}}
    after = cluster.patch_object(
        "healingpolicies", "shop", "p", labelled, MERGE_PATCH, dry_run=False
    )
    assert after["metadata"]["generation"] == 1
    status = {"status": {"observedGeneration": 1, "matchedWorkloads": 3}}
    written = cluster.write_status("healingpolicies", "shop", "p", status, patch_type=MERGE_PATCH)
    assert written["status"]["matchedWorkloads"] == 3 and written["metadata"]["generation"] == 1
    spec = {"spec": {"mode": "approval"}, "status": {"matchedWorkloads": 0}}
    after = cluster.patch_object("healingpolicies", "shop", "p", spec, MERGE_PATCH, dry_run=False)
    assert after["metadata"]["generation"] == 2
    assert after["status"]["matchedWorkloads"] == 3  # the object's write keeps the status
    with pytest.raises(ApiError) as refused:
        bad = {"status": {"conditions": [{"type": "Ready", "status": "Maybe"}]}}
        cluster.write_status("healingpolicies", "shop", "p", bad, patch_type=MERGE_PATCH)
    assert refused.value.code == 422
    assert 'status.conditions[0].status: Unsupported value: "Maybe"' in refused.value.message


def test_schema_errors_name_every_field(cluster: Cluster) -> None:
    installed(cluster)
    body = hp(
        {
            "mode": "sometimes",
            "kinds": ["Deployment", "Pod"],
            "limits": {"maxReplicas": 0, "cooldownSeconds": "10m"},
            "selector": {"matchExpressions": [{"operator": "In"}]},
        }
    )
    with pytest.raises(ApiError) as refused:
        cluster.create_object("healingpolicies", "shop", body, dry_run=False)
    fields = [c["field"] for c in refused.value.details["causes"]]  # type: ignore[index]
    assert sorted(fields) == [
        "spec.kinds[1]",
        "spec.limits.cooldownSeconds",
        "spec.limits.maxReplicas",
        "spec.mode",
        "spec.selector.matchExpressions[0].key",
    ]
    assert refused.value.message.startswith('HealingPolicy.healer.io "p" is invalid: [')
    assert "spec.limits.maxReplicas in body should be greater than or equal to 1" in (
        refused.value.message
    )
    assert 'spec.limits.cooldownSeconds in body must be of type integer: "string"' in (
        refused.value.message
    )


def test_schema_keywords() -> None:
    schema = {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 5},
            "port": {"x-kubernetes-int-or-string": True},
            "note": {"type": "string", "nullable": True},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "tags": {"type": "array", "maxItems": 1, "items": {"type": "string"}},
        },
    }
    assert validate(schema, {"name": "abc", "port": "http", "note": None}) == []
    causes = validate(schema, {"port": 1.5, "tags": ["a", "b"], "name": "ABCDEFG"})
    assert sorted(c.field for c in causes) == ["name", "name", "port", "tags"]
    kept = {"name": "a", "free": {"any": {"thing": 1}}, "gone": 1}
    assert prune(schema, kept) == ["gone"]
    assert kept == {"name": "a", "free": {"any": {"thing": 1}}}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda c: c["metadata"].update(name="policies.healer.io"), "metadata.name"),
        (lambda c: c["spec"].update(scope="Global"), "spec.scope"),
        (
            lambda c: c["spec"]["versions"][0]["schema"]["openAPIV3Schema"].update(
                {"x-kubernetes-validations": [{"rule": "self.a < self.b"}]}
            ),
            "spec.versions[0].schema.openAPIV3Schema.x-kubernetes-validations",
        ),
        (
            lambda c: c["spec"]["versions"][0]["additionalPrinterColumns"][0].update(type="colour"),
            "spec.versions[0].additionalPrinterColumns[0].type",
        ),
    ],
)
def test_a_crd_the_server_would_refuse_names_the_field(
    cluster: Cluster, change: Any, field: str
) -> None:
    body = copy.deepcopy(crd())
    change(body)
    with pytest.raises(ApiError) as refused:
        cluster.create_object("customresourcedefinitions", "", body, dry_run=False)
    assert refused.value.code == 422
    assert field in [c["field"] for c in refused.value.details["causes"]]  # type: ignore[index]


def test_a_plural_served_already_is_refused(cluster: Cluster) -> None:
    body = crd()
    body["spec"]["names"]["plural"] = "pods"
    body["metadata"]["name"] = "pods.healer.io"
    with pytest.raises(ApiError) as refused:
        cluster.create_object("customresourcedefinitions", "", body, dry_run=False)
    assert "spec.names.plural" in refused.value.message


def test_deleting_the_crd_deletes_its_objects_and_stops_serving(cluster: Cluster) -> None:
    installed(cluster)
    cluster.create_object("healingpolicies", "shop", hp({}), dry_run=False)
    cluster.delete_object("customresourcedefinitions", "", "healingpolicies.healer.io")
    assert cluster.custom.lookup("healer.io/v1alpha1", "healingpolicies") is None
    assert cluster.store.list("healingpolicies") == []


def test_printer_columns_from_the_crd(cluster: Cluster) -> None:
    installed(cluster)
    cluster.create_object("healingpolicies", "shop", hp({"mode": "approval"}), dry_run=False)
    status = {
        "status": {
            "matchedWorkloads": 2,
            "conditions": [
                {"type": "Invalid", "status": "False", "reason": "Valid"},
                {"type": "Ready", "status": "True", "reason": "Accepted"},
            ],
        }
    }
    obj = cluster.write_status("healingpolicies", "shop", "p", status, patch_type=MERGE_PATCH)
    kind = cluster.custom.served["healingpolicies"]
    created = datetime.fromisoformat(obj["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
    printed = table(
        "healingpolicies",
        [obj],
        now=created + timedelta(minutes=5),
        resource_version="1",
        printer=crds.printer(kind, human_duration),
    )
    names = [c["name"] for c in printed["columnDefinitions"]]
    assert names == ["Name", "Mode", "Ready", "Matched", "Reason", "Age"]
    assert [c["priority"] for c in printed["columnDefinitions"]] == [0, 0, 0, 0, 1, 0]
    assert printed["rows"][0]["cells"] == ["p", "approval", "True", 2, "Accepted", "5m"]


def test_json_path_filters() -> None:
    obj = {"a": {"b": [{"t": "x", "v": 1}, {"t": "y", "v": 2}]}}
    assert crds.json_path(obj, '.a.b[?(@.t=="y")].v') == 2
    assert crds.json_path(obj, ".a.b[0].t") == "x"
    assert crds.json_path(obj, ".a.c") is None
