"""The simulated cluster's Kubernetes API, over real HTTP, plus its ``/metrics``.

It answers the requests the official ``kubernetes`` client and kubectl make, with the
same paths, content types, status codes and ``Status`` error bodies as a real API
server, so that healer's actuator cannot tell it from a cluster. Requests are routed
from the resource table in ``healer.sim.kinds``: a path the table does not name is a
404 ``Status``, a verb a resource does not support a 405. Discovery comes in both the
aggregated and the legacy form, and lists come as ``meta.k8s.io/v1`` Tables when the
client asks (kubectl does). ``serve_in_thread`` runs it on a loopback port (uvicorn in
a daemon thread) and ``write_kubeconfig`` writes the kubeconfig a client uses to reach it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from healer.api.server import ServerThread, bind
from healer.errors import ConfigError
from healer.sim import crds, discovery, openapi
from healer.sim.cluster import Cluster
from healer.sim.exposition import render_metrics
from healer.sim.kinds import GITOPS, PLAIN, Kind, lookup
from healer.sim.objects import (
    STRATEGIC_MERGE_PATCH,
    ApiError,
    K8s,
    check_patch_body,
    patch_type,
)
from healer.sim.scenario import ApiFault
from healer.sim.strategic import strip_directives
from healer.sim.tables import human_duration, table
from healer.sim.watch import watch

Handler = Callable[[Request], Awaitable[Response]]

_WORKLOADS = ("deployments", "statefulsets", "daemonsets")
"""Kinds with a controller whose writes go through the cluster's workload verbs."""
_TABLE_TYPE = "application/json;as=Table;v=v1;g=meta.k8s.io"
# Exceptions raised while reading a body of the wrong shape (a string where an object
# belongs, ...). A real API server fails to decode such a body into its Go types and
# answers 400, so these become a 400 Status rather than a 500.
_SHAPE_ERRORS = (AttributeError, KeyError, TypeError, ValueError, IndexError)


def create_api(cluster: Cluster) -> Starlette:
    """The Starlette app serving ``cluster``'s API; every call holds the cluster lock."""
    with cluster.lock:
        cluster.store.keep_history()  # so that a watch can start from a list's version

    async def api(request: Request) -> Response:
        injected = await _injected_fault(cluster, request)
        if injected is not None:
            return injected
        try:
            return await _dispatch(cluster, request)
        except ApiError as exc:
            return JSONResponse(exc.status(), status_code=exc.code)
        except _SHAPE_ERRORS as exc:
            if request.method in ("GET", "DELETE"):
                error = ApiError(500, "InternalError", f"an error on the server: {exc!r}")
            else:
                error = ApiError(400, "BadRequest", f"the request body could not be decoded: {exc}")
            return JSONResponse(error.status(), status_code=error.code)

    async def metrics(request: Request) -> Response:
        with cluster.lock:
            if not cluster.metrics_available():  # a scrape gap in the scenario
                return PlainTextResponse("scrape gap\n", status_code=503)
            text = render_metrics(cluster)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    async def api_faults(request: Request) -> Response:
        """The simulator's own endpoint (not Kubernetes'): read or replace API faults."""
        if request.method == "PUT":
            try:
                faults = _FAULTS.validate_json(await request.body())
            except ValidationError as exc:
                error = ApiError(422, "Invalid", f"api faults: {exc.errors()[0]['msg']}")
                return JSONResponse(error.status(), status_code=422)
            with cluster.lock:
                cluster.api_faults = list(faults)
        return JSONResponse([f.model_dump() for f in cluster.api_faults])

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    return Starlette(
        routes=[
            Route("/metrics", metrics),
            Route("/_sim/api-faults", api_faults, methods=["GET", "PUT"]),
            Route("/{path:path}", api, methods=methods),
        ]
    )


_FAULTS = TypeAdapter(list[ApiFault])
_FAULT_REASONS = {
    500: "InternalError",
    409: "Conflict",
    429: "TooManyRequests",
    403: "Forbidden",
}


async def _injected_fault(cluster: Cluster, request: Request) -> Response | None:
    """An injected failure or delay for this request, as the scenario asks."""
    code, delay_s = cluster.draw_api_fault(request.method)
    if delay_s:
        await asyncio.sleep(delay_s)
    if code is None:
        return None
    error = ApiError(code, _FAULT_REASONS[code], f"injected by the simulator: {code}")
    headers = {"Retry-After": str(_retry_after(cluster))} if code == 429 else None
    return JSONResponse(error.status(), status_code=code, headers=headers)


def _retry_after(cluster: Cluster) -> int:
    return max((f.retry_after_s for f in cluster.api_faults), default=1)


