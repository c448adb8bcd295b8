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
- Escalations leave the cycle through ``EscalationQueue``: a bounded queue emptied by
  one background thread. A receiver that hangs (3 attempts of ``timeout_s`` each) holds
  that thread, never the cycle; when the queue is full, the new escalation is dropped,
  logged and counted, so the cycle never waits either. The incident's record in the
  audit store is the truth; the webhook is a courtesy.
- A webhook may not point at ``escalation.denied_networks``: its URL is checked when
  the settings load, and what its name resolves to before each delivery (a name can
  point anywhere, and change).
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from urllib.parse import urlsplit

import httpx
import structlog
from tenacity import (
    RetryError,
    retry,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from healer.config import EscalationSettings, denied_address
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
        denied = self._denied(url)
        if denied is not None:
            return f"{url}: resolves to {denied}, in escalation.denied_networks; not sent"
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

    def _denied(self, url: str) -> str | None:
        """A denied address the URL's host resolves to, if any (None when it does not
        resolve: the request then fails with the resolver's own error)."""
        host = urlsplit(url).hostname or ""
        networks = self._settings.denied_networks
        try:
            infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError):
            return None
        for info in infos:
            denied = denied_address(str(info[4][0]).split("%")[0], networks)
            if denied is not None:
                return str(denied)
        return None


class _PermanentFailure(Exception):
    """A 4xx answer other than 429: the receiver refuses the body; retrying won't help."""


class Notifier(Protocol):
    def notify(self, escalation: Escalation) -> list[str]: ...


class EscalationQueue:
    """Hands escalations to ``notifier`` from a background thread, through a queue of at
    most ``capacity``; ``notify`` never waits. Thread-safe."""

    def __init__(self, notifier: Notifier, *, capacity: int) -> None:
        self._notifier = notifier
        self.capacity = capacity
        self._queue: queue.Queue[Escalation | None] = queue.Queue(maxsize=capacity)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.dropped = 0
        """Escalations refused because the queue was full."""
        self.undelivered = 0
        """Escalations at least one receiver did not get after its retries."""

    def notify(self, escalation: Escalation) -> list[str]:
        """Queue ``escalation``; returns the error line when it had to be dropped."""
        self._start()
        try:
            self._queue.put_nowait(escalation)
        except queue.Full:
            with self._lock:
                self.dropped += 1
            log.warning(
                "escalation_dropped",
                incident_id=escalation.incident_id,
                queue_size=self.capacity,
                dropped=self.dropped,
            )
            return [f"escalation queue full ({self.capacity}): incident {escalation.incident_id}"]
        return []

    def join(self) -> None:
        """Wait until every queued escalation was handled (tests, shutdown)."""
        self._queue.join()

    def close(self, timeout_s: float = 10.0) -> None:
        """Deliver what is queued for at most ``timeout_s``, then stop the thread."""
        thread = self._thread
        if thread is None:
            return
        deadline = time.monotonic() + timeout_s
        try:
            self._queue.put(None, timeout=timeout_s)
            thread.join(max(0.0, deadline - time.monotonic()))
        except queue.Full:
            pass
        if thread.is_alive():  # a receiver still hanging: the rest is not delivered
            log.warning("escalations_abandoned", queued=self._queue.qsize())

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="escalations", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            escalation = self._queue.get()
            try:
                if escalation is None:
                    return
                if self._notifier.notify(escalation):
                    with self._lock:
                        self.undelivered += 1
            except Exception:  # a bug in a notifier must not end delivery for good
                log.exception(
                    "escalation_failed", incident_id=escalation and escalation.incident_id
                )
            finally:
                self._queue.task_done()
