"""Escalation: telling a person that healer stopped and why, through webhooks.

Two bodies, because receivers differ: a generic JSON document with every field a
pager or ticketing bridge keys on, and a Slack-compatible one (``text`` plus
``blocks``), which Slack's incoming webhooks and most chat tools (Mattermost, Rocket.Chat,
Teams' Slack-compatible connectors) accept.

Decisions:

- Delivery is best effort with a short retry (network errors, 429 and 5xx, backing
  off), and it never raises: an unreachable receiver must not stop the loop. What was
  delivered and what failed is returned, for the log.
- The body builders are pure, so what a receiver gets is testable without a network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import httpx
import structlog
from tenacity import (
    RetryError,
    retry,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from healer.config import EscalationSettings
from healer.types import JsonObject, WorkloadRef

log = structlog.get_logger("healer.escalation")


@dataclass(frozen=True)
class Escalation:
    """One incident handed to a person."""

    incident_id: int
    workload: WorkloadRef
    at: datetime
    reason: str
    cause: str | None = None
    playbook: str | None = None
    action: str | None = None


def generic_body(escalation: Escalation) -> JsonObject:
    e = escalation
    return {
        "event": "healer.escalation",
        "incident_id": e.incident_id,
        "namespace": e.workload.namespace,
        "kind": e.workload.kind,
        "name": e.workload.name,
        "at": e.at.isoformat(),
        "reason": e.reason,
        "cause": e.cause,
        "playbook": e.playbook,
        "action": e.action,
    }


def slack_body(escalation: Escalation) -> JsonObject:
    e = escalation
    title = f"healer escalated incident {e.incident_id} on {e.workload}"
    facts = [
        f"*cause:* {e.cause or 'unknown'}",
        f"*playbook:* {e.playbook or 'none'}",
        f"*action:* {e.action or 'none'}",
    ]
    return {
        "text": f"{title}: {e.reason}",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": e.reason[:3000]}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f} for f in facts]},
        ],
    }


class _Retryable(Exception):
    """A 429 or 5xx answer: worth another attempt."""


class WebhookNotifier:
    """POSTs escalations to the configured generic and Slack-compatible webhooks."""

    def __init__(
        self, settings: EscalationSettings, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        self._settings = settings
        self._client = httpx.Client(timeout=settings.timeout_s, transport=transport)

    def close(self) -> None:
        self._client.close()

    def notify(self, escalation: Escalation) -> list[str]:
        """Deliver to every receiver; returns one error line per receiver that failed."""
        targets: Sequence[tuple[str, JsonObject]] = [
            *((url, generic_body(escalation)) for url in self._settings.webhook_urls),
            *((url, slack_body(escalation)) for url in self._settings.slack_webhook_urls),
        ]
        errors = []
        for url, body in targets:
            error = self._post(url, body)
            if error is not None:
                errors.append(error)
                log.warning("escalation_undelivered", url=url, error=error)
            else:
                log.info("escalation_delivered", url=url, incident_id=escalation.incident_id)
        return errors

    def _post(self, url: str, body: JsonObject) -> str | None:
        attempt = retry(
            retry=retry_if_exception_type((_Retryable, httpx.TransportError)),
            stop=stop_after_attempt(self._settings.retries + 1),
            wait=wait_exponential(multiplier=self._settings.backoff_s, max=30),
        )(self._post_once)
        try:
            attempt(url, body)
        except RetryError as exc:
            last = exc.last_attempt.exception()
            return f"{url}: {last}"
        except httpx.HTTPError as exc:
            return f"{url}: {exc}"
        except _PermanentFailure as exc:
            return f"{url}: {exc}"
        return None

    def _post_once(self, url: str, body: JsonObject) -> None:
        answer = self._client.post(url, json=body)
        if answer.status_code == 429 or answer.status_code >= 500:
            raise _Retryable(f"{answer.status_code} {answer.text[:200]}")
        if answer.status_code >= 400:
            raise _PermanentFailure(f"{answer.status_code} {answer.text[:200]}")


class _PermanentFailure(Exception):
    """A 4xx answer other than 429: the receiver refuses the body; retrying won't help."""
