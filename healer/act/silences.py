"""Alertmanager silences while healer works on a workload, expired once it is done.

When an action is taken, the workload's alerts are silenced in Alertmanager (API v2,
``POST /api/v2/silences``) until the action's verification deadline, so nobody is paged
for what healer is already fixing. When the incident has its outcome the silence is
expired (``DELETE /api/v2/silence/{id}``): early when healed, at once when escalated or
failed, so the page goes through.

Decisions:

- The silence matches the labels the workload's alerts carry, as kube-state-metrics'
  alerts name a workload: ``namespace`` and ``deployment`` (``statefulset``,
  ``daemonset`` for those kinds), both equal, never a regular expression: it silences
  that one workload and nothing beside it.
- ``createdBy`` is ``healer``; the comment names the incident and, with
  ``api.public_url``, links to it on the review page.
- All of it runs in ``SilenceKeeper``'s thread, never in the cycle: a slow or absent
  Alertmanager is retried there (``alertmanager.silence_retries``, backing off), and the
  incident records a silence that could not be made or expired. One thread in order, so
  an expiry always follows the making of the silence it expires.
- Only the silences recorded on the incident are ever expired, and only while
  Alertmanager still says healer made them: a person who edits healer's silence in
  Alertmanager takes it over (its ``createdBy`` becomes theirs), and it is left alone.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

import httpx
import structlog
from tenacity import (
    RetryError,
    retry,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from healer.config import AlertmanagerSettings
from healer.errors import SilenceError
from healer.types import JsonObject, JsonValue, Silence, SilenceState, WorkloadRef

log = structlog.get_logger("healer.silences")

CREATED_BY = "healer"
"""``createdBy`` of every silence healer makes; only these are ever expired by it."""

KIND_LABELS = {"Deployment": "deployment", "StatefulSet": "statefulset", "DaemonSet": "daemonset"}
"""The label naming a workload of each kind on its alerts, as kube-state-metrics' are."""

BACKOFF_MAX_S = 30.0
"""Longest wait between two attempts: a restarting Alertmanager is back within this."""


POD_NAMES = {
    "Deployment": "{name}-[a-z0-9]+-[a-z0-9]{{5}}",
    "StatefulSet": "{name}-[0-9]+",
    "DaemonSet": "{name}-[a-z0-9]{{5}}",
}
"""The names of a workload's pods, as its controller makes them: a Deployment's
``NAME-<pod-template-hash>-<5 characters>``, a StatefulSet's ``NAME-<ordinal>``, a
DaemonSet's ``NAME-<5 characters>``. Alertmanager anchors the expression at both ends, so
another workload whose name starts with this one's (``cart-db`` beside ``cart``) has pods
with a segment more, and is not matched."""


def matchers(workload: WorkloadRef) -> dict[str, str]:
    """The labels the workload's alerts carry, to match them and nothing else."""
    label = KIND_LABELS.get(workload.kind, workload.kind.lower())
    return {"namespace": workload.namespace, label: workload.name}


def silences_for(workload: WorkloadRef, *, starts: datetime, ends: datetime) -> tuple[Silence, ...]:
    """The silences that hold back the workload's alerts: those labelled with the
    workload (kube-state-metrics' Deployment and StatefulSet alerts), and those that name
    only one of its pods (``KubePodCrashLooping``, ``KubePodNotReady``), by the names its
    controller gives its pods."""
    by_label = Silence(matchers(workload), starts, ends, SilenceState.ACTIVE)
    names = POD_NAMES.get(workload.kind)
    if names is None:
        return (by_label,)
    pattern = names.format(name=workload.name.replace(".", r"\."))
    by_pod = Silence(
        {"namespace": workload.namespace}, starts, ends, SilenceState.ACTIVE, regex={"pod": pattern}
    )
    return by_label, by_pod


def silence_body(silence: Silence, *, comment: str) -> JsonObject:
    """The body of ``POST /api/v2/silences`` (Alertmanager's ``postableSilence``)."""
    kinds = ((silence.matchers, False), (silence.regex, True))
    listed: list[JsonValue] = [
        {"name": name, "value": value, "isRegex": regex, "isEqual": True}
        for labels, regex in kinds
        for name, value in sorted(labels.items())
    ]
    return {
        "matchers": listed,
        "startsAt": silence.starts_at.isoformat(),
        "endsAt": silence.ends_at.isoformat(),
        "createdBy": CREATED_BY,
        "comment": comment,
    }


class _Retryable(Exception):
    """A 429 or 5xx answer: worth another attempt."""