def _version() -> K8s:
    return {
        "major": "1",
        "minor": "31",
        "gitVersion": "v1.31.0-healer-sim",
        "gitCommit": "0" * 40,
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.22.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    }


def _missing() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource")


async def _dispatch(cluster: Cluster, request: Request) -> Response:
    parts = [p for p in request.url.path.split("/") if p]
    accept = request.headers.get("accept", "")
    if request.method != "GET" and parts[:1] in (["api"], ["apis"]) and len(parts) <= 3:
        raise ApiError(405, "MethodNotAllowed", f"{request.method} is not allowed here")
    if parts == ["version"]:
        return JSONResponse(_version())
    if parts[:2] == ["openapi", "v3"] and request.method == "GET":
        if len(parts) == 2:
            index = openapi.index()
            index["paths"].update(cluster.custom.openapi_index(openapi.paths_of))
            return JSONResponse(index)
        group_version = openapi.path_group_version(parts[2:])
        text = None
        if group_version:
            custom = cluster.custom.openapi_document(group_version, openapi.paths_of)
            text = custom or openapi.document(group_version)
        if text is None:
            raise _missing()
        return Response(text, media_type="application/json")
    if parts in (["api"], ["apis"]):
        extra = cluster.custom.kinds()
        if discovery.wants_aggregated(accept):
            body = discovery.aggregated(core=parts == ["api"], extra=extra)
            return JSONResponse(body, media_type=discovery.AGGREGATED_V2)
        core = parts == ["api"]
        return JSONResponse(discovery.api_versions() if core else discovery.api_group_list(extra))
    if parts[:1] == ["api"] and len(parts) >= 2:
        group_version, rest = parts[1], parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group_version, rest = f"{parts[1]}/{parts[2]}", parts[3:]
    else:
        raise _missing()
    if not rest:
        listing = discovery.api_resource_list(group_version, cluster.custom.kinds())
        if not listing["resources"]:
            raise _missing()
        return JSONResponse(listing)
    namespace: str | None = None
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    kind = cluster.custom.lookup(group_version, rest[0]) or lookup(group_version, rest[0])
    if not kind.namespaced:
        if namespace is not None:
            raise _missing()  # a Node is not found under a namespace
        namespace = ""  # the cluster scope's key in the store
    if namespace is None and len(rest) > 1:
        raise _missing()  # a namespaced object is addressed within its namespace
    if len(rest) == 1:
        return await _collection(cluster, request, kind, namespace or None)
    if len(rest) == 2:
        assert namespace is not None
        return await _item(cluster, request, kind, namespace, rest[1])
    if len(rest) == 3:
        assert namespace is not None
        return await _subresource(cluster, request, kind, namespace, rest[1], rest[2])
    raise _missing()


def _allowed(kind: Kind, verb: str) -> None:
    if verb not in kind.verbs:
        raise ApiError(
            405,
            "MethodNotAllowed",
            f"the server does not allow this method on the requested resource ({verb} "
            f"{kind.qualified})",
        )


