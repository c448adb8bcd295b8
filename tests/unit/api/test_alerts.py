"""``POST /api/v1/alerts``: Alertmanager's webhook through fastapi.testclient, on a store
on a tmp_path SQLite file."""

from __future__ import annotations

import copy
import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from healer.api import create_app
from healer.api.auth import hash_token
from healer.audit import AuditStore
from healer.config import Settings
from healer.types import AlertDisposition, AlertStatus
from tests.unit.api.test_app import finding

RECEIVER = "alertmanager-token"
VIEWER = "viewer-token"
SETTINGS = Settings(
    api={"tokens": [{"name": "ann", "role": "viewer", "sha256": hash_token(VIEWER)}]},
    alertmanager={"receiver_tokens": [{"name": "am-1", "sha256": hash_token(RECEIVER)}]},
)
AUTH = {"Authorization": f"Bearer {RECEIVER}"}
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def alert(fingerprint: str = "c0ffee01", status: str = "firing", **labels: str) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": "KubePodCrashLooping", "namespace": "shop", **labels},
        "annotations": {"summary": "cart restarts"},
        "startsAt": "2024-05-01T11:58:00Z",
        "endsAt": "2024-05-01T12:05:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
        "fingerprint": fingerprint,
    }


def payload(*alerts: dict[str, Any], status: str = "firing") -> dict[str, Any]:
    """A delivery as Alertmanager 0.25 sends it."""
    return {
        "version": "4",
        "groupKey": '{}:{alertname="KubePodCrashLooping"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "healer",
        "groupLabels": {"alertname": "KubePodCrashLooping"},
        "commonLabels": {"alertname": "KubePodCrashLooping"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": list(alerts) or [alert(deployment="cart")],
    }


@pytest.fixture
def client(store: AuditStore) -> Iterator[TestClient]:
    with TestClient(create_app(store=store, settings=SETTINGS, clock=lambda: NOW)) as c:
        yield c


def post(client: TestClient, body: Any, headers: dict[str, str] = AUTH) -> Any:
    return client.post("/api/v1/alerts", json=body, headers=headers)


def stored(path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as db:
        rows = list(db.execute("SELECT fingerprint, status, ends_at FROM alerts ORDER BY id"))
    db.close()
    return rows


def test_a_delivery_is_stored_before_the_answer(client: TestClient, store: AuditStore) -> None:
    answer = post(client, payload(alert("a1", deployment="cart"), alert("a2", pod="cart-7d9")))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"new": 2, "resolved": 0, "unchanged": 0}
    pending = store.pending_alerts()
    assert [p.alert.fingerprint for p in pending] == ["a1", "a2"]
    first = pending[0]
    assert first.alert.name == "KubePodCrashLooping"
    assert first.alert.status is AlertStatus.FIRING
    assert first.alert.ends_at is None  # a firing alert's endsAt is only a guess
    assert first.alert.receiver == "healer"
    assert first.received == NOW
    assert str(first.alert.workload) == "shop/cart"
    assert pending[1].alert.workload is None  # a pod alone names no Deployment yet


def test_a_repeated_delivery_changes_nothing(
    client: TestClient, store: AuditStore, tmp_path: Path
) -> None:
    body = payload(alert("a1", deployment="cart"))
    assert post(client, body).json() == {"new": 1, "resolved": 0, "unchanged": 0}
    before = stored(tmp_path / "audit.db")
    assert post(client, body).json() == {"new": 0, "resolved": 0, "unchanged": 1}
    assert stored(tmp_path / "audit.db") == before


def test_a_resolved_alert_records_its_end_once(
    client: TestClient, store: AuditStore, tmp_path: Path
) -> None:
    post(client, payload(alert("a1", deployment="cart")))
    resolved = payload(alert("a1", "resolved", deployment="cart"), status="resolved")
    assert post(client, resolved).json() == {"new": 0, "resolved": 1, "unchanged": 0}
    assert post(client, resolved).json() == {"new": 0, "resolved": 0, "unchanged": 1}
    assert stored(tmp_path / "audit.db") == [("a1", "resolved", "2024-05-01 12:05:00.000000")]
    assert store.pending_alerts() == []  # the daemon never takes a resolved alert


def test_an_alert_firing_again_after_it_resolved_is_a_new_firing(
    client: TestClient, store: AuditStore
) -> None:
    post(client, payload(alert("a1", "resolved", deployment="cart"), status="resolved"))
    again = alert("a1", deployment="cart") | {"startsAt": "2024-05-01T13:00:00Z"}
    assert post(client, payload(again)).json() == {"new": 1, "resolved": 0, "unchanged": 0}
    assert [p.alert.starts_at.hour for p in store.pending_alerts()] == [13]


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({}, "missing bearer token"),
        ({"Authorization": "Bearer wrong"}, "invalid receiver token"),
        ({"Authorization": f"Bearer {VIEWER}"}, "invalid receiver token"),
    ],
)
def test_a_delivery_needs_a_receiver_token(
    client: TestClient, tmp_path: Path, headers: dict[str, str], detail: str
) -> None:
    answer = post(client, payload(), headers=headers)
    assert answer.status_code == 401
    assert answer.json() == {"detail": detail}
    assert answer.headers["www-authenticate"] == "Bearer"
    assert stored(tmp_path / "audit.db") == []


