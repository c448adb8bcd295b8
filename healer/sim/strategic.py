"""Strategic merge patch, as the Kubernetes API server applies it to the kinds served.

A strategic merge patch is a JSON merge patch (objects merge, ``null`` deletes) in
which lists of named items merge item by item on their patch merge key (containers by
``name``, ports by ``containerPort``, ...), and in which the patch may carry
directives (``$``-keys) that say how to merge:

* ``$patch: replace`` in an object replaces the object; as an element of a keyed list,
  it replaces the list with the patch's other elements;
* ``$patch: delete`` in an object deletes the object; as an element of a keyed list,
  it deletes the item with that element's merge key;
* ``$patch: merge`` is the default, said out loud;
* ``$retainKeys: [...]`` clears the object's fields not listed before merging (the
  patch may only set fields it lists);
* ``$deleteFromPrimitiveList/<list>: [...]`` removes values from a list of scalars
  merged as a set (``finalizers``);
* ``$setElementOrder/<list>: [...]`` orders the merged list: the items it names in its
  order, the others where the original list had them (kubectl sends it with every
  patch it computes, ``kubectl set image`` among them).

Decisions:

* Written here, not taken from a library: no maintained Python package implements the
  server's side of it (the directives and the patch merge keys of the API types).
* The merge keys are looked up by field name alone (``MERGE_KEYS``), not by the path
  in the API type: among the kinds the simulator serves no field name has two keys.
* A malformed directive is an ``InvalidPatch`` with the status code the API server
  answers (400, or 422 for a patch that sets fields its ``$retainKeys`` does not list).
"""

from __future__ import annotations

from typing import Any, Final

from healer.types import JsonValue

# Lists merged item by item, by this key of each item (the patchMergeKey of the
# Kubernetes API types served: apps/v1, core/v1 pods, autoscaling/v2, policy/v1).
MERGE_KEYS: Final = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "ports": "containerPort",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name",
    "schedulingGates": "name",
    "conditions": "type",
    "ownerReferences": "uid",
    "addresses": "type",  # a Node's status.addresses
}
"""Every other list of objects is atomic: the patch's list replaces it whole."""

MERGED_SCALAR_LISTS: Final = frozenset({"finalizers"})
"""Lists of scalars merged as sets (patch strategy ``merge`` without a key)."""

PATCH = "$patch"
RETAIN_KEYS = "$retainKeys"
SET_ELEMENT_ORDER = "$setElementOrder/"
DELETE_FROM_PRIMITIVE_LIST = "$deleteFromPrimitiveList/"


class InvalidPatch(ValueError):
    """A patch the API server refuses: ``code`` is its answer (400 or 422)."""

    def __init__(self, message: str, code: int = 400) -> None:
        super().__init__(message)
        self.code = code


class _Deleted:
    """What an object patched with ``$patch: delete`` becomes: its parent drops it."""


_DELETED: Final = _Deleted()


def apply(target: JsonValue, patch: JsonValue) -> JsonValue:
    """``target`` with the strategic merge patch ``patch`` applied; ``target`` is not
    modified. Raises ``InvalidPatch`` for a malformed directive."""
    if not isinstance(patch, dict):
        copied: JsonValue = _copy(patch)
        return copied
    merged = _merge_map(_copy(target) if isinstance(target, dict) else {}, patch)
    return {} if isinstance(merged, _Deleted) else merged


def strip_directives(patch: JsonValue) -> JsonValue:
    """``patch`` without its directives: the fields it sets, as a schema sees them."""
    if isinstance(patch, dict):
        return {k: strip_directives(v) for k, v in patch.items() if not k.startswith("$")}
    if isinstance(patch, list):
        return [strip_directives(v) for v in patch if not (isinstance(v, dict) and PATCH in v)]
    return patch


def _merge_map(original: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any] | _Deleted:
    directive = patch.get(PATCH, "merge")
    if directive == "delete":
        return _DELETED
    if directive == "replace":
        replaced = strip_directives(patch)
        assert isinstance(replaced, dict)
        return replaced
    if directive != "merge":
        raise InvalidPatch(f"unknown patch type: {directive!r} in map: {patch!r}")
    out = {k: v for k, v in original.items() if k in _retained(patch, original)}
    for key, values in patch.items():
        if key.startswith(DELETE_FROM_PRIMITIVE_LIST):
            field = key.removeprefix(DELETE_FROM_PRIMITIVE_LIST)
            out[field] = _delete_scalars(field, out.get(field), values)
    for key, value in patch.items():
        if key.startswith("$"):
            continue  # $patch and $retainKeys were read above; the lists' directives around
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict):
            merged = _merge_map(_as_map(out.get(key)), value)
            if isinstance(merged, _Deleted):
                out.pop(key, None)
            else:
                out[key] = merged
        elif isinstance(value, list):
            out[key] = _merge_list(key, out.get(key), value)
        else:
            out[key] = value
    for key, order in patch.items():
        if key.startswith(SET_ELEMENT_ORDER):
            field = key.removeprefix(SET_ELEMENT_ORDER)
            _order(field, out, order, original.get(field), patch.get(field))
    return out


