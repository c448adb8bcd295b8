"""The review page: the incident list and each incident's story, rendered on the server.

Plain HTML from Jinja2 templates shipped in the package: no front-end build step, no
JavaScript needed to read what healer saw, decided and did.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from healer.api.deps import StoreDep
from healer.types import IncidentStatus

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def incident_list(
    request: Request, store: StoreDep, status: IncidentStatus | None = None
) -> HTMLResponse:
    incidents = store.list_incidents(status=status, limit=200)
    return templates.TemplateResponse(
        request,
        "incidents.html",
        {"incidents": incidents, "status": status, "statuses": list(IncidentStatus)},
    )


@router.get("/incidents/{incident_id}", response_class=HTMLResponse)
def incident_page(request: Request, store: StoreDep, incident_id: int) -> HTMLResponse:
    detail = store.get_incident(incident_id)
    if detail is None:
        raise HTTPException(status_code=404, detail=f"incident {incident_id} not found")
    return templates.TemplateResponse(request, "incident.html", {"incident": detail})