async def _body(request: Request) -> K8s:
    """The request body as a JSON object; 400 Status when it is not one."""
    try:
        value = json.loads(await request.body() or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, "BadRequest", f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ApiError(400, "BadRequest", "the request body must be a JSON object")
    return value


async def _patch_body(request: Request, kind: Kind | None = None) -> tuple[Any, str]:
    """A PATCH request's body and patch type: 415 for a content type that is no patch
    type (before the body is read), 400 for a body of the wrong shape for its type."""
    content_type = patch_type(request.headers.get("content-type", ""))
    custom = kind in GITOPS or isinstance(kind, crds.CustomKind)
    if custom and content_type == STRATEGIC_MERGE_PATCH:
        raise crds.no_strategic_merge()
    try:
        body = json.loads(await request.body() or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, "BadRequest", f"the request body is not valid JSON: {exc}") from exc
    check_patch_body(body, content_type)
    return body, content_type


def _dry(request: Request) -> bool:
    values = request.query_params.getlist("dryRun")
    if any(v != "All" for v in values):
        raise ApiError(400, "BadRequest", f"invalid dry run value {values!r}: only All")
    return bool(values)


def _check_kind(kind: Kind, body: K8s, name: str | None = None) -> None:
    """Reject a body of another kind, or naming another object, as the API server does."""
    if body.get("kind") not in (None, kind.kind):
        raise ApiError(
            400, "BadRequest", f"the kind in the body ({body['kind']}) is not {kind.kind}"
        )
    if body.get("apiVersion") not in (None, kind.group_version):
        raise ApiError(
            400,
            "BadRequest",
            f"the API version in the data ({body['apiVersion']}) does not match the "
            f"expected API version ({kind.group_version})",
        )
    meta = body.get("metadata")
    given = meta.get("name") if isinstance(meta, dict) else None
    if name is not None and given not in (None, name):
        raise ApiError(
            400, "BadRequest", "the name of the object does not match the name on the URL"
        )


_FIELD_VALIDATION = ("Ignore", "Warn", "Strict")


def _field_warnings(request: Request, kind: Kind, body: Any) -> list[str]:
    """``fieldValidation`` on a write: fields the kind's schema does not declare are a
    400 under ``Strict``, a ``Warning`` header each under ``Warn`` (the default)."""
    mode = request.query_params.get("fieldValidation") or "Warn"
    if mode not in _FIELD_VALIDATION:
        raise ApiError(
            400,
            "BadRequest",
            f'fieldValidation parameter "{mode}" is invalid: must be one of '
            + ", ".join(_FIELD_VALIDATION),
        )
    if mode == "Ignore" or not isinstance(body, dict):
        return []  # a JSON patch names paths, not fields
    if isinstance(kind, crds.CustomKind):
        unknown = crds.unknown_fields(kind, body)
    else:
        unknown = openapi.unknown_fields(kind, body)
    if unknown and mode == "Strict":
        raise ApiError(
            400,
            "BadRequest",
            f'{kind.kind} in version "{kind.version}" cannot be handled as a {kind.kind}: '
            "strict decoding error: " + ", ".join(f'unknown field "{f}"' for f in unknown),
        )
    return [f'299 - "unknown field \\"{f}\\""' for f in unknown]


def _warn(response: Response, warnings: list[str]) -> Response:
    for warning in warnings:
        response.headers.append("Warning", warning)
    return response


def _json(request: Request, obj: K8s, *, created: bool = False) -> Response:
    return JSONResponse(obj, status_code=201 if created else 200)


def _as_table(request: Request, cluster: Cluster, kind: Kind, items: list[K8s]) -> Response:
    body = table(
        kind.resource,
        items,
        now=cluster.clock.now(),
        resource_version=cluster.store.resource_version,
        include_object=request.query_params.get("includeObject", "PartialObjectMetadata"),
        printer=crds.printer(kind, human_duration) if isinstance(kind, crds.CustomKind) else None,
    )
    return JSONResponse(body, media_type=_TABLE_TYPE)


def _wants_table(request: Request) -> bool:
    first = request.headers.get("accept", "").split(",")[0].replace(" ", "")
    return "as=Table" in first


async def _collection(
    cluster: Cluster, request: Request, kind: Kind, namespace: str | None
) -> Response:
    if request.method == "GET":
        _allowed(kind, "list")
        if request.query_params.get("watch") in ("1", "true"):
            _allowed(kind, "watch")
            return watch(cluster, request, kind, namespace, as_table=_wants_table(request))
        items = cluster.list_objects(
            kind.resource,
            namespace,
            request.query_params.get("labelSelector"),
            request.query_params.get("fieldSelector"),
        )
        if _wants_table(request):
            return _as_table(request, cluster, kind, items)
        return _json(
            request,
            {
                "apiVersion": kind.group_version,
                "kind": kind.list_kind,
                "metadata": {"resourceVersion": cluster.store.resource_version},
                "items": items,
            },
        )
    if request.method != "POST" or (namespace is None and kind.namespaced):
        raise ApiError(405, "MethodNotAllowed", f"{request.method} is not allowed here")
    _allowed(kind, "create")
    body, dry_run = await _body(request), _dry(request)
    _check_kind(kind, body)
    warnings = _field_warnings(request, kind, body)
    if kind.resource in _WORKLOADS:
        created = cluster.create_workload(kind.resource, namespace or "", body, dry_run=dry_run)
    elif kind.resource == "events":
        created = cluster.create_event(namespace or "", body, dry_run=dry_run)
    else:
        created = cluster.create_object(kind.resource, namespace or "", body, dry_run=dry_run)
    return _warn(_json(request, created, created=True), warnings)


async def _item(
    cluster: Cluster, request: Request, kind: Kind, namespace: str, name: str
) -> Response:
    resource = kind.resource
    if request.method == "GET":
        _allowed(kind, "get")
        found = cluster.get_object(resource, namespace, name)
        return (
            _as_table(request, cluster, kind, [found])
            if _wants_table(request)
            else _json(request, found)
        )
    if request.method == "DELETE":
        _allowed(kind, "delete")
        options = json.loads(await request.body() or b"{}")
        preconditions = options.get("preconditions") if isinstance(options, dict) else None
        version = (preconditions or {}).get("resourceVersion")
        gone = cluster.delete_object(
            resource, namespace, name, dry_run=_dry(request), resource_version=version
        )
        if resource == "pods":
            return _json(request, gone)  # pods are deleted gracefully: the object comes back
        details = {"name": name, "group": kind.group, "kind": resource}
        details["uid"] = gone["metadata"]["uid"]
        return _json(
            request,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": details,
            },
        )
    dry_run = _dry(request)
    if request.method == "PUT":
        _allowed(kind, "update")
        body = await _body(request)
        _check_kind(kind, body, name)
        warnings = _field_warnings(request, kind, body)
        if resource in _WORKLOADS:
            replaced = cluster.replace_workload(resource, namespace, name, body, dry_run=dry_run)
        else:
            assert resource in PLAIN or isinstance(kind, crds.CustomKind)
            replaced = cluster.replace_object(resource, namespace, name, body, dry_run=dry_run)
        return _warn(_json(request, replaced), warnings)
    if request.method == "PATCH":
        _allowed(kind, "patch")
        patch, content_type = await _patch_body(request, kind)
        fields = strip_directives(patch) if content_type == STRATEGIC_MERGE_PATCH else patch
        warnings = _field_warnings(request, kind, fields)
        if resource in _WORKLOADS:
            patched = cluster.patch_workload(
                resource, namespace, name, patch, content_type, dry_run=dry_run
            )
        else:
            assert resource in PLAIN or isinstance(kind, crds.CustomKind)
            patched = cluster.patch_object(
                resource, namespace, name, patch, content_type, dry_run=dry_run
            )
        return _warn(_json(request, patched), warnings)
    raise ApiError(405, "MethodNotAllowed", f"{request.method} is not allowed on an object")


