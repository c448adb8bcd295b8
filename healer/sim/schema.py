"""Structural OpenAPI schemas, as the API server applies a CRD's to its custom resources.

Three passes over an object, in the API server's order: pruning (fields the schema does
not declare are dropped, unless ``x-kubernetes-preserve-unknown-fields`` keeps them),
defaulting (``default`` fills a missing field) and validation (types, ``enum``,
``minimum``/``maximum``, ``required``, ``pattern``, lengths and item counts, ``nullable``).
Errors read as the real server's do (``spec.mode: Unsupported value: "yolo": supported
values: "auto", "approval"``), one per field, with the field path kubectl prints.

Decisions: ``x-kubernetes-validations`` (CEL rules) are not evaluated here, and a CRD
carrying them is refused when it is created (``crds``), so a schema never seems to check
more than it does. ``metadata`` is the API server's (ObjectMeta), never pruned here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from healer.sim.objects import K8s, copy_json

_PRESERVE = "x-kubernetes-preserve-unknown-fields"
_INT_OR_STRING = "x-kubernetes-int-or-string"
_TYPES = ("object", "array", "string", "integer", "number", "boolean")


@dataclass(frozen=True)
class Cause:
    """One field's error, as a ``Status`` cause: its reason, path and message."""

    reason: str
    field: str
    message: str

    def line(self) -> str:
        return f"{self.field}: {self.message}"


def prune(schema: K8s, value: Any, path: str = "") -> list[str]:
    """Drop from ``value`` (in place) what ``schema`` does not declare; returns the
    dropped fields' paths (``spec.foo``) for ``fieldValidation``'s warnings or errors."""
    dropped: list[str] = []
    _prune(schema, value, path, dropped)
    return dropped


def _prune(schema: K8s, value: Any, path: str, dropped: list[str]) -> None:
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            _prune(schema["items"], item, f"{path}[{i}]", dropped)
        return
    if not isinstance(value, dict):
        return
    properties = schema.get("properties") or {}
    extra = schema.get("additionalProperties")
    for key in list(value):
        where = f"{path}.{key}" if path else key
        if path == "" and key in ("apiVersion", "kind", "metadata"):
            continue
        if key in properties:
            _prune(properties[key], value[key], where, dropped)
        elif isinstance(extra, dict):
            _prune(extra, value[key], where, dropped)
        elif not schema.get(_PRESERVE) and extra is not True:
            dropped.append(where)
            del value[key]


def default(schema: K8s, value: Any) -> None:
    """Fill ``default`` values into the objects of ``value`` that lack them (in place)."""
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            default(schema["items"], item)
        return
    if not isinstance(value, dict):
        return
    for key, sub in (schema.get("properties") or {}).items():
        if key not in value and "default" in sub:
            value[key] = copy_json(sub["default"])
        if key in value:
            default(sub, value[key])


def validate(schema: K8s, value: Any, path: str = "") -> list[Cause]:
    """Every error of ``value`` against ``schema``; empty when it is valid."""
    causes: list[Cause] = []
    _check(schema, value, path, causes)
    return causes


def _check(schema: K8s, value: Any, path: str, causes: list[Cause]) -> None:
    if value is None:
        if not schema.get("nullable") and schema.get("type"):
            causes.append(Cause("FieldValueTypeInvalid", path, _type_error(schema, value, path)))
        return
    if not _has_type(schema, value):
        causes.append(Cause("FieldValueTypeInvalid", path, _type_error(schema, value, path)))
        return
    if "enum" in schema and value not in schema["enum"]:
        supported = ", ".join(_quoted(v) for v in schema["enum"])
        message = f"Unsupported value: {_quoted(value)}: supported values: {supported}"
        causes.append(Cause("FieldValueNotSupported", path, message))
    if isinstance(value, bool):
        return
    if isinstance(value, int | float):
        _check_number(schema, value, path, causes)
    elif isinstance(value, str):
        _check_string(schema, value, path, causes)
    elif isinstance(value, list):
        _check_array(schema, value, path, causes)
    elif isinstance(value, dict):
        _check_object(schema, value, path, causes)


def _has_type(schema: K8s, value: Any) -> bool:
    if schema.get(_INT_OR_STRING):
        return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))
    wanted = schema.get("type")
    match wanted:
        case None:
            return True
        case "object":
            return isinstance(value, dict)
        case "array":
            return isinstance(value, list)
        case "string":
            return isinstance(value, str)
        case "boolean":
            return isinstance(value, bool)
        case "integer":
            return isinstance(value, int) and not isinstance(value, bool)
        case "number":
            return isinstance(value, int | float) and not isinstance(value, bool)
    return False


