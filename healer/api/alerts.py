"""``POST /api/v1/alerts``: Alertmanager's webhook receiver.

Alertmanager posts each notification of a group as its webhook payload, version "4"
(``AlertmanagerWebhook``), with the bearer token of its ``http_config.authorization``.
The delivery is validated whole, stored whole (``AlertInbox.record_alerts``, one
transaction) and only then answered 200; the daemon's cycle reads the alerts from the
store and joins them to incidents. Nothing is decided here, so the answer is fast.

Decisions:

- Alertmanager's tokens are their own list (``alertmanager.receiver_tokens``), not a
  role of ``api.tokens``: the token written into Alertmanager's configuration may
  deliver alerts and do nothing else, and no route of the API has to learn to refuse
  it.
- Alertmanager retries a delivery answered 5xx, and not one answered 4xx: a store that
  is down answers 503 (the app's ``StoreError`` handler) and nothing of the delivery is
  kept, so the retry stores it once; a payload that is not Alertmanager's is a 422
  naming the field, which no retry would mend.
- The payload's models forbid unknown fields, as every body of the API does: a
  different payload version or another sender's body is refused, not half-read. The
  body size limit (``api.max_body_bytes``) refuses an over-large delivery before it is
  read whole; Alertmanager's ``max_alerts`` keeps a group's payload under it.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import structlog
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from healer.api.auth import hash_token
from healer.api.deps import ClockDep
from healer.audit.roles import AlertInbox
from healer.config import ReceiverToken
from healer.types import Alert, AlertStatus

log = structlog.get_logger("healer.api.alerts")

MAX_LABEL_CHARS = 4096
"""Longest label or annotation value kept; Prometheus allows any length, but a value
longer than a page is a mistake upstream, refused with the label named."""


def _utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:  # year 1 with a positive offset, and the like
        raise ValueError("out of range once converted to UTC") from exc


When = Annotated[AwareDatetime, AfterValidator(_utc)]
Text = Annotated[str, Field(max_length=MAX_LABEL_CHARS)]
LabelName = Annotated[str, Field(min_length=1, max_length=255)]


def _has_alertname(labels: dict[str, str]) -> dict[str, str]:
    if not labels.get("alertname"):
        raise ValueError("an alert's labels must include alertname")
    return labels


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class AlertmanagerAlert(_In):
    """One item of the payload's ``alerts``."""

    status: Literal["firing", "resolved"]
    labels: Annotated[dict[LabelName, Text], AfterValidator(_has_alertname)]
    annotations: dict[LabelName, Text] = {}
    starts_at: When = Field(alias="startsAt")
    ends_at: When | None = Field(default=None, alias="endsAt")
    generator_url: Text = Field(default="", alias="generatorURL")
    fingerprint: str = Field(min_length=1, max_length=64, pattern=r"^[0-9a-zA-Z]+$")


class AlertmanagerWebhook(_In):
    """Alertmanager's webhook payload, version 4 (Alertmanager 0.x)."""

    version: Literal["4"]
    group_key: Text = Field(default="", alias="groupKey")
    truncated_alerts: int = Field(default=0, ge=0, alias="truncatedAlerts")
    status: Literal["firing", "resolved"]
    receiver: Annotated[str, Field(max_length=255)]
    group_labels: dict[LabelName, Text] = Field(default={}, alias="groupLabels")
    common_labels: dict[LabelName, Text] = Field(default={}, alias="commonLabels")
    common_annotations: dict[LabelName, Text] = Field(default={}, alias="commonAnnotations")
    external_url: Text = Field(default="", alias="externalURL")
    alerts: list[AlertmanagerAlert] = Field(min_length=1)

    def values(self) -> list[Alert]:
        return [
            Alert(
                fingerprint=a.fingerprint,
                name=a.labels["alertname"],
                status=AlertStatus(a.status),
                starts_at=a.starts_at,
                ends_at=a.ends_at if a.status == "resolved" else None,
                labels=a.labels,
                annotations=a.annotations,
                generator_url=a.generator_url,
                receiver=self.receiver,
            )
            for a in self.alerts
        ]


class AlertsAccepted(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    new: int
    """Alerts the store had not seen."""
    resolved: int
    """Firing alerts this delivery resolved."""
    unchanged: int
    """Alerts repeated as the store already had them."""


class ReceiverTokens:
    """``alertmanager.receiver_tokens``, looked up by the hash of what a client sends."""

    def __init__(self, tokens: Sequence[ReceiverToken]) -> None:
        self._tokens = tuple(tokens)

    def find(self, token: str | None) -> str | None:
        """The name of the token's holder, or None."""
        if not token:
            return None
        digest, found = hash_token(token), None
        for entry in self._tokens:  # no early exit: time does not depend on the match
            if hmac.compare_digest(entry.sha256, digest):
                found = entry.name
        return found


_bearer = HTTPBearer(
    auto_error=False, description="A token from alertmanager.receiver_tokens in the settings."
)


async def sender(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The Alertmanager delivering; 401 without a receiver token."""
    tokens = request.app.state.receivers
    if not isinstance(tokens, ReceiverTokens):  # app.state is untyped: check once here
        raise RuntimeError("app.state.receivers is not a ReceiverTokens")
    token = credentials.credentials if credentials else None
    name = tokens.find(token)
    if name is None:
        detail = "invalid receiver token" if token else "missing bearer token"
        raise HTTPException(401, detail=detail, headers={"WWW-Authenticate": "Bearer"})
    return name


async def get_inbox(request: Request) -> AlertInbox:
    inbox = request.app.state.alerts
    if not isinstance(inbox, AlertInbox):
        raise HTTPException(503, detail="this server's audit store does not keep alerts")
    return inbox


Sender = Annotated[str, Depends(sender)]
InboxDep = Annotated[AlertInbox, Depends(get_inbox)]

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "a body that cannot be parsed"},
    401: {"description": "missing or invalid receiver token"},
    413: {"description": "body larger than api.max_body_bytes"},
    422: {"description": "not Alertmanager's webhook payload, version 4"},
    503: {"description": "audit store unavailable: nothing was stored, send it again"},
}
router = APIRouter(prefix="/api/v1", tags=["alerts"], responses=_ERRORS)


@router.post("/alerts")
def receive_alerts(
    by: Sender, inbox: InboxDep, clock: ClockDep, payload: AlertmanagerWebhook
) -> AlertsAccepted:
    """Store Alertmanager's delivery whole, then answer; idempotent per alert firing."""
    recorded = inbox.record_alerts(payload.values(), at=clock())
    log.info(
        "alerts_received",
        sender=by,
        receiver=payload.receiver,
        alerts=len(payload.alerts),
        new=recorded.new,
        resolved=recorded.resolved,
    )
    return AlertsAccepted(
        new=recorded.new, resolved=recorded.resolved, unchanged=recorded.unchanged
    )
