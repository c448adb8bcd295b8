"""CustomResourceDefinitions: the simulated API server grows the kinds they define.

Creating a ``customresourcedefinitions.apiextensions.k8s.io`` object serves its custom
resources at once, as a real API server does once the CRD is ``Established``: routing,
discovery (legacy and aggregated), ``/openapi/v3`` (a document per group-version, with
the CRD's schema), server-side printing from ``additionalPrinterColumns``, watches and
the ``status`` subresource. Deleting the CRD stops serving them and deletes its objects.

A custom resource is pruned, defaulted and validated against its version's
``openAPIV3Schema`` (``healer.sim.schema``) on every write; a write to the object keeps
the stored status and a write to ``/status`` keeps everything else, when the version has
the status subresource; ``metadata.generation`` moves on changes outside ``metadata``
and ``status`` only.

Decisions: objects are kept in the store under their plural, like the built-in kinds,
so a CRD whose plural another served kind already uses (in any group) is refused with a
422 naming the clash; a real cluster would serve both. One served version per CRD is
routed: the storage version (a real server converts between served versions; none
here does).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from healer.sim.kinds import BY_RESOURCE, Kind, Subresource
from healer.sim.objects import ApiError, K8s, ObjectStore, copy_json
from healer.sim.schema import Cause, default, prune, structural_errors, validate

RESOURCE = "customresourcedefinitions"
_GROUP = "apiextensions.k8s.io"
_RW = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
_COLUMN_TYPES = ("integer", "number", "string", "boolean", "date")


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    type: str
    json_path: str
    priority: int = 0
    format: str = ""


@dataclass(frozen=True)
class CustomKind(Kind):
    """A kind a CRD defines: a ``Kind`` with its schema and printer columns."""

    schema: K8s = field(default_factory=dict, hash=False, compare=False)
    columns: tuple[PrinterColumn, ...] = ()
    crd: str = ""
    """The CRD's name (``healingpolicies.healer.io``)."""

    @property
    def has_status(self) -> bool:
        return any(s.name == "status" for s in self.subresources)


# ---- CRDs themselves --------------------------------------------------------------------


def admit_crd(obj: K8s, served: Callable[[str], str | None]) -> None:
    """Check a CRD as the API server does, fill its defaults and its status; 422 names
    the field. ``served(plural)`` is the CRD already serving that plural, if any."""
    spec, name = obj.get("spec"), obj["metadata"].get("name")
    causes = _crd_causes(spec, name, served)
    if causes or not isinstance(spec, dict):
        raise _invalid("CustomResourceDefinition", _GROUP, name, causes)
    names = spec["names"]
    names.setdefault("singular", str(names["kind"]).lower())
    names.setdefault("listKind", f"{names['kind']}List")
    storage = next(v["name"] for v in spec["versions"] if v.get("storage"))
    obj["status"] = {
        "acceptedNames": copy_json(names),
        "conditions": [
            {
                "type": "NamesAccepted",
                "status": "True",
                "reason": "NoConflicts",
                "message": "no conflicts found",
            },
            {
                "type": "Established",
                "status": "True",
                "reason": "InitialNamesAccepted",
                "message": "the initial names have been accepted",
            },
        ],
        "storedVersions": [storage],
    }


def _crd_causes(spec: Any, name: Any, served: Callable[[str], str | None]) -> list[Cause]:
    if not isinstance(spec, dict):
        return [Cause("FieldValueRequired", "spec", "Required value")]
    causes = _names_causes(spec, name, served)
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        causes.append(
            Cause(
                "FieldValueNotSupported",
                "spec.scope",
                f'Unsupported value: "{spec.get("scope")}": supported values: '
                '"Cluster", "Namespaced"',
            )
        )
    versions = spec.get("versions")
    if not isinstance(versions, list) or not versions:
        return [*causes, Cause("FieldValueRequired", "spec.versions", "Required value")]
    if sum(1 for v in versions if isinstance(v, dict) and v.get("storage")) != 1:
        causes.append(
            Cause(
                "FieldValueInvalid",
                "spec.versions",
                "Invalid value: must have exactly one version marked as storage version",
            )
        )
    for i, version in enumerate(versions):
        causes.extend(_version_causes(version, f"spec.versions[{i}]"))
    return causes


def _names_causes(spec: K8s, name: Any, served: Callable[[str], str | None]) -> list[Cause]:
    group, names = spec.get("group"), spec.get("names")
    if not isinstance(group, str) or "." not in group:
        return [
            Cause(
                "FieldValueInvalid",
                "spec.group",
                f'Invalid value: "{group}": should be a domain with at least one dot',
            )
        ]
    if not isinstance(names, dict) or not names.get("plural") or not names.get("kind"):
        return [Cause("FieldValueRequired", "spec.names", "Required value: plural and kind")]
    plural = str(names["plural"])
    causes = []
    if plural != plural.lower():
        causes.append(
            Cause(
                "FieldValueInvalid",
                "spec.names.plural",
                f'Invalid value: "{plural}": a lowercase RFC 1123 label',
            )
        )
    if name != f"{plural}.{group}":
        causes.append(
            Cause(
                "FieldValueInvalid",
                "metadata.name",
                f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group',
            )
        )
    other = served(plural)
    if plural in BY_RESOURCE or other not in (None, name):
        causes.append(
            Cause(
                "FieldValueForbidden",
                "spec.names.plural",
                f'Forbidden: "{plural}" is served already ({other or "built in"}); '
                "the simulated API server keeps one resource per plural",
            )
        )
    return causes


