"""The API over real HTTP (uvicorn on a loopback port, httpx): every endpoint, filter
and role, and bad input that must be refused without changing anything recorded."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from healer.api import create_app
from healer.api.auth import hash_token
from healer.api.server import ServerThread, bind
from healer.audit import AuditStore
from healer.config import Settings
from healer.decide import load_playbooks
from healer.types import (
    ActionKind,
    ActionRecord,
    ActionStatus,
    Cause,
    Diagnosis,
    Direction,
    Finding,
    GuardResult,
    Mode,
    Outcome,
    OutcomeKind,
    Plan,
    Signal,
    SignalDeviation,
    WorkloadRef,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=2)
CART = WorkloadRef("shop", "Deployment", "cart")
LEDGER = WorkloadRef("bank", "Deployment", "ledger")
TOKENS = {"viewer": "v-token", "operator": "o-token"}
SETTINGS = Settings(
    api={
        "tokens": [
            {"name": f"{role}-1", "role": role, "sha256": hash_token(token)}
            for role, token in TOKENS.items()
        ]
    }
)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def finding(wl: WorkloadRef, t: float) -> Finding:
    deviation = SignalDeviation(Signal.CPU, 1.5, 0.5, 8.0, Direction.UP)
    return Finding(wl, at(t), 0.97, (deviation,), onset=at(t - 60), model_version="m-1")


def incident(
    store: AuditStore, wl: WorkloadRef, t: float, cause: Cause, status: ActionStatus
) -> int:
    iid = store.open_incident(finding(wl, t))
    store.record_diagnosis(iid, Diagnosis(wl, cause, 0.9, "why"), at=at(t))
    guards = (GuardResult("cooldown", True, "none"), GuardResult("anomaly_brake", True, "1/9"))
    plan = Plan(wl, "scale", ActionKind.SCALE, {"replicas": 4}, Mode.APPROVAL, guards, "r", 600.0)
    store.record_plan(iid, plan, at=at(t))
    store.record_action(
        iid, ActionRecord(ActionKind.SCALE, wl, {"verb": "PATCH"}, status, at(t), at(t))
    )
    if status is ActionStatus.SUCCEEDED:
        store.record_outcome(iid, Outcome(OutcomeKind.HEALED, "back to baseline", at(t + 300)))
    return iid


@pytest.fixture
def served(tmp_path: Path, store: AuditStore) -> Iterator[str]:
    models = tmp_path / "models"
    models.mkdir()
    (models / "iforest-1.json").write_text(json.dumps({"features": ["cpu"], "version": "1"}))
    app = create_app(
        store=store,
        status=lambda: {"cycles": 3, "last_cycle": NOW.isoformat(), "leader": "pod-a"},
        readiness=lambda: [],
        settings=SETTINGS,
        playbooks=load_playbooks(REPO / "playbooks"),
        models_dir=models,
        clock=lambda: NOW,
    )
    server = ServerThread(app, bind("127.0.0.1", 0)).start()
    yield server.url
    server.stop()


@pytest.fixture
def data(store: AuditStore) -> dict[str, int]:
    return {
        "healed": incident(store, CART, 0, Cause.OVERLOAD, ActionStatus.SUCCEEDED),
        "pending": incident(store, LEDGER, 3600, Cause.MEMORY_LEAK, ActionStatus.PENDING_APPROVAL),
    }


_OPEN: list[httpx.Client] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def client(url: str, role: str | None = "viewer") -> httpx.Client:
    headers = {"Authorization": f"Bearer {TOKENS[role]}"} if role else {}
    _OPEN.append(httpx.Client(base_url=url, headers=headers, timeout=10))
    return _OPEN[-1]


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def action_of(url: str, incident_id: int) -> int:
    return int(ok(client(url).get(f"/api/v1/incidents/{incident_id}"))["actions"][0]["id"])


def test_open_endpoints_need_no_token(served: str) -> None:
    with client(served, None) as http:
        assert ok(http.get("/healthz")) == {"status": "ok"}
        assert ok(http.get("/readyz"))["status"] == "ready"
        metrics = http.get("/metrics")
        assert metrics.status_code == 200
        for name in (
            "healer_cycles_total 3.0",
            "healer_cycle_seconds_count",
            "healer_findings_total",
        ):
            assert name in metrics.text
        assert "/api/v1/incidents" in ok(http.get("/openapi.json"))["paths"]
        assert "swagger" in http.get("/docs").text.lower()


def test_metrics_count_actions_and_guard_blocks(served: str, data: dict[str, int]) -> None:
    text = httpx.get(f"{served}/metrics").text
    assert 'healer_actions_total{kind="scale",outcome="succeeded"} 1.0' in text
    assert 'healer_actions_total{kind="scale",outcome="pending_approval"} 1.0' in text


GET_ROUTES = ["/api/v1/incidents", "/api/v1/incidents/1", "/api/v1/actions", "/api/v1/playbooks",
              "/api/v1/models", "/api/v1/status"]  # fmt: skip
POST_ROUTES = [
    "/api/v1/actions/2/approve",
    "/api/v1/actions/2/reject",
    "/api/v1/incidents/2/feedback",
]


@pytest.mark.parametrize("route", GET_ROUTES + POST_ROUTES)
def test_every_api_route_needs_a_valid_token(served: str, data: dict[str, int], route: str) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic eDp5"}):
        response = httpx.request(
            "POST" if route in POST_ROUTES else "GET", served + route, headers=headers, json={}
        )
        assert response.status_code == 401, (headers, response.text)
        assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("route", POST_ROUTES)
def test_a_viewer_may_not_change_anything(served: str, data: dict[str, int], route: str) -> None:
    body = {"verdict": "true_positive"} if route.endswith("feedback") else {"reason": "r"}
    answer = client(served).post(route, json=body)
    assert answer.status_code == 403
    assert "viewer" in answer.json()["detail"]
    assert ok(client(served).get("/api/v1/actions", params={"status": "pending_approval"}))[
        "items"
    ], "still pending"


@pytest.mark.parametrize("route", GET_ROUTES)
def test_both_roles_read(served: str, data: dict[str, int], route: str) -> None:
    for role in ("viewer", "operator"):
        ok(client(served, role).get(route))


def test_list_filters(served: str, data: dict[str, int]) -> None:
    def ids(**params: Any) -> list[int]:
        return [
            i["id"] for i in ok(client(served).get("/api/v1/incidents", params=params))["items"]
        ]

    healed, pending = data["healed"], data["pending"]
    assert ids() == [pending, healed], "newest first"
    assert ids(status="resolved") == [healed]
    assert ids(status="pending_approval") == [pending]
    assert ids(namespace="bank") == [pending]
    assert ids(workload="cart") == [healed]
    assert ids(cause="overload") == [healed]
    assert ids(cause="crash_loop") == []
    assert ids(since=at(3000).isoformat()) == [pending]
    assert ids(until=at(3000).isoformat()) == [healed]
    assert ids(since="2024-05-01T12:58:00+01:00", until=at(3000).isoformat()) == [healed]


def test_cursor_pagination_and_a_tampered_cursor(served: str, store: AuditStore) -> None:
    made = [store.open_incident(finding(CART, i)) for i in range(5)]
    http = client(served)
    seen, params = [], {"limit": 2}
    while True:
        page = ok(http.get("/api/v1/incidents", params=params))
        seen += [i["id"] for i in page["items"]]
        if not page["next_cursor"]:
            break
        params["cursor"] = page["next_cursor"]
    assert seen == made[::-1]
    first = ok(http.get("/api/v1/incidents", params={"limit": 2}))["next_cursor"]
    last_id, signature = first.split(".")
    for forged in (
        f"{int(last_id) + 2}.{signature}",
        f"{last_id}.{signature[:-1]}{'B' if signature[-1] != 'B' else 'C'}",
        "12",
        "x.y",
    ):
        answer = http.get("/api/v1/incidents", params={"cursor": forged})
        assert answer.status_code == 400, forged
        assert answer.json()["detail"].startswith("cursor: ")


def test_the_timeline_is_whole(served: str, data: dict[str, int]) -> None:
    detail = ok(client(served).get(f"/api/v1/incidents/{data['healed']}"))
    assert [s["kind"] for s in detail["timeline"]] == [
        "finding", "diagnosis", "plan", "action", "outcome",
    ]  # fmt: skip
    plan = detail["timeline"][2]["data"]
    assert [g["guard"] for g in plan["guard_results"]] == ["cooldown", "anomaly_brake"]
    [action] = detail["actions"]
    assert (action["kind"], action["status"], action["request"]) == (
        "scale", "succeeded", {"verb": "PATCH"},
    )  # fmt: skip


def test_approve_a_pending_action(served: str, data: dict[str, int]) -> None:
    action_id = action_of(served, data["pending"])
    http = client(served, "operator")
    listed = ok(http.get("/api/v1/actions", params={"status": "pending_approval"}))["items"]
    assert [a["id"] for a in listed] == [action_id]
    done = ok(http.post(f"/api/v1/actions/{action_id}/approve", json={"reason": "go"}))
    assert (done["status"], done["reviewed_by"], done["reviewed_at"]) == (
        "approved", "operator-1", "2024-05-01T14:00:00Z",
    )  # fmt: skip
    assert ok(http.get("/api/v1/actions", params={"status": "pending_approval"}))["items"] == []
    assert ok(http.get("/api/v1/status"))["guards"]["approved_waiting"] == 1
    again = http.post(f"/api/v1/actions/{action_id}/approve", json={})
    assert again.status_code == 409
    assert f"action {action_id} is approved" in again.json()["detail"]


def test_reject_needs_a_reason_and_closes_the_incident(served: str, data: dict[str, int]) -> None:
    action_id = action_of(served, data["pending"])
    http = client(served, "operator")
    missing = http.post(f"/api/v1/actions/{action_id}/reject", json={})
    assert missing.status_code == 422
    assert missing.json()["detail"][0]["loc"] == ["body", "reason"]
    ok(http.post(f"/api/v1/actions/{action_id}/reject", json={"reason": "peak hour"}))
    detail = ok(http.get(f"/api/v1/incidents/{data['pending']}"))
    assert (detail["status"], detail["outcome"]) == ("resolved", "escalated")
    assert detail["timeline"][-2]["actor"] == "operator-1"


def test_feedback(served: str, data: dict[str, int], store: AuditStore) -> None:
    body = {"verdict": "false_positive", "cause": "unknown", "right_action": None, "note": "cron"}
    given = ok(
        client(served, "operator").post(f"/api/v1/incidents/{data['healed']}/feedback", json=body),
        201,
    )
    assert (given["verdict"], given["by"], given["window_end"]) == (
        "false_positive", "operator-1", "2024-05-01T12:05:00Z",
    )  # fmt: skip
    [label] = store.feedback()
    assert label.note == "cron"


def test_playbooks_models_and_status(served: str, data: dict[str, int]) -> None:
    http = client(served)
    names = [p["name"] for p in ok(http.get("/api/v1/playbooks"))["items"]]
    shipped = sorted(p for p in (REPO / "playbooks").iterdir() if p.suffix == ".yaml")
    assert len(names) == len(shipped) and "restart-on-memory-leak" in names
    assert ok(http.get("/api/v1/models"))["items"] == [
        {"name": "iforest-1", "card": {"features": ["cpu"], "version": "1"}}
    ]
    status = ok(http.get("/api/v1/status"))
    assert (status["leader"], status["cycles"], status["mode"]) == ("pod-a", 3, "dry_run")
    assert status["last_cycle"] == "2024-05-01T14:00:00Z"
    assert status["guards"]["pending_approval"] == 1
    assert status["guards"]["cooling_down"] == [], "the last action was two hours ago"


def db_rows(path: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as db:
        rows = [
            row
            for table in ("incidents", "incident_steps", "actions", "feedback")
            for row in db.execute(f"SELECT * FROM {table} ORDER BY 1")
        ]
    db.close()
    return rows


BAD_REQUESTS: list[tuple[str, str, Any, int, str]] = [
    # (method, path, body, status, text the answer must contain)
    ("POST", "/api/v1/actions/{a}/approve", b"{not json", 422, "json_invalid"),
    ("POST", "/api/v1/actions/{a}/approve", {"reason": "x", "force": True}, 422, "force"),
    ("POST", "/api/v1/actions/{a}/approve", {"reason": 7}, 422, "reason"),
    ("POST", "/api/v1/actions/{a}/reject", {"reason": "x\u0000y"}, 422, "reason"),
    ("POST", "/api/v1/actions/999/approve", {}, 404, "action 999 not found"),
    ("POST", "/api/v1/actions/abc/approve", {}, 422, "action_id"),
    ("POST", "/api/v1/actions/99999999999999999999999/approve", {}, 422, "action_id"),
    ("POST", "/api/v1/actions/{done}/approve", {}, 409, "not pending_approval"),
    ("POST", "/api/v1/actions/{done}/reject", {"reason": "r"}, 409, "not pending_approval"),
    ("POST", "/api/v1/incidents/{i}/feedback", {"verdict": "maybe"}, 422, "verdict"),
    ("POST", "/api/v1/incidents/{i}/feedback", {"verdict": "true_positive", "x": 1}, 422, "x"),
    ("POST", "/api/v1/incidents/{i}/feedback", [], 422, "body"),
    ("POST", "/api/v1/incidents/555/feedback", {"verdict": "true_positive"}, 404, "incident 555"),
    ("GET", "/api/v1/incidents/555", None, 404, "incident 555 not found"),
    ("GET", "/api/v1/incidents?since=yesterday", None, 422, "since"),
    ("GET", "/api/v1/incidents?since=9999-12-31T23:59:59-01:00", None, 422, "since"),
    ("GET", "/api/v1/incidents?cursor=5.AAAA", None, 400, "cursor"),
    ("GET", "/api/v1/actions?status=sleeping", None, 422, "status"),
    # A lone surrogate is valid JSON but no text: refused, never a 500.
    ("POST", "/api/v1/actions/{a}/approve", b'{"reason":"\\ud800"}', 422, "unicode"),
    ("POST", "/api/v1/actions/{a}/reject", b'{"reason":"\\udfff"}', 422, "unicode"),
    (
        "POST",
        "/api/v1/incidents/{i}/feedback",
        b'{"verdict":"true_positive","note":"a\\ud800b"}',
        422,
        "unicode",
    ),
    ("POST", "/api/v1/incidents/{i}/feedback", b'{"verdict":"\\ud800"}', 422, "verdict"),
    # Over api.max_body_bytes (1 MiB by default): refused before it is read.
    ("POST", "/api/v1/actions/{a}/approve", b" " * (1024 * 1024 + 1), 413, "api.max_body_bytes"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "text"), BAD_REQUESTS)
def test_bad_input_is_refused_naming_it_and_changes_nothing(
    served: str,
    data: dict[str, int],
    tmp_path: Path,
    method: str,
    path: str,
    body: Any,
    status: int,
    text: str,
) -> None:
    http = client(served, "operator")
    path = path.format(
        a=action_of(served, data["pending"]),
        done=action_of(served, data["healed"]),
        i=data["healed"],
    )
    before = db_rows(tmp_path / "audit.db")
    kwargs: dict[str, Any] = {}
    if isinstance(body, bytes):
        kwargs = {"content": body, "headers": {"Content-Type": "application/json"}}
    elif body is not None:
        kwargs = {"json": body}
    answer = http.request(method, path, **kwargs)
    assert answer.status_code == status, answer.text
    assert text in answer.text
    assert db_rows(tmp_path / "audit.db") == before


def test_the_incidents_command_talks_to_the_api(served: str, data: dict[str, int]) -> None:
    from typer.testing import CliRunner

    from healer.cli import app
    from healer.errors import HealerError

    runner = CliRunner()
    env = {"HEALER_URL": served, "HEALER_TOKEN": TOKENS["operator"]}
    listed = runner.invoke(app, ["incidents", "list", "--status", "pending_approval"], env=env)
    assert listed.exit_code == 0, listed.output
    assert f"#{data['pending']}" in listed.output and "bank/ledger" in listed.output
    action_id = action_of(served, data["pending"])
    shown = runner.invoke(app, ["incidents", "show", str(data["pending"])], env=env)
    assert f"action {action_id}: scale pending_approval" in shown.output
    approved = runner.invoke(app, ["incidents", "approve", str(action_id)], env=env)
    assert approved.output.strip() == f"action {action_id} (scale) approved"
    again = runner.invoke(app, ["incidents", "reject", str(action_id), "--reason", "no"], env=env)
    assert isinstance(again.exception, HealerError)
    assert "409" in str(again.exception) and "not pending_approval" in str(again.exception)
    viewer = {**env, "HEALER_TOKEN": TOKENS["viewer"]}
    refused = runner.invoke(app, ["incidents", "approve", str(action_id)], env=viewer)
    assert isinstance(refused.exception, HealerError) and "403" in str(refused.exception)


def test_a_422_does_not_echo_a_large_body_whole(served: str, data: dict[str, int]) -> None:
    http = client(served, "operator")
    action_id = action_of(served, data["pending"])
    big = "x" * 900_000  # under the body limit, and the wrong type for the body
    answer = http.post(f"/api/v1/actions/{action_id}/approve", json=big)
    assert answer.status_code == 422, answer.text
    assert len(answer.content) < 2_000
    [error] = answer.json()["detail"]
    assert error["loc"] == ["body"]
    assert error["input"].startswith("xxxx") and error["input"].endswith("(900000 characters)")