def _type_error(schema: K8s, value: Any, path: str) -> str:
    wanted = "integer or string" if schema.get(_INT_OR_STRING) else schema.get("type")
    return (
        f"Invalid value: {_quoted(_json_type(value))}: {path} in body must be of type "
        f"{wanted}: {_quoted(_json_type(value))}"
    )


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _check_number(schema: K8s, value: float, path: str, causes: list[Cause]) -> None:
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None:
        below = value <= low if schema.get("exclusiveMinimum") else value < low
        if below:
            than = "greater than" if schema.get("exclusiveMinimum") else "greater than or equal to"
            message = f"Invalid value: {value}: {path} in body should be {than} {low}"
            causes.append(Cause("FieldValueInvalid", path, message))
    if high is not None:
        above = value >= high if schema.get("exclusiveMaximum") else value > high
        if above:
            than = "less than" if schema.get("exclusiveMaximum") else "less than or equal to"
            message = f"Invalid value: {value}: {path} in body should be {than} {high}"
            causes.append(Cause("FieldValueInvalid", path, message))


def _check_string(schema: K8s, value: str, path: str, causes: list[Cause]) -> None:
    shown = _quoted(value)
    if "minLength" in schema and len(value) < schema["minLength"]:
        least = schema["minLength"]
        message = f"Invalid value: {shown}: {path} in body should be at least {least} chars long"
        causes.append(Cause("FieldValueInvalid", path, message))
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        message = f"Too long: may not be more than {schema['maxLength']} bytes"
        causes.append(Cause("FieldValueTooLong", path, message))
    pattern = schema.get("pattern")
    if pattern is not None and _regex(pattern).search(value) is None:
        message = f"Invalid value: {shown}: {path} in body should match '{pattern}'"
        causes.append(Cause("FieldValueInvalid", path, message))
    if schema.get("format") == "date-time" and not _is_date_time(value):
        message = f"Invalid value: {shown}: {path} in body must be of type date-time: {shown}"
        causes.append(Cause("FieldValueInvalid", path, message))


def _is_date_time(value: str) -> bool:
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return "T" in value


@cache
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _check_array(schema: K8s, value: list[Any], path: str, causes: list[Cause]) -> None:
    if "minItems" in schema and len(value) < schema["minItems"]:
        least = schema["minItems"]
        message = f"Invalid value: {len(value)}: {path} in body should have at least {least} items"
        causes.append(Cause("FieldValueInvalid", path, message))
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        message = f"Too many: {len(value)}: must have at most {schema['maxItems']} items"
        causes.append(Cause("FieldValueTooMany", path, message))
    items = schema.get("items")
    if isinstance(items, dict):
        for i, item in enumerate(value):
            _check(items, item, f"{path}[{i}]", causes)


def _check_object(schema: K8s, value: K8s, path: str, causes: list[Cause]) -> None:
    for key in schema.get("required") or []:
        if key not in value:
            where = f"{path}.{key}" if path else key
            causes.append(Cause("FieldValueRequired", where, "Required value"))
    properties = schema.get("properties") or {}
    extra = schema.get("additionalProperties")
    for key, item in value.items():
        where = f"{path}.{key}" if path else key
        if path == "" and key == "metadata":
            continue  # ObjectMeta: the API server's own checks
        if key in properties:
            _check(properties[key], item, where, causes)
        elif isinstance(extra, dict):
            _check(extra, item, where, causes)


def _quoted(value: Any) -> str:
    """A value as the API server's messages show it: strings quoted, JSON booleans."""
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def structural_errors(schema: Any, path: str) -> list[Cause]:
    """Why ``schema`` is not structural (a type on every node, properties only on
    objects), or uses what the simulator does not evaluate (CEL rules)."""
    causes: list[Cause] = []
    _structural(schema, path, causes)
    return causes


def _structural(schema: Any, path: str, causes: list[Cause]) -> None:
    if not isinstance(schema, dict):
        causes.append(Cause("FieldValueInvalid", path, "Invalid value: must be an object"))
        return
    if "x-kubernetes-validations" in schema:
        message = "Forbidden: CEL rules are not evaluated by the simulated API server"
        causes.append(Cause("FieldValueForbidden", f"{path}.x-kubernetes-validations", message))
    typed = schema.get("type")
    if typed is None and not schema.get(_INT_OR_STRING) and not schema.get(_PRESERVE):
        causes.append(
            Cause(
                "FieldValueRequired",
                f"{path}.type",
                "Required value: must not be empty for specified object fields",
            )
        )
    elif typed is not None and typed not in _TYPES:
        supported = ", ".join(f'"{t}"' for t in _TYPES)
        causes.append(
            Cause(
                "FieldValueNotSupported",
                f"{path}.type",
                f"Unsupported value: {_quoted(typed)}: supported values: {supported}",
            )
        )
    if "properties" in schema and typed != "object":
        causes.append(
            Cause(
                "FieldValueForbidden",
                f"{path}.properties",
                "Forbidden: must only be used with type object",
            )
        )
    for key, sub in (schema.get("properties") or {}).items():
        _structural(sub, f"{path}.properties[{key}]", causes)
    if isinstance(schema.get("items"), dict):
        _structural(schema["items"], f"{path}.items", causes)
    if isinstance(schema.get("additionalProperties"), dict):
        _structural(schema["additionalProperties"], f"{path}.additionalProperties", causes)
