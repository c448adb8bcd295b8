"""Strategic merge patch and its directives, on literal pod templates."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from healer.sim.strategic import InvalidPatch, apply, strip_directives


def pod_spec() -> dict[str, Any]:
    return {
        "containers": [
            {
                "name": "web",
                "image": "web:1",
                "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 9090}],
                "env": [{"name": "MODE", "value": "prod"}, {"name": "DEBUG", "value": "0"}],
            },
            {"name": "sidecar", "image": "proxy:1"},
        ],
        "volumes": [{"name": "data", "emptyDir": {}}],
    }


def deployment() -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "finalizers": ["a", "b", "c"], "labels": {"app": "web"}},
        "spec": {
            "replicas": 3,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": pod_spec()},
        },
    }


def patched(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = apply(target, patch)
    assert isinstance(out, dict)
    return out


def spec_of(obj: Any) -> dict[str, Any]:
    result: dict[str, Any] = obj["spec"]["template"]["spec"]
    return result


def template_patch(spec: dict[str, Any]) -> dict[str, Any]:
    return {"spec": {"template": {"spec": spec}}}


def names(items: list[dict[str, Any]]) -> list[str]:
    return [i["name"] for i in items]


# ---- lists merged by their merge key ------------------------------------------------------


def test_kubectl_set_image_patch_changes_the_image_and_keeps_the_order() -> None:
    patch = template_patch(
        {
            "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
            "containers": [{"name": "sidecar", "image": "proxy:2"}],
        }
    )
    out = spec_of(apply(deployment(), patch))
    assert [(c["name"], c["image"]) for c in out["containers"]] == [
        ("web", "web:1"),
        ("sidecar", "proxy:2"),
    ]
    assert out["containers"][0]["env"] == pod_spec()["containers"][0]["env"]


def test_ports_merge_by_container_port_and_volumes_by_name() -> None:
    patch = template_patch(
        {
            "containers": [{"name": "web", "ports": [{"containerPort": 80, "name": "web"}]}],
            "volumes": [{"name": "cache", "emptyDir": {}}],
        }
    )
    out = spec_of(apply(deployment(), patch))
    assert out["containers"][0]["ports"] == [
        {"containerPort": 80, "name": "web"},
        {"containerPort": 9090},
    ]
    assert names(out["volumes"]) == ["data", "cache"]


def test_a_new_item_is_appended_as_if_merged_into_nothing() -> None:
    patch = template_patch({"containers": [{"name": "new", "image": "n:1", "args": None}]})
    assert spec_of(apply(deployment(), patch))["containers"][-1] == {"name": "new", "image": "n:1"}


def test_a_list_without_a_merge_key_is_replaced_whole() -> None:
    target = deployment()
    spec_of(target)["containers"][0]["args"] = ["--a", "--b"]
    out = spec_of(apply(target, template_patch({"containers": [{"name": "web", "args": ["-c"]}]})))
    assert out["containers"][0]["args"] == ["-c"]


def test_an_item_without_its_merge_key_is_refused() -> None:
    with pytest.raises(InvalidPatch, match="does not contain declared merge key: name"):
        apply(deployment(), template_patch({"containers": [{"image": "x"}]}))


# ---- $patch ----------------------------------------------------------------------------------


def test_patch_replace_in_an_object_replaces_it() -> None:
    patch = {"spec": {"strategy": {"$patch": "replace", "type": "Recreate"}}}
    assert patched(deployment(), patch)["spec"]["strategy"] == {"type": "Recreate"}


def test_patch_replace_in_a_keyed_list_replaces_the_list() -> None:
    patch = template_patch(
        {"containers": [{"name": "only", "image": "o:1"}, {"$patch": "replace"}]}
    )
    assert spec_of(apply(deployment(), patch))["containers"] == [{"name": "only", "image": "o:1"}]


def test_patch_delete_in_an_object_deletes_it() -> None:
    patch = {"spec": {"strategy": {"$patch": "delete"}}}
    assert "strategy" not in patched(deployment(), patch)["spec"]


def test_patch_delete_in_a_keyed_list_deletes_that_item() -> None:
    patch = template_patch(
        {"containers": [{"name": "web", "env": [{"name": "DEBUG", "$patch": "delete"}]}]}
    )
    assert spec_of(apply(deployment(), patch))["containers"][0]["env"] == [
        {"name": "MODE", "value": "prod"}
    ]


def test_patch_merge_is_the_default_said_out_loud() -> None:
    patch = template_patch({"$patch": "merge", "containers": [{"name": "web", "image": "web:2"}]})
    plain = template_patch({"containers": [{"name": "web", "image": "web:2"}]})
    assert apply(deployment(), patch) == apply(deployment(), plain)


def test_an_unknown_patch_type_is_refused() -> None:
    with pytest.raises(InvalidPatch, match="unknown patch type: 'upsert'") as caught:
        apply(deployment(), {"spec": {"$patch": "upsert"}})
    assert caught.value.code == 400


# ---- $retainKeys -----------------------------------------------------------------------------


def test_retain_keys_clears_the_fields_not_listed() -> None:
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}
    assert patched(deployment(), patch)["spec"]["strategy"] == {"type": "Recreate"}


def test_retain_keys_keeps_listed_fields_the_patch_does_not_set() -> None:
    patch = {"spec": {"strategy": {"$retainKeys": ["type", "rollingUpdate"]}}}
    assert patched(deployment(), patch)["spec"]["strategy"] == deployment()["spec"]["strategy"]


def test_retain_keys_refuses_a_patch_setting_a_field_it_does_not_list() -> None:
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {"maxSurge": 2}}}}
    with pytest.raises(InvalidPatch, match="rollingUpdate") as caught:
        apply(deployment(), patch)
    assert caught.value.code == 422


def test_retain_keys_must_be_a_list_of_strings() -> None:
    with pytest.raises(InvalidPatch, match=r"\$retainKeys must be a list of strings"):
        apply(deployment(), {"spec": {"strategy": {"$retainKeys": "type"}}})


# ---- $deleteFromPrimitiveList and lists of scalars merged as sets ---------------------------


def test_delete_from_primitive_list_removes_the_values() -> None:
    patch = {"metadata": {"$deleteFromPrimitiveList/finalizers": ["b", "z"]}}
    assert patched(deployment(), patch)["metadata"]["finalizers"] == ["a", "c"]


def test_finalizers_merge_as_a_set() -> None:
    patch = {"metadata": {"finalizers": ["c", "d", "d"]}}
    assert patched(deployment(), patch)["metadata"]["finalizers"] == ["a", "b", "c", "d"]


def test_delete_from_primitive_list_must_be_a_list() -> None:
    with pytest.raises(InvalidPatch, match="must be a list"):
        apply(deployment(), {"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}})


# ---- $setElementOrder ------------------------------------------------------------------------


def test_set_element_order_orders_a_keyed_list() -> None:
    patch = template_patch(
        {
            "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "web"}],
            "containers": [{"name": "web", "image": "web:2"}],
        }
    )
    assert names(spec_of(apply(deployment(), patch))["containers"]) == ["sidecar", "web"]


def test_set_element_order_places_a_new_item_and_keeps_the_servers_own() -> None:
    target = deployment()
    spec_of(target)["containers"].append({"name": "agent", "image": "a:1"})
    patch = template_patch(
        {
            "$setElementOrder/containers": [{"name": "new"}, {"name": "web"}],
            "containers": [{"name": "new", "image": "n:1"}],
        }
    )
    # sidecar and agent are the server's own, not named: they keep their places after web.
    assert names(spec_of(apply(target, patch))["containers"]) == ["new", "web", "sidecar", "agent"]


def test_set_element_order_orders_a_list_of_scalars() -> None:
    patch = {"metadata": {"$setElementOrder/finalizers": ["c", "a", "b"]}}
    assert patched(deployment(), patch)["metadata"]["finalizers"] == ["c", "a", "b"]


def test_set_element_order_must_name_every_item_the_patch_sets() -> None:
    patch = template_patch(
        {
            "$setElementOrder/containers": [{"name": "web"}],
            "containers": [{"name": "other", "image": "o:1"}],
        }
    )
    with pytest.raises(InvalidPatch, match="does not name"):
        apply(deployment(), patch)


def test_set_element_order_items_must_carry_the_merge_key() -> None:
    patch = template_patch({"$setElementOrder/containers": ["web"]})
    with pytest.raises(InvalidPatch, match="objects with the merge key 'name'"):
        apply(deployment(), patch)


# ---- the rest ------------------------------------------------------------------------------


def test_null_deletes_a_field() -> None:
    assert "labels" not in patched(deployment(), {"metadata": {"labels": None}})["metadata"]


def test_the_target_is_not_modified() -> None:
    target = deployment()
    before = copy.deepcopy(target)
    apply(
        target,
        template_patch(
            {
                "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "web"}],
                "containers": [{"name": "web", "env": [{"name": "MODE", "$patch": "delete"}]}],
            }
        ),
    )
    assert target == before


def test_strip_directives_leaves_the_fields_set() -> None:
    patch = template_patch(
        {
            "$setElementOrder/containers": [{"name": "web"}],
            "containers": [{"name": "web", "image": "w:2"}, {"name": "x", "$patch": "delete"}],
        }
    )
    assert strip_directives(patch) == template_patch(
        {"containers": [{"name": "web", "image": "w:2"}]}
    )
