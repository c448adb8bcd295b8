"""What the simulated Git syncer reads and writes: an owner's Git source rendered into
the objects it manages (``Target``), compared with the live ones and applied through the
cluster's API verbs.

Shared by Argo CD's and Flux's reconcilers (``healer.sim.controllers.gitsync``): both
read a commit the same way, stamp their own tracking marks, and apply the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Protocol

from healer.sim.gitrender import Rendered, RenderError, render
from healer.sim.gitrepo import GitError, read_tree, resolve
from healer.sim.gitstatus import WORKLOADS, subset
from healer.sim.kinds import KINDS, Kind
from healer.sim.objects import ApiError, K8s, copy_json
from healer.sim.state import ClusterState, Now
from healer.sim.verbs import PatchesObjects, PatchesWorkloads

ARGO_REFRESH = "argocd.argoproj.io/refresh"
ARGO_TRACKING = "argocd.argoproj.io/tracking-id"
ARGO_INSTANCE = "app.kubernetes.io/instance"
FLUX_REQUESTED = "reconcile.fluxcd.io/requestedAt"
FLUX_NAME = "kustomize.toolkit.fluxcd.io/name"
FLUX_NAMESPACE = "kustomize.toolkit.fluxcd.io/namespace"
MERGE = "application/merge-patch+json"
_APPLIED = {k.resource for k in KINDS} - {"pods", "replicasets", "controllerrevisions", "events"}


class SyncApi(PatchesWorkloads, PatchesObjects, Protocol):
    """The cluster's API verbs the syncer writes through."""

    def create_workload(
        self, resource: str, namespace: str, body: K8s, *, dry_run: bool = False
    ) -> K8s: ...

    def create_object(self, resource: str, namespace: str, body: K8s, *, dry_run: bool) -> K8s: ...

    def delete_object(
        self, resource: str, namespace: str, name: str, *, dry_run: bool = False
    ) -> K8s: ...


@dataclass(frozen=True)
class Fetched:
    """What one owner last read from Git: the commit, and its render or the error."""

    generation: int
    polled_s: float
    revision: str = ""
    rendered: Rendered | None = None
    error: str = ""
    synced_revision: str | None = None
    drift_s: float | None = None
    seen: str = ""
    """The resourceVersions of the owner and of its live objects at its last pass."""


@dataclass(frozen=True)
class Target:
    """One object an owner manages: where it lives and what Git says it is."""

    kind: Kind
    namespace: str
    name: str
    manifest: K8s

    def ref(self) -> K8s:
        return {
            "group": self.kind.group,
            "version": self.kind.version,
            "kind": self.kind.kind,
            "namespace": self.namespace,
            "name": self.name,
        }


def fetch(
    before: Fetched | None,
    generation: int,
    now: Now,
    *,
    url: str,
    ref: str,
    path: str,
    recurse: bool,
    images: tuple[Any, ...],
    hard: bool,
) -> Fetched:
    """Resolve ``ref`` and render ``path`` at it; the render is reused while the commit
    and the spec are unchanged, unless ``hard`` (a hard refresh)."""
    kept = before or Fetched(generation, now.unix_s)
    try:
        # A commit id already read needs no git call: commits do not change.
        revision = ref if before is not None and ref == before.revision else resolve(url, ref)
    except GitError as exc:
        return replace(kept, generation=generation, polled_s=now.unix_s, error=str(exc))
    same = (
        before is not None
        and before.revision == revision
        and before.generation == generation
        and not before.error
    )
    if same and not hard:
        return replace(kept, polled_s=now.unix_s)
    try:
        rendered = render(
            read_tree(url, revision, path),
            recurse=recurse,
            image_overrides=[i if isinstance(i, dict) else str(i) for i in images],
        )
        error = ""
    except (GitError, RenderError) as exc:
        rendered, error = None, str(exc)
    return replace(
        kept,
        generation=generation,
        polled_s=now.unix_s,
        revision=revision,
        rendered=rendered,
        error=error,
    )


def kind_of(manifest: K8s) -> Kind:
    for kind in KINDS:
        served = (kind.group_version, kind.kind) == (manifest["apiVersion"], manifest["kind"])
        if served and kind.resource in _APPLIED:
            return kind
    name = manifest["metadata"]["name"]
    raise RenderError(
        f"{manifest['kind']} {name}: the server could not find the requested resource "
        f"({manifest['apiVersion']}, kind {manifest['kind']})"
    )


