"""/openapi/v3 and fieldValidation on the simulated API server, over HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from healer.sim.kinds import KINDS

pytestmark = pytest.mark.integration


def deployment(name: str, **spec_extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": "registry.local/x:1"}]},
            },
            **spec_extra,
        },
    }


def test_the_index_points_at_a_document_per_group_version(sim_server: Any) -> None:
    index = httpx.get(f"{sim_server.url}/openapi/v3").json()["paths"]
    assert set(index) == {
        f"apis/{k.group_version}" if k.group else f"api/{k.version}" for k in KINDS
    }
    for kind in KINDS:
        prefix = f"apis/{kind.group_version}" if kind.group else f"api/{kind.version}"
        doc = httpx.get(sim_server.url + index[prefix]["serverRelativeURL"]).json()
        gvks = [
            gvk
            for schema in doc["components"]["schemas"].values()
            for gvk in schema.get("x-kubernetes-group-version-kind", [])
        ]
        assert {"group": kind.group, "version": kind.version, "kind": kind.kind} in gvks
    apps = httpx.get(f"{sim_server.url}/openapi/v3/apis/apps/v1").json()
    post = apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"]["post"]
    assert "fieldValidation" in {p["name"] for p in post["parameters"]}
    schema = apps["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"]
    assert set(schema["properties"]) == {"apiVersion", "kind", "metadata", "spec", "status"}


def test_unknown_group_versions_are_404_status(sim_server: Any) -> None:
    answer = httpx.get(f"{sim_server.url}/openapi/v3/apis/batch/v1")
    assert answer.status_code == 404 and answer.json()["kind"] == "Status"


def test_field_validation_strict_warn_and_ignore(sim_server: Any) -> None:
    url = f"{sim_server.url}/apis/apps/v1/namespaces/shop/deployments"
    strict = httpx.post(url, params={"fieldValidation": "Strict"}, json=deployment("a", bogus=1))
    assert strict.status_code == 400
    assert strict.json()["reason"] == "BadRequest"
    assert 'unknown field "spec.bogus"' in strict.json()["message"]
    warned = httpx.post(url, json=deployment("b", bogus=1))  # Warn is the default
    assert warned.status_code == 201
    assert warned.headers.get_list("warning") == ['299 - "unknown field \\"spec.bogus\\""']
    ignored = httpx.post(url, params={"fieldValidation": "Ignore"}, json=deployment("c", bogus=1))
    assert ignored.status_code == 201 and "warning" not in ignored.headers
    clean = httpx.post(url, params={"fieldValidation": "Strict"}, json=deployment("d"))
    assert clean.status_code == 201
    patch = httpx.patch(
        f"{url}/d",
        params={"fieldValidation": "Strict"},
        json={"spec": {"template": {"spec": {"containers": [{"name": "d", "imag": "x"}]}}}},
        headers={"content-type": "application/strategic-merge-patch+json"},
    )
    assert patch.status_code == 400
    assert 'unknown field "spec.template.spec.containers[0].imag"' in patch.json()["message"]
    wrong = httpx.post(url, params={"fieldValidation": "Loud"}, json=deployment("e"))
    assert wrong.status_code == 400 and "fieldValidation" in wrong.json()["message"]
