"""The simulated API server's object store, with Kubernetes' write semantics.

Objects are kept as the same JSON documents a real API server stores, so that what the
official client reads back is what it would read from a cluster. The store applies the
rules a client relies on: ``resourceVersion`` changes on every write and a write that
names a stale one is a 409 Conflict; ``metadata.generation`` moves only when the spec
changes; patches in the three content types kubectl uses; ``dryRun=All`` answers as if
applied and changes nothing; errors are ``kind: Status`` bodies.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jsonpatch

from healer.types import JsonValue

# Kubernetes objects are plain JSON documents here, indexed freely by the controllers;
# their shape is checked where they enter (validation in the cluster, 422 otherwise).
K8s = dict[str, Any]

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
PATCH_TYPES = (MERGE_PATCH, STRATEGIC_MERGE_PATCH, JSON_PATCH)

# Lists that strategic merge patch merges element-wise, keyed by this field (the
# patchMergeKey of the Kubernetes API types); every other list is replaced whole.
_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "ports": "containerPort",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "conditions": "type",
    "ownerReferences": "uid",
}


@dataclass
class ApiError(Exception):
    """An error the API server answers with a ``Status`` body."""

    code: int
    reason: str
    message: str

    def status(self) -> K8s:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }


def not_found(resource: str, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{resource} "{name}" not found')


def rfc3339(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: JsonValue, patch: JsonValue) -> JsonValue:
    """RFC 7386 JSON merge patch: objects merge recursively, null deletes, the rest replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def strategic_merge_patch(target: JsonValue, patch: JsonValue, key: str = "") -> JsonValue:
    """Strategic merge patch for the fields healer's actions touch.

    Like a merge patch, except that lists of named items (containers, env, ...) are
    merged item by item on their merge key, as the API server does.
    """
    merge_key = _MERGE_KEYS.get(key)
    if merge_key and isinstance(patch, list) and isinstance(target, list):
        return _merge_list(target, patch, merge_key)
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, value in patch.items():
        if k.startswith("$"):
            continue  # directives such as $retainKeys: nothing healer relies on
        if value is None:
            out.pop(k, None)
        else:
            out[k] = strategic_merge_patch(out.get(k), value, k)
    return out


def _merge_list(target: list[JsonValue], patch: list[JsonValue], merge_key: str) -> JsonValue:
    out = [copy.deepcopy(item) for item in target]
    for item in patch:
        if not isinstance(item, dict):
            return copy.deepcopy(patch)
        index = next(
            (
                i
                for i, old in enumerate(out)
                if isinstance(old, dict) and old.get(merge_key) == item.get(merge_key)
            ),
            None,
        )
        if index is None:
            out.append(copy.deepcopy(item))
        else:
            out[index] = strategic_merge_patch(out[index], item)
    return out


def apply_patch(obj: K8s, body: JsonValue, content_type: str) -> K8s:
    """Apply a PATCH body; raises ApiError 415 for other content types, 422 when invalid."""
    kind = content_type.split(";")[0].strip()
    if kind == MERGE_PATCH:
        result = merge_patch(obj, body)
    elif kind == STRATEGIC_MERGE_PATCH:
        result = strategic_merge_patch(obj, body)
    elif kind == JSON_PATCH:
        if not isinstance(body, list) or not all(isinstance(op, dict) for op in body):
            # What a real API server answers when a client sends an object as a JSON patch.
            raise ApiError(
                400,
                "BadRequest",
                "json: cannot unmarshal object into Go value of type []handlers.jsonPatchOp",
            )
        try:
            ops: list[K8s] = [op for op in body if isinstance(op, dict)]
            result = jsonpatch.apply_patch(obj, ops)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError) as exc:
            raise ApiError(422, "Invalid", f"the JSON patch could not be applied: {exc}") from exc
    else:
        raise ApiError(
            415,
            "UnsupportedMediaType",
            f"the body of the request was in an unknown format - accepted media "
            f"types include: {', '.join(PATCH_TYPES)}",
        )
    if not isinstance(result, dict):
        raise ApiError(422, "Invalid", "the patched object is not an object")
    return result