def _version_causes(version: Any, path: str) -> list[Cause]:
    if not isinstance(version, dict) or not version.get("name"):
        return [Cause("FieldValueRequired", f"{path}.name", "Required value")]
    schema = (version.get("schema") or {}).get("openAPIV3Schema")
    if schema is None:
        return [
            Cause(
                "FieldValueRequired",
                f"{path}.schema.openAPIV3Schema",
                "Required value: schemas are required",
            )
        ]
    causes = structural_errors(schema, f"{path}.schema.openAPIV3Schema")
    for j, column in enumerate(version.get("additionalPrinterColumns") or []):
        where = f"{path}.additionalPrinterColumns[{j}]"
        if not isinstance(column, dict) or not column.get("name") or not column.get("jsonPath"):
            causes.append(Cause("FieldValueRequired", where, "Required value: name and jsonPath"))
        elif column.get("type") not in _COLUMN_TYPES:
            supported = ", ".join(f'"{t}"' for t in _COLUMN_TYPES)
            causes.append(
                Cause(
                    "FieldValueNotSupported",
                    f"{where}.type",
                    f'Unsupported value: "{column.get("type")}": supported values: {supported}',
                )
            )
    return causes


def kind_of(crd: K8s) -> CustomKind:
    """The kind an admitted CRD serves: its storage version."""
    spec = crd["spec"]
    names = spec["names"]
    version = next(v for v in spec["versions"] if v.get("storage"))
    group_version = f"{spec['group']}/{version['name']}"
    subresources: tuple[Subresource, ...] = ()
    if "status" in (version.get("subresources") or {}):
        subresources = (
            Subresource("status", group_version, names["kind"], ("get", "patch", "update")),
        )
    return CustomKind(
        spec["group"],
        version["name"],
        names["plural"],
        names["kind"],
        _RW,
        tuple(names.get("shortNames") or ()),
        subresources,
        categories=tuple(names.get("categories") or ()),
        namespaced=spec["scope"] == "Namespaced",
        schema=version["schema"]["openAPIV3Schema"],
        columns=tuple(
            PrinterColumn(
                c["name"], c["type"], c["jsonPath"], int(c.get("priority", 0)), c.get("format", "")
            )
            for c in version.get("additionalPrinterColumns") or ()
        ),
        crd=crd["metadata"]["name"],
    )


# ---- custom resources ---------------------------------------------------------------


def admit(kind: CustomKind, obj: K8s, *, creating: bool) -> None:
    """Prune, default and validate a custom resource (in place); 422 names each field.
    A new object's status is the controller's to write, when there is a subresource."""
    if creating and kind.has_status:
        obj.pop("status", None)
    name = obj["metadata"].get("name")
    if not isinstance(name, str) or not name:
        raise _invalid(
            kind.kind,
            kind.group,
            name,
            [
                Cause(
                    "FieldValueRequired",
                    "metadata.name",
                    "Required value: name or generateName is required",
                )
            ],
        )
    prune(kind.schema, obj)
    default(kind.schema, obj)
    causes = validate(kind.schema, obj)
    if causes:
        raise _invalid(kind.kind, kind.group, name, causes)


def unknown_fields(kind: CustomKind, body: Any) -> list[str]:
    """The fields of ``body`` the kind's schema does not declare (what pruning drops)."""
    return prune(kind.schema, copy_json(body)) if isinstance(body, dict) else []


def _invalid(kind: str, group: str, name: Any, causes: Sequence[Cause]) -> ApiError:
    lines = [c.line() for c in causes]
    joined = lines[0] if len(lines) == 1 else "[" + ", ".join(lines) + "]"
    return ApiError(
        422,
        "Invalid",
        f'{kind}.{group} "{name}" is invalid: {joined}',
        {
            "name": str(name),
            "group": group,
            "kind": kind,
            "causes": [
                {"reason": c.reason, "message": c.message, "field": c.field} for c in causes
            ],
        },
    )


# ---- what the cluster serves ------------------------------------------------------------


