"""Finding the syncer from a workload's marks, and its source from the syncer's object."""

from __future__ import annotations

import pytest

from healer.errors import PermanentActionError
from healer.gitops.owner import (
    from_application,
    from_kustomization,
    mark_of,
    refuse_helm_release,
    repository_of,
    sync_annotations,
)
from tests.builders import CART, NOW


def test_argo_cd_tracking_id_names_the_application_and_its_namespace() -> None:
    plain = mark_of(CART, {"argocd.argoproj.io/tracking-id": "cart:apps/Deployment:shop/cart"}, {})
    assert plain is not None and (plain.ref.namespace, plain.ref.name) == ("argocd", "cart")
    spaced = mark_of(
        CART, {"argocd.argoproj.io/tracking-id": "team-a_cart:apps/Deployment:shop/cart"}, {}
    )
    assert spaced is not None and (spaced.ref.namespace, spaced.ref.name) == ("team-a", "cart")
    label = mark_of(CART, {}, {"argocd.argoproj.io/instance": "shop-cart"})
    assert label is not None and label.tool == "argocd" and label.ref.name == "shop-cart"
    assert mark_of(CART, {}, {"app.kubernetes.io/instance": "cart"}) is None  # Helm's too


def test_flux_labels_name_the_kustomization() -> None:
    labels = {
        "kustomize.toolkit.fluxcd.io/name": "apps",
        "kustomize.toolkit.fluxcd.io/namespace": "flux-system",
    }
    mark = mark_of(CART, {}, labels)
    assert mark is not None and mark.tool == "flux"
    assert (mark.ref.plural, mark.ref.namespace, mark.ref.name) == (
        "kustomizations",
        "flux-system",
        "apps",
    )
    assert mark_of(CART, {}, {"app": "cart"}) is None


def test_an_application_gives_repository_revision_path_and_self_heal() -> None:
    mark = mark_of(CART, {"argocd.argoproj.io/tracking-id": "cart:apps/Deployment:shop/cart"}, {})
    assert mark is not None
    app = {
        "spec": {
            "source": {"repoURL": "https://git.example/shop/deploy.git", "path": "apps/cart"},
            "syncPolicy": {"automated": {"selfHeal": True}},
        }
    }
    owner = from_application(mark, app)
    assert (owner.source.url, owner.source.revision, owner.source.path) == (
        "https://git.example/shop/deploy.git", "HEAD", "apps/cart",
    )  # fmt: skip
    assert owner.self_heal and owner.sync == (mark.ref,)
    assert sync_annotations(owner, NOW) == {"argocd.argoproj.io/refresh": "hard"}
    chart = {"spec": {"source": {"repoURL": "https://charts.example", "chart": "cart"}}}
    with pytest.raises(PermanentActionError, match="Helm chart repository"):
        from_application(mark, chart)
    with pytest.raises(PermanentActionError, match=r"spec\.source\.repoURL is missing"):
        from_application(mark, {"spec": {"source": {"path": "x"}}})


def test_a_kustomization_gives_its_git_repository_branch_and_path() -> None:
    mark = mark_of(CART, {}, {"kustomize.toolkit.fluxcd.io/name": "apps"})
    assert mark is not None
    ks = {
        "spec": {
            "path": "./apps",
            "sourceRef": {"kind": "GitRepository", "name": "deploy", "namespace": "flux-system"},
        }
    }
    ref = repository_of(mark, ks)
    assert (ref.plural, ref.namespace, ref.name) == ("gitrepositories", "flux-system", "deploy")
    owner = from_kustomization(
        mark, ks, {"spec": {"url": "ssh://git@git.example/deploy", "ref": {"branch": "prod"}}}
    )
    assert (owner.source.revision, owner.source.path) == ("prod", "./apps")
    assert owner.sync == (ref, mark.ref)
    assert owner.source.revision == "prod"
    default = from_kustomization(mark, ks, {"spec": {"url": "https://git.example/deploy"}})
    assert default.source.revision == "master"  # what Flux checks out without a ref
    with pytest.raises(PermanentActionError, match=r"spec.ref.tag pins a revision"):
        from_kustomization(mark, ks, {"spec": {"url": "u", "ref": {"tag": "v1"}}})
    bucket = {"spec": {"sourceRef": {"kind": "Bucket", "name": "b"}}}
    with pytest.raises(PermanentActionError, match="not a GitRepository"):
        repository_of(mark, bucket)


def test_a_flux_helm_release_is_refused_with_the_reason() -> None:
    labels = {"helm.toolkit.fluxcd.io/name": "cart", "helm.toolkit.fluxcd.io/namespace": "apps"}
    mark = mark_of(CART, {}, labels)
    assert mark is not None and mark.ref.plural == "helmreleases"
    with pytest.raises(PermanentActionError, match="HelmRelease apps/cart: its image is set"):
        refuse_helm_release(mark)
