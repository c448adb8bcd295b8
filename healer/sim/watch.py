"""Watches: ``?watch=true`` on a list streams ``WatchEvent`` JSON lines, as the API server does.

``kubectl get -w`` and the official client's ``watch.Watch().stream`` list first, then
watch from the list's ``resourceVersion``; the server answers with a chunked stream of
``{"type": "ADDED"|"MODIFIED"|"DELETED", "object": ...}`` lines for every later write
that matches the namespace and selectors, until ``timeoutSeconds`` (or the server's own
request timeout) ends it. Without a ``resourceVersion`` (or with ``0``) the stream starts
with an ``ADDED`` event per existing object. A version older than the writes the store
still remembers (``ObjectStore.history``, the watch cache) gets one ``ERROR`` event with
a 410 ``Expired`` Status, which tells clients to list again. Tables (kubectl asks for
them) carry their column definitions on the first event only, as the real server sends
them, to save bandwidth.

Selectors are applied before and after each write, as the watch cache applies them: an
object that starts matching is ADDED, one that stops matching DELETED.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

from starlette.requests import Request
from starlette.responses import StreamingResponse

from healer.sim import crds
from healer.sim.cluster import Cluster
from healer.sim.kinds import Kind
from healer.sim.objects import (
    ApiError,
    K8s,
    WatchEvent,
    copy_json,
    field_selector_matches,
    label_selector_matches,
)
from healer.sim.tables import human_duration, table

# How often a watch looks for new writes, seconds: well under a scrape step.
POLL_S = 0.05
# The API server ends a watch without timeoutSeconds after --min-request-timeout (1800 s).
DEFAULT_TIMEOUT_S = 1800.0


def watch(
    cluster: Cluster, request: Request, kind: Kind, namespace: str | None, *, as_table: bool
) -> StreamingResponse:
    """The streaming answer to a watch on ``kind`` (in ``namespace``, or all)."""
    params = request.query_params
    labels, fields = params.get("labelSelector"), params.get("fieldSelector")
    timeout_s = _number(params.get("timeoutSeconds"), "timeoutSeconds", DEFAULT_TIMEOUT_S)
    version = params.get("resourceVersion") or "0"
    # Malformed selectors are a 400 before the stream starts.
    label_selector_matches(labels, {})
    field_selector_matches(fields, {"metadata": {}}, kind.fields)
    with cluster.lock:
        cluster.store.keep_history()
        if version == "0":
            initial = cluster.list_objects(kind.resource, namespace, labels, fields)
            start = int(cluster.store.resource_version)
        else:
            initial, start = [], int(_number(version, "resourceVersion", 0))

    def matches(obj: K8s) -> bool:
        meta = obj["metadata"]
        return (
            namespace in (None, meta.get("namespace"))
            and label_selector_matches(labels, meta.get("labels") or {})
            and field_selector_matches(fields, obj, kind.fields)
        )

    def encode(kind_of_event: str, obj: K8s, first: bool) -> bytes:
        if as_table:
            obj = table(
                kind.resource,
                [obj],
                now=cluster.clock.now(),
                resource_version=obj["metadata"].get("resourceVersion", ""),
                include_object=params.get("includeObject", "PartialObjectMetadata"),
                printer=crds.printer(kind, human_duration)
                if isinstance(kind, crds.CustomKind)
                else None,
            )
            if not first:
                obj["columnDefinitions"] = []
        return (json.dumps({"type": kind_of_event, "object": obj}) + "\n").encode()

    async def events() -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        first = True
        for obj in initial:
            yield encode("ADDED", obj, first)
            first = False
        seen = start
        while loop.time() < deadline:
            with cluster.lock:
                batch = cluster.store.events_since(seen, kind.resource)
            if batch is None:
                yield _expired(seen, cluster)
                return
            for event in batch:
                seen = event.version
                reported = _as_seen(event, matches)
                if reported is not None:
                    yield encode(*reported, first)
                    first = False
            await asyncio.sleep(min(POLL_S, max(0.0, deadline - loop.time())))

    return StreamingResponse(events(), media_type="application/json")


def _as_seen(event: WatchEvent, matches: Callable[[K8s], bool]) -> tuple[str, K8s] | None:
    """The event as a watch with selectors reports it, if at all.

    As the watch cache does: an update that makes an object match is ADDED, one that
    makes it stop matching is DELETED (with the object as it last matched, at the
    event's resourceVersion).
    """
    now = matches(event.object)
    if event.type != "MODIFIED":
        return (event.type, event.object) if now else None
    before = event.previous is not None and matches(event.previous)
    if now:
        return ("MODIFIED" if before else "ADDED", event.object)
    if before and event.previous is not None:
        gone = copy_json(event.previous)
        gone["metadata"]["resourceVersion"] = event.object["metadata"]["resourceVersion"]
        return ("DELETED", gone)
    return None


def _number(value: str | None, name: str, default: float) -> float:
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except ValueError as exc:
        raise ApiError(400, "BadRequest", f"invalid {name} {value!r}: not a number") from exc
    if number < 0:
        raise ApiError(400, "BadRequest", f"invalid {name} {value!r}: negative")
    return number


def _expired(version: int, cluster: Cluster) -> bytes:
    status = ApiError(
        410,
        "Expired",
        f"too old resource version: {version} ({cluster.store.resource_version})",
    ).status()
    return (json.dumps({"type": "ERROR", "object": status}) + "\n").encode()
