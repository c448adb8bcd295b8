"""The simulated API server's object store and patch semantics, on literal JSON documents."""

from __future__ import annotations

import copy
import itertools
from datetime import UTC, datetime
from typing import Any

import pytest

from healer.sim.objects import (
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_MERGE_PATCH,
    ApiError,
    ObjectStore,
    apply_patch,
    check_resource_version,
    field_selector_matches,
    label_selector_matches,
    merge_patch,
    strategic_merge_patch,
)

NOW = datetime(2026, 3, 2, 11, 0, tzinfo=UTC)


def deployment(name: str = "web", namespace: str = "shop") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "replicas": 3,
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": "web:1",
                            "args": ["--a", "--b"],
                            "env": [
                                {"name": "MODE", "value": "prod"},
                                {"name": "DEBUG", "value": "0"},
                            ],
                        },
                        {"name": "sidecar", "image": "proxy:1"},
                    ]
                }
            },
        },
    }


def new_store() -> ObjectStore:
    counter = itertools.count(1)
    return ObjectStore(uid=lambda: f"uid-{next(counter)}")


# ---- merge_patch (RFC 7386) ------------------------------------------------------------

# The test cases of RFC 7386, appendix A.
RFC_7386_CASES = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "expected"), RFC_7386_CASES)
def test_merge_patch_follows_rfc_7386_examples(target: Any, patch: Any, expected: Any) -> None:
    assert merge_patch(target, patch) == expected


def test_merge_patch_null_deletes_nested_key_and_keeps_siblings() -> None:
    target = {"metadata": {"annotations": {"a": "1", "b": "2"}, "labels": {"x": "y"}}}
    patch = {"metadata": {"annotations": {"a": None}}}
    assert merge_patch(target, patch) == {
        "metadata": {"annotations": {"b": "2"}, "labels": {"x": "y"}}
    }


def test_merge_patch_does_not_modify_its_inputs() -> None:
    target = deployment()
    patch = {"spec": {"replicas": 5, "template": {"spec": {"containers": [{"name": "x"}]}}}}
    target_before, patch_before = copy.deepcopy(target), copy.deepcopy(patch)
    merge_patch(target, patch)
    assert target == target_before
    assert patch == patch_before


def test_merge_patch_replaces_containers_list_whole() -> None:
    patched = merge_patch(
        deployment(),
        {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "web:2"}]}}}},
    )
    assert patched["spec"]["template"]["spec"]["containers"] == [{"name": "web", "image": "web:2"}]


# ---- strategic_merge_patch -------------------------------------------------------------


def containers(obj: Any) -> list[dict[str, Any]]:
    return obj["spec"]["template"]["spec"]["containers"]


def test_strategic_merge_patch_merges_containers_by_name() -> None:
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "web:2"}]}}}}
    patched = strategic_merge_patch(deployment(), patch)
    web, sidecar = containers(patched)
    assert web["image"] == "web:2"
    assert web["args"] == ["--a", "--b"]
    assert web["env"] == [{"name": "MODE", "value": "prod"}, {"name": "DEBUG", "value": "0"}]
    assert sidecar == {"name": "sidecar", "image": "proxy:1"}


def test_strategic_merge_patch_appends_a_container_with_a_new_name() -> None:
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "new", "image": "n:1"}]}}}}
    patched = strategic_merge_patch(deployment(), patch)
    assert [c["name"] for c in containers(patched)] == ["web", "sidecar", "new"]


def test_strategic_merge_patch_merges_env_by_name_inside_a_container() -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "env": [{"name": "DEBUG", "value": "1"}, {"name": "NEW", "value": "x"}],
                        },
                    ]
                }
            }
        }
    }
    web = containers(strategic_merge_patch(deployment(), patch))[0]
    assert web["env"] == [
        {"name": "MODE", "value": "prod"},
        {"name": "DEBUG", "value": "1"},
        {"name": "NEW", "value": "x"},
    ]


def test_strategic_merge_patch_replaces_other_lists_whole() -> None:
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "web", "args": ["--c"]}]}}}}
    web = containers(strategic_merge_patch(deployment(), patch))[0]
    assert web["args"] == ["--c"]


