"""Rendering an application's path: plain manifests, kustomize's images, Argo CD's image
overrides, and the errors that name the file and the field."""

from __future__ import annotations

import pytest

from healer.sim.gitrender import RenderError, render, split_image

DEPLOYMENT = b"""\
apiVersion: apps/v1
kind: Deployment
metadata: {name: cart, namespace: shop}
spec:
  template:
    spec:
      containers:
        - {name: cart, image: registry.local/shop/cart:2.4.1}
      initContainers:
        - {name: migrate, image: registry.local/shop/migrate:1}
"""


def images(objects: tuple[dict[str, object], ...]) -> list[str]:
    pod = objects[0]["spec"]["template"]["spec"]  # type: ignore[index]
    return [c["image"] for c in pod["containers"] + pod["initContainers"]]


def test_a_directory_reads_every_manifest_and_every_document_at_its_top_level() -> None:
    files = {
        "cart.yaml": DEPLOYMENT,
        "more.yml": b"apiVersion: v1\nkind: Lease\nmetadata: {name: a}\n---\n"
        b"apiVersion: v1\nkind: Lease\nmetadata: {name: b}\n",
        "README.md": b"# not a manifest",
        "nested/deep.yaml": b"apiVersion: v1\nkind: Lease\nmetadata: {name: deep}\n",
    }
    flat = render(files)
    assert flat.source_type == "Directory"
    assert [o["metadata"]["name"] for o in flat.objects] == ["cart", "a", "b"]
    deep = render(files, recurse=True)
    assert [o["metadata"]["name"] for o in deep.objects][-1] == "deep"


def test_kustomize_sets_tags_names_and_digests_of_the_named_images() -> None:
    kustomization = b"""\
resources: [base/cart.yaml]
namespace: shop-staging
images:
  - {name: registry.local/shop/cart, newTag: 2.5.0}
  - {name: registry.local/shop/migrate, newName: mirror.local/migrate, digest: "sha256:abc"}
"""
    rendered = render({"kustomization.yaml": kustomization, "base/cart.yaml": DEPLOYMENT})
    assert rendered.source_type == "Kustomize"
    assert images(rendered.objects) == [
        "registry.local/shop/cart:2.5.0",
        "mirror.local/migrate@sha256:abc",
    ]
    assert rendered.objects[0]["metadata"]["namespace"] == "shop-staging"


def test_a_kustomization_may_include_a_folder_with_its_own() -> None:
    files = {
        "kustomization.yaml": b"resources: [base]\n",
        "base/kustomization.yaml": b"resources: [cart.yaml]\n",
        "base/cart.yaml": DEPLOYMENT,
    }
    assert [o["metadata"]["name"] for o in render(files).objects] == ["cart"]


def test_argo_cd_image_overrides_apply_after_the_kustomization() -> None:
    files = {
        "kustomization.yaml": b"resources: [cart.yaml]\n"
        b"images: [{name: registry.local/shop/cart, newTag: '9'}]\n",
        "cart.yaml": DEPLOYMENT,
    }
    rendered = render(
        files,
        image_overrides=[
            "registry.local/shop/cart:2.4.0",
            "registry.local/shop/migrate=mirror.local/migrate:2",
        ],
    )
    assert images(rendered.objects) == [
        "registry.local/shop/cart:2.4.0",
        "mirror.local/migrate:2",
    ]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"cart.yaml": b"kind: [unclosed"}, "cart.yaml: not a valid manifest"),
        ({"cart.yaml": b"- a list\n"}, "cart.yaml (document 1): a manifest must be an object"),
        ({"cart.yaml": b"kind: Deployment\nmetadata: {name: x}\n"}, "apiVersion: Required"),
        ({"cart.yaml": b"apiVersion: v1\nkind: Lease\n"}, "metadata.name: Required value"),
        (
            {"kustomization.yaml": b"resources: [x.yaml]\npatches: []\n"},
            "kustomization.yaml: patches: not supported",
        ),
        ({"kustomization.yaml": b"resources: [gone.yaml]\n"}, "'gone.yaml': no such file"),
        ({"kustomization.yaml": b"resources: [../x.yaml]\n"}, "outside the app path"),
        ({"Chart.yaml": b"name: cart\n", "values.yaml": b"image: {tag: '1'}\n"}, "Helm"),
    ],
)
def test_what_cannot_be_rendered_names_the_file_and_the_field(
    files: dict[str, bytes], message: str
) -> None:
    with pytest.raises(RenderError, match=message.replace("(", r"\(").replace(")", r"\)")):
        render(files)


def test_split_image_tells_a_registry_port_from_a_tag() -> None:
    assert split_image("registry.local:5000/shop/cart") == ("registry.local:5000/shop/cart", "", "")
    assert split_image("registry.local:5000/cart:1.2@sha256:ff") == (
        "registry.local:5000/cart",
        "1.2",
        "sha256:ff",
    )
