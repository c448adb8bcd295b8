"""The simulated cluster's Kubernetes API, over real HTTP, plus its ``/metrics``.

It answers the requests the official ``kubernetes`` client and kubectl make, with the
same paths, content types, status codes and ``Status`` error bodies as a real API
server, so that healer's actuator cannot tell it from a cluster. ``serve_in_thread``
runs it on a loopback port (uvicorn in a daemon thread) and ``write_kubeconfig`` writes
the kubeconfig a client uses to reach it.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvicorn
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from healer.errors import ConfigError
from healer.sim.cluster import Cluster
from healer.sim.exposition import render_metrics
from healer.sim.objects import ApiError

Handler = Callable[[Request], Awaitable[Response]]

_LIST_KINDS = {
    "deployments": ("apps/v1", "DeploymentList"),
    "replicasets": ("apps/v1", "ReplicaSetList"),
    "pods": ("v1", "PodList"),
    "events": ("v1", "EventList"),
}

_RESOURCES = {
    "v1": [
        ("pods", "Pod", True, ["get", "list", "delete"]),
        ("events", "Event", True, ["create", "get", "list"]),
    ],
    "apps/v1": [
        ("deployments", "Deployment", True, ["create", "delete", "get", "list", "patch", "update"]),
        ("deployments/scale", "Scale", True, ["get", "patch", "update"]),
        ("replicasets", "ReplicaSet", True, ["get", "list"]),
    ],
}


def create_api(cluster: Cluster) -> Starlette:
    """The Starlette app serving ``cluster``'s API; every handler holds the cluster lock."""

    def guarded(fn: Callable[[Request], Awaitable[Any]]) -> Handler:
        async def handler(request: Request) -> Response:
            try:
                result = await fn(request)
            except ApiError as exc:
                return JSONResponse(exc.status(), status_code=exc.code)
            if isinstance(result, Response):
                return result
            return JSONResponse(result, status_code=201 if request.method == "POST" else 200)

        return handler

    async def body(request: Request) -> Any:
        try:
            return json.loads(await request.body() or b"null")
        except json.JSONDecodeError as exc:
            raise ApiError(400, "BadRequest", f"the request body is not valid JSON: {exc}") from exc

    def dry(request: Request) -> bool:
        value = request.query_params.get("dryRun")
        if value not in (None, "All"):
            raise ApiError(400, "BadRequest", f"invalid dry run value {value!r}: only All")
        return value == "All"

    def object_body(value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise ApiError(400, "BadRequest", "the request body must be a JSON object")
        return value

    def content_type(request: Request) -> str:
        return request.headers.get("content-type", "")

    async def listing(request: Request, resource: str | None = None) -> Any:
        resource = resource or request.path_params["resource"]
        if resource not in _LIST_KINDS:
            raise ApiError(404, "NotFound", f"the server could not find resource {resource}")
        items = cluster.list_objects(
            resource,
            request.path_params.get("ns"),
            request.query_params.get("labelSelector"),
            request.query_params.get("fieldSelector"),
        )
        api_version, kind = _LIST_KINDS[resource]
        return {
            "apiVersion": api_version,
            "kind": kind,
            "items": items,
            "metadata": {"resourceVersion": cluster.store.resource_version},
        }

    async def deployments(request: Request) -> Any:
        ns = request.path_params["ns"]
        if request.method == "POST":
            return cluster.create_deployment(
                ns, object_body(await body(request)), dry_run=dry(request)
            )
        return await listing(request, "deployments")

    async def deployment(request: Request) -> Any:
        ns, name = request.path_params["ns"], request.path_params["name"]
        if request.method == "GET":
            return cluster.get_object("deployments", ns, name)
        if request.method == "PATCH":
            return cluster.patch_deployment(
                ns, name, await body(request), content_type(request), dry_run=dry(request)
            )
        if request.method == "PUT":
            return cluster.replace_deployment(
                ns, name, object_body(await body(request)), dry_run=dry(request)
            )
        gone = cluster.delete_object("deployments", ns, name)
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Success",
            "details": {
                "name": name,
                "group": "apps",
                "kind": "deployments",
                "uid": gone["metadata"]["uid"],
            },
        }

    async def scale(request: Request) -> Any:
        ns, name = request.path_params["ns"], request.path_params["name"]
        if request.method == "GET":
            return cluster.get_scale(ns, name)
        if request.method == "PATCH":
            return cluster.patch_scale(
                ns, name, await body(request), content_type(request), dry_run=dry(request)
            )
        return cluster.replace_scale(
            ns, name, object_body(await body(request)), dry_run=dry(request)
        )

    async def named(request: Request) -> Any:
        resource = request.path_params["resource"]
        ns, name = request.path_params["ns"], request.path_params["name"]
        if resource not in _LIST_KINDS:
            raise ApiError(404, "NotFound", f"the server could not find resource {resource}")
        if request.method == "DELETE" and resource == "pods":
            return cluster.delete_object(resource, ns, name)
        if request.method == "DELETE":
            raise ApiError(405, "MethodNotAllowed", f"delete is not supported on {resource}")
        return cluster.get_object(resource, ns, name)

    async def events(request: Request) -> Any:
        if request.method == "POST":
            return cluster.create_event(request.path_params["ns"], object_body(await body(request)))
        return await listing(request, "events")

    async def version(request: Request) -> Any:
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

    async def core_groups(request: Request) -> Any:
        return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}

    async def groups(request: Request) -> Any:
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [
                {
                    "name": "apps",
                    "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
                    "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"},
                }
            ],
        }

    def resource_list(group_version: str) -> Handler:
        async def handler(request: Request) -> Any:
            return {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": group_version,
                "resources": [
                    {"name": n, "singularName": "", "namespaced": ns, "kind": k, "verbs": verbs}
                    for n, k, ns, verbs in _RESOURCES[group_version]
                ],
            }

        return handler

    async def metrics(request: Request) -> Response:
        with cluster.lock:
            if not cluster.metrics_available():  # a scrape gap in the scenario
                return PlainTextResponse("scrape gap\n", status_code=503)
            text = render_metrics(cluster)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    async def missing(request: Request) -> Any:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")

    rw = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    routes = [
        Route("/version", guarded(version)),
        Route("/api", guarded(core_groups)),
        Route("/apis", guarded(groups)),
        Route("/api/v1", guarded(resource_list("v1"))),
        Route("/apis/apps/v1", guarded(resource_list("apps/v1"))),
        Route("/metrics", metrics),
        Route(
            "/apis/apps/v1/namespaces/{ns}/deployments",
            guarded(deployments),
            methods=["GET", "POST"],
        ),
        Route(
            "/apis/apps/v1/namespaces/{ns}/deployments/{name}",
            guarded(deployment),
            methods=["GET", "PUT", "PATCH", "DELETE"],
        ),
        Route(
            "/apis/apps/v1/namespaces/{ns}/deployments/{name}/scale",
            guarded(scale),
            methods=["GET", "PUT", "PATCH"],
        ),
        Route("/apis/apps/v1/namespaces/{ns}/events", guarded(missing), methods=rw),
        Route("/api/v1/namespaces/{ns}/events", guarded(events), methods=["GET", "POST"]),
        Route("/apis/apps/v1/namespaces/{ns}/{resource}", guarded(listing)),
        Route("/apis/apps/v1/{resource}", guarded(listing)),
        Route("/api/v1/namespaces/{ns}/{resource}", guarded(listing)),
        Route("/api/v1/{resource}", guarded(listing)),
        Route(
            "/apis/apps/v1/namespaces/{ns}/{resource}/{name}",
            guarded(named),
            methods=["GET", "DELETE"],
        ),
        Route(
            "/api/v1/namespaces/{ns}/{resource}/{name}", guarded(named), methods=["GET", "DELETE"]
        ),
    ]
    return Starlette(routes=routes)


def bind(host: str, port: int) -> socket.socket:
    """Bind a listening socket; a port in use is a ConfigError naming it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.listen(128)
    return sock


class ServerThread:
    """An ASGI app served by uvicorn on an already-bound socket, in a daemon thread."""

    def __init__(self, app: Any, sock: socket.socket) -> None:
        self.sock = sock
        host, port = sock.getsockname()[:2]
        self.url = f"http://{host}:{port}"
        config = uvicorn.Config(app, log_level="error", lifespan="off", access_log=False)
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"http-{port}")

    def _run(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.sock]))

    def start(self) -> ServerThread:
        self._thread.start()
        while not self.server.started and self._thread.is_alive():
            threading.Event().wait(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=5)
        self.sock.close()


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
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