def test_strategic_merge_patch_null_deletes() -> None:
    patched = strategic_merge_patch(deployment(), {"metadata": {"labels": None}})
    assert "labels" not in patched["metadata"]


def test_strategic_merge_patch_does_not_modify_the_target() -> None:
    target = deployment()
    before = copy.deepcopy(target)
    strategic_merge_patch(
        target,
        {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "name": "web",
                                "image": "web:2",
                                "env": [{"name": "MODE", "value": "dev"}],
                            }
                        ]
                    }
                }
            }
        },
    )
    assert target == before


# ---- apply_patch -----------------------------------------------------------------------


def test_apply_patch_merge_patch_replaces_containers_list() -> None:
    body = {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "web:2"}]}}}}
    patched = apply_patch(deployment(), body, MERGE_PATCH)
    assert containers(patched) == [{"name": "web", "image": "web:2"}]


def test_apply_patch_strategic_merge_patch_keeps_other_containers() -> None:
    body = {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "web:2"}]}}}}
    patched = apply_patch(deployment(), body, STRATEGIC_MERGE_PATCH)
    assert [(c["name"], c["image"]) for c in containers(patched)] == [
        ("web", "web:2"),
        ("sidecar", "proxy:1"),
    ]


def test_apply_patch_json_patch_applies_operations() -> None:
    body = [
        {"op": "replace", "path": "/spec/replicas", "value": 7},
        {"op": "add", "path": "/metadata/labels/tier", "value": "backend"},
        {"op": "remove", "path": "/spec/template/spec/containers/1"},
    ]
    patched = apply_patch(deployment(), body, JSON_PATCH)
    assert patched["spec"]["replicas"] == 7
    assert patched["metadata"]["labels"] == {"app": "web", "tier": "backend"}
    assert [c["name"] for c in containers(patched)] == ["web"]


def test_apply_patch_accepts_a_charset_parameter_in_the_content_type() -> None:
    patched = apply_patch(deployment(), {"spec": {"replicas": 1}}, f"{MERGE_PATCH}; charset=utf-8")
    assert patched["spec"]["replicas"] == 1


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/apply-patch+yaml", "text/plain", ""]
)
def test_apply_patch_other_content_types_are_415(content_type: str) -> None:
    with pytest.raises(ApiError) as caught:
        apply_patch(deployment(), {"spec": {"replicas": 1}}, content_type)
    assert caught.value.code == 415
    assert caught.value.reason == "UnsupportedMediaType"
    assert MERGE_PATCH in caught.value.message


@pytest.mark.parametrize(
    "body",
    [
        [{"op": "test", "path": "/spec/replicas", "value": 99}],
        [{"op": "remove", "path": "/spec/missing"}],
        [{"op": "replace", "path": "/nothing/here", "value": 1}],
        [{"op": "frobnicate", "path": "/spec/replicas"}],
        [{"op": "add", "path": "no-leading-slash", "value": 1}],
    ],
    ids=["failed-test", "remove-missing", "replace-missing", "unknown-op", "bad-pointer"],
)
def test_apply_patch_failing_json_patch_is_422(body: list[dict[str, Any]]) -> None:
    with pytest.raises(ApiError) as caught:
        apply_patch(deployment(), body, JSON_PATCH)
    assert caught.value.code == 422
    assert caught.value.reason == "Invalid"


def test_apply_patch_failing_json_patch_leaves_the_object_unchanged() -> None:
    obj = deployment()
    before = copy.deepcopy(obj)
    body = [
        {"op": "replace", "path": "/spec/replicas", "value": 9},
        {"op": "test", "path": "/spec/replicas", "value": 3},
    ]
    with pytest.raises(ApiError):
        apply_patch(obj, body, JSON_PATCH)
    assert obj == before


