"""Who owns a workload in Git: the syncer object, and the repository, branch and path.

Argo CD marks what it applies with the annotation ``argocd.argoproj.io/tracking-id``
(``<app>:<group>/<Kind>:<namespace>/<name>``; ``<app-namespace>_<app>`` when
Applications live outside Argo CD's own namespace) or the label
``argocd.argoproj.io/instance: <app>``. Flux's kustomize controller marks it with the
labels ``kustomize.toolkit.fluxcd.io/name`` and ``kustomize.toolkit.fluxcd.io/namespace``
(the helm controller's ``helm.toolkit.fluxcd.io/...``: a HelmRelease, refused with the
reason, see ``refuse_helm_release``).
From the mark, the syncer's object names the source: an Application's
``spec.source.{repoURL,targetRevision,path}``; a Kustomization's ``spec.path`` and the
GitRepository its ``spec.sourceRef`` names, with ``spec.url`` and ``spec.ref.branch``.

Decisions:

- Pure functions over the objects' JSON (as ``kubectl get -o json`` prints them): the
  reading goes through ``healer.act.customobjects``, so this module is tested with
  literals and never imports the Kubernetes client.
- ``app.kubernetes.io/instance`` alone does not count (as in ``decide.guards``): Helm
  sets that label on everything it installs. Argo CD's label tracking is read from
  ``argocd.argoproj.io/instance``; its annotation tracking (the default since Argo CD
  2.x when both are set) from the tracking id.
- What to poke so the syncer syncs now is decided here too (``sync_requests``): Argo
  CD's ``argocd.argoproj.io/refresh: hard`` on the Application, Flux's
  ``reconcile.fluxcd.io/requestedAt`` on the GitRepository and the Kustomization.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from healer.errors import PermanentActionError
from healer.types import JsonObject, JsonValue, ObjectRef, WorkloadRef

TRACKING_ID = "argocd.argoproj.io/tracking-id"
ARGO_INSTANCE = "argocd.argoproj.io/instance"
FLUX_NAME = "kustomize.toolkit.fluxcd.io/name"
FLUX_NAMESPACE = "kustomize.toolkit.fluxcd.io/namespace"
FLUX_HELM_NAME = "helm.toolkit.fluxcd.io/name"
FLUX_HELM_NAMESPACE = "helm.toolkit.fluxcd.io/namespace"
REFRESH = "argocd.argoproj.io/refresh"
REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"
ARGO_NAMESPACE = "argocd"
"""Where Argo CD keeps Applications unless the tracking id names another namespace."""
FLUX_DEFAULT_BRANCH = "master"
"""The branch Flux's source controller checks out when a GitRepository names no ref."""

Tool = Literal["argocd", "flux"]


@dataclass(frozen=True)
class Mark:
    """What the workload's own labels and annotations say about its syncer."""

    tool: Tool
    ref: ObjectRef
    via: str
    """The label or annotation the mark was read from, for messages."""


@dataclass(frozen=True)
class GitSource:
    """The repository, the revision the syncer follows and the path it renders."""

    url: str
    revision: str
    """A branch name, or ``HEAD`` (the repository's default branch)."""
    path: str
    """Relative to the repository root; ``""`` or ``.`` is the root."""


@dataclass(frozen=True)
class Owner:
    """The syncer object that applies a workload, and where it reads it from."""

    tool: Tool
    ref: ObjectRef
    source: GitSource
    sync: tuple[ObjectRef, ...]
    """The objects to annotate so that the syncer syncs at once."""
    self_heal: bool
    """Whether the syncer reverts drift on its own (Argo CD's ``selfHeal``; Flux always
    does on its interval)."""

    @property
    def label(self) -> str:
        return f"{'Argo CD' if self.tool == 'argocd' else 'Flux'} {self.ref}"


APPLICATION = ("argoproj.io", "v1alpha1", "applications")
KUSTOMIZATION = ("kustomize.toolkit.fluxcd.io", "v1", "kustomizations")
GIT_REPOSITORY = ("source.toolkit.fluxcd.io", "v1", "gitrepositories")
HELM_RELEASE = ("helm.toolkit.fluxcd.io", "v2", "helmreleases")