async def _subresource(
    cluster: Cluster, request: Request, kind: Kind, namespace: str, name: str, sub: str
) -> Response:
    resource = kind.resource
    scalable = any(s.name == "scale" for s in kind.subresources)
    if resource in _WORKLOADS and scalable and sub == "scale":
        if request.method == "GET":
            return _json(request, cluster.get_scale(namespace, name, resource=resource))
        dry_run = _dry(request)
        if request.method == "PATCH":
            patch, content_type = await _patch_body(request)
            return _json(
                request,
                cluster.patch_scale(
                    namespace, name, patch, content_type, dry_run=dry_run, resource=resource
                ),
            )
        if request.method == "PUT":
            body = await _body(request)
            return _json(
                request,
                cluster.replace_scale(namespace, name, body, dry_run=dry_run, resource=resource),
            )
        raise ApiError(405, "MethodNotAllowed", f"{request.method} is not allowed on scale")
    if any(s.name == sub == "status" for s in kind.subresources):
        return await _status(cluster, request, kind, namespace, name)
    if kind.resource == "pods" and sub == "eviction":
        if request.method != "POST":
            raise ApiError(405, "MethodNotAllowed", f"{request.method} is not allowed on eviction")
        body, dry_run = await _body(request), _dry(request)
        if body.get("kind") not in (None, "Eviction"):
            raise ApiError(
                400, "BadRequest", f"the kind in the body ({body['kind']}) is not Eviction"
            )
        options = body.get("deleteOptions") or {}
        dry_run = dry_run or "All" in (options.get("dryRun") or [])
        return _json(
            request, cluster.evict_pod(namespace, name, body, dry_run=dry_run), created=True
        )
    raise _missing()


async def _status(
    cluster: Cluster, request: Request, kind: Kind, namespace: str, name: str
) -> Response:
    """The ``status`` subresource: the object, whose status alone a write changes."""
    if request.method == "GET":
        return _json(request, cluster.get_object(kind.resource, namespace, name))
    dry_run = _dry(request)
    if request.method == "PATCH":
        patch, content_type = await _patch_body(request, kind)
        written = cluster.write_status(
            kind.resource, namespace, name, patch, patch_type=content_type, dry_run=dry_run
        )
        return _json(request, written)
    if request.method == "PUT":
        body = await _body(request)
        _check_kind(kind, body, name)
        written = cluster.write_status(kind.resource, namespace, name, body, dry_run=dry_run)
        return _json(request, written)
    raise ApiError(405, "MethodNotAllowed", f"{request.method} is not allowed on status")


def serve_in_thread(cluster: Cluster, *, host: str = "127.0.0.1", port: int = 0) -> ServerThread:
    return ServerThread(create_api(cluster), bind(host, port)).start()


def write_kubeconfig(path: Path, server_url: str, *, context: str = "healer-sim") -> Path:
    """Write a kubeconfig that points a Kubernetes client at the simulated API server."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": context,
        "clusters": [{"name": context, "cluster": {"server": server_url}}],
        "users": [{"name": context, "user": {"token": "healer-sim-token"}}],
        "contexts": [
            {
                "name": context,
                "context": {"cluster": context, "user": context, "namespace": "default"},
            }
        ],
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
    except OSError as exc:
        raise ConfigError(f"cannot write kubeconfig {path}: {exc.strerror}") from exc
    return path