class CustomResources:
    """The custom kinds served now, following the store's CRDs (a store listener)."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.served: dict[str, CustomKind] = {}
        """By plural (the store's key)."""
        store.listeners.append(self._on_change)

    def kinds(self) -> list[CustomKind]:
        return list(self.served.values())

    def lookup(self, group_version: str, plural: str) -> CustomKind | None:
        kind = self.served.get(plural)
        return kind if kind is not None and kind.group_version == group_version else None

    def crd_serving(self, plural: str) -> str | None:
        kind = self.served.get(plural)
        return kind.crd if kind is not None else None

    def _on_change(self, change: str, resource: str, obj: K8s) -> None:
        if resource != RESOURCE:
            return
        plural = obj["spec"]["names"]["plural"]
        if change == "DELETED":
            self.served.pop(plural, None)
            for item in self.store.list(plural):
                meta = item["metadata"]
                self.store.delete(plural, meta.get("namespace", ""), meta["name"])
            return
        self.served[plural] = kind_of(obj)

    # ---- OpenAPI v3 -------------------------------------------------------------------

    def openapi_document(self, group_version: str, paths: Callable[[Kind], K8s]) -> str | None:
        """The group-version's document, with each kind's schema and ``paths(kind)``."""
        kinds = [k for k in self.served.values() if k.group_version == group_version]
        if not kinds:
            return None
        schemas: K8s = {}
        routes: K8s = {}
        for kind in kinds:
            schema = copy_json(kind.schema)
            schema.setdefault("properties", {})["metadata"] = {
                "allOf": [
                    {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
                ]
            }
            schema["x-kubernetes-group-version-kind"] = [
                {"group": kind.group, "version": kind.version, "kind": kind.kind}
            ]
            schemas[_schema_name(kind)] = schema
            routes.update(paths(kind))
        schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"] = {"type": "object"}
        doc = {
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes CRD Swagger", "version": "v0.1.0"},
            "paths": routes,
            "components": {"schemas": schemas},
        }
        return json.dumps(doc, sort_keys=True)

    def openapi_index(self, paths: Callable[[Kind], K8s]) -> K8s:
        """``/openapi/v3`` entries for the custom group-versions."""
        entries = {}
        for group_version in dict.fromkeys(k.group_version for k in self.served.values()):
            text = self.openapi_document(group_version, paths) or ""
            digest = hashlib.sha512(text.encode()).hexdigest()[:128].upper()
            entries[f"apis/{group_version}"] = {
                "serverRelativeURL": f"/openapi/v3/apis/{group_version}?hash={digest}"
            }
        return entries


def _schema_name(kind: CustomKind) -> str:
    return ".".join(reversed(kind.group.split("."))) + f".{kind.version}.{kind.kind}"


# ---- server-side printing ---------------------------------------------------------------

Cells = Callable[[K8s, datetime], list[object]]
_AGE = PrinterColumn("Age", "date", ".metadata.creationTimestamp")


def printer(
    kind: CustomKind, human: Callable[[float], str]
) -> tuple[list[tuple[str, str, str]], Cells, list[int]]:
    """The Table columns, cells and priorities of ``kind``'s printer columns, after the
    Name column, as the API server's CRD table convertor makes them; no columns: Age.
    ``human`` formats an age for ``date`` columns (kubectl's ``5m``)."""
    columns = kind.columns or (_AGE,)

    def cells(obj: K8s, now: datetime) -> list[object]:
        row: list[object] = [obj["metadata"]["name"]]
        for column in columns:
            row.append(_cell(column, obj, now, human))
        return row

    names = [("Name", "string", "name")] + [(c.name, c.type, c.format) for c in columns]
    return names, cells, [0] + [c.priority for c in columns]


def _cell(column: PrinterColumn, obj: K8s, now: datetime, human: Callable[[float], str]) -> object:
    found = json_path(obj, column.json_path)
    if found is None:
        return None
    if column.type == "date" and isinstance(found, str):
        try:
            then = datetime.fromisoformat(found.replace("Z", "+00:00"))
        except ValueError:
            return found
        return human((now - then).total_seconds())
    if isinstance(found, dict | list):
        return json.dumps(found, separators=(",", ":"))
    return found


_STEP = re.compile(r"""\.([^.\[]+)|\[(\d+)\]|\[\?\(@\.([\w.-]+)\s*==\s*["']([^"']*)["']\)\]""")


def json_path(obj: Any, path: str) -> Any:
    """The value at a printer column's JSONPath: ``.spec.mode``, ``.items[0]`` and
    ``.status.conditions[?(@.type=="Ready")].status``; None when it is not there."""
    value = obj
    for step in _STEP.finditer(path.strip().removeprefix("{").removesuffix("}")):
        key, index, match_key, match_value = step.groups()
        if key is not None:
            value = value.get(key) if isinstance(value, dict) else None
        elif index is not None:
            value = (
                value[int(index)] if isinstance(value, list) and int(index) < len(value) else None
            )
        else:
            items = value if isinstance(value, list) else []
            value = next(
                (i for i in items if isinstance(i, dict) and str(i.get(match_key)) == match_value),
                None,
            )
        if value is None:
            return None
    return value


def content(obj: K8s) -> K8s:
    """What ``metadata.generation`` follows: all but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def no_strategic_merge() -> ApiError:
    """A strategic merge patch on a custom resource: the real server's 415."""
    return ApiError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
    )
