"""The HTTP API through fastapi.testclient against a store on a tmp_path SQLite file."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from healer.api import create_app
from healer.api.auth import hash_token
from healer.audit import AuditStore
from healer.config import Settings
from healer.types import (
    ActionKind,
    ActionRecord,
    ActionStatus,
    Cause,
    Diagnosis,
    Direction,
    Finding,
    Outcome,
    OutcomeKind,
    Signal,
    SignalDeviation,
    Silence,
    SilenceState,
    WorkloadRef,
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
CART = WorkloadRef("shop", "Deployment", "cart")
LEDGER = WorkloadRef("bank", "Deployment", "ledger")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def finding(wl: WorkloadRef = CART, t: float = 0.0) -> Finding:
    deviation = SignalDeviation(Signal.ERROR_RATIO, 0.2, 0.01, 9.0, Direction.UP)
    return Finding(wl, at(t), 0.97, (deviation,), onset=at(t - 60), model_version="m-1")


VIEWER = "viewer-token"
SETTINGS = Settings(
    api={"tokens": [{"name": "ann", "role": "viewer", "sha256": hash_token(VIEWER)}]}
)
AUTH = {"Authorization": f"Bearer {VIEWER}"}


def app_for(store: AuditStore, **kwargs: Any) -> TestClient:
    return TestClient(create_app(store=store, settings=SETTINGS, **kwargs), headers=AUTH)


@pytest.fixture
def client(store: AuditStore) -> Iterator[TestClient]:
    with app_for(store, status=lambda: {"cycles": 7, "leader": "pod-a"}) as c:
        yield c


def get(client: TestClient, url: str, **params: Any) -> Any:
    response = client.get(url, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def resolved_incident(store: AuditStore) -> int:
    iid = store.open_incident(finding())
    store.record_diagnosis(iid, Diagnosis(CART, Cause.BAD_RELEASE, 0.9, "Errors began at deploy."))
    action = ActionRecord(
        ActionKind.ROLLBACK, CART, {"verb": "PATCH"}, ActionStatus.SUCCEEDED, at(30), at(31)
    )
    store.record_action(iid, action)
    store.record_outcome(iid, Outcome(OutcomeKind.HEALED, "errors at baseline", at(300)))
    return iid


def test_healthz(client: TestClient) -> None:
    assert get(client, "/healthz") == {"status": "ok"}


def test_status_comes_from_the_callable(client: TestClient) -> None:
    status = get(client, "/api/v1/status")
    assert (status["cycles"], status["leader"], status["mode"]) == (7, "pod-a", "dry_run")
    assert status["guards"]["in_flight"] == 0


def test_status_shows_the_history_the_detector_was_warmed_with(store: AuditStore) -> None:
    warm = {
        "wanted_s": 730800.0,
        "history_s": 86400.0,
        "short": True,
        "first": "2026-03-01T12:00:00+00:00",
        "last": "2026-03-02T12:00:00+00:00",
        "workloads": 5,
        "samples": 516,
        "seconds": 4.2,
    }
    with app_for(store, status=lambda: {"cycles": 0, "warm": warm}) as client:
        status = get(client, "/api/v1/status")
    assert status["warm"]["short"] is True and status["warm"]["history_s"] == 86400.0
    with app_for(store, status=lambda: {"cycles": 0, "warm": None}) as client:
        assert get(client, "/api/v1/status")["warm"] is None


def test_status_without_a_daemon_has_no_leader(store: AuditStore) -> None:
    with app_for(store) as client:
        status = get(client, "/api/v1/status")
    assert (status["leader"], status["cycles"], status["last_cycle"]) == (None, 0, None)


def test_a_daemon_without_election_is_the_leader(store: AuditStore) -> None:
    with app_for(store, status=lambda: {"cycles": 3}) as client:
        status = get(client, "/api/v1/status")
    assert (status["leader"], status["is_leader"]) == (store.identity, True)


def test_status_counts_every_pending_action(tmp_path: Path) -> None:
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    iid = store.open_incident(finding())
    record = ActionRecord(
        ActionKind.ROLLBACK, CART, {}, ActionStatus.PENDING_APPROVAL, at(10), at(10)
    )
    store.record_action(iid, record)
    with sqlite3.connect(tmp_path / "audit.db") as raw:
        columns = ", ".join(c[1] for c in raw.execute("PRAGMA table_info(actions)") if c[1] != "id")
        for _ in range(10):  # 1024 rows
            raw.execute(f"INSERT INTO actions ({columns}) SELECT {columns} FROM actions")
    raw.close()
    try:
        with app_for(store, status=lambda: {"cycles": 1}) as client:
            status = get(client, "/api/v1/status")
        assert status["guards"]["pending_approval"] == 1024
    finally:
        store.close()


def test_list_items_carry_the_summary(client: TestClient, store: AuditStore) -> None:
    iid = resolved_incident(store)
    page = get(client, "/api/v1/incidents")
    assert page == {
        "items": [
            {
                "id": iid,
                "workload": {"namespace": "shop", "kind": "Deployment", "name": "cart"},
                "status": "resolved",
                "opened": "2024-05-01T11:59:00Z",
                "closed": "2024-05-01T12:05:00Z",
                "score": 0.97,
                "cause": "bad_release",
                "confidence": 0.9,
                "action": "rollback",
                "action_status": "succeeded",
                "outcome": "healed",
                "last_seen": "2024-05-01T12:00:00Z",
                "cluster": "default",
            }
        ],
        "next_cursor": None,
    }


def test_list_filters(client: TestClient, store: AuditStore) -> None:
    cart = resolved_incident(store)
    ledger = store.open_incident(finding(LEDGER))

    def ids(**params: Any) -> list[int]:
        return [item["id"] for item in get(client, "/api/v1/incidents", **params)["items"]]

    assert ids() == [ledger, cart]
    assert ids(status="resolved") == [cart]
    assert ids(status="open") == [ledger]
    assert ids(namespace="bank") == [ledger]
    assert ids(workload="cart") == [cart]
    assert ids(cause="bad_release") == [cart]
    assert ids(cause="overload") == []


def test_pagination_with_cursor(client: TestClient, store: AuditStore) -> None:
    created = [store.open_incident(finding(t=i)) for i in range(5)]
    pages: list[list[int]] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        page = get(client, "/api/v1/incidents", **params)
        pages.append([item["id"] for item in page["items"]])
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    newest_first = created[::-1]
    assert pages == [newest_first[0:2], newest_first[2:4], newest_first[4:]]


def test_exact_last_page_has_no_next_cursor(client: TestClient, store: AuditStore) -> None:
    for i in range(2):
        store.open_incident(finding(t=i))
    assert get(client, "/api/v1/incidents", limit=2)["next_cursor"] is None


def test_detail_has_the_timeline_in_order(client: TestClient, store: AuditStore) -> None:
    iid = resolved_incident(store)
    detail = get(client, f"/api/v1/incidents/{iid}")
    assert detail["id"] == iid
    assert detail["status"] == "resolved"
    assert [(s["kind"], s["at"]) for s in detail["timeline"]] == [
        ("finding", "2024-05-01T12:00:00Z"),
        ("diagnosis", "2024-05-01T12:00:00Z"),
        ("action", "2024-05-01T12:00:30Z"),
        ("outcome", "2024-05-01T12:05:00Z"),
    ]
    assert detail["timeline"][1]["data"]["explanation"] == "Errors began at deploy."
    assert detail["timeline"][2]["data"]["kind"] == "rollback"


def test_unknown_incident_is_404(client: TestClient) -> None:
    response = client.get("/api/v1/incidents/42")
    assert response.status_code == 404
    assert response.json() == {"detail": "incident 42 not found"}


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"status": "sleeping"}, "status"),
        ({"cause": "gremlins"}, "cause"),
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"since": "2024-05-01T12:00:00"}, "since"),
        ({"namespace": "Not_A_Namespace"}, "namespace"),
    ],
)
def test_bad_query_values_are_422_naming_the_parameter(
    client: TestClient, params: dict[str, Any], parameter: str
) -> None:
    response = client.get("/api/v1/incidents", params=params)
    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["detail"]] == [["query", parameter]]


def test_store_failure_is_503(tmp_path: Path) -> None:
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    iid = store.open_incident(finding())
    with sqlite3.connect(tmp_path / "audit.db") as raw:
        raw.execute("DROP TABLE incident_steps")
    raw.close()
    try:
        with app_for(store) as client:
            response = client.get(f"/api/v1/incidents/{iid}")
        assert response.status_code == 503
        assert response.json() == {"detail": "audit store unavailable"}
    finally:
        store.close()


def test_openapi_schema_builds(client: TestClient) -> None:
    paths = get(client, "/openapi.json")["paths"]
    assert {"/api/v1/incidents", "/api/v1/incidents/{incident_id}", "/api/v1/status"} <= set(paths)


def test_readyz_is_ready_when_the_store_answers_and_the_loop_runs(store: AuditStore) -> None:
    with app_for(store, readiness=lambda: []) as client:
        answer = client.get("/readyz")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ready", "reasons": []}


def test_readyz_says_why_it_is_not_ready(store: AuditStore) -> None:
    reasons = ["metrics unavailable: connection refused"]
    with app_for(store, readiness=lambda: reasons) as client:
        answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["reasons"] == reasons


def test_readyz_reports_an_unreachable_store(tmp_path: Path) -> None:
    broken = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    with sqlite3.connect(tmp_path / "audit.db") as db:
        db.execute("DROP TABLE incident_steps")
        db.execute("DROP TABLE incidents")
    with app_for(broken) as client:
        answer = client.get("/readyz")
    broken.close()
    assert answer.status_code == 503
    assert answer.json()["reasons"][0].startswith("audit store unavailable")


def test_approving_an_action_of_a_resolved_incident_is_a_409_naming_it(tmp_path: Path) -> None:
    """A database written before closing an incident withdrew its pending action can
    still hold one: reviewing it would reopen a resolved incident."""
    path = tmp_path / "audit.db"
    store = AuditStore(f"sqlite:///{path}")
    iid = store.open_incident(finding())
    pending = ActionRecord(
        ActionKind.RESTART, CART, {"verb": "PATCH"}, ActionStatus.PENDING_APPROVAL, at(10), at(10)
    )
    action_id = store.record_action(iid, pending)
    store.record_outcome(iid, Outcome(OutcomeKind.ESCALATED, "a person must look", at(60)))
    with sqlite3.connect(path) as db:  # the action as an earlier version left it
        db.execute("UPDATE actions SET status = 'pending_approval' WHERE id = ?", (action_id,))
    operator = "operator-token"
    settings = Settings(
        api={"tokens": [{"name": "olga", "role": "operator", "sha256": hash_token(operator)}]}
    )
    headers = {"Authorization": f"Bearer {operator}"}
    with TestClient(create_app(store=store, settings=settings), headers=headers) as client:
        answer = client.post(f"/api/v1/actions/{action_id}/approve", json={"reason": "go"})
    store.close()
    assert answer.status_code == 409
    assert answer.json()["detail"] == (
        f"incident {iid} is resolved: an approval cannot move it to open "
        "(only from pending_approval)"
    )


def test_an_incident_lists_the_silences_healer_asked_for(
    client: TestClient, store: AuditStore
) -> None:
    iid = resolved_incident(store)
    wanted = Silence(
        {"namespace": "shop", "deployment": "cart"}, at(31), at(331), SilenceState.ACTIVE
    )
    store.record_silence(iid, replace(wanted, silence_id="4e1f"), at=at(31))
    failed = replace(wanted, state=SilenceState.FAILED, error="Alertmanager at ... 503")
    store.record_silence(iid, failed, at=at(31))
    body = get(client, f"/api/v1/incidents/{iid}")
    assert [(s["silence_id"], s["state"], s["error"]) for s in body["silences"]] == [
        ("4e1f", "active", None),
        (None, "failed", "Alertmanager at ... 503"),
    ]
    assert body["silences"][0]["matchers"] == {"namespace": "shop", "deployment": "cart"}
    assert [s["data"]["state"] for s in body["timeline"] if s["kind"] == "silence"] == [
        "active",
        "failed",
    ]
