"""The simulated API server's object store, with Kubernetes' write semantics.

Objects are kept as the same JSON documents a real API server stores, so that what the
official client reads back is what it would read from a cluster. The store applies the
rules a client relies on: ``resourceVersion`` changes on every write and a write that
names a stale one is a 409 Conflict; ``metadata.generation`` moves only when the spec
changes; patches in the three content types kubectl uses; ``dryRun=All`` answers as if
applied and changes nothing; errors are ``kind: Status`` bodies.
"""

from __future__ import annotations

import builtins
import copy
import hashlib
import json
import re
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar, cast

import jsonpatch

from healer.sim import strategic
from healer.types import JsonValue

# Kubernetes objects are plain JSON documents here, indexed freely by the controllers;
# their shape is checked where they enter (validation in the cluster, 422 otherwise).
K8s = dict[str, Any]
_T = TypeVar("_T")

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
PATCH_TYPES = (MERGE_PATCH, STRATEGIC_MERGE_PATCH, JSON_PATCH)


@dataclass(frozen=True)
class WatchEvent:
    """One write as a watch reports it: ADDED, MODIFIED or DELETED, and the object then."""

    version: int
    type: str
    resource: str
    object: K8s
    previous: K8s | None = None
    """The object as the write before this one left it, for selectors that stop (or
    start) matching: a watch reports those as DELETED (or ADDED)."""


@dataclass
class ApiError(Exception):
    """An error the API server answers with a ``Status`` body."""

    code: int
    reason: str
    message: str
    details: K8s | None = None
    """``details`` of the Status: the object's name, group and kind, or causes."""

    def status(self) -> K8s:
        body: K8s = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def not_found(resource: str, name: str) -> ApiError:
    """404 as the API server words it: ``deployments.apps "web" not found``."""
    plural, _, group = resource.partition(".")
    details: K8s = {"name": name, "kind": plural}
    if group:
        details["group"] = group
    return ApiError(404, "NotFound", f'{resource} "{name}" not found', details)


def copy_json(value: _T) -> _T:
    """A deep copy of a JSON document (dicts, lists, scalars), several times faster than
    ``copy.deepcopy``, which the controllers would otherwise spend most of a pass in."""
    # cast: the copy has the shape of its input, which the recursion cannot express.
    return cast(_T, _copy(value))


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


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


def strategic_merge_patch(target: JsonValue, patch: JsonValue) -> JsonValue:
    """Strategic merge patch with its directives (``healer.sim.strategic``); a malformed
    directive is the ``ApiError`` the API server answers."""
    try:
        return strategic.apply(target, patch)
    except strategic.InvalidPatch as exc:
        reason = "BadRequest" if exc.code == 400 else "Invalid"
        raise ApiError(exc.code, reason, str(exc)) from exc


def patch_type(content_type: str) -> str:
    """The patch type a request's ``Content-Type`` names (parameters such as a charset
    dropped); 415 UnsupportedMediaType for any other, before the body is read."""
    kind = content_type.split(";")[0].strip().lower()
    if kind not in PATCH_TYPES:
        raise ApiError(
            415,
            "UnsupportedMediaType",
            f"the body of the request was in an unknown format - accepted media "
            f"types include: {', '.join(PATCH_TYPES)}",
        )
    return kind


def check_patch_body(body: JsonValue, content_type: str) -> None:
    """400 BadRequest for a body of the wrong JSON shape for its patch type, as the API
    server answers: a JSON patch is an array of operation objects; a merge patch and a
    strategic merge patch are an object."""
    kind = patch_type(content_type)
    if kind == JSON_PATCH:
        if not isinstance(body, list):
            raise ApiError(
                400,
                "BadRequest",
                f"json: cannot unmarshal {_json_type(body)} into Go value of type "
                "jsonpatch.Patch: the body of a JSON patch (application/json-patch+json) "
                "must be an array of operations",
            )
        odd = next((op for op in body if not isinstance(op, dict)), None)
        if odd is not None:
            raise ApiError(
                400,
                "BadRequest",
                f"json: cannot unmarshal {_json_type(odd)} into Go value of type "
                "jsonpatch.Operation: each operation of a JSON patch must be an object",
            )
    elif not isinstance(body, dict):
        what = "merge patch" if kind == MERGE_PATCH else "strategic merge patch"
        raise ApiError(
            400,
            "BadRequest",
            f"json: cannot unmarshal {_json_type(body)} into Go value of type "
            f"map[string]interface {{}}: the body of a {what} ({kind}) must be a JSON object",
        )


