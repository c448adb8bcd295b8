"""OpenAPI v3 documents for the served kinds, as ``/openapi/v3`` serves them.

kubectl reads them before ``create -f`` and ``apply -f`` (to learn whether the server
validates fields itself, through the ``fieldValidation`` parameter) and for
``kubectl explain``. The index lists one document per group-version; each document has
the paths of its kinds, whose writes declare ``fieldValidation``, ``dryRun`` and
``fieldManager`` as the real server's do, and the schemas of its kinds, derived from the
official client's models (generated from the same OpenAPI, so field names and types are
Kubernetes'), with ``x-kubernetes-group-version-kind`` on each top-level kind.

The same schemas drive ``fieldValidation`` on writes (``unknown_fields``): ``Strict``
refuses a body with fields the kind does not declare, ``Warn`` (the default) answers
with a ``Warning`` header per field, ``Ignore`` says nothing.

Schemas carry no descriptions. OpenAPI v2 is not served (404): kubectl from 1.27 reads
v3, but older ones (Debian's kubernetes-client is 1.20) ask for v2 as protobuf only, so
their ``create -f``/``apply -f`` need ``--validate=false`` and their ``explain`` fails.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import cache
from typing import Any

from kubernetes.client import models

from healer.sim.kinds import GITOPS, KINDS, Kind
from healer.sim.objects import K8s

_PRIMITIVES: dict[str, K8s] = {
    "str": {"type": "string"},
    "int": {"type": "integer", "format": "int64"},
    "float": {"type": "number", "format": "double"},
    "bool": {"type": "boolean"},
    "datetime": {"type": "string", "format": "date-time"},
    "date": {"type": "string", "format": "date"},
    "bytes": {"type": "string", "format": "byte"},  # a CRD's conversion webhook caBundle
    # IntOrString and free-form fields (maxSurge, quantities, raw extensions).
    "object": {"x-kubernetes-int-or-string": True},
}
_LIST = re.compile(r"^(?:List|list)\[(.+)\]$")
_DICT = re.compile(r"^(?:Dict|dict)\((?:str|\s)*,\s*(.+)\)$|^Dict\[str,\s*(.+)\]$")


def _model_name(kind: Kind) -> str:
    """The client's model class: V1Deployment, V2HorizontalPodAutoscaler, CoreV1Event."""
    name = f"{kind.version.capitalize()}{kind.kind}"
    return name if hasattr(models, name) else f"Core{name}"


def _schema_name(kind: Kind) -> str:
    group = kind.group.split(".")[0] if kind.group else "core"
    return f"io.k8s.api.{group}.{kind.version}.{kind.kind}"


def _type(spec: str, schemas: dict[str, K8s]) -> K8s:
    """The schema of one client type string, registering model schemas as it goes."""
    spec = spec.strip()
    if spec in _PRIMITIVES:
        return dict(_PRIMITIVES[spec])
    if found := _LIST.match(spec):
        return {"type": "array", "items": _type(found[1], schemas)}
    if found := _DICT.match(spec):
        return {"type": "object", "additionalProperties": _type(found[1] or found[2], schemas)}
    _model(spec, spec, schemas)
    return {"allOf": [{"$ref": f"#/components/schemas/{spec}"}]}


def _model(class_name: str, schema_name: str, schemas: dict[str, K8s]) -> None:
    if schema_name in schemas:
        return
    cls: Any = getattr(models, class_name)
    schemas[schema_name] = {}  # placeholder: models refer to themselves (JSONSchemaProps)
    properties = {
        cls.attribute_map[attr]: _type(kind, schemas) for attr, kind in cls.openapi_types.items()
    }
    schemas[schema_name] = {"type": "object", "properties": properties}


