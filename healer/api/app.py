"""The HTTP API over the audit store, built by ``create_app`` (never at import time).

Routes are thin: they parse query parameters (FastAPI answers 422 naming a bad one),
call the store and shape the answer with ``schemas``. The store and the daemon's status
callable are passed in and kept on ``app.state``; routes reach them through ``Annotated``
dependencies, so tests build an app around a store on a temporary file.

Routes are plain ``def``: the store is synchronous, and FastAPI runs them in its thread
pool, which the store supports (one session per call).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import JsonValue

from healer.api.deps import ReadinessDep, ReadinessFn, StatusDep, StatusFn, StoreDep
from healer.api.pages import router as pages
from healer.api.schemas import Health, IncidentDetailOut, IncidentItem, IncidentPage
from healer.audit import AuditStore
from healer.errors import StoreError
from healer.types import Cause, IncidentStatus

MAX_PAGE = 500
"""Largest page of incidents: a few hundred rows keep a response under ~1 MB."""


def create_app(
    *, store: AuditStore, status: StatusFn | None = None, readiness: ReadinessFn | None = None
) -> FastAPI:
    """An app serving ``store``; ``status`` reports the daemon's state for /api/v1/status,
    ``readiness`` why it is not ready (an empty list when it is) for /readyz."""
    app = FastAPI(title="healer", version="0.1.0")
    app.state.store = store
    app.state.status = status
    app.state.readiness = readiness
    app.add_exception_handler(StoreError, _store_unavailable)
    app.add_api_route("/healthz", healthz, methods=["GET"], response_model=Health)
    app.add_api_route("/readyz", readyz, methods=["GET"])
    app.add_api_route("/api/v1/incidents", list_incidents, methods=["GET"])
    app.add_api_route("/api/v1/incidents/{incident_id}", get_incident, methods=["GET"])
    app.add_api_route("/api/v1/status", get_daemon_status, methods=["GET"])
    app.include_router(pages)
    return app


def healthz() -> Health:
    return Health(status="ok")


def readyz(store: StoreDep, readiness: ReadinessDep) -> JSONResponse:
    """200 when the store answers and the loop is cycling on fresh metrics; 503 with the
    reasons otherwise (what a Kubernetes readiness probe and a person both need)."""
    reasons = list(readiness()) if readiness else []
    try:
        store.list_incidents(limit=1)
    except StoreError as exc:
        reasons.insert(0, f"audit store unavailable: {exc}")
    body = {"status": "ready" if not reasons else "not ready", "reasons": reasons}
    return JSONResponse(body, status_code=503 if reasons else 200)


def list_incidents(
    store: StoreDep,
    status: IncidentStatus | None = None,
    namespace: str | None = None,
    workload: str | None = None,
    cause: Cause | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[
        int | None, Query(ge=1, description="next_cursor of the previous page")
    ] = None,
) -> IncidentPage:
    """Incidents newest first, filtered, one page at a time (keyset pagination on id)."""
    rows = store.list_incidents(
        status=status,
        namespace=namespace,
        workload=workload,
        cause=cause,
        limit=limit + 1,  # one more than asked tells whether a next page exists
        before_id=cursor,
    )
    page = rows[:limit]
    next_cursor = page[-1].id if len(rows) > limit else None
    return IncidentPage(items=[IncidentItem.from_summary(r) for r in page], next_cursor=next_cursor)


def get_incident(store: StoreDep, incident_id: int) -> IncidentDetailOut:
    detail = store.get_incident(incident_id)
    if detail is None:
        raise HTTPException(status_code=404, detail=f"incident {incident_id} not found")
    return IncidentDetailOut.from_detail(detail)


def get_daemon_status(status: StatusDep) -> dict[str, JsonValue]:
    return dict(status()) if status is not None else {}


async def _store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    # 503: the store is down or damaged, the request itself may well be fine. The
    # message stays generic: database errors can quote SQL and file paths.
    return JSONResponse(status_code=503, content={"detail": "audit store unavailable"})
