"""The overview, acknowledgements and opt-outs: the JSON routes and the review page."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from healer.api import create_app
from healer.api.auth import hash_token
from healer.api.kubectl import command
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
    GuardResult,
    Mode,
    Outcome,
    OutcomeKind,
    Plan,
    Signal,
    SignalDeviation,
    WorkloadRef,
)

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
CART = WorkloadRef("shop", "Deployment", "cart")
SEARCH = WorkloadRef("shop", "Deployment", "search")
OPERATOR, VIEWER = "operator-token", "viewer-token"
SETTINGS = Settings(
    api={
        "tokens": [
            {"name": "olga", "role": "operator", "sha256": hash_token(OPERATOR)},
            {"name": "vic", "role": "viewer", "sha256": hash_token(VIEWER)},
        ]
    }
)
AS_OPERATOR = {"Authorization": f"Bearer {OPERATOR}"}
AS_VIEWER = {"Authorization": f"Bearer {VIEWER}"}
LAST_CYCLE = NOW - timedelta(seconds=20)


def status() -> dict[str, object]:
    return {"last_cycle": LAST_CYCLE.isoformat(), "cycles": 5}


def make_client(store: AuditStore) -> TestClient:
    app = create_app(store=store, settings=SETTINGS, clock=lambda: NOW, status=status)
    return TestClient(app)


@pytest.fixture
def api(store: AuditStore) -> Iterator[TestClient]:
    with make_client(store) as c:
        yield c


def page_as(client: TestClient, token: str) -> TestClient:
    answer = client.post("/login", data={"token": token}, follow_redirects=False)
    assert answer.status_code == 303
    return client


def escalated(store: AuditStore, workload: WorkloadRef = SEARCH) -> int:
    memory = SignalDeviation(Signal.MEMORY, 0.9, 0.5, 7.0, Direction.UP)
    onset = NOW - timedelta(hours=2)
    iid = store.open_incident(
        Finding(workload, onset + timedelta(minutes=1), 0.9, (memory,), onset, "m/1")
    )
    store.record_diagnosis(iid, Diagnosis(workload, Cause.UNKNOWN, 0.4, "nothing fits"))
    store.record_outcome(
        iid, Outcome(OutcomeKind.ESCALATED, "no playbook", onset + timedelta(minutes=2))
    )
    return iid


def restarted(
    store: AuditStore, *, status: ActionStatus = ActionStatus.SUCCEEDED
) -> tuple[int, int]:
    """A leak on cart, its restart planned with every guard passing, and the action."""
    memory = SignalDeviation(Signal.MEMORY, 0.9, 0.5, 7.0, Direction.UP)
    onset = NOW - timedelta(minutes=30)
    found = onset + timedelta(minutes=2)
    iid = store.open_incident(Finding(CART, found, 0.98, (memory,), onset, "m/1"))
    store.record_diagnosis(
        iid,
        Diagnosis(CART, Cause.MEMORY_LEAK, 0.8, "Memory climbs steadily on flat traffic."),
        at=found,
    )
    guards = tuple(GuardResult(f"guard{i}", True, "fine") for i in range(10))
    plan = Plan(CART, "restart-on-leak", ActionKind.RESTART, {}, Mode.AUTO, guards, "leak", 600.0)
    store.record_plan(iid, plan, at=found)
    request = {
        "verb": "PATCH",
        "path": "/apis/apps/v1/namespaces/shop/deployments/cart",
        "content_type": "application/strategic-merge-patch+json",
        "body": {"spec": {"template": {"metadata": {"annotations": {"r": "now"}}}}},
    }
    record = ActionRecord(ActionKind.RESTART, CART, request, status, found, found)
    return iid, store.record_action(iid, record)


# ---- JSON routes -----------------------------------------------------------------------------


def test_the_overview_says_what_waits_what_is_open_and_the_tallies(
    api: TestClient, store: AuditStore
) -> None:
    esc = escalated(store)
    pending_incident, pending_action = restarted(store, status=ActionStatus.PENDING_APPROVAL)
    body = api.get("/api/v1/overview", headers=AS_VIEWER).json()
    assert [a["id"] for a in body["pending"]] == [pending_action]
    assert ([i["id"] for i in body["escalations"]], body["escalations_total"]) == ([esc], 1)
    assert [i["id"] for i in body["open"]] == [pending_incident]
    assert body["last_cycle"] == "2026-03-02T11:59:40Z"
    day, week = body["windows"]
    assert (day["window"], day["incidents"], week["window"]) == ("last 24 hours", 2, "last 7 days")
    by_cause = {row["name"]: row["counts"] for row in day["by_cause"]}
    assert by_cause == {"unknown": {"escalated": 1}, "memory_leak": {"open": 1}}
    assert day["median_detect_s"] == {"unknown": 60.0, "memory_leak": 120.0}
    assert day["actions"] == [{"name": "restart", "counts": {"pending_approval": 1}}]


def test_acknowledging_an_escalation_takes_it_off_the_list(
    api: TestClient, store: AuditStore
) -> None:
    esc = escalated(store)
    url = f"/api/v1/incidents/{esc}/acknowledge"
    assert api.post(url, json={}, headers=AS_VIEWER).status_code == 403
    done = api.post(url, json={"note": "looking"}, headers=AS_OPERATOR)
    assert done.status_code == 200, done.text
    assert done.json() == {
        "incident_id": esc,
        "by": "olga",
        "at": "2026-03-02T12:00:00Z",
        "note": "looking",
    }
    again = api.post(url, json={}, headers=AS_OPERATOR)
    assert again.status_code == 409 and "acknowledged by olga" in again.json()["detail"]
    assert (
        api.post("/api/v1/incidents/99/acknowledge", json={}, headers=AS_OPERATOR).status_code
        == 404
    )
    assert api.get("/api/v1/overview", headers=AS_VIEWER).json()["escalations"] == []
    bad = api.post(url, json={"note": "x", "by": "me"}, headers=AS_OPERATOR)
    assert bad.status_code == 422 and "by" in bad.text


def test_opt_outs_are_made_listed_and_ended(api: TestClient, store: AuditStore) -> None:
    made = api.post(
        "/api/v1/opt-outs",
        json={"namespace": "shop", "name": "cart", "for_s": 3600, "reason": "migration"},
        headers=AS_OPERATOR,
    )
    assert made.status_code == 201, made.text
    opt = made.json()
    assert (opt["by"], opt["until"], opt["workload"]["kind"]) == (
        "olga",
        "2026-03-02T13:00:00Z",
        "Deployment",
    )
    assert store.opted_out(CART, now=NOW) is not None
    listed = api.get("/api/v1/opt-outs", headers=AS_VIEWER).json()
    assert [o["id"] for o in listed] == [opt["id"]]
    assert api.delete(f"/api/v1/opt-outs/{opt['id']}", headers=AS_VIEWER).status_code == 403
    ended = api.delete(f"/api/v1/opt-outs/{opt['id']}", headers=AS_OPERATOR)
    assert ended.status_code == 200 and ended.json()["ended_by"] == "olga"
    assert api.delete(f"/api/v1/opt-outs/{opt['id']}", headers=AS_OPERATOR).status_code == 409
    assert api.delete("/api/v1/opt-outs/77", headers=AS_OPERATOR).status_code == 404
    assert api.get("/api/v1/opt-outs", headers=AS_VIEWER).json() == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"namespace": "shop", "name": "cart", "for_s": 10}, "for_s"),
        ({"namespace": "shop", "name": "cart", "for_s": 8 * 86400}, "for_s"),
        ({"namespace": "Shop!", "name": "cart", "for_s": 3600}, "namespace"),
        ({"namespace": "shop", "name": "", "for_s": 3600}, "name"),
        ({"namespace": "shop", "name": "cart", "for_s": 3600, "forever": True}, "forever"),
        ({"namespace": "shop", "name": "cart"}, "for_s"),
    ],
)
def test_a_bad_opt_out_is_refused_naming_the_field(
    api: TestClient, store: AuditStore, body: dict[str, object], field: str
) -> None:
    refused = api.post("/api/v1/opt-outs", json=body, headers=AS_OPERATOR)
    assert refused.status_code == 422 and field in refused.text
    assert store.opt_outs(now=NOW) == []


# ---- the page --------------------------------------------------------------------------------


def test_the_overview_page_puts_what_waits_first(api: TestClient, store: AuditStore) -> None:
    esc = escalated(store)
    _, action_id = restarted(store, status=ActionStatus.PENDING_APPROVAL)
    store.opt_out(CART, by="olga", reason="migration", at=NOW, until=NOW + timedelta(hours=4))
    text = page_as(api, OPERATOR).get("/").text
    waiting = text.index('id="waiting"')
    assert (
        waiting
        < text.index('id="open-incidents"')
        < text.index('id="opt-outs"')
        < text.index('class="window"')
    )
    assert f'action="/actions/{action_id}/approve?back=/"' in text
    assert f'action="/incidents/{esc}/acknowledge?back=/"' in text
    assert "Daemon last seen cycling" in text and "20 s ago" in text
    assert "migration" in text and "(in 4 h)" in text
    assert 'aria-label="incidents by cause and outcome, last 24 hours"' in text
    assert 'id="live" data-every="2000"' in text
    assert "<title>healer: (2) overview</title>" in text


def test_a_viewer_reads_the_overview_without_a_button(api: TestClient, store: AuditStore) -> None:
    esc = escalated(store)
    restarted(store, status=ActionStatus.PENDING_APPROVAL)
    store.opt_out(CART, by="olga", reason="", at=NOW, until=NOW + timedelta(hours=1))
    text = page_as(api, VIEWER).get("/").text
    assert "<button" not in text.replace('<button type="submit">log out</button>', "")
    assert "<form" not in text.replace(
        '<form class="who inline" method="post" action="/logout">', ""
    )
    incident = api.get(f"/incidents/{esc}").text
    assert "/acknowledge" not in incident and "Not acknowledged yet." in incident
    assert "<button" not in incident.replace('<button type="submit">log out</button>', "")
    assert api.post(f"/incidents/{esc}/acknowledge").status_code == 403
    assert (
        api.post("/opt-outs", data={"namespace": "shop", "name": "cart", "hours": "1"}).status_code
        == 403
    )


def test_a_stale_page_approving_an_expired_action_is_told_so(
    api: TestClient, store: AuditStore
) -> None:
    iid, action_id = restarted(store, status=ActionStatus.PENDING_APPROVAL)
    settled = Outcome(OutcomeKind.HEALED, "recovered on its own", NOW)
    assert store.expire_pending(iid, settled) is not None
    page = page_as(api, OPERATOR).post(
        f"/actions/{action_id}/approve?back=/", follow_redirects=False
    )
    assert page.status_code == 409
    assert f"Action #{action_id} was not approved" in page.text
    assert "is expired, not pending_approval" in page.text and "Nothing was done." in page.text
    assert 'href="/"' in page.text
    [action] = store.actions()
    assert action.status is ActionStatus.EXPIRED and action.reviewed_by is None


def test_acknowledge_and_silence_from_the_page(api: TestClient, store: AuditStore) -> None:
    esc = escalated(store)
    page_as(api, OPERATOR)
    done = api.post(
        f"/incidents/{esc}/acknowledge?back=/", data={"note": ""}, follow_redirects=False
    )
    assert (done.status_code, done.headers["location"]) == (303, "/")
    assert store.unacknowledged() == ([], 0)
    incident = api.get(f"/incidents/{esc}").text
    assert "Acknowledged by olga" in incident and "olga saw the escalation" in incident
    twice = api.post(f"/incidents/{esc}/acknowledge")
    assert twice.status_code == 409 and "Nothing was done." in twice.text

    silenced = api.post(
        "/opt-outs?back=//evil.example",
        data={"namespace": "shop", "name": "cart", "hours": "4", "reason": "by hand"},
        follow_redirects=False,
    )
    assert (silenced.status_code, silenced.headers["location"]) == (303, "/")
    [opt] = store.opt_outs(now=NOW)
    assert (opt.workload, opt.until, opt.reason) == (CART, NOW + timedelta(hours=4), "by hand")
    assert (
        "healer is silenced on this workload" in api.get(f"/incidents/{restarted(store)[0]}").text
    )
    ended = api.post(f"/opt-outs/{opt.id}/end", follow_redirects=False)
    assert ended.status_code == 303 and store.opt_outs(now=NOW) == []
    for data, field in (
        ({"namespace": "shop", "name": "cart", "hours": "200"}, "hours"),
        ({"namespace": "shop", "name": "Cart!", "hours": "1"}, "name"),
        ({"namespace": "shop", "name": "cart", "hours": "1", "kind": "pods"}, "kind"),
    ):
        refused = api.post("/opt-outs", data=data)
        assert refused.status_code == 422 and field in refused.text


def test_the_incident_page_says_the_story_first_and_folds_the_details(
    api: TestClient, store: AuditStore
) -> None:
    iid, _ = restarted(store)
    text = page_as(api, OPERATOR).get(f"/incidents/{iid}").text
    assert text.index("Memory climbs steadily on flat traffic.") < text.index("Timeline")
    assert "all 10 guards passed</summary>" in text and '<details id="guards-3" >' in text
    kubectl = "kubectl -n shop patch deployments cart --type=strategic -p"
    assert text.index(kubectl) < text.index("the request as JSON")
    assert 'id="live" data-every="2000">' in text, "an open incident's page follows the daemon"
    store.record_outcome(iid, Outcome(OutcomeKind.HEALED, "memory at baseline", NOW))
    healed = api.get(f"/incidents/{iid}").text
    assert 'id="live" data-every="2000" data-final>' in healed and "memory at baseline" in healed


def test_a_blocked_plan_shows_its_guards_unfolded(api: TestClient, store: AuditStore) -> None:
    memory = SignalDeviation(Signal.MEMORY, 0.9, 0.5, 7.0, Direction.UP)
    iid = store.open_incident(Finding(CART, NOW, 0.98, (memory,), NOW, "m/1"))
    guards = (
        GuardResult("cooldown", True, "fine"),
        GuardResult("opt_out", False, "healer silenced on shop/cart by olga"),
    )
    plan = Plan(CART, "restart-on-leak", ActionKind.RESTART, {}, Mode.AUTO, guards, "leak", 600.0)
    store.record_plan(iid, plan, at=NOW)
    text = page_as(api, OPERATOR).get(f"/incidents/{iid}").text
    assert "blocked by opt_out</summary>" in text and "open>" in text
    assert "healer silenced on shop/cart by olga" in text


def test_the_chart_spans_the_story_with_a_marker_per_step(
    api: TestClient, store: AuditStore
) -> None:
    import numpy as np

    from healer.types import Frame

    def frame_until(end: datetime) -> Frame:
        times = np.arange(0, 1800, 30, dtype=np.float64) + end.timestamp() - 1770
        return Frame(times, (CART,), (Signal.MEMORY,), np.full((1, 1, len(times)), 0.5))

    memory = SignalDeviation(Signal.MEMORY, 0.9, 0.5, 7.0, Direction.UP)
    found = NOW - timedelta(minutes=40)
    iid = store.open_incident(
        Finding(CART, found, 0.98, (memory,), found - timedelta(minutes=3), "m/1"),
        frame=frame_until(found),
    )
    record = ActionRecord(
        ActionKind.RESTART, CART, {"verb": "PATCH"}, ActionStatus.SUCCEEDED, found, found
    )
    store.record_action(iid, record)
    store.record_outcome(iid, Outcome(OutcomeKind.HEALED, "ok", NOW), frame=frame_until(NOW))
    [outcome] = [s for s in store.get_incident(iid).timeline if s.kind == "outcome"]  # type: ignore[union-attr]
    assert len(outcome.data["series"]["memory"]) == 60  # type: ignore[index, call-overload, arg-type]
    text = page_as(api, OPERATOR).get(f"/incidents/{iid}").text
    for marker in (
        "<title>finding</title>",
        "<title>restart succeeded</title>",
        "<title>healed</title>",
    ):
        assert marker in text
    points = text.split('class="c-signal" points="')[1].split('"')[0].split()
    assert len(points) == 120, "the finding's hour and the outcome's, joined"


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (
            {
                "verb": "PATCH",
                "path": "/apis/apps/v1/namespaces/shop/deployments/cart/scale",
                "content_type": "application/merge-patch+json",
                "body": {"spec": {"replicas": 5}},
            },
            "kubectl -n shop patch deployments cart --subresource=scale --type=merge "
            '-p \'{"spec":{"replicas":5}}\'',
        ),
        (
            {
                "verb": "PATCH",
                "path": "/apis/apps/v1/namespaces/shop/deployments/cart",
                "content_type": "application/json-patch+json",
                "body": [{"op": "replace", "path": "/spec/x", "value": "it's"}],
            },
            "kubectl -n shop patch deployments cart --type=json "
            '-p \'[{"op":"replace","path":"/spec/x","value":"it\'"\'"\'s"}]\'',
        ),
        (
            {
                "verb": "POST",
                "path": "/api/v1/namespaces/shop/pods/cart-1/eviction",
                "content_type": "application/json",
                "body": {"kind": "Eviction"},
            },
            'echo \'{"kind":"Eviction"}\' | '
            "kubectl create --raw /api/v1/namespaces/shop/pods/cart-1/eviction -f -",
        ),
        ({"action": "restart", "params": {}}, None),
    ],
)
def test_the_kubectl_line_makes_the_same_request(
    request_: dict[str, object], expected: str | None
) -> None:
    assert command(request_) == expected  # type: ignore[arg-type]