def _json_type(value: JsonValue) -> str:
    """The JSON type of a decoded value, in Go's json package's words."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return "string" if isinstance(value, str) else "null"


def apply_patch(obj: K8s, body: JsonValue, content_type: str) -> K8s:
    """Apply a PATCH body: 415 for other content types, 400 for a body of the wrong
    shape (``check_patch_body``) or a malformed directive, 422 when it cannot apply."""
    kind = patch_type(content_type)
    check_patch_body(body, kind)
    if kind == MERGE_PATCH:
        result = merge_patch(obj, body)
    elif kind == STRATEGIC_MERGE_PATCH:
        result = strategic_merge_patch(obj, body)
    else:
        try:
            ops: list[K8s] = (
                [op for op in body if isinstance(op, dict)] if isinstance(body, list) else []
            )
            result = jsonpatch.apply_patch(obj, ops)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError) as exc:
            raise ApiError(422, "Invalid", f"the JSON patch could not be applied: {exc}") from exc
    if not isinstance(result, dict):
        raise ApiError(422, "Invalid", "the patched object is not an object")
    return result


def template_hash(template: K8s) -> str:
    """A stable short hash of a pod template, as the pod-template-hash label.

    The template is normalised first (nulls and empty objects dropped) because clients
    that round-trip it through typed structs, as kubectl does on ``rollout undo``, send
    ``creationTimestamp: null`` and ``resources: {}`` back; the real controller compares
    decoded structs, for which those are the same template.
    """
    clean = _normalise(template)
    labels = (clean.get("metadata") or {}).get("labels") if isinstance(clean, dict) else None
    if isinstance(labels, dict):
        labels.pop("pod-template-hash", None)
    digest = hashlib.sha256(json.dumps(_normalise(clean), sort_keys=True).encode()).hexdigest()
    # Kubernetes' hashes are short strings of "safe" characters; 10 hex digits are enough
    # to tell a handful of revisions apart.
    return digest[:10]


def _normalise(value: Any) -> Any:
    if isinstance(value, dict):
        out = {k: _normalise(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not None and v != {} and v != []}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    return value


# One requirement of a label selector: ``key``, ``!key``, ``key=v``, ``key==v``, ``key!=v``,
# ``key in (a,b)`` or ``key notin (a,b)``; requirements are joined by commas.
_REQUIREMENT = re.compile(
    r"""\s*(?:
        (?P<absent>!)\s*(?P<akey>[^\s,=!()]+)
      | (?P<skey>[^\s,=!()]+)\s+(?P<setop>in|notin)\s*\((?P<values>[^)]*)\)
      | (?P<ekey>[^\s,=!()]+)\s*(?P<eqop>==|=|!=)\s*(?P<value>[^\s,=!()]*)
      | (?P<key>[^\s,=!()]+)
    )\s*(?:,|$)""",
    re.VERBOSE,
)


def parse_label_selector(selector: str) -> list[tuple[str, str, tuple[str, ...]]]:
    """Parse a label selector string into (key, operator, values); 400 when malformed."""
    requirements: list[tuple[str, str, tuple[str, ...]]] = []
    pos = 0
    while pos < len(selector):
        found = _REQUIREMENT.match(selector, pos)
        if found is None or found.end() == pos:
            raise ApiError(
                400,
                "BadRequest",
                f"unable to parse requirement: invalid label selector {selector!r}",
            )
        pos = found.end()
        if found["absent"]:
            requirements.append((found["akey"], "!", ()))
        elif found["setop"]:
            values = tuple(v.strip() for v in found["values"].split(",") if v.strip())
            requirements.append((found["skey"], found["setop"], values))
        elif found["eqop"]:
            op = "!=" if found["eqop"] == "!=" else "="
            requirements.append((found["ekey"], op, (found["value"],)))
        else:
            requirements.append((found["key"], "exists", ()))
    return requirements


def _requirement_holds(key: str, op: str, values: tuple[str, ...], labels: dict[str, str]) -> bool:
    if op == "exists":
        return key in labels
    if op == "!":
        return key not in labels
    if op in ("=", "in"):
        return key in labels and labels[key] in values
    return labels.get(key) not in values  # != and notin also match a missing key


def label_selector_matches(selector: str | None, labels: dict[str, str]) -> bool:
    """Label selectors as the API server parses them: equality- and set-based terms."""
    if not selector or not selector.strip():
        return True
    return all(
        _requirement_holds(key, op, values, labels)
        for key, op, values in parse_label_selector(selector)
    )


def selector_matches(selector: JsonValue, labels: dict[str, str]) -> bool:
    """A structured ``LabelSelector`` (matchLabels and matchExpressions) against labels.

    As in Kubernetes, an empty selector matches everything and a null one nothing.
    """
    if not isinstance(selector, dict):
        return False
    match_labels = selector.get("matchLabels")
    if isinstance(match_labels, dict) and any(labels.get(k) != v for k, v in match_labels.items()):
        return False
    expressions = selector.get("matchExpressions")
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for expr in expressions if isinstance(expressions, list) else []:
        if not isinstance(expr, dict) or str(expr.get("operator")) not in ops:
            return False
        values = expr.get("values")
        found = tuple(str(v) for v in values) if isinstance(values, list) else ()
        if not _requirement_holds(str(expr.get("key")), ops[str(expr["operator"])], found, labels):
            return False
    return True


def selector_string(selector: K8s) -> str:
    """The string form of a structured LabelSelector, as the scale subresource reports it."""
    terms = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        op, key = expr["operator"], expr["key"]
        values = ",".join(sorted(expr.get("values") or []))
        terms.append(
            {"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})", "Exists": key}.get(
                op, f"!{key}"
            )
        )
    return ",".join(terms)


def field_value(obj: K8s, path: str) -> str | None:
    """The value of a dotted field path as a field selector compares it (a string)."""
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if value is None:
        return None
    return str(value).lower() if isinstance(value, bool) else str(value)


def field_selector_matches(selector: str | None, obj: K8s, fields: Iterable[str] = ()) -> bool:
    """Field selectors on ``metadata.name``, ``metadata.namespace`` and the kind's ``fields``.

    Like the API server, a field the kind does not index is a 400, not an empty list.
    """
    if not selector:
        return True
    allowed = {"metadata.name", "metadata.namespace", *fields}
    for term in selector.split(","):
        if not term.strip():
            continue
        negate = "!=" in term
        if "=" not in term:
            raise ApiError(400, "BadRequest", f"invalid field selector: {term.strip()!r}")
        k, v = term.replace("!=", "=").replace("==", "=").split("=", 1)
        path = k.strip()
        if path not in allowed:
            raise ApiError(400, "BadRequest", f'field label not supported: "{path}"')
        if ((field_value(obj, path) or "") == v.strip()) == negate:
            return False
    return True


class ObjectStore:
    """Objects by resource, namespace and name; every write gets a new resourceVersion.

    A cluster-scoped object (a Node) has no ``metadata.namespace``: it is kept under the
    namespace ``""``."""

    def __init__(self, uid: Callable[[], str]) -> None:
        self._objects: dict[str, dict[tuple[str, str], K8s]] = {}
        self._version = 1000
        self._uid = uid
        # Objects by their controller's uid, as the garbage collector's graph: controllers
        # ask "what do I own?" every pass, which must not scan the whole store.
        self._owned: dict[tuple[str, str], dict[tuple[str, str], K8s]] = {}
        self._owner_of: dict[tuple[str, tuple[str, str]], str] = {}
        self.history: deque[WatchEvent] | None = None
        """The last writes, for watches to start from a resourceVersion; None until
        ``keep_history`` (a cluster without an API server needs none)."""
        self._history_floor = 0
        """Writes up to this version may be missing from ``history``."""
        self._snapshots: dict[tuple[str, str, str], K8s] = {}  # the last one of each object
        self.listeners: list[Callable[[str, str, K8s], None]] = []
        """Called with (``ADDED``|``MODIFIED``|``DELETED``, resource, object) after every
        write, as an informer's event handlers are: controllers queue the objects that
        changed instead of scanning the store."""

    @property
    def resource_version(self) -> str:
        return str(self._version)

    def keep_history(self, limit: int = 20_000) -> None:
        """Record the last ``limit`` writes, as the API server's watch cache does."""
        if self.history is None:
            self.history = deque(maxlen=limit)
            self._history_floor = self._version
            self._snapshots = {
                (resource, *key): copy_json(obj)
                for resource, items in self._objects.items()
                for key, obj in items.items()
            }

    def events_since(self, version: int, resource: str) -> builtins.list[WatchEvent] | None:
        """The writes to ``resource`` after ``version``, oldest first; None when the
        history no longer reaches back that far (the API server's 410 Expired)."""
        if self.history is None or version < self._history_floor:
            return None
        found = []
        for event in reversed(self.history):  # newest first: a watch asks for the last few
            if event.version <= version:
                break
            if event.resource == resource:
                found.append(event)
        return found[::-1]

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

    def owned(self, resource: str, owner_uid: str) -> builtins.list[K8s]:
        """Objects of ``resource`` whose controller is ``owner_uid``, in name order."""
        items = self._owned.get((resource, owner_uid), {})
        return [items[key] for key in sorted(items)]

    def create(self, resource: str, obj: K8s, *, now: datetime) -> K8s:
        meta = obj["metadata"]
        assert isinstance(meta, dict)
        key = (str(meta.get("namespace", "")), str(meta["name"]))
        if key in self._objects.get(resource, {}):
            raise ApiError(409, "AlreadyExists", f'{resource} "{key[1]}" already exists')
        if "uid" not in meta:  # drawn only when missing: a given uid takes no random draw
            meta["uid"] = self._uid()
        meta["creationTimestamp"] = rfc3339(now)
        meta["generation"] = 1
        return self._write(resource, key, obj, "ADDED")

    def update(self, resource: str, obj: K8s, *, spec_changed: bool) -> K8s:
        meta = obj["metadata"]
        assert isinstance(meta, dict)
        if spec_changed:
            meta["generation"] = int(str(meta.get("generation", 1))) + 1
        key = (str(meta.get("namespace", "")), str(meta["name"]))
        return self._write(resource, key, obj, "MODIFIED")

    def delete(self, resource: str, namespace: str, name: str) -> K8s:
        obj = self.get(resource, namespace, name)
        del self._objects[resource][(namespace, name)]
        self._index_owner(resource, (namespace, name), None, None)
        self._version += 1
        self._notify("DELETED", resource, obj)
        return obj

    def _write(self, resource: str, key: tuple[str, str], obj: K8s, change: str) -> K8s:
        self._version += 1
        meta = obj["metadata"]
        assert isinstance(meta, dict)
        meta["resourceVersion"] = str(self._version)
        self._objects.setdefault(resource, {})[key] = obj
        self._index_owner(resource, key, obj, controller_uid(obj))
        self._notify(change, resource, obj)
        return obj

    def _notify(self, change: str, resource: str, obj: K8s) -> None:
        if self.history is not None:
            snapshot = copy_json(obj)
            snapshot["metadata"]["resourceVersion"] = str(self._version)
            if len(self.history) == self.history.maxlen:
                self._history_floor = self.history[0].version
            meta = snapshot["metadata"]
            key = (resource, meta.get("namespace", ""), meta["name"])
            previous = self._snapshots.pop(key, None)
            if change != "DELETED":
                self._snapshots[key] = snapshot
            self.history.append(WatchEvent(self._version, change, resource, snapshot, previous))
        for listener in self.listeners:
            listener(change, resource, obj)

    def _index_owner(
        self, resource: str, key: tuple[str, str], obj: K8s | None, owner: str | None
    ) -> None:
        previous = self._owner_of.pop((resource, key), None)
        if previous is not None:
            self._owned[(resource, previous)].pop(key, None)
        if obj is not None and owner is not None:
            self._owned.setdefault((resource, owner), {})[key] = obj
            self._owner_of[(resource, key)] = owner


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


def controller_uid(obj: K8s) -> str | None:
    """The uid of the object's controlling owner, if it has one."""
    for ref in obj.get("metadata", {}).get("ownerReferences") or []:
        if isinstance(ref, dict) and ref.get("controller"):
            return str(ref.get("uid"))
    return None