def template_hash(template: K8s) -> str:
    """A stable short hash of a pod template, as the pod-template-hash label."""
    clean = copy.deepcopy(template)
    labels = (clean.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop("pod-template-hash", None)
    digest = hashlib.sha256(json.dumps(clean, sort_keys=True).encode()).hexdigest()
    # Kubernetes' hashes are short strings of "safe" characters; 10 hex digits are enough
    # to tell a handful of revisions apart.
    return digest[:10]


def label_selector_matches(selector: str | None, labels: dict[str, str]) -> bool:
    """Equality-based label selectors: ``a=b,c!=d,e`` (and ``==``)."""
    if not selector:
        return True
    for term in selector.split(","):
        term = term.strip()
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def field_selector_matches(selector: str | None, obj: K8s) -> bool:
    """Field selectors on ``metadata.name`` and ``metadata.namespace``."""
    if not selector:
        return True
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    for term in selector.split(","):
        negate = "!=" in term
        k, v = term.replace("!=", "=").replace("==", "=").split("=", 1)
        field = k.strip().removeprefix("metadata.")
        if field not in ("name", "namespace"):
            raise ApiError(400, "BadRequest", f'field label not supported: "{k.strip()}"')
        if (meta.get(field) == v.strip()) == negate:
            return False
    return True


class ObjectStore:
    """Objects by resource, namespace and name; every write gets a new resourceVersion."""

    def __init__(self, uid: Callable[[], str]) -> None:
        self._objects: dict[str, dict[tuple[str, str], K8s]] = {}
        self._version = 1000
        self._uid = uid

    @property
    def resource_version(self) -> str:
        return str(self._version)

    def get(self, resource: str, namespace: str, name: str) -> K8s:
        found = self._objects.get(resource, {}).get((namespace, name))
        if found is None:
            raise not_found(resource, name)
        return found

    def find(self, resource: str, namespace: str, name: str) -> K8s | None:
        return self._objects.get(resource, {}).get((namespace, name))

    def list(self, resource: str, namespace: str | None = None) -> list[K8s]:
        items = self._objects.get(resource, {})
        return [obj for (ns, _), obj in sorted(items.items()) if namespace in (None, ns)]

    def create(self, resource: str, obj: K8s, *, now: datetime) -> K8s:
        meta = obj["metadata"]
        assert isinstance(meta, dict)
        key = (str(meta["namespace"]), str(meta["name"]))
        if key in self._objects.get(resource, {}):
            raise ApiError(409, "AlreadyExists", f'{resource} "{key[1]}" already exists')
        meta.setdefault("uid", self._uid())
        meta["creationTimestamp"] = rfc3339(now)
        meta["generation"] = 1
        return self._write(resource, key, obj)

    def update(self, resource: str, obj: K8s, *, spec_changed: bool) -> K8s:
        meta = obj["metadata"]
        assert isinstance(meta, dict)
        if spec_changed:
            meta["generation"] = int(str(meta.get("generation", 1))) + 1
        return self._write(resource, (str(meta["namespace"]), str(meta["name"])), obj)

    def delete(self, resource: str, namespace: str, name: str) -> K8s:
        obj = self.get(resource, namespace, name)
        del self._objects[resource][(namespace, name)]
        self._version += 1
        return obj

    def _write(self, resource: str, key: tuple[str, str], obj: K8s) -> K8s:
        self._version += 1
        meta = obj["metadata"]
        assert isinstance(meta, dict)
        meta["resourceVersion"] = str(self._version)
        self._objects.setdefault(resource, {})[key] = obj
        return obj


def check_resource_version(current: K8s, incoming: K8s) -> None:
    """A write naming a resourceVersion other than the stored one is a 409 Conflict."""
    meta_in = incoming.get("metadata")
    wanted = meta_in.get("resourceVersion") if isinstance(meta_in, dict) else None
    meta = current["metadata"]
    assert isinstance(meta, dict)
    if wanted and wanted != meta["resourceVersion"]:
        raise ApiError(
            409,
            "Conflict",
            f"Operation cannot be fulfilled on {meta.get('name')}: the object has been "
            "modified; please apply your changes to the latest version and try again",
        )


def owned_by(obj: K8s, owner_uid: JsonValue) -> bool:
    meta = obj.get("metadata")
    refs = meta.get("ownerReferences", []) if isinstance(meta, dict) else []
    return isinstance(refs, list) and any(
        isinstance(r, dict) and r.get("uid") == owner_uid and r.get("controller") for r in refs
    )


def names(objs: Iterable[K8s]) -> list[str]:
    return [str(o["metadata"]["name"]) for o in objs]
