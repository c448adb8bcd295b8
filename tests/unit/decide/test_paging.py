"""What each receiver gets: PagerDuty trigger and resolve on the incident's dedup key,
Opsgenie create and close by alias, Teams' Adaptive Card, Slack's blocks and the generic
document, each carrying the incident's story and link."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from healer.config import ApiSettings
from healer.decide import paging
from healer.decide.paging import Escalation, Resolution
from healer.types import WorkloadRef

CART = WorkloadRef("shop", "Deployment", "cart")
AT = datetime(2026, 3, 2, 12, 30, tzinfo=UTC)
LINK = "https://healer.example/incidents/7"
ESCALATION = Escalation(
    7,
    CART,
    AT,
    "not_healed: memory still climbing after the restart",
    cause="memory_leak",
    playbook="restart-on-leak",
    action="restart",
    finding="score 0.99 since 2026-03-02T12:00:00+00:00: memory up 9σ",
    diagnosis="memory_leak (85%): memory grows steadily, restarts reset it",
    tried=("restart succeeded", "rollback failed: 409"),
)
HEALED = Resolution(7, CART, AT, "healed: back at baseline", "restart-on-leak", "restart")


def test_pagerduty_triggers_on_the_incident_and_resolves_the_same_key() -> None:
    trigger = paging.pagerduty_body(ESCALATION, LINK, routing_key="R0UT1NG")
    assert trigger["event_action"] == "trigger"
    assert trigger["routing_key"] == "R0UT1NG"
    assert trigger["dedup_key"] == "healer-incident-7"
    payload = trigger["payload"]
    assert isinstance(payload, dict)
    assert payload["source"] == str(CART)
    assert payload["severity"] == "error" and payload["class"] == "memory_leak"
    assert str(payload["summary"]).startswith("healer escalated incident 7 on")
    details = payload["custom_details"]
    assert isinstance(details, dict)
    assert details["tried"] == "restart succeeded; rollback failed: 409"
    assert details["finding"] == ESCALATION.finding
    assert trigger["links"] == [{"href": LINK, "text": "healer incident 7"}]
    resolve = paging.pagerduty_body(HEALED, LINK, routing_key="R0UT1NG")
    assert resolve == {
        "routing_key": "R0UT1NG",
        "event_action": "resolve",
        "dedup_key": "healer-incident-7",
    }


def test_a_long_reason_is_cut_to_pagerdutys_summary_limit() -> None:
    long = Escalation(7, CART, AT, "x" * 5000)
    payload = paging.pagerduty_body(long, "healer incident 7", routing_key="k")["payload"]
    assert isinstance(payload, dict) and len(str(payload["summary"])) == 1024
    body = paging.pagerduty_body(long, "healer incident 7", routing_key="k")
    assert "links" not in body, "no link without api.public_url"


def test_opsgenie_creates_by_alias_and_closes_by_it() -> None:
    path, body = paging.opsgenie_request(ESCALATION, LINK)
    assert path == "/v2/alerts"
    assert body["alias"] == "healer-incident-7"
    assert len(str(body["message"])) <= paging.OPSGENIE_MESSAGE_MAX
    description = str(body["description"])
    assert "diagnosis: memory_leak (85%)" in description
    assert "tried: restart succeeded; rollback failed: 409" in description
    assert description.endswith(f"incident: {LINK}")
    path, body = paging.opsgenie_request(HEALED, LINK)
    assert path == "/v2/alerts/healer-incident-7/close?identifierType=alias"
    assert body["note"] == "healed: back at baseline"


def test_teams_gets_an_adaptive_card_with_the_story_and_a_link() -> None:
    body = paging.teams_body(ESCALATION, LINK)
    assert body["type"] == "message"
    [attachment] = body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard"
    facts = {f["title"]: f["value"] for f in card["body"][1]["facts"]}
    assert facts["reason"] == ESCALATION.reason
    assert facts["tried"] == "restart succeeded; rollback failed: 409"
    assert card["actions"][0]["url"] == LINK


@pytest.mark.parametrize("page", [ESCALATION, HEALED], ids=["escalation", "resolution"])
def test_slack_and_generic_bodies_say_which_event_it_is(page: Escalation | Resolution) -> None:
    slack = paging.slack_body(page, LINK)
    generic = paging.generic_body(page, LINK)
    word = "escalated" if isinstance(page, Escalation) else "healed"
    assert str(slack["text"]).startswith(f"healer {word} incident 7 on {CART}")
    event = "healer.escalation" if isinstance(page, Escalation) else "healer.resolution"
    assert generic["event"] == event and generic["link"] == LINK
    assert generic["incident_id"] == 7 and generic["name"] == "cart"


def test_the_generic_escalation_carries_the_whole_story() -> None:
    body = paging.generic_body(ESCALATION, LINK)
    assert body["finding"] == ESCALATION.finding
    assert body["diagnosis"] == ESCALATION.diagnosis
    assert body["tried"] == ["restart succeeded", "rollback failed: 409"]


def test_the_link_is_the_review_page_with_a_public_url_and_the_number_without() -> None:
    assert ApiSettings(public_url="https://healer.example/").incident_link(7) == LINK
    assert ApiSettings().incident_link(7) == "healer incident 7"


def test_a_workload_recovered_after_an_escalation_is_told_as_such() -> None:
    back = Resolution(7, CART, AT, "recovered: quiet for 120 s", healed=False)
    assert str(paging.slack_body(back, LINK)["text"]).startswith(
        f"incident 7 on {CART} recovered after escalation"
    )
    assert paging.generic_body(back, LINK)["healed"] is False
    resolve = paging.pagerduty_body(back, LINK, routing_key="k")
    assert (resolve["event_action"], resolve["dedup_key"]) == ("resolve", "healer-incident-7")