def mark_of(
    workload: WorkloadRef, annotations: Mapping[str, str], labels: Mapping[str, str]
) -> Mark | None:
    """The syncer object the workload's marks name; None when it carries none."""
    tracking = annotations.get(TRACKING_ID)
    if tracking:
        app = tracking.split(":", 1)[0]
        namespace, _, name = app.rpartition("_")
        return Mark("argocd", _ref(APPLICATION, namespace or ARGO_NAMESPACE, name), TRACKING_ID)
    flux = labels.get(FLUX_NAME)
    if flux:
        namespace = labels.get(FLUX_NAMESPACE) or workload.namespace
        return Mark("flux", _ref(KUSTOMIZATION, namespace, flux), FLUX_NAME)
    helm = labels.get(FLUX_HELM_NAME)
    if helm:
        namespace = labels.get(FLUX_HELM_NAMESPACE) or workload.namespace
        return Mark("flux", _ref(HELM_RELEASE, namespace, helm), FLUX_HELM_NAME)
    instance = labels.get(ARGO_INSTANCE)
    if instance:
        return Mark("argocd", _ref(APPLICATION, ARGO_NAMESPACE, instance), ARGO_INSTANCE)
    return None


def _ref(kind: tuple[str, str, str], namespace: str, name: str) -> ObjectRef:
    group, version, plural = kind
    return ObjectRef(group, version, plural, namespace, name)


def _get(obj: JsonValue, *keys: str) -> JsonValue:
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _text(obj: JsonObject, where: str, *keys: str) -> str:
    value = _get(obj, *keys)
    if not isinstance(value, str) or not value:
        raise PermanentActionError(f"{where}: {'.'.join(keys)} is missing")
    return value


def from_application(mark: Mark, app: JsonObject) -> Owner:
    """An Argo CD Application's source; PermanentActionError for one healer cannot
    commit to (a Helm chart repository, several sources, no path)."""
    where = f"Argo CD Application {mark.ref.namespace}/{mark.ref.name}"
    if _get(app, "spec", "source") is None and _get(app, "spec", "sources") is not None:
        raise PermanentActionError(f"{where}: several sources (spec.sources) are not supported")
    if _get(app, "spec", "source", "chart") is not None:
        raise PermanentActionError(f"{where}: a Helm chart repository has no file to commit to")
    source = GitSource(
        url=_text(app, where, "spec", "source", "repoURL"),
        revision=str(_get(app, "spec", "source", "targetRevision") or "HEAD"),
        path=str(_get(app, "spec", "source", "path") or ""),
    )
    heal = _get(app, "spec", "syncPolicy", "automated", "selfHeal") is True
    return Owner("argocd", mark.ref, source, (mark.ref,), self_heal=heal)


def repository_of(mark: Mark, kustomization: JsonObject) -> ObjectRef:
    """The GitRepository a Flux Kustomization's ``spec.sourceRef`` names."""
    where = f"Flux Kustomization {mark.ref.namespace}/{mark.ref.name}"
    kind = _get(kustomization, "spec", "sourceRef", "kind")
    if kind != "GitRepository":
        raise PermanentActionError(f"{where}: spec.sourceRef.kind {kind!r} is not a GitRepository")
    name = _text(kustomization, where, "spec", "sourceRef", "name")
    namespace = _get(kustomization, "spec", "sourceRef", "namespace")
    return _ref(GIT_REPOSITORY, str(namespace or mark.ref.namespace), name)


def refuse_helm_release(mark: Mark) -> None:
    """A Flux HelmRelease pins the image in its own ``spec.values`` (or a values file of
    the chart), in whichever repository holds the HelmRelease: healer cannot tell where
    to commit, so it escalates rather than undo in the cluster, which helm-controller
    would revert."""
    if mark.ref.plural == HELM_RELEASE[2]:
        raise PermanentActionError(
            f"Flux HelmRelease {mark.ref.namespace}/{mark.ref.name}: its image is set in "
            "its values, not in a path healer can commit to; roll it back in its repository"
        )


def from_kustomization(mark: Mark, kustomization: JsonObject, repository: JsonObject) -> Owner:
    """A Flux Kustomization's source through its GitRepository; only a branch ref can
    take a commit (a tag, semver range or commit pins what Flux applies)."""
    repo_ref = repository_of(mark, kustomization)
    where = f"Flux GitRepository {repo_ref.namespace}/{repo_ref.name}"
    ref = _get(repository, "spec", "ref")
    pinned = [k for k in ("tag", "semver", "commit", "name") if _get(ref, k)]
    if pinned:
        raise PermanentActionError(f"{where}: spec.ref.{pinned[0]} pins a revision; no branch")
    source = GitSource(
        url=_text(repository, where, "spec", "url"),
        revision=str(_get(ref, "branch") or FLUX_DEFAULT_BRANCH),
        path=str(_get(kustomization, "spec", "path") or ""),
    )
    return Owner("flux", mark.ref, source, (repo_ref, mark.ref), self_heal=True)


def sync_annotations(owner: Owner, now: datetime) -> Mapping[str, str]:
    """The annotations that make the syncer sync now (see the module docstring)."""
    if owner.tool == "argocd":
        return {REFRESH: "hard"}
    return {REQUESTED_AT: now.isoformat().replace("+00:00", "Z")}