def _as_map(value: JsonValue) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _retained(patch: dict[str, Any], original: dict[str, Any]) -> set[str]:
    """The fields of ``original`` kept: all, or those ``$retainKeys`` lists."""
    keys = patch.get(RETAIN_KEYS)
    if keys is None:
        return set(original)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise InvalidPatch(f"invalid patch: {RETAIN_KEYS} must be a list of strings, not {keys!r}")
    for key, value in patch.items():
        if not key.startswith("$") and value is not None and key not in keys:
            raise InvalidPatch(
                f"the patch sets {key!r}, which its {RETAIN_KEYS} list {keys!r} does not name",
                code=422,
            )
    return set(keys)


def _merge_list(field: str, original: JsonValue, patch: list[Any]) -> list[Any]:
    old = original if isinstance(original, list) else []
    if field in MERGED_SCALAR_LISTS:
        return [*old, *(v for i, v in enumerate(patch) if v not in old and v not in patch[:i])]
    key = MERGE_KEYS.get(field)
    if key is None or not all(isinstance(item, dict) for item in patch):
        return [_copy(item) for item in patch]  # an atomic list, or a list of scalars
    out, items = [_copy(item) for item in old], []
    replace = False
    for item in patch:
        directive = item.get(PATCH)
        if directive is None:
            items.append(item)
        elif directive == "replace":
            replace = True
        elif directive == "delete":
            if key not in item:
                raise InvalidPatch(f"map: {item!r} does not contain declared merge key: {key}")
            out = [o for o in out if not (isinstance(o, dict) and o.get(key) == item[key])]
        elif directive == "merge":
            items.append({k: v for k, v in item.items() if k != PATCH})
        else:
            raise InvalidPatch(f"unknown patch type: {directive!r} in map: {item!r}")
    if replace:
        return [strip_directives(item) for item in items]
    for item in items:
        if key not in item:
            raise InvalidPatch(f"map: {item!r} does not contain declared merge key: {key}")
        index = next(
            (i for i, o in enumerate(out) if isinstance(o, dict) and o.get(key) == item[key]),
            None,
        )
        merged = _merge_map({} if index is None else out[index], item)
        new = {} if isinstance(merged, _Deleted) else merged
        if index is None:
            out.append(new)
        else:
            out[index] = new
    return out


def _delete_scalars(field: str, current: JsonValue, values: JsonValue) -> list[Any]:
    if not isinstance(values, list):
        raise InvalidPatch(
            f"invalid patch: {DELETE_FROM_PRIMITIVE_LIST}{field} must be a list, not {values!r}"
        )
    old = current if isinstance(current, list) else []
    return [v for v in old if v not in values]


def _order(
    field: str, out: dict[str, Any], order: JsonValue, original: JsonValue, patched: JsonValue
) -> None:
    """Reorder ``out[field]`` as ``$setElementOrder/<field>`` asks.

    The items the order names come in its order; the others (the server's own) keep
    their places relative to those, as the original list had them, as the API server's
    ``normalizeElementOrder`` merges the two.
    """
    key = MERGE_KEYS.get(field)
    if not isinstance(order, list) or (
        key is not None and not all(isinstance(o, dict) and key in o for o in order)
    ):
        raise InvalidPatch(
            f"invalid patch: {SET_ELEMENT_ORDER}{field} must be a list of "
            + (f"objects with the merge key {key!r}" if key else "values")
            + f", not {order!r}"
        )

    def of(item: Any) -> Any:
        """What names an item: its merge key's value, or the value itself."""
        if key is None:
            return item
        return item.get(key) if isinstance(item, dict) else None

    wanted = [of(o) for o in order]
    stripped = strip_directives(patched) if isinstance(patched, list) else []
    named = [of(p) for p in stripped] if isinstance(stripped, list) else []
    missing = [n for n in named if n not in wanted]
    if missing:
        raise InvalidPatch(
            f"invalid patch: {SET_ELEMENT_ORDER}{field} does not name {missing!r}, "
            f"which the patch's {field} list has"
        )
    current = out.get(field)
    if not isinstance(current, list):
        return

    server_order = [of(o) for o in original] if isinstance(original, list) else []
    given = sorted((i for i in current if of(i) in wanted), key=lambda i: wanted.index(of(i)))
    rest = [i for i in current if of(i) not in wanted]
    out[field] = _interleave(given, rest, server_order, of)


def _interleave(given: list[Any], rest: list[Any], server_order: list[Any], of: Any) -> list[Any]:
    """Insert the server's own items (``rest``) into the ordered ``given`` ones: one
    goes before an item of ``given`` only when the server's list had it first; an item
    new to the server keeps the patch's place, before the server's own."""
    merged: list[Any] = []
    i = j = 0
    while i < len(rest) or j < len(given):
        if j >= len(given):
            merged.append(rest[i])
            i += 1
        elif i >= len(rest):
            merged.append(given[j])
            j += 1
        else:
            own, named = of(rest[i]), of(given[j])
            if (
                own in server_order
                and named in server_order
                and (server_order.index(own) < server_order.index(named))
            ):
                merged.append(rest[i])
                i += 1
            else:
                merged.append(given[j])
                j += 1
    return merged


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