def targets_of(
    rendered: Rendered, namespace: str, stamp: Any, *, force: bool = False
) -> list[Target]:
    """The rendered objects with their namespace settled and the owner's marks stamped."""
    targets = []
    for manifest in rendered.objects:
        kind = kind_of(manifest)
        body = copy_json(manifest)
        body.pop("status", None)
        meta = body["metadata"]
        ns = namespace if force or not meta.get("namespace") else str(meta["namespace"])
        if kind.namespaced:
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
            ns = ""
        target = Target(kind, ns, str(meta["name"]), body)
        stamp(target)
        targets.append(target)
    return targets


def argo_stamp(app: str) -> Any:
    def stamp(target: Target) -> None:
        meta = target.manifest["metadata"]
        meta.setdefault("labels", {})[ARGO_INSTANCE] = app
        where = f"{target.namespace}/{target.name}" if target.namespace else target.name
        tracking = f"{app}:{target.kind.group}/{target.kind.kind}:{where}"
        meta.setdefault("annotations", {})[ARGO_TRACKING] = tracking

    return stamp


def flux_stamp(owner: K8s) -> Any:
    def stamp(target: Target) -> None:
        labels = target.manifest["metadata"].setdefault("labels", {})
        labels[FLUX_NAME] = owner["metadata"]["name"]
        labels[FLUX_NAMESPACE] = owner["metadata"]["namespace"]

    return stamp


def live(state: ClusterState, target: Target) -> K8s | None:
    """The object in the cluster that ``target`` stands for; None when there is none."""
    return state.store.find(target.kind.resource, target.namespace, target.name)


def in_sync(state: ClusterState, target: Target) -> bool:
    """Whether the live object has every field Git sets, with Git's values."""
    found = live(state, target)
    return found is not None and subset(target.manifest, found)


def inventory_id(target: Target) -> K8s:
    group = target.kind.group
    return {"id": f"{target.namespace}_{target.name}_{group}_{target.kind.kind}", "v": "v1"}


def apply(api: SyncApi, target: Target) -> str:
    """Create the object, or merge-patch Git's fields into it; kubectl's verb."""
    kind, body = target.kind, target.manifest
    label = f"{kind.kind.lower()}.{kind.group}/{target.name}".replace("./", "/")
    resource = kind.resource
    try:
        if resource in WORKLOADS:
            api.patch_workload(resource, target.namespace, target.name, body, MERGE)
        else:
            api.patch_object(resource, target.namespace, target.name, body, MERGE, dry_run=False)
        return f"{label} configured"
    except ApiError as exc:
        if exc.code != 404:
            raise
    if resource in WORKLOADS:
        api.create_workload(resource, target.namespace, body)
    else:
        api.create_object(resource, target.namespace, body, dry_run=False)
    return f"{label} created"


def ignoring(targets: list[Target], rules: list[Any]) -> list[Target]:
    """``targets`` without the fields Argo CD's ``ignoreDifferences`` names for them.

    A rule matches on ``group`` and ``kind`` (and ``name`` and ``namespace`` when given)
    and names fields by ``jsonPointers``; ``jqPathExpressions`` and
    ``managedFieldsManagers`` are not read by this simulator.
    """
    out = []
    for target in targets:
        pointers = [
            str(pointer)
            for rule in rules
            if isinstance(rule, dict) and _rule_matches(rule, target)
            for pointer in rule.get("jsonPointers") or []
        ]
        if not pointers:
            out.append(target)
            continue
        manifest = copy_json(target.manifest)
        for pointer in pointers:
            _remove(manifest, pointer)
        out.append(replace(target, manifest=manifest))
    return out


def _rule_matches(rule: K8s, target: Target) -> bool:
    return (
        (rule.get("group") or "") == target.kind.group
        and rule.get("kind") == target.kind.kind
        and rule.get("name") in (None, "", target.name)
        and rule.get("namespace") in (None, "", target.namespace)
    )


def _remove(document: Any, pointer: str) -> None:
    """Remove the field at the JSON pointer (RFC 6901), when it is there."""
    tokens = [t.replace("~1", "/").replace("~0", "~") for t in pointer.split("/")[1:]]
    for token in tokens[:-1]:
        if isinstance(document, dict):
            document = document.get(token)
        elif isinstance(document, list) and token.isdigit() and int(token) < len(document):
            document = document[int(token)]
        else:
            return
    last = tokens[-1] if tokens else ""
    if tokens and isinstance(document, dict):
        document.pop(last, None)
    elif isinstance(document, list) and last.isdigit() and int(last) < len(document):
        del document[int(last)]