class AlertmanagerSilences:
    """Alertmanager's silence API, with bounded retries; raises SilenceError naming the
    setting to check."""

    def __init__(
        self, settings: AlertmanagerSettings, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        if settings.url is None:
            raise ValueError("alertmanager.url is not set")
        self._settings = settings
        token = settings.bearer_token
        headers = {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}
        self._client = httpx.Client(
            base_url=settings.url,
            timeout=settings.silence_timeout_s,
            transport=transport,
            headers=headers,
        )

    def close(self) -> None:
        self._client.close()

    def create(self, body: JsonObject) -> str:
        """Make a silence; its id."""
        answer = self._send("POST", "/api/v2/silences", body)
        silence_id = answer.json().get("silenceID") if answer.content else None
        if not isinstance(silence_id, str) or not silence_id:
            raise SilenceError(f"{self._where()}: no silenceID in the answer: {answer.text[:200]}")
        return silence_id

    def get(self, silence_id: str) -> JsonObject | None:
        """The silence as Alertmanager has it; None when it is gone (forgotten after its
        retention, or never there)."""
        try:
            answer = self._send("GET", f"/api/v2/silence/{silence_id}")
        except _NotFound:
            return None
        body = answer.json()
        if not isinstance(body, dict):
            raise SilenceError(f"{self._where()}: silence {silence_id}: not an object")
        return body

    def expire(self, silence_id: str) -> None:
        self._send("DELETE", f"/api/v2/silence/{silence_id}")

    def _send(self, method: str, path: str, body: JsonObject | None = None) -> httpx.Response:
        attempt = retry(
            retry=retry_if_exception_type((_Retryable, httpx.TransportError)),
            stop=stop_after_attempt(self._settings.silence_retries + 1),
            wait=wait_exponential(multiplier=self._settings.silence_backoff_s, max=BACKOFF_MAX_S),
        )(self._send_once)
        try:
            answer: httpx.Response = attempt(method, path, body)
        except RetryError as exc:
            last = exc.last_attempt.exception()
            raise SilenceError(f"{self._where()}: {method} {path}: {_said(last)}") from last
        except httpx.HTTPError as exc:
            raise SilenceError(f"{self._where()}: {method} {path}: {_said(exc)}") from exc
        return answer

    def _send_once(self, method: str, path: str, body: JsonObject | None) -> httpx.Response:
        answer = self._client.request(method, path, json=body)
        if answer.status_code == 429 or answer.status_code >= 500:
            raise _Retryable(f"{answer.status_code} {answer.text[:200].strip()}")
        if answer.status_code == 404:
            raise _NotFound(path)
        if answer.status_code >= 400:
            said = f"{answer.status_code} {answer.text[:200].strip()}"
            raise SilenceError(f"{self._where()}: {method} {path}: {said}")
        return answer

    def _where(self) -> str:
        return f"Alertmanager at {self._settings.url} (alertmanager.url)"


class _NotFound(Exception):
    """A 404: the silence is not in Alertmanager."""


def _said(exc: BaseException | None) -> str:
    return f"{type(exc).__name__}: {exc}" if isinstance(exc, httpx.HTTPError) else str(exc)


class Kept(Protocol):
    """A silence as the store keeps it: its row id and what it is."""

    @property
    def id(self) -> int: ...

    @property
    def silence(self) -> Silence: ...


class SilenceStore(Protocol):
    """Where the silences made are recorded (the audit store's ``SilenceLog``)."""

    def record_silence(self, incident_id: int, silence: Silence, *, at: datetime) -> int: ...

    def settle_silence(
        self,
        row_id: int,
        *,
        state: SilenceState,
        at: datetime,
        detail: str,
        error: str | None = None,
    ) -> None: ...

    def active_silences(self, incident_id: int) -> Sequence[Kept]: ...


class Api(Protocol):
    def create(self, body: JsonObject) -> str: ...

    def get(self, silence_id: str) -> JsonObject | None: ...

    def expire(self, silence_id: str) -> None: ...


@dataclass(frozen=True)
class _Make:
    incident_id: int
    silences: tuple[Silence, ...]
    comment: str


@dataclass(frozen=True)
class _Expire:
    incident_id: int
    at: datetime
    why: str


class SilenceKeeper:
    """Makes and expires silences from a background thread, in the order asked; neither
    ``silence`` nor ``expire`` waits for Alertmanager. Thread-safe."""

    def __init__(
        self,
        api: Api,
        store: SilenceStore,
        *,
        capacity: int,
        link: Callable[[int], str] = lambda incident_id: f"healer incident {incident_id}",
    ) -> None:
        self._api = api
        self._store = store
        self._link = link
        """The incident's link for the comment (``ApiSettings.incident_link``)."""
        self.capacity = capacity
        self._queue: queue.Queue[_Make | _Expire | None] = queue.Queue(maxsize=capacity)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.dropped = 0
        """Requests refused because the queue was full."""

    def silence(
        self, incident_id: int, workload: WorkloadRef, *, starts: datetime, ends: datetime
    ) -> None:
        """Silence the workload's alerts from ``starts`` to ``ends`` (the verification
        deadline); replaces the incident's earlier silence, if any."""
        link = self._link(incident_id)
        comment = f"healer acts on {workload} and verifies it until {ends.isoformat()}: {link}"
        wanted = silences_for(workload, starts=starts, ends=ends)
        if not self._put(_Make(incident_id, wanted, comment)):
            for silence in wanted:
                failed = replace(silence, state=SilenceState.FAILED, error=self._full())
                self._store.record_silence(incident_id, failed, at=starts)

    def expire(self, incident_id: int, *, at: datetime, why: str) -> None:
        """Expire the incident's silences healer made (none: nothing happens)."""
        self._put(_Expire(incident_id, at, why))

    def join(self) -> None:
        """Wait until every request queued was carried out (tests, shutdown)."""
        self._queue.join()

    def close(self, timeout_s: float = 10.0) -> None:
        """Carry out what is queued for at most ``timeout_s``, then stop the thread."""
        thread = self._thread
        if thread is None:
            return
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout_s)
        thread.join(timeout_s)
        if thread.is_alive():
            log.warning("silences_abandoned", queued=self._queue.qsize())

    def _full(self) -> str:
        return f"the silence queue is full ({self.capacity}, alertmanager.silence_queue_size)"

    def _put(self, job: _Make | _Expire) -> bool:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="silences", daemon=True)
                self._thread.start()
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            with self._lock:
                self.dropped += 1
            log.warning("silence_dropped", incident_id=job.incident_id, queue_size=self.capacity)
            return False
        return True

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                if isinstance(job, _Make):
                    self._make(job)
                else:
                    self._expire(job.incident_id, job.at, job.why)
            except Exception:  # a store down or a bug: the next request still runs
                log.exception("silence_failed", incident_id=job and job.incident_id)
            finally:
                self._queue.task_done()

    def _make(self, job: _Make) -> None:
        starts = job.silences[0].starts_at
        self._expire(job.incident_id, starts, "replaced by the next action's silence")
        for wanted in job.silences:
            self._make_one(job.incident_id, wanted, job.comment)

    def _make_one(self, incident_id: int, wanted: Silence, comment: str) -> None:
        try:
            silence_id = self._api.create(silence_body(wanted, comment=comment))
        except SilenceError as exc:
            failed = replace(wanted, state=SilenceState.FAILED, error=str(exc))
            self._store.record_silence(incident_id, failed, at=wanted.starts_at)
            log.warning("silence_not_made", incident_id=incident_id, error=str(exc))
            return
        made = replace(wanted, silence_id=silence_id)
        self._store.record_silence(incident_id, made, at=wanted.starts_at)
        log.info("silence_made", incident_id=incident_id, silence_id=silence_id)

    def _expire(self, incident_id: int, at: datetime, why: str) -> None:
        for kept in self._store.active_silences(incident_id):
            silence_id = kept.silence.silence_id
            if silence_id is None:  # never made: nothing in Alertmanager to expire
                continue
            try:
                state, detail = self._expire_ours(silence_id, why)
            except SilenceError as exc:
                self._store.settle_silence(
                    kept.id,
                    state=SilenceState.ACTIVE,
                    at=at,
                    detail=f"could not be expired: {exc}",
                    error=str(exc),
                )
                log.warning("silence_not_expired", incident_id=incident_id, error=str(exc))
                continue
            self._store.settle_silence(kept.id, state=state, at=at, detail=detail)
            log.info("silence_expired", incident_id=incident_id, silence_id=silence_id, why=why)

    def _expire_ours(self, silence_id: str, why: str) -> tuple[SilenceState, str]:
        """Expire the silence if it is still healer's and active; what became of it."""
        found = self._api.get(silence_id)
        if found is None:
            return SilenceState.EXPIRED, f"gone from Alertmanager already; {why}"
        status = found.get("status")
        state = status.get("state") if isinstance(status, Mapping) else None
        if state == "expired":
            return SilenceState.EXPIRED, f"expired in Alertmanager already; {why}"
        owner = found.get("createdBy")
        if owner != CREATED_BY:
            return SilenceState.RELEASED, f"changed by {owner} in Alertmanager: left to them"
        self._api.expire(silence_id)
        return SilenceState.EXPIRED, why
