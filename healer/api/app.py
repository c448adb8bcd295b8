"""The HTTP API over the audit store, built by ``create_app`` (never at import time).

``/api/v1`` (``routes.py``) needs a bearer token; Alertmanager delivers to
``/api/v1/alerts`` (``alerts.py``) with a receiver token of its own, pipelines and forges
to ``/api/v1/releases`` (``releases.py``) with theirs; ``/healthz``, ``/readyz`` and
``/metrics`` are open, for probes and Prometheus; the review page (``pages.py``) logs in
with the same tokens through a cookie. OpenAPI at ``/openapi.json``, docs at ``/docs``.

Routes are plain ``def``: the store is synchronous, and FastAPI runs them in its thread
pool, which the store supports (one session per call).

Errors: a bad request is a 4xx whose body names the field, id or cursor at fault
(422 for parameters and bodies, never echoing a long value whole, 413 for a body over
``api.max_body_bytes``, 404 unknown id, 409 not pending or of a resolved incident, 400
bad cursor); a store that cannot answer is a 503 with no database detail.
``hardening.py`` holds the limits and the security headers.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import Receive, Scope, Send

from healer.api.alerts import ReceiverTokens
from healer.api.alerts import router as alert_routes
from healer.api.attention import router as attention_routes
from healer.api.auth import Sessions, TokenTable
from healer.api.cursor import CursorSigner
from healer.api.deps import AppContext, Clock, ReadinessDep, ReadinessFn, StatusFn, StoreDep
from healer.api.hardening import (
    BodyLimit,
    LoginThrottle,
    SecurityHeaders,
    security_headers,
    validation_error,
)
from healer.api.listing import PATH, STORE_UNAVAILABLE, ListAnswers
from healer.api.metrics import registry_for
from healer.api.pages import router as pages
from healer.api.releases import ReleaseGate, Watched
from healer.api.releases import router as release_routes
from healer.api.routes import router as api_routes
from healer.api.schemas import Health
from healer.audit.roles import AlertInbox, Attention, ReleaseLog, ReviewQueue
from healer.config import Settings
from healer.decide import Playbook
from healer.errors import IllegalTransition, ReviewConflict, StoreError, UnknownRecord
from healer.logs import Throttled

log = structlog.get_logger(__name__)


def _wall_clock() -> datetime:
    return datetime.now(UTC)


class HealerApi(FastAPI):
    """The API's app: FastAPI, with the incident list's pages answered first
    (``listing.ListAnswers``) when they can be, ahead of the middleware stack (error
    pages, body limits, security headers): for a GET without a body and with a valid
    token, those have nothing to do but add the security headers, which the answer
    carries itself."""

    lists: ListAnswers | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A fault in the list's own answer would otherwise log a traceback per request.
        self.list_failures = Throttled(log, "incident_list_answer_failed")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.lists is not None and scope["type"] == "http":
            try:
                page = await self.lists.page(scope)
            except StoreError:
                await self.lists.send_unavailable(send)
                return
            except Exception:
                # Nothing was sent: the route answers instead, through the error
                # handling of the middleware stack, should it fail again.
                self.list_failures.exception(path=scope["path"])
                page = None
            if page is not None:
                await self.lists.send(page, send)
                return
        await super().__call__(scope, receive, send)


def create_app(
    *,
    store: ReviewQueue,
    status: StatusFn | None = None,
    readiness: ReadinessFn | None = None,
    settings: Settings | None = None,
    playbooks: Sequence[Playbook] = (),
    models_dir: Path | None = None,
    clock: Clock = _wall_clock,
    alerts: AlertInbox | None = None,
    watched: Watched | None = None,
) -> FastAPI:
    """An app serving ``store``.

    ``status`` reports the daemon's state for /api/v1/status and /metrics, ``readiness``
    why it is not ready (an empty list when it is) for /readyz. ``settings`` gives the
    tokens (api.tokens), the cursor key and the guard limits shown in the status.
    ``clock`` stamps reviews and labels: the simulated clock in the demo.
    ``alerts`` keeps Alertmanager's deliveries: ``store`` itself when it keeps alerts.
    ``watched`` says which workloads the daemon beside the API watches, so that a
    release of another is answered ``known: false`` (``releases.py``).
    """
    settings = settings or Settings()
    app = HealerApi(title="healer", version="0.1.0", description=__doc__)
    app.state.store = store
    app.state.status = status
    app.state.readiness = readiness
    app.state.clock = clock
    app.state.tokens = TokenTable(settings.api.tokens)
    app.state.alerts = alerts if alerts is not None else _inbox_of(store)
    app.state.attention = store if isinstance(store, Attention) else None
    app.state.receivers = ReceiverTokens(settings.alertmanager.receiver_tokens)
    app.state.releases = store if isinstance(store, ReleaseLog) else None
    app.state.release_gate = ReleaseGate(settings.releases, app.state.tokens)
    app.state.watched = watched
    secret = settings.api.cursor_secret
    key = secret.get_secret_value().encode() if secret else secrets.token_bytes(32)
    app.state.sessions = Sessions(settings.api.tokens, key=key)
    app.state.login_throttle = LoginThrottle(
        failures=settings.api.login_failures, window_s=settings.api.login_window_s
    )
    app.state.context = AppContext(
        cursors=CursorSigner(key),
        playbooks=tuple(playbooks),
        models_dir=models_dir,
        guards=settings.guards,
    )
    app.lists = ListAnswers(
        pages=app.state.context.pages,
        store=store,
        tokens=app.state.tokens,
        cursors=app.state.context.cursors,
        readers=app.state.context.readers,
        headers=security_headers(PATH),
    )
    # Added last, so run first: the body limit before anything reads the body.
    app.add_middleware(SecurityHeaders)
    app.add_middleware(BodyLimit, max_bytes=settings.api.max_body_bytes)
    registry = registry_for(store, status)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(UnknownRecord, _not_found)
    app.add_exception_handler(ReviewConflict, _conflict)
    app.add_exception_handler(IllegalTransition, _conflict)
    app.add_exception_handler(StoreError, _store_unavailable)
    app.add_api_route("/healthz", healthz, methods=["GET"], response_model=Health)
    app.add_api_route("/readyz", readyz, methods=["GET"])

    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    app.add_api_route("/metrics", metrics, methods=["GET"], include_in_schema=False)
    app.include_router(api_routes)
    app.include_router(attention_routes)
    app.include_router(alert_routes)
    app.include_router(release_routes)
    app.include_router(pages)
    return app


def _inbox_of(store: ReviewQueue) -> AlertInbox | None:
    return store if isinstance(store, AlertInbox) else None


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


async def _not_found(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(status_code=404, content={"detail": str(exc)})


async def _conflict(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(status_code=409, content={"detail": str(exc)})


async def _store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    # 503: the store is down or damaged, the request itself may well be fine. The
    # message stays generic: database errors can quote SQL and file paths.
    return JSONResponse(status_code=503, content=STORE_UNAVAILABLE)
