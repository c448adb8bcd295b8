"""Escalation: telling a person that healer stopped and why, and that a page closed.

An escalation goes to every configured receiver: generic webhooks, Slack-compatible
ones, Microsoft Teams, PagerDuty (Events API v2) and Opsgenie; a healed incident goes
to them as well (``escalation.resolutions``), which resolves the PagerDuty incident and
closes the Opsgenie alert of an earlier page. What each gets is built in ``paging.py``.

Decisions:

- Delivery is best effort with a short retry (network errors, 429 and 5xx, backing
  off), and it never raises: an unreachable receiver must not stop the loop. What was
  delivered and what failed is returned, for the log.
- The body builders are pure, so what a receiver gets is testable without a network.
- httpx directly rather than apprise: apprise's PagerDuty and Opsgenie services post to
  the vendors' fixed hosts and PagerDuty's only triggers, while healer needs resolve by
  ``dedup_key`` and every URL configurable (a proxy, the EU regions, a local receiver).
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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable
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

from healer.config import ApiSettings, EscalationSettings, denied_address
from healer.decide import paging
from healer.decide.paging import Escalation, Page, Resolution
from healer.types import JsonObject

__all__ = ["Escalation", "EscalationQueue", "Page", "Resolution", "WebhookNotifier"]

log = structlog.get_logger("healer.escalation")


class _Retryable(Exception):
    """A 429 or 5xx answer: worth another attempt."""


_BODIES = {
    "generic": paging.generic_body,
    "slack": paging.slack_body,
    "teams": paging.teams_body,
}
"""The body of each ``NamedReceiver.format``."""


@dataclass(frozen=True)
class _Target:
    url: str
    body: JsonObject
    headers: Mapping[str, str]


class WebhookNotifier:
    """POSTs escalations and resolutions to every configured receiver."""

    def __init__(
        self,
        settings: EscalationSettings,
        *,
        api: ApiSettings | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._settings = settings
        self._api = api or ApiSettings()
        self._client = httpx.Client(timeout=settings.timeout_s, transport=transport)

    def close(self) -> None:
        self._client.close()

    def notify(self, page: Page) -> list[str]:
        """Deliver to every receiver; returns one error line per receiver that failed."""
        if isinstance(page, Resolution) and not self._settings.resolutions:
            return []
        errors = []
        for target in self._targets(page):
            error = self._post(target.url, target.body, target.headers)
            if error is not None:
                errors.append(error)
                log.warning("page_undelivered", url=target.url, error=error)
            else:
                log.info("page_delivered", url=target.url, incident_id=page.incident_id)
        return errors

    def resolve(self, resolution: Resolution) -> list[str]:
        return self.notify(resolution)

    def _targets(self, page: Page) -> list[_Target]:
        hooks, link = self._settings, self._api.incident_link(page.incident_id)
        targets = [
            *(_Target(u, paging.generic_body(page, link), {}) for u in hooks.webhook_urls),
            *(_Target(u, paging.slack_body(page, link), {}) for u in hooks.slack_webhook_urls),
            *(_Target(u, paging.teams_body(page, link), {}) for u in hooks.teams_webhook_urls),
            *(
                _Target(r.url, _BODIES[r.format](page, link), {})
                for r in hooks.routes
                if r.name in page.receivers
            ),
        ]
        if hooks.pagerduty_routing_key is not None:
            key = hooks.pagerduty_routing_key.get_secret_value()
            body = paging.pagerduty_body(page, link, routing_key=key)
            targets.append(_Target(hooks.pagerduty_url, body, {}))
        if hooks.opsgenie_api_key is not None:
            path, body = paging.opsgenie_request(page, link)
            auth = {"Authorization": f"GenieKey {hooks.opsgenie_api_key.get_secret_value()}"}
            targets.append(_Target(hooks.opsgenie_url.rstrip("/") + path, body, auth))
        return targets

    def _post(self, url: str, body: JsonObject, headers: Mapping[str, str]) -> str | None:
        denied = self._denied(url)
        if denied is not None:
            return f"{url}: resolves to {denied}, in escalation.denied_networks; not sent"
        attempt = retry(
            retry=retry_if_exception_type((_Retryable, httpx.TransportError)),
            stop=stop_after_attempt(self._settings.retries + 1),
            wait=wait_exponential(multiplier=self._settings.backoff_s, max=30),
        )(self._post_once)
        try:
            attempt(url, body, headers)
        except RetryError as exc:
            last = exc.last_attempt.exception()
            return f"{url}: {last}"
        except httpx.HTTPError as exc:
            return f"{url}: {exc}"
        except _PermanentFailure as exc:
            return f"{url}: {exc}"
        return None

    def _post_once(self, url: str, body: JsonObject, headers: Mapping[str, str]) -> None:
        answer = self._client.post(url, json=body, headers=headers)
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
    def notify(self, page: Page) -> list[str]: ...


@runtime_checkable
class Resolver(Protocol):
    """A notifier that also takes healed incidents, closing their pages."""

    def resolve(self, resolution: Resolution) -> list[str]: ...


class EscalationQueue:
    """Hands escalations and resolutions to ``notifier`` from a background thread,
    through a queue of at most ``capacity``; ``notify`` and ``resolve`` never wait, and
    pages leave in the order given (an incident's trigger before its resolve).
    Thread-safe."""

    def __init__(self, notifier: Notifier, *, capacity: int) -> None:
        self._notifier = notifier
        self.capacity = capacity
        self._queue: queue.Queue[Page | None] = queue.Queue(maxsize=capacity)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.dropped = 0
        """Escalations refused because the queue was full."""
        self.undelivered = 0
        """Escalations at least one receiver did not get after its retries."""

    def notify(self, page: Page) -> list[str]:
        """Queue ``page``; returns the error line when it had to be dropped."""
        self._start()
        try:
            self._queue.put_nowait(page)
        except queue.Full:
            with self._lock:
                self.dropped += 1
            log.warning(
                "escalation_dropped",
                incident_id=page.incident_id,
                queue_size=self.capacity,
                dropped=self.dropped,
            )
            return [f"escalation queue full ({self.capacity}): incident {page.incident_id}"]
        return []

    def resolve(self, resolution: Resolution) -> list[str]:
        """Queue a healed incident, for the notifier to close its pages."""
        return self.notify(resolution)

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
            page = self._queue.get()
            try:
                if page is None:
                    return
                if self._notifier.notify(page):
                    with self._lock:
                        self.undelivered += 1
            except Exception:  # a bug in a notifier must not end delivery for good
                log.exception("escalation_failed", incident_id=page and page.incident_id)
            finally:
                self._queue.task_done()
