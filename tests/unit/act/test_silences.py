"""Silences in Alertmanager: the body of one, and the keeper that makes and expires them
beside the cycle, against a fake Alertmanager behind httpx's mock transport and a real
audit store: made and recorded, expired and recorded, retried, recorded as not made
when Alertmanager stays away, and never touching a silence a person made or took over."""

from __future__ import annotations

import itertools
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from healer.act.silences import (
    AlertmanagerSilences,
    SilenceKeeper,
    matchers,
    silence_body,
    silences_for,
)
from healer.audit.store import AuditStore, StepKind
from healer.config import AlertmanagerSettings
from healer.types import Finding, JsonObject, Silence, SilenceState, WorkloadRef

CART = WorkloadRef("shop", "Deployment", "cart")
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
DEADLINE = T0 + timedelta(minutes=10)


@dataclass
class FakeAlertmanager:
    """Alertmanager's silence API, as far as healer uses it; ``failures`` answers 503
    that many times first, ``down`` refuses every connection."""

    failures: int = 0
    down: bool = False
    silences: dict[str, JsonObject] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.requests.append((request.method, request.url.path))
            if self.down:
                raise httpx.ConnectError("connection refused", request=request)
            if self.failures > 0:
                self.failures -= 1
                return httpx.Response(503, text="cluster not ready")
            return self._answer(request)

    def _answer(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "POST" and path == "/api/v2/silences":
            silence_id = f"s-{next(self.ids)}"
            body = json.loads(request.content)
            self.silences[silence_id] = {**body, "id": silence_id, "status": {"state": "active"}}
            return httpx.Response(200, json={"silenceID": silence_id})
        silence_id = path.rsplit("/", 1)[-1]
        if silence_id not in self.silences:
            return httpx.Response(404, text="silence not found")
        if request.method == "GET":
            return httpx.Response(200, json=self.silences[silence_id])
        if request.method == "DELETE":
            self.silences[silence_id]["status"] = {"state": "expired"}
            return httpx.Response(200)
        return httpx.Response(405)

    def state(self, silence_id: str) -> str:
        status = self.silences[silence_id]["status"]
        assert isinstance(status, dict)
        return str(status["state"])


@pytest.fixture
def incident(store: AuditStore) -> int:
    return store.open_incident(Finding(CART, T0, 0.99, (), T0, "test"))


def keeper_for(am: FakeAlertmanager, store: AuditStore, **settings: object) -> SilenceKeeper:
    config = AlertmanagerSettings.model_validate(
        {"url": "http://alertmanager:9093", "silence_backoff_s": 0, **settings}
    )
    api = AlertmanagerSilences(config, transport=httpx.MockTransport(am))
    return SilenceKeeper(
        api, store, capacity=10, link=lambda i: f"https://healer.example/incidents/{i}"
    )


def test_the_body_matches_the_workload_by_equality_and_names_healer() -> None:
    silence = Silence(matchers(CART), T0, DEADLINE, SilenceState.ACTIVE)
    body = silence_body(silence, comment="incident 7")
    assert body["matchers"] == [
        {"name": "deployment", "value": "cart", "isRegex": False, "isEqual": True},
        {"name": "namespace", "value": "shop", "isRegex": False, "isEqual": True},
    ]
    assert (body["startsAt"], body["endsAt"]) == (T0.isoformat(), DEADLINE.isoformat())
    assert body["createdBy"] == "healer" and body["comment"] == "incident 7"
    statefulset = WorkloadRef("shop", "StatefulSet", "db")
    assert matchers(statefulset) == {"namespace": "shop", "statefulset": "db"}


def test_a_workloads_pods_are_silenced_by_the_names_its_controller_gives_them() -> None:
    """Alerts that name a pod alone carry no workload label: a second silence matches the
    pods' names, anchored as Alertmanager anchors them, and not a longer-named workload's."""
    by_label, by_pod = silences_for(CART, starts=T0, ends=DEADLINE)
    assert by_label.matchers == matchers(CART) and not by_label.regex
    body = silence_body(by_pod, comment="")
    assert body["matchers"] == [
        {"name": "namespace", "value": "shop", "isRegex": False, "isEqual": True},
        {"name": "pod", "value": "cart-[a-z0-9]+-[a-z0-9]{5}", "isRegex": True, "isEqual": True},
    ]
    pattern = re.compile(by_pod.regex["pod"])
    assert pattern.fullmatch("cart-7d9f8c6b5-x2k4q")
    assert not pattern.fullmatch("cart-db-7d9f8c6b5-x2k4q"), "another Deployment's pod"
    assert not pattern.fullmatch("cart-0")
    [_, ordinals] = silences_for(WorkloadRef("shop", "StatefulSet", "db"), starts=T0, ends=DEADLINE)
    assert ordinals.regex == {"pod": "db-[0-9]+"}
    assert re.compile(ordinals.regex["pod"]).fullmatch("db-12")


def test_a_silence_is_made_recorded_and_expired_at_the_outcome(
    store: AuditStore, incident: int
) -> None:
    am = FakeAlertmanager()
    keeper = keeper_for(am, store)
    keeper.silence(incident, CART, starts=T0, ends=DEADLINE)
    keeper.join()
    [kept, pods] = store.silences_of(incident)
    assert kept.silence.state is SilenceState.ACTIVE and kept.silence.silence_id == "s-1"
    assert kept.silence.matchers == {"namespace": "shop", "deployment": "cart"}
    assert (pods.silence.silence_id, pods.silence.matchers) == ("s-2", {"namespace": "shop"})
    assert pods.silence.regex == {"pod": "cart-[a-z0-9]+-[a-z0-9]{5}"}
    made = am.silences["s-1"]
    assert made["comment"] == (
        f"healer acts on {CART} and verifies it until {DEADLINE.isoformat()}: "
        f"https://healer.example/incidents/{incident}"
    )
    keeper.expire(incident, at=T0 + timedelta(minutes=4), why="healed: back at baseline")
    keeper.join()
    keeper.close()
    assert am.state("s-1") == am.state("s-2") == "expired"
    assert {k.silence.state for k in store.silences_of(incident)} == {SilenceState.EXPIRED}
    detail = store.get_incident(incident)
    assert detail is not None
    steps = [s.data for s in detail.timeline if s.kind == StepKind.SILENCE]
    assert [(s["state"], s["silence_id"]) for s in steps] == [
        ("active", "s-1"),
        ("active", "s-2"),
        ("expired", "s-1"),
        ("expired", "s-2"),
    ]
    assert steps[2]["detail"] == "healed: back at baseline"


def test_a_busy_alertmanager_is_retried(store: AuditStore, incident: int) -> None:
    am = FakeAlertmanager(failures=2)
    keeper = keeper_for(am, store, silence_retries=3)
    keeper.silence(incident, CART, starts=T0, ends=DEADLINE)
    keeper.join()
    keeper.close()
    assert am.requests == [("POST", "/api/v2/silences")] * 4, "503 twice, then both made"
    assert {k.silence.state for k in store.silences_of(incident)} == {SilenceState.ACTIVE}


def test_an_alertmanager_that_stays_down_is_recorded_as_no_silence(
    store: AuditStore, incident: int
) -> None:
    am = FakeAlertmanager(down=True)
    keeper = keeper_for(am, store, silence_retries=2)
    keeper.silence(incident, CART, starts=T0, ends=DEADLINE)
    keeper.join()
    assert len(am.requests) == 6, "bounded: one attempt and two retries, for each"
    for kept in store.silences_of(incident):
        assert kept.silence.state is SilenceState.FAILED and kept.silence.silence_id is None
        assert kept.silence.error is not None
        assert "alertmanager.url" in kept.silence.error and "ConnectError" in kept.silence.error
    keeper.expire(incident, at=DEADLINE, why="escalated")
    keeper.join()
    keeper.close()
    assert len(am.requests) == 6, "nothing to expire for a silence never made"
    detail = store.get_incident(incident)
    assert detail is not None
    steps = [s.data for s in detail.timeline if s.kind == StepKind.SILENCE]
    assert len(steps) == 2
    assert all(str(s["detail"]).startswith("not silenced: Alertmanager at") for s in steps)


def test_an_expiry_that_fails_leaves_the_silence_active_and_says_why(
    store: AuditStore, incident: int
) -> None:
    am = FakeAlertmanager()
    keeper = keeper_for(am, store, silence_retries=1)
    keeper.silence(incident, CART, starts=T0, ends=DEADLINE)
    keeper.join()
    am.down = True
    keeper.expire(incident, at=DEADLINE, why="escalated")
    keeper.join()
    keeper.close()
    for kept in store.silences_of(incident):
        assert kept.silence.state is SilenceState.ACTIVE and kept.silence.error is not None
    detail = store.get_incident(incident)
    assert detail is not None
    last = [s.data for s in detail.timeline if s.kind == StepKind.SILENCE][-1]
    assert str(last["detail"]).startswith("could not be expired: Alertmanager at")


def test_silences_people_made_or_took_over_are_never_expired(
    store: AuditStore, incident: int
) -> None:
    am = FakeAlertmanager()
    person = {"createdBy": "alice", "comment": "maintenance", "status": {"state": "active"}}
    am.silences["theirs"] = {**person, "id": "theirs"}
    keeper = keeper_for(am, store)
    keeper.silence(incident, CART, starts=T0, ends=DEADLINE)
    keeper.join()
    am.silences["s-1"]["createdBy"] = "bob"  # bob extended it in Alertmanager's UI
    keeper.expire(incident, at=DEADLINE, why="escalated")
    keeper.join()
    keeper.close()
    assert am.state("theirs") == "active" and am.state("s-1") == "active"
    assert ("DELETE", "/api/v2/silence/s-1") not in am.requests
    assert not any(path.endswith("/theirs") for _, path in am.requests)
    assert am.state("s-2") == "expired", "healer's own, untouched by bob, is expired"
    states = [k.silence.state for k in store.silences_of(incident)]
    assert states == [SilenceState.RELEASED, SilenceState.EXPIRED]


def test_a_second_action_replaces_the_incidents_silence(store: AuditStore, incident: int) -> None:
    am = FakeAlertmanager()
    keeper = keeper_for(am, store)
    keeper.silence(incident, CART, starts=T0, ends=DEADLINE)
    later = T0 + timedelta(minutes=11)
    keeper.silence(incident, CART, starts=later, ends=later + timedelta(minutes=15))
    keeper.join()
    keeper.close()
    assert [am.state(f"s-{i}") for i in (1, 2, 3, 4)] == ["expired"] * 2 + ["active"] * 2
    states = [k.silence.state for k in store.silences_of(incident)]
    assert states == [SilenceState.EXPIRED] * 2 + [SilenceState.ACTIVE] * 2


def test_a_full_queue_is_recorded_on_the_incident_without_waiting(
    store: AuditStore, incident: int
) -> None:
    release = threading.Event()

    class Stuck:
        def create(self, body: JsonObject) -> str:
            release.wait(10)
            return "s-late"

        def get(self, silence_id: str) -> JsonObject | None:
            return None

        def expire(self, silence_id: str) -> None:
            pass

    keeper = SilenceKeeper(Stuck(), store, capacity=1)
    keeper.silence(incident, CART, starts=T0, ends=DEADLINE)  # taken by the thread, stuck
    for _ in range(20):  # until the thread holds the first; the second then queues
        if keeper._queue.empty():
            break
        threading.Event().wait(0.05)
    keeper.silence(incident, CART, starts=T0, ends=DEADLINE)  # queued
    keeper.silence(incident, CART, starts=T0, ends=DEADLINE)  # no room: recorded at once
    assert keeper.dropped == 1
    failed = [k for k in store.silences_of(incident) if k.silence.state is SilenceState.FAILED]
    assert len(failed) == 2, "the workload's and its pods' silences, neither made"
    assert all("alertmanager.silence_queue_size" in str(f.silence.error) for f in failed)
    release.set()
    keeper.close()


def test_a_bearer_token_is_sent_when_set(store: AuditStore, incident: int) -> None:
    seen: list[str | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(200, json={"silenceID": "s-1"})

    config = AlertmanagerSettings(url="http://alertmanager:9093", bearer_token="t0ken")
    api = AlertmanagerSilences(config, transport=httpx.MockTransport(answer))
    body = silence_body(Silence(matchers(CART), T0, DEADLINE, SilenceState.ACTIVE), comment="")
    assert api.create(body) == "s-1"
    assert seen == ["Bearer t0ken"]
