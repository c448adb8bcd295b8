"""Webhook receivers: http(s) only and outside escalation.denied_networks, checked when
the settings load (the URL) and before each delivery (what its name resolves to); and the
queue that keeps delivery out of the cycle."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime

import httpx
import pytest

from healer.config import EscalationSettings, load_settings
from healer.decide.escalation import Escalation, EscalationQueue, WebhookNotifier
from healer.errors import ConfigError
from healer.types import WorkloadRef

ESCALATION = Escalation(
    7, WorkloadRef("shop", "Deployment", "cart"), datetime(2026, 3, 2, tzinfo=UTC), "why"
)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("file:///etc/passwd", "only http and https URLs are allowed"),
        ("gopher://hooks.example/x", "only http and https URLs are allowed"),
        ("http:///no-host", "has no host"),
        ("http://169.254.169.254/latest/meta-data", "address 169.254.169.254 is in"),
        ("http://[fe80::1]/hook", "address fe80::1 is in"),
        ("http://[::ffff:169.254.169.254]/", "address 169.254.169.254 is in"),
        ("http://2852039166/", "address 169.254.169.254 is in"),  # the same, as one number
        ("http://0xa9fea9fe/", "address 169.254.169.254 is in"),
        ("http://0.0.0.0:8080/", "address 0.0.0.0 is in"),
        ("http://[fd00:ec2::254]/", "address fd00:ec2::254 is in"),
    ],
)
def test_a_webhook_url_is_refused_at_load_naming_the_field(url: str, why: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, escalation={"webhook_urls": ["https://hooks.example/ok", url]})
    message = str(caught.value)
    assert message.startswith("setting escalation.webhook_urls[1]: ")
    assert why in message and "\n" not in message


def test_slack_urls_are_checked_as_well_and_the_ranges_are_a_setting() -> None:
    with pytest.raises(ConfigError, match=r"^setting escalation.slack_webhook_urls\[0\]: .*10\."):
        load_settings(
            None,
            escalation={
                "denied_networks": ["10.0.0.0/8"],
                "slack_webhook_urls": ["http://10.1.2.3/hook"],
            },
        )
    allowed = load_settings(None, escalation={"webhook_urls": ["http://10.1.2.3/hook"]})
    assert allowed.escalation.webhook_urls == ("http://10.1.2.3/hook",)


def test_a_name_resolving_to_a_denied_address_is_not_sent() -> None:
    sent: list[httpx.Request] = []
    settings = EscalationSettings(
        webhook_urls=("http://localhost:9/hook",), denied_networks=("127.0.0.0/8", "::1/128")
    )
    transport = httpx.MockTransport(lambda request: sent.append(request) or httpx.Response(200))
    notifier = WebhookNotifier(settings, transport=transport)
    [error] = notifier.notify(ESCALATION)
    notifier.close()
    assert "resolves to" in error and "escalation.denied_networks" in error
    assert sent == []


def test_the_queue_never_waits_and_counts_what_it_drops() -> None:
    entered, release = threading.Event(), threading.Event()
    delivered: list[int] = []

    class Hanging:
        def notify(self, escalation: Escalation) -> list[str]:
            entered.set()
            assert release.wait(30)
            delivered.append(escalation.incident_id)
            return ["http://hooks.example/x: timed out"]

    queue = EscalationQueue(Hanging(), capacity=2)
    assert queue.notify(ESCALATION) == []
    assert entered.wait(30)  # the worker holds the first, hanging
    assert queue.notify(ESCALATION) == [] and queue.notify(ESCALATION) == []
    [dropped] = queue.notify(ESCALATION)
    assert "escalation queue full (2)" in dropped and queue.dropped == 1
    release.set()
    queue.close()
    assert len(delivered) == 3 and queue.undelivered == 3


def test_a_named_route_gets_only_the_pages_policies_route_to_it() -> None:
    sent: list[str] = []
    settings = EscalationSettings(
        webhook_urls=("http://hooks.example/all",),
        routes=(
            {"name": "shop-oncall", "url": "http://hooks.example/shop", "format": "slack"},
            {"name": "blog-oncall", "url": "http://hooks.example/blog"},
        ),
    )
    transport = httpx.MockTransport(lambda r: sent.append(str(r.url)) or httpx.Response(200))
    notifier = WebhookNotifier(settings, transport=transport)
    assert notifier.notify(ESCALATION) == []
    assert sent == ["http://hooks.example/all"]
    sent.clear()
    routed = replace(ESCALATION, receivers=("shop-oncall", "nobody"))
    assert notifier.notify(routed) == []
    notifier.close()
    assert sent == ["http://hooks.example/all", "http://hooks.example/shop"]


def test_a_route_is_checked_as_the_other_receivers_are() -> None:
    with pytest.raises(ConfigError, match=r"^setting escalation.routes\[0\]: shop: .*169"):
        load_settings(
            None, escalation={"routes": [{"name": "shop", "url": "http://169.254.169.254/"}]}
        )
    twice = [{"name": "a", "url": "http://hooks.example/1"}] * 2
    with pytest.raises(ConfigError, match="names must be unique"):
        load_settings(None, escalation={"routes": twice})
