"""Pages delivered over HTTP to local receivers standing in for PagerDuty, Opsgenie,
Microsoft Teams, Slack and a generic webhook: each gets its own body at its configured
URL, a healed incident closes the page it opened, a failing receiver is retried with
backoff from the queue, and a slow one never makes the caller wait."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from healer.config import ApiSettings, EscalationSettings
from healer.decide.escalation import EscalationQueue, WebhookNotifier
from healer.decide.paging import Escalation, Resolution
from healer.types import WorkloadRef

pytestmark = pytest.mark.integration

CART = WorkloadRef("shop", "Deployment", "cart")
AT = datetime(2026, 3, 2, 12, 30, tzinfo=UTC)
ESCALATION = Escalation(
    7,
    CART,
    AT,
    "not_healed: memory still climbing",
    cause="memory_leak",
    playbook="restart-on-leak",
    action="restart",
    finding="score 0.99: memory up 9σ",
    diagnosis="memory_leak (85%): memory grows steadily",
    tried=("restart succeeded",),
)
HEALED = Resolution(8, CART, AT, "healed: back at baseline", "restart-on-leak", "restart")
API = ApiSettings(public_url="https://healer.example")


@dataclass
class Receiver:
    """A local HTTP server recording what each path got; ``fail`` answers 503 that many
    times per path first, ``hold`` keeps the answer until it is set."""

    url: str = ""
    got: list[tuple[str, dict[str, str], Any]] = field(default_factory=list)
    fail: dict[str, int] = field(default_factory=dict)
    hold: threading.Event | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bodies(self, path: str) -> list[Any]:
        with self.lock:
            return [body for p, _, body in self.got if p == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with state.lock:
                state.got.append((self.path, dict(self.headers), body))
                left = state.fail.get(self.path, 0)
                state.fail[self.path] = max(0, left - 1)
            if state.hold is not None and self.path == "/slow":
                state.hold.wait(10)
            self.send_response(503 if left else 202)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_port}"
    yield state
    server.shutdown()
    server.server_close()


def every_receiver(url: str, **more: Any) -> EscalationSettings:
    return EscalationSettings.model_validate(
        {
            "webhook_urls": [f"{url}/generic"],
            "slack_webhook_urls": [f"{url}/slack"],
            "teams_webhook_urls": [f"{url}/teams"],
            "pagerduty_routing_key": "R0UT1NG",
            "pagerduty_url": f"{url}/v2/enqueue",
            "opsgenie_api_key": "genie-key",
            "opsgenie_url": url,
            "backoff_s": 0,
            **more,
        }
    )


def test_each_receiver_gets_its_body_and_healed_incidents_close_their_pages(
    receiver: Receiver,
) -> None:
    notifier = WebhookNotifier(every_receiver(receiver.url), api=API)
    assert notifier.notify(ESCALATION) == []
    assert notifier.resolve(HEALED) == []
    notifier.close()
    trigger, resolve = receiver.bodies("/v2/enqueue")
    assert (trigger["event_action"], trigger["dedup_key"]) == ("trigger", "healer-incident-7")
    assert trigger["links"][0]["href"] == "https://healer.example/incidents/7"
    assert trigger["payload"]["custom_details"]["tried"] == "restart succeeded"
    assert resolve == {
        "routing_key": "R0UT1NG",
        "event_action": "resolve",
        "dedup_key": "healer-incident-8",
    }
    [created] = receiver.bodies("/v2/alerts")
    assert created["alias"] == "healer-incident-7"
    [closed] = receiver.bodies("/v2/alerts/healer-incident-8/close?identifierType=alias")
    assert closed["note"] == "healed: back at baseline"
    genie = [h for p, h, _ in receiver.got if p.startswith("/v2/alerts")]
    assert {h["Authorization"] for h in genie} == {"GenieKey genie-key"}
    teams = receiver.bodies("/teams")
    assert [t["attachments"][0]["content"]["type"] for t in teams] == ["AdaptiveCard"] * 2
    assert [s["text"].split(" incident")[0] for s in receiver.bodies("/slack")] == [
        "healer escalated",
        "healer healed",
    ]
    assert [g["event"] for g in receiver.bodies("/generic")] == [
        "healer.escalation",
        "healer.resolution",
    ]


def test_resolutions_can_be_turned_off(receiver: Receiver) -> None:
    notifier = WebhookNotifier(every_receiver(receiver.url, resolutions=False), api=API)
    assert notifier.resolve(HEALED) == []
    notifier.close()
    assert receiver.got == []


def test_the_queue_retries_a_failing_receiver_and_keeps_the_order(receiver: Receiver) -> None:
    receiver.fail["/v2/enqueue"] = 2
    settings = every_receiver(receiver.url, retries=2)
    queue = EscalationQueue(WebhookNotifier(settings, api=API), capacity=10)
    assert queue.notify(ESCALATION) == []
    assert queue.resolve(Resolution(7, CART, AT, "healed: later")) == []
    queue.join()
    queue.close()
    actions = [b["event_action"] for b in receiver.bodies("/v2/enqueue")]
    assert actions == ["trigger", "trigger", "trigger", "resolve"], "503 twice, then delivered"
    assert queue.undelivered == 0


def test_a_receiver_that_keeps_failing_is_given_up_after_the_retries(
    receiver: Receiver,
) -> None:
    receiver.fail["/generic"] = 99
    settings = EscalationSettings(webhook_urls=(f"{receiver.url}/generic",), retries=1)
    queue = EscalationQueue(WebhookNotifier(settings, api=API), capacity=10)
    queue.notify(ESCALATION)
    queue.join()
    queue.close()
    assert len(receiver.bodies("/generic")) == 2
    assert queue.undelivered == 1


def test_a_slow_receiver_never_makes_the_caller_wait(receiver: Receiver) -> None:
    receiver.hold = threading.Event()
    settings = EscalationSettings(webhook_urls=(f"{receiver.url}/slow",), timeout_s=10)
    queue = EscalationQueue(WebhookNotifier(settings, api=API), capacity=2)
    for incident in (1, 2, 3, 4):  # the first is held by the receiver, two wait, one is dropped
        queue.notify(Escalation(incident, CART, AT, "escalated"))
    with receiver.lock:
        assert len(receiver.got) <= 1, "every notify returned while the first was held"
    receiver.hold.set()
    queue.join()
    queue.close()
    delivered = [b["incident_id"] for b in receiver.bodies("/slow")]
    assert queue.dropped + len(delivered) == 4 and queue.dropped >= 1
    assert delivered == sorted(delivered)
