"""ControllerRevisions as the StatefulSet and DaemonSet controllers keep them.

Both controllers snapshot their pod template into a ControllerRevision per distinct
template, numbered in the order the templates were last current: going back to an
older template (``kubectl rollout undo``) renumbers its revision as the newest rather
than making a new one, which is what ``kubectl rollout history`` shows. The data is a
strategic merge patch replacing the template, so that an undo sends it as it is.

Decisions:

* Which label carries the template's hash is the caller's (the StatefulSet controller
  matches ``controller.kubernetes.io/hash``, the DaemonSet's ``controller-revision-hash``),
  and so is which revisions are still in use when the history is trimmed.
* ``kubectl.kubernetes.io/last-applied-configuration`` is not copied onto a revision: it
  is the object's, not the template's.
"""

from __future__ import annotations

from collections.abc import Callable

from healer.sim.objects import K8s, copy_json
from healer.sim.state import ClusterState, Now, owner_ref

_NOT_COPIED = frozenset({"kubectl.kubernetes.io/last-applied-configuration"})


def number(revision: K8s) -> int:
    return int(revision.get("revision", 0))


def template_of(revision: K8s) -> K8s:
    """The pod template a ControllerRevision holds (its patch without the directive)."""
    template: K8s = copy_json(revision["data"]["spec"]["template"])
    template.pop("$patch", None)
    return template


def revision_for(
    state: ClusterState, owner: K8s, revisions: list[K8s], digest: str, label: str, now: Now
) -> K8s:
    """The revision of ``owner``'s current template (hash ``digest`` under ``label``):
    found, and renumbered when it is not the newest, as a rollback makes it; or created
    with the next number."""
    top = max((number(r) for r in revisions), default=0)
    match = next((r for r in revisions if r["metadata"]["labels"].get(label) == digest), None)
    if match is None:
        return _create(state, owner, digest, label, top + 1, now)
    if number(match) != top:
        match["revision"] = top + 1
        state.store.update("controllerrevisions", match, spec_changed=False)
    return match


def _create(state: ClusterState, owner: K8s, digest: str, label: str, n: int, now: Now) -> K8s:
    meta = owner["metadata"]
    template = copy_json(owner["spec"]["template"])
    labels = dict((template.get("metadata") or {}).get("labels") or {})
    revision = {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {
            "name": f"{meta['name']}-{digest}",
            "namespace": meta["namespace"],
            "labels": {**labels, label: digest},
            "annotations": {
                k: v for k, v in (meta.get("annotations") or {}).items() if k not in _NOT_COPIED
            },
            "ownerReferences": [owner_ref(owner)],
        },
        "data": {"spec": {"template": {**template, "$patch": "replace"}}},
        "revision": n,
    }
    return state.store.create("controllerrevisions", revision, now=now.at)


def trim_history(state: ClusterState, owner: K8s, in_use: Callable[[K8s], bool]) -> None:
    """Delete the oldest revisions not ``in_use`` beyond ``spec.revisionHistoryLimit``."""
    idle = sorted(
        (r for r in state.owned("controllerrevisions", owner) if not in_use(r)), key=number
    )
    limit = owner["spec"].get("revisionHistoryLimit", 10)
    for revision in idle[: max(0, len(idle) - limit)]:
        meta = revision["metadata"]
        state.store.delete("controllerrevisions", meta["namespace"], meta["name"])