@pytest.mark.parametrize(
    ("body", "found"),
    [({"spec": {"replicas": 1}}, "object"), ("x", "string"), (None, "null"), ([3], "number")],
)
def test_apply_patch_json_patch_that_is_no_array_of_objects_is_400(body: Any, found: str) -> None:
    with pytest.raises(ApiError) as caught:
        apply_patch(deployment(), body, JSON_PATCH)
    assert (caught.value.code, caught.value.reason) == (400, "BadRequest")
    assert f"cannot unmarshal {found}" in caught.value.message
    assert "JSON patch" in caught.value.message


@pytest.mark.parametrize("content_type", [MERGE_PATCH, STRATEGIC_MERGE_PATCH])
@pytest.mark.parametrize(
    ("body", "found"), [(["not", "an", "object"], "array"), (3, "number"), (None, "null")]
)
def test_apply_patch_merge_patches_that_are_no_object_are_400(
    content_type: str, body: Any, found: str
) -> None:
    with pytest.raises(ApiError) as caught:
        apply_patch(deployment(), body, content_type)
    assert (caught.value.code, caught.value.reason) == (400, "BadRequest")
    assert f"cannot unmarshal {found}" in caught.value.message
    assert f"({content_type}) must be a JSON object" in caught.value.message


def test_apply_patch_a_malformed_directive_is_400() -> None:
    with pytest.raises(ApiError) as caught:
        apply_patch(deployment(), {"spec": {"$patch": "explode"}}, STRATEGIC_MERGE_PATCH)
    assert (caught.value.code, caught.value.reason) == (400, "BadRequest")
    assert "unknown patch type: 'explode'" in caught.value.message


# ---- selectors -------------------------------------------------------------------------

LABELS = {"app": "web", "tier": "backend", "track": "stable"}


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        (None, True),
        ("", True),
        ("app=web", True),
        ("app=db", False),
        ("app==web", True),
        ("app==db", False),
        ("app!=db", True),
        ("app!=web", False),
        ("canary!=true", True),
        ("tier", True),
        ("canary", False),
        ("!canary", True),
        ("!tier", False),
        ("app=web,tier=backend", True),
        ("app=web,tier=frontend", False),
        ("app = web , !canary , track", True),
        ("app=web,!track", False),
    ],
)
def test_label_selector_matches(selector: str | None, matches: bool) -> None:
    assert label_selector_matches(selector, LABELS) is matches


POD = {"metadata": {"name": "web-abc", "namespace": "shop"}}


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        (None, True),
        ("", True),
        ("metadata.name=web-abc", True),
        ("metadata.name==web-abc", True),
        ("metadata.name=other", False),
        ("metadata.name!=other", True),
        ("metadata.name!=web-abc", False),
        ("metadata.namespace=shop", True),
        ("metadata.namespace=web", False),
        ("metadata.namespace=shop,metadata.name=web-abc", True),
        ("metadata.namespace=shop,metadata.name=other", False),
    ],
)
def test_field_selector_matches(selector: str | None, matches: bool) -> None:
    assert field_selector_matches(selector, POD) is matches


@pytest.mark.parametrize(
    "selector", ["spec.nodeName=node-1", "status.phase=Running", "metadata.uid=x"]
)
def test_field_selector_on_other_fields_is_400(selector: str) -> None:
    with pytest.raises(ApiError) as caught:
        field_selector_matches(selector, POD)
    assert caught.value.code == 400
    assert caught.value.reason == "BadRequest"
    assert selector.split("=")[0] in caught.value.message


# ---- ObjectStore -----------------------------------------------------------------------


def test_store_create_sets_metadata() -> None:
    store = new_store()
    created = store.create("deployments", deployment(), now=NOW)
    meta = created["metadata"]
    assert meta["uid"] == "uid-1"
    assert meta["generation"] == 1
    assert meta["creationTimestamp"] == "2026-03-02T11:00:00Z"
    assert meta["resourceVersion"] == store.resource_version
    assert store.get("deployments", "shop", "web") == created