def _parameters(*names: str) -> list[K8s]:
    return [
        {"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
        for name in names
    ]


def _operation(kind: Kind, action: str, writes: bool) -> K8s:
    op: K8s = {
        "operationId": f"{action}{kind.kind}",
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": _gvk(kind),
        "responses": {"200": {"description": "OK"}},
    }
    if writes:
        op["parameters"] = _parameters("dryRun", "fieldManager", "fieldValidation")
    return op


def _gvk(kind: Kind) -> K8s:
    return {"group": kind.group, "version": kind.version, "kind": kind.kind}


def _paths(kind: Kind) -> dict[str, K8s]:
    prefix = f"/apis/{kind.group_version}" if kind.group else f"/api/{kind.version}"
    collection: K8s = {"get": _operation(kind, "list", False)}
    item: K8s = {"get": _operation(kind, "get", False)}
    if "create" in kind.verbs:
        collection["post"] = _operation(kind, "post", True)
    if "update" in kind.verbs:
        item["put"] = _operation(kind, "put", True)
    if "patch" in kind.verbs:
        item["patch"] = _operation(kind, "patch", True)
    if "delete" in kind.verbs:
        item["delete"] = _operation(kind, "delete", False)
    if not kind.namespaced:  # a Node: the collection and its items at the top
        return {f"{prefix}/{kind.resource}": collection, f"{prefix}/{kind.resource}/{{name}}": item}
    base = f"{prefix}/namespaces/{{namespace}}/{kind.resource}"
    return {
        f"{prefix}/{kind.resource}": {"get": _operation(kind, "list", False)},
        base: collection,
        f"{base}/{{name}}": item,
    }


@cache
def _document_text(group_version: str) -> str | None:
    served = [k for k in KINDS if k.group_version == group_version]
    if not served:
        return None
    schemas: dict[str, K8s] = {}
    paths: dict[str, K8s] = {}
    for kind in served:
        name = _schema_name(kind)
        if kind in GITOPS:
            name = ".".join([*reversed(kind.group.split(".")), kind.version, kind.kind])
            _custom_schema(kind, name, schemas)
        else:
            _model(_model_name(kind), name, schemas)
        schemas[name]["x-kubernetes-group-version-kind"] = [_gvk(kind)]
        paths.update(_paths(kind))
    doc = {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.31.0-healer-sim"},
        "paths": paths,
        "components": {"schemas": schemas},
    }
    return json.dumps(doc, sort_keys=True)


def document(group_version: str) -> str | None:
    """The OpenAPI v3 document of ``group_version`` as JSON text; None when not served."""
    return _document_text(group_version)


def index() -> K8s:
    """``/openapi/v3``: where each group-version's document is, with a content hash."""
    paths = {}
    for group_version in dict.fromkeys(k.group_version for k in KINDS):
        text = _document_text(group_version) or ""
        digest = hashlib.sha512(text.encode()).hexdigest()[:128].upper()
        prefix = f"apis/{group_version}" if "/" in group_version else f"api/{group_version}"
        paths[prefix] = {"serverRelativeURL": f"/openapi/v3/{prefix}?hash={digest}"}
    return {"paths": paths}


def path_group_version(parts: list[str]) -> str | None:
    """The group-version an ``/openapi/v3/...`` path names (``parts`` after ``v3``)."""
    if parts[:1] == ["api"] and len(parts) == 2:
        return parts[1]
    if parts[:1] == ["apis"] and len(parts) == 3:
        return f"{parts[1]}/{parts[2]}"
    return None


def unknown_fields(kind: Kind, body: Any) -> list[str]:
    """Paths of the fields in ``body`` that ``kind``'s schema does not declare, in the
    API server's spelling (``spec.template.spec.containers[0].imagePullPolice``)."""
    found: list[str] = []
    if kind in GITOPS:
        return _custom_unknown(body)
    _walk(_model_name(kind), body, "", found)
    return found


def _walk(spec: str, value: Any, path: str, found: list[str]) -> None:
    spec = spec.strip()
    if spec in _PRIMITIVES or value is None:
        return
    if item := _LIST.match(spec):
        for i, element in enumerate(value if isinstance(value, list) else []):
            _walk(item[1], element, f"{path}[{i}]", found)
        return
    if entry := _DICT.match(spec):
        for key, element in (value if isinstance(value, dict) else {}).items():
            _walk(entry[1] or entry[2], element, f"{path}.{key}" if path else key, found)
        return
    if not isinstance(value, dict):
        return  # a wrong type is the validation's to report, not an unknown field
    cls: Any = getattr(models, spec)
    types = {cls.attribute_map[attr]: kind for attr, kind in cls.openapi_types.items()}
    for key, element in value.items():
        where = f"{path}.{key}" if path else key
        if key not in types:
            found.append(where)
        else:
            _walk(types[key], element, where, found)


def paths_of(kind: Kind) -> dict[str, K8s]:
    """The paths of ``kind`` (a custom one too), as its group-version's document has them."""
    return _paths(kind)


# ---- GitOps kinds: their CRDs' schemas, top level only ----------------------------------

_CUSTOM_TOP = ("apiVersion", "kind", "metadata", "spec", "status")


def _custom_schema(kind: Kind, name: str, schemas: dict[str, K8s]) -> None:
    """A custom resource's schema as the API server publishes it from a CRD: the top
    level declared, ``metadata`` an ObjectMeta, ``spec`` and ``status`` kept as written.

    Argo CD's and Flux's CRDs declare every field of spec; this simulator declares them
    open (``x-kubernetes-preserve-unknown-fields``), so ``kubectl explain`` shows the top
    level only and a misspelt spec field is not reported.
    """
    _model("V1ObjectMeta", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", schemas)
    open_object: K8s = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    schemas[name] = {
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {
                "allOf": [
                    {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
                ]
            },
            "spec": dict(open_object),
            "status": dict(open_object),
        },
    }


def _custom_unknown(body: Any) -> list[str]:
    if not isinstance(body, dict):
        return []
    found = [key for key in body if key not in _CUSTOM_TOP]
    meta = body.get("metadata")
    if isinstance(meta, dict):
        _walk("V1ObjectMeta", meta, "metadata", found)
    return found
