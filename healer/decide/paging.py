"""What each receiver gets for an escalation and for a healed incident: pure bodies.

One function per receiver kind, each taking the page (``Escalation`` or ``Resolution``)
and the incident's link, returning the JSON the receiver's API takes, so what a pager
or a chat gets is testable without a network.

- Generic webhook: one flat document with every field a bridge keys on, ``event``
  saying which it is (``healer.escalation``, ``healer.resolution``).
- Slack (and the chats that take its incoming-webhook body): ``text`` and ``blocks``.
- Microsoft Teams: an Adaptive Card in a ``message`` attachment, which both the
  Workflows webhooks and the older Office 365 connectors accept.
- PagerDuty Events API v2: ``trigger`` with ``dedup_key`` naming the incident, and
  ``resolve`` with the same key, which closes the PagerDuty incident it opened.
- Opsgenie Alert API: create with ``alias`` naming the incident, close by that alias.

Decisions: the dedup key and the alias are ``healer-incident-{id}``, the incident's id
in the audit store (one store per healer, or one shared by the clusters' healers, so it
is unique where the pages go); texts are cut to each API's documented limits, so a long
story never makes a receiver refuse the page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from healer.types import JsonObject, WorkloadRef

PAGERDUTY_SUMMARY_MAX = 1024
"""PagerDuty's limit on ``payload.summary``: longer is refused with 400."""
OPSGENIE_MESSAGE_MAX = 130
"""Opsgenie's limit on an alert's ``message``; the API cuts longer ones itself."""
OPSGENIE_DESCRIPTION_MAX = 15000
"""Opsgenie's limit on an alert's ``description``."""
SLACK_SECTION_MAX = 3000
"""Slack's limit on a section block's text."""


@dataclass(frozen=True)
class Escalation:
    """One incident handed to a person, with its story: what was found, what healer
    made of it, what it tried and why it stopped."""

    incident_id: int
    workload: WorkloadRef
    at: datetime
    reason: str
    cause: str | None = None
    playbook: str | None = None
    action: str | None = None
    finding: str | None = None
    """What was found: the score and the signals that deviated, or the alert."""
    diagnosis: str | None = None
    """The diagnosed cause, its confidence and why."""
    tried: tuple[str, ...] = ()
    """Each action taken on the incident and how it went, oldest first."""
    receivers: tuple[str, ...] = ()
    """Named receivers (``escalation.routes``) the workload's policies route it to too."""


@dataclass(frozen=True)
class Resolution:
    """An incident healed, or its workload recovered after it was escalated: the page
    of it, if any, closes."""

    incident_id: int
    workload: WorkloadRef
    at: datetime
    evidence: str
    playbook: str | None = None
    action: str | None = None
    healed: bool = True
    """False: healer escalated it, and the workload has been quiet since."""
    receivers: tuple[str, ...] = ()
    """Named receivers (``escalation.routes``) the workload's policies route it to too."""


Page = Escalation | Resolution


def dedup_key(incident_id: int) -> str:
    """PagerDuty's ``dedup_key`` and Opsgenie's ``alias`` of the incident."""
    return f"healer-incident-{incident_id}"


def title(page: Page) -> str:
    if isinstance(page, Escalation):
        return f"healer escalated incident {page.incident_id} on {page.workload}"
    if not page.healed:
        return f"incident {page.incident_id} on {page.workload} recovered after escalation"
    return f"healer healed incident {page.incident_id} on {page.workload}"


def story(page: Page) -> list[tuple[str, str]]:
    """The page's facts as (name, text) pairs, in the order people read them."""
    if isinstance(page, Resolution):
        return [
            ("outcome", page.evidence),
            ("playbook", page.playbook or "none"),
            ("action", page.action or "none"),
        ]
    facts = [("reason", page.reason)]
    if page.finding:
        facts.append(("finding", page.finding))
    facts.append(("diagnosis", page.diagnosis or page.cause or "unknown"))
    facts.append(("tried", "; ".join(page.tried) if page.tried else "nothing"))
    facts.append(("playbook", page.playbook or "none"))
    return facts


def _text(page: Page, link: str) -> str:
    lines = [f"{name}: {text}" for name, text in story(page)]
    return "\n".join([*lines, f"incident: {link}"])


def generic_body(page: Page, link: str) -> JsonObject:
    common: JsonObject = {
        "incident_id": page.incident_id,
        "namespace": page.workload.namespace,
        "kind": page.workload.kind,
        "name": page.workload.name,
        "at": page.at.isoformat(),
        "playbook": page.playbook,
        "action": page.action,
        "link": link,
    }
    if isinstance(page, Resolution):
        resolved: JsonObject = {"evidence": page.evidence, "healed": page.healed}
        return {"event": "healer.resolution", **common, **resolved}
    return {
        "event": "healer.escalation",
        **common,
        "reason": page.reason,
        "cause": page.cause,
        "finding": page.finding,
        "diagnosis": page.diagnosis,
        "tried": list(page.tried),
    }


def slack_body(page: Page, link: str) -> JsonObject:
    head = title(page)
    summary = page.reason if isinstance(page, Escalation) else page.evidence
    facts = "\n".join(f"*{name}:* {text}" for name, text in story(page))
    return {
        "text": f"{head}: {summary}",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": head[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": facts[:SLACK_SECTION_MAX]}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": link}]},
        ],
    }


def teams_body(page: Page, link: str) -> JsonObject:
    card: JsonObject = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {
                "type": "TextBlock",
                "size": "Large",
                "weight": "Bolder",
                "wrap": True,
                "text": title(page),
            },
            {
                "type": "FactSet",
                "facts": [{"title": name, "value": text} for name, text in story(page)],
            },
        ],
    }
    if link.startswith(("http://", "https://")):
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Open the incident", "url": link}]
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}
        ],
    }


def pagerduty_body(page: Page, link: str, *, routing_key: str) -> JsonObject:
    """An Events API v2 event: a trigger for an escalation, a resolve for a healed one."""
    key = dedup_key(page.incident_id)
    if isinstance(page, Resolution):
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": key}
    body: JsonObject = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": key,
        "client": "healer",
        "payload": {
            "summary": f"{title(page)}: {page.reason}"[:PAGERDUTY_SUMMARY_MAX],
            "source": str(page.workload),
            "severity": "error",
            "timestamp": page.at.isoformat(),
            "component": page.workload.name,
            "group": page.workload.namespace,
            "class": page.cause or "unknown",
            "custom_details": dict(story(page)),
        },
    }
    if link.startswith(("http://", "https://")):
        body["client_url"] = link
        body["links"] = [{"href": link, "text": f"healer incident {page.incident_id}"}]
    return body


def opsgenie_request(page: Page, link: str) -> tuple[str, JsonObject]:
    """The Alert API path (below the API's base URL) and body: create for an
    escalation, close by alias for a healed incident."""
    alias = dedup_key(page.incident_id)
    if isinstance(page, Resolution):
        path = f"/v2/alerts/{alias}/close?identifierType=alias"
        return path, {"source": "healer", "user": "healer", "note": page.evidence}
    return "/v2/alerts", {
        "message": f"{page.workload}: {page.reason}"[:OPSGENIE_MESSAGE_MAX],
        "alias": alias,
        "description": _text(page, link)[:OPSGENIE_DESCRIPTION_MAX],
        "source": "healer",
        "entity": str(page.workload),
        "tags": ["healer", page.workload.namespace],
        "details": {
            "incident": link,
            "namespace": page.workload.namespace,
            "workload": page.workload.name,
            "cause": page.cause or "unknown",
        },
        "priority": "P2",
    }