def test_a_receiver_token_reads_nothing(client: TestClient) -> None:
    assert client.get("/api/v1/incidents", headers=AUTH).status_code == 401


def _bad(change: str) -> Any:
    body = payload(alert("a1", deployment="cart"), alert("a2", deployment="cart"))
    broken = copy.deepcopy(body)
    match change:
        case "version":
            broken["version"] = "3"
        case "alertname":
            del broken["alerts"][1]["labels"]["alertname"]
        case "labels":
            del broken["alerts"][1]["labels"]
        case "fingerprint":
            broken["alerts"][1]["fingerprint"] = "not hex!"
        case "startsAt":
            broken["alerts"][1]["startsAt"] = "2024-05-01T11:58:00"  # no offset
        case "status":
            broken["alerts"][1]["status"] = "pending"
        case "extra":
            broken["silenced"] = True
        case "alerts":
            broken["alerts"] = []
    return broken


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        ("version", ["body", "version"]),
        ("alertname", ["body", "alerts", 1, "labels"]),
        ("labels", ["body", "alerts", 1, "labels"]),
        ("fingerprint", ["body", "alerts", 1, "fingerprint"]),
        ("startsAt", ["body", "alerts", 1, "startsAt"]),
        ("status", ["body", "alerts", 1, "status"]),
        ("extra", ["body", "silenced"]),
        ("alerts", ["body", "alerts"]),
    ],
)
def test_a_payload_not_alertmanagers_is_a_422_naming_the_field_and_stores_nothing(
    client: TestClient, tmp_path: Path, change: str, loc: list[object]
) -> None:
    answer = post(client, _bad(change))
    assert answer.status_code == 422
    assert [e["loc"] for e in answer.json()["detail"]] == [loc]
    assert stored(tmp_path / "audit.db") == []


def test_a_body_that_is_not_json_is_a_422(client: TestClient, tmp_path: Path) -> None:
    answer = client.post("/api/v1/alerts", content=b"{not json", headers=AUTH)
    assert answer.status_code == 422
    assert stored(tmp_path / "audit.db") == []


def test_an_over_large_delivery_is_refused_before_it_is_read(
    client: TestClient, tmp_path: Path
) -> None:
    huge = json.dumps(payload()).encode() + b" " * (10 * 1024 * 1024)
    answer = client.post(
        "/api/v1/alerts", content=huge, headers={**AUTH, "content-type": "application/json"}
    )
    assert answer.status_code == 413
    assert "api.max_body_bytes" in answer.json()["detail"]
    assert stored(tmp_path / "audit.db") == []


def test_a_store_failing_mid_delivery_answers_503_and_the_retry_stores_it_once(
    client: TestClient, tmp_path: Path
) -> None:
    """Alertmanager retries a 5xx: the failed delivery left nothing, the retry stores it
    whole, and a further retry changes nothing."""
    path = tmp_path / "audit.db"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TRIGGER full BEFORE INSERT ON alerts WHEN NEW.fingerprint = 'a2' "
            "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
        )
    db.close()
    body = payload(alert("a1", deployment="cart"), alert("a2", deployment="cart"))
    answer = post(client, body)
    assert answer.status_code == 503
    assert answer.json() == {"detail": "audit store unavailable"}
    assert stored(path) == []  # a1 was rolled back with a2
    with sqlite3.connect(path) as db:
        db.execute("DROP TRIGGER full")
    db.close()
    assert post(client, body).json() == {"new": 2, "resolved": 0, "unchanged": 0}
    assert post(client, body).json() == {"new": 0, "resolved": 0, "unchanged": 2}
    assert [row[0] for row in stored(path)] == ["a1", "a2"]


def test_the_incident_lists_its_alerts(client: TestClient, store: AuditStore) -> None:
    post(client, payload(alert("a1", deployment="cart")))
    iid = store.open_incident(finding())
    (pending,) = store.pending_alerts()
    store.settle_alert(
        pending.id, AlertDisposition.JOINED, detail="joined", at=NOW, incident_id=iid
    )
    viewer = {"Authorization": f"Bearer {VIEWER}"}
    body = client.get(f"/api/v1/incidents/{iid}", headers=viewer).json()
    assert [(a["name"], a["disposition"], a["fingerprint"]) for a in body["alerts"]] == [
        ("KubePodCrashLooping", "joined", "a1")
    ]
    assert store.pending_alerts() == []
