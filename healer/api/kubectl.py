"""The kubectl command line that makes the same request as a stored action.

The review page shows it before the request's JSON: a person reads ``kubectl -n shop
patch deployments cart --type=strategic -p '...'`` faster than a path and a content
type, and can paste it to repeat or check the action by hand.

Decisions: the command is derived from the request as sent (verb, path, content type,
body), never from the action kind, so it says exactly what healer did, a rollback's
copied pod template included. A PATCH becomes ``kubectl patch`` with the patch type the
content type names (and ``--subresource`` for ``/scale``); any other request becomes
``kubectl create --raw`` (POST), ``replace --raw`` (PUT), ``get --raw`` or
``delete --raw``, which send
it unchanged. A request whose path is not a namespaced object's has only the raw form.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

from healer.types import JsonObject

PATCH_TYPES = {
    "application/strategic-merge-patch+json": "strategic",
    "application/merge-patch+json": "merge",
    "application/json-patch+json": "json",
}
"""Content types of a PATCH and kubectl's ``--type`` for each."""


@dataclass(frozen=True)
class ObjectPath:
    namespace: str
    resource: str
    name: str
    subresource: str | None


def parse_path(path: str) -> ObjectPath | None:
    """``/api[s]/.../namespaces/{ns}/{resource}/{name}[/{sub}]``, or None otherwise."""
    parts = path.strip("/").split("/")
    try:
        at = parts.index("namespaces")
    except ValueError:
        return None
    rest = parts[at + 1 :]
    if parts[0] not in ("api", "apis") or len(rest) not in (3, 4):
        return None
    sub = rest[3] if len(rest) == 4 else None
    return ObjectPath(rest[0], rest[1], rest[2], sub)


def command(request: JsonObject) -> str | None:
    """The kubectl command line for a stored request; None when it holds no request
    (an intent recorded before the request was made, or a malformed record)."""
    verb, path = request.get("verb"), request.get("path")
    if not isinstance(verb, str) or not isinstance(path, str):
        return None
    body = request.get("body")
    target = parse_path(path)
    patch_type = PATCH_TYPES.get(str(request.get("content_type", "")))
    if verb == "PATCH" and target is not None and patch_type is not None:
        return _patch(target, patch_type, body)
    return _raw(verb, path, body)


def _patch(target: ObjectPath, patch_type: str, body: object) -> str:
    words = ["kubectl", "-n", target.namespace, "patch", target.resource, target.name]
    if target.subresource:
        words.append(f"--subresource={target.subresource}")
    words += [f"--type={patch_type}", "-p", _json(body)]
    return shlex.join(words)


def _raw(verb: str, path: str, body: object) -> str:
    match verb:
        case "GET":
            return shlex.join(["kubectl", "get", "--raw", path])
        case "DELETE":
            return shlex.join(["kubectl", "delete", "--raw", path])
        case "PUT":
            send = shlex.join(["kubectl", "replace", "--raw", path, "-f", "-"])
            return f"echo {shlex.quote(_json(body))} | {send}"
        case _:
            send = shlex.join(["kubectl", "create", "--raw", path, "-f", "-"])
            return f"echo {shlex.quote(_json(body))} | {send}"


def _json(body: object) -> str:
    return json.dumps(body, separators=(",", ":"), sort_keys=True)