def test_store_resource_version_increases_on_every_write() -> None:
    store = new_store()
    versions = [int(store.resource_version)]
    obj = store.create("deployments", deployment(), now=NOW)
    versions.append(int(obj["metadata"]["resourceVersion"]))
    for spec_changed in (False, True, False):
        obj = store.update("deployments", obj, spec_changed=spec_changed)
        versions.append(int(obj["metadata"]["resourceVersion"]))
    store.create("deployments", deployment("db"), now=NOW)
    versions.append(int(store.resource_version))
    store.delete("deployments", "shop", "db")
    versions.append(int(store.resource_version))
    assert versions == sorted(set(versions)), versions


def test_store_generation_moves_only_when_the_spec_changed() -> None:
    store = new_store()
    obj = store.create("deployments", deployment(), now=NOW)
    obj = store.update("deployments", obj, spec_changed=False)
    assert obj["metadata"]["generation"] == 1
    obj = store.update("deployments", obj, spec_changed=True)
    assert obj["metadata"]["generation"] == 2
    obj = store.update("deployments", obj, spec_changed=False)
    assert obj["metadata"]["generation"] == 2
    obj = store.update("deployments", obj, spec_changed=True)
    assert obj["metadata"]["generation"] == 3


def test_store_create_twice_is_409_already_exists() -> None:
    store = new_store()
    store.create("deployments", deployment(), now=NOW)
    version = store.resource_version
    with pytest.raises(ApiError) as caught:
        store.create("deployments", deployment(), now=NOW)
    assert (caught.value.code, caught.value.reason) == (409, "AlreadyExists")
    assert store.resource_version == version


def test_store_same_name_in_another_namespace_is_a_different_object() -> None:
    store = new_store()
    store.create("deployments", deployment(namespace="shop"), now=NOW)
    store.create("deployments", deployment(namespace="web"), now=NOW)
    assert len(store.list("deployments")) == 2
    assert len(store.list("deployments", "web")) == 1


@pytest.mark.parametrize("operation", ["get", "delete"])
def test_store_missing_object_is_404_not_found(operation: str) -> None:
    store = new_store()
    with pytest.raises(ApiError) as caught:
        getattr(store, operation)("deployments", "shop", "ghost")
    assert (caught.value.code, caught.value.reason) == (404, "NotFound")
    assert "ghost" in caught.value.message


def test_store_find_returns_none_for_a_missing_object() -> None:
    assert new_store().find("deployments", "shop", "ghost") is None


def test_store_delete_removes_the_object() -> None:
    store = new_store()
    store.create("deployments", deployment(), now=NOW)
    store.delete("deployments", "shop", "web")
    assert store.list("deployments") == []
    with pytest.raises(ApiError):
        store.get("deployments", "shop", "web")


def test_store_list_filters_by_namespace_and_sorts() -> None:
    store = new_store()
    for ns, name in (("b", "z"), ("a", "y"), ("b", "a")):
        store.create("pods", deployment(name, ns), now=NOW)
    assert [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in store.list("pods")] == [
        ("a", "y"),
        ("b", "a"),
        ("b", "z"),
    ]
    assert [o["metadata"]["name"] for o in store.list("pods", "b")] == ["a", "z"]
    assert store.list("services") == []


# ---- check_resource_version and Status ------------------------------------------------


def test_check_resource_version_stale_is_409_conflict() -> None:
    store = new_store()
    obj = store.create("deployments", deployment(), now=NOW)
    stale = copy.deepcopy(obj)
    store.update("deployments", obj, spec_changed=False)
    with pytest.raises(ApiError) as caught:
        check_resource_version(obj, stale)
    assert (caught.value.code, caught.value.reason) == (409, "Conflict")
    assert "the object has been modified" in caught.value.message


def test_check_resource_version_current_or_absent_passes() -> None:
    store = new_store()
    obj = store.create("deployments", deployment(), now=NOW)
    check_resource_version(obj, copy.deepcopy(obj))
    check_resource_version(obj, {"metadata": {"name": "web"}})
    check_resource_version(obj, {"spec": {}})


def test_api_error_status_is_a_kubernetes_status_body() -> None:
    error = ApiError(404, "NotFound", 'deployments "ghost" not found')
    assert error.status() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'deployments "ghost" not found',
        "reason": "NotFound",
        "code": 404,
    }
