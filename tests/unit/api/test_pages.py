"""The review page, rendered by the server: the incident list and an incident's story."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

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
    Alert,
    AlertDisposition,
    AlertStatus,
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
    Silence,
    SilenceState,
    WorkloadRef,
)

T0 = datetime(2026, 3, 2, 12, 16, tzinfo=UTC)
CART = WorkloadRef("shop", "Deployment", "cart")


OPERATOR = "operator-token"
SETTINGS = Settings(
    api={"tokens": [{"name": "olga", "role": "operator", "sha256": hash_token(OPERATOR)}]}
)


def logged_in(client: TestClient, token: str) -> TestClient:
    """Log in through the form: the cookie it sets is a session, not the token."""
    answer = client.post("/login", data={"token": token}, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    assert token not in answer.headers["set-cookie"]
    return client


@pytest.fixture
def client(store: AuditStore) -> Iterator[TestClient]:
    with TestClient(create_app(store=store, settings=SETTINGS)) as c:
        yield logged_in(c, OPERATOR)


def rolled_back(store: AuditStore) -> int:
    errors = SignalDeviation(Signal.ERROR_RATIO, 0.12, 0.002, 21.0, Direction.UP)
    iid = store.open_incident(Finding(CART, T0, 0.99, (errors,), T0, "streaming-baseline/1"))
    store.record_diagnosis(
        iid, Diagnosis(CART, Cause.BAD_RELEASE, 0.95, "Errors rose after rev 2.")
    )
    guards = (
        GuardResult("cooldown", True, "no recent action on this workload"),
        GuardResult("anomaly_brake", True, "1/5 workloads anomalous at once"),
    )
    store.record_plan(
        iid,
        Plan(
            CART,
            "rollback-bad-release",
            ActionKind.ROLLBACK,
            {"to_revision": 1, "from_revision": 2},
            Mode.AUTO,
            guards,
            "bad_release at 95% confidence",
            600.0,
        ),
        at=T0,
    )
    request = {
        "verb": "PATCH",
        "path": "/apis/apps/v1/namespaces/shop/deployments/cart",
        "content_type": "application/json-patch+json",
        "body": [],
    }
    store.record_action(
        iid, ActionRecord(ActionKind.ROLLBACK, CART, request, ActionStatus.SUCCEEDED, T0, T0)
    )
    store.record_outcome(
        iid, Outcome(OutcomeKind.HEALED, "errors at baseline", T0 + timedelta(minutes=4))
    )
    return iid


def test_the_list_shows_each_incident_with_cause_action_and_outcome(
    client: TestClient, store: AuditStore
) -> None:
    iid = rolled_back(store)
    page = client.get("/incidents")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert f'href="/incidents/{iid}"' in page.text
    for text in ("shop/cart", "bad_release", "rollback", "healed"):
        assert text in page.text


def test_the_list_filters_by_status(client: TestClient, store: AuditStore) -> None:
    rolled_back(store)
    assert "shop/cart" not in client.get("/incidents", params={"status": "open"}).text
    assert client.get("/incidents", params={"status": "bogus"}).status_code == 422


def test_an_incident_page_tells_the_whole_story(client: TestClient, store: AuditStore) -> None:
    page = client.get(f"/incidents/{rolled_back(store)}")
    assert page.status_code == 200
    text = page.text
    kinds = ("finding", "diagnosis", "plan", "action", "outcome")
    order = [text.index(f'<h3><span class="kind">{kind}</span>') for kind in kinds]
    assert order == sorted(order)
    for fact in (
        "error_ratio",
        "+21.0σ",
        "Errors rose after rev 2.",
        "anomaly_brake",
        "application/json-patch+json",
        "errors at baseline",
    ):
        assert fact in text


def test_an_unknown_incident_is_404(client: TestClient) -> None:
    assert client.get("/incidents/99").status_code == 404


def test_an_empty_store_says_so(client: TestClient) -> None:
    assert "No incidents" in client.get("/incidents").text
    overview = client.get("/").text
    assert "Nothing waits for a person." in overview and "No incident is open." in overview


def test_without_the_cookie_the_page_asks_to_log_in(store: AuditStore) -> None:
    with TestClient(create_app(store=store, settings=SETTINGS)) as anonymous:
        page = anonymous.get("/", follow_redirects=False)
        assert (page.status_code, page.headers["location"]) == (303, "/login?next=/")
        refused = anonymous.post("/login", data={"token": "wrong", "next": "/"})
        assert refused.status_code == 401
        logged = anonymous.post(
            "/login", data={"token": OPERATOR, "next": "//evil.example"}, follow_redirects=False
        )
        assert (logged.status_code, logged.headers["location"]) == (303, "/")
        assert "Nothing waits for a person." in anonymous.get("/").text


def test_an_incident_page_plots_the_stored_signals(client: TestClient, store: AuditStore) -> None:
    import numpy as np

    from healer.types import Frame

    times = np.arange(0, 3600, 15, dtype=np.float64) + T0.timestamp() - 3585
    values = np.full((1, 1, len(times)), 0.002)
    values[0, 0, -20:] = 0.12
    frame = Frame(times, (CART,), (Signal.ERROR_RATIO,), values)
    errors = SignalDeviation(Signal.ERROR_RATIO, 0.12, 0.002, 21.0, Direction.UP)
    finding = Finding(CART, T0, 0.99, (errors,), T0 - timedelta(minutes=5), "m/1")
    iid = store.open_incident(finding, frame=frame)
    page = client.get(f"/incidents/{iid}").text
    assert '<svg class="chart"' in page and 'aria-label="error_ratio over the incident"' in page
    assert "<title>baseline</title>" in page and "<title>finding</title>" in page


def pending_restart(store: AuditStore) -> tuple[int, int]:
    errors = SignalDeviation(Signal.MEMORY, 0.9, 0.4, 9.0, Direction.UP)
    iid = store.open_incident(Finding(CART, T0, 0.99, (errors,), T0, "m/1"))
    record = ActionRecord(
        ActionKind.RESTART, CART, {"verb": "PATCH"}, ActionStatus.PENDING_APPROVAL, T0, T0
    )
    return iid, store.record_action(iid, record)


def test_the_buttons_reject_and_label(client: TestClient, store: AuditStore) -> None:
    iid, action_id = pending_restart(store)
    assert f'action="/actions/{action_id}/approve?back=/"' in client.get("/").text
    done = client.post(f"/actions/{action_id}/reject", data={"reason": "peak hour"})
    assert done.status_code == 200 and "rejected" in done.text and "peak hour" in done.text
    assert client.post(f"/actions/{action_id}/approve").status_code == 409
    labelled = client.post(
        f"/incidents/{iid}/feedback",
        data={"verdict": "false_positive", "cause": "", "right_action": "", "note": "cron job"},
    )
    assert labelled.status_code == 200 and "false_positive" in labelled.text
    [feedback] = store.feedback()
    assert (feedback.by, feedback.note) == ("olga", "cron job")
    bad = client.post(f"/incidents/{iid}/feedback", data={"verdict": "true_positive", "cause": "x"})
    assert bad.status_code == 422 and "cause" in bad.text


def test_a_viewer_sees_no_buttons_and_may_not_press_them(store: AuditStore) -> None:
    _, action_id = pending_restart(store)
    settings = Settings(
        api={"tokens": [{"name": "vic", "role": "viewer", "sha256": hash_token("view")}]}
    )
    with TestClient(create_app(store=store, settings=settings)) as c:
        logged_in(c, "view")
        assert "/approve" not in c.get("/").text
        assert c.post(f"/actions/{action_id}/approve").status_code == 403
    [action] = store.actions()
    assert action.status == ActionStatus.PENDING_APPROVAL


def test_the_silences_healer_made_are_on_the_timeline(
    client: TestClient, store: AuditStore
) -> None:
    iid = rolled_back(store)
    ends = T0 + timedelta(minutes=15)
    made = Silence(
        {"namespace": "shop", "deployment": "cart"}, T0, ends, SilenceState.ACTIVE, "4e1f"
    )
    row = store.record_silence(iid, made, at=T0)
    store.settle_silence(row, state=SilenceState.EXPIRED, at=ends, detail="healed: at baseline")
    text = client.get(f"/incidents/{iid}").text
    assert text.count('<span class="kind">silence</span>') == 2
    assert "<code>4e1f</code>" in text
    assert 'deployment="cart", namespace="shop"' in text
    assert "healed: at baseline" in text


def test_the_alerts_joined_to_an_incident_are_on_its_page(
    client: TestClient, store: AuditStore
) -> None:
    iid = rolled_back(store)
    labels = {"alertname": "KubePodCrashLooping", "namespace": "shop", "deployment": "cart"}
    firing = Alert("a1", "KubePodCrashLooping", AlertStatus.FIRING, T0, None, labels, {})
    store.record_alerts([firing], at=T0)
    (pending,) = store.pending_alerts()
    store.settle_alert(
        pending.id, AlertDisposition.JOINED, detail="joined incident", at=T0, incident_id=iid
    )
    text = client.get(f"/incidents/{iid}").text
    assert '<section id="alerts">' in text
    assert "<td>KubePodCrashLooping</td>" in text
    assert "joined: joined incident" in text
    assert 'class="alert-firing"' in text
    assert "2026-03-02 12:16:00 UTC" in text
    assert '<section id="alerts">' not in client.get(f"/incidents/{rolled_back(store)}").text


def test_a_rollback_through_git_shows_its_pull_request_and_commit(
    client: TestClient, store: AuditStore
) -> None:
    errors = SignalDeviation(Signal.ERROR_RATIO, 0.12, 0.002, 21.0, Direction.UP)
    iid = store.open_incident(Finding(CART, T0, 0.99, (errors,), T0, "streaming-baseline/1"))
    store.record_diagnosis(iid, Diagnosis(CART, Cause.BAD_RELEASE, 0.95, "Errors rose."))
    git = {
        "owner": "applications.argoproj.io/argocd/cart",
        "repository": "https://git.example/shop/deploy.git",
        "revision": "main",
        "path": "apps/cart",
    }
    url = "https://github.example/shop/deploy/pull/4"
    pending = {
        "action": "rollback",
        "params": {"to_revision": 1},
        "git": git,
        "commit": {"sha": "0123456789abcdef", "branch": "healer/incident-1", "already": False},
        "pull_request": {"number": 4, "url": url, "state": "open"},
    }
    record = ActionRecord(ActionKind.ROLLBACK, CART, pending, ActionStatus.PENDING_APPROVAL, T0, T0)
    store.record_action(iid, record)
    page = client.get(f"/incidents/{iid}").text
    assert f'Pull request: <a href="{url}">' in page
    assert "a commit to <code>https://git.example/shop/deploy.git</code> (apps/cart)" in page
    assert "commit <code>0123456789ab</code> on healer/incident-1" in page


def test_the_rollout_completed_is_marked_on_the_charts_and_the_timeline(
    client: TestClient, store: AuditStore
) -> None:
    """Between the action and the outcome, a marker where the verifier read the rollout
    complete, titled with what it read."""
    import numpy as np

    from healer.types import Frame

    times = np.arange(0, 3600, 15, dtype=np.float64) + T0.timestamp() - 3585
    frame = Frame(times, (CART,), (Signal.ERROR_RATIO,), np.full((1, 1, len(times)), 0.01))
    errors = SignalDeviation(Signal.ERROR_RATIO, 0.12, 0.002, 21.0, Direction.UP)
    iid = store.open_incident(Finding(CART, T0, 0.99, (errors,), T0, "m/1"), frame=frame)
    restart = ActionRecord(ActionKind.RESTART, CART, {}, ActionStatus.SUCCEEDED, T0, T0)
    store.record_action(iid, restart)
    page = client.get(f"/incidents/{iid}").text
    assert 'class="marker m-rollout"' not in page
    store.record_rollout(iid, at=T0 + timedelta(minutes=2), detail="rollout complete (3/3 ready)")
    store.record_outcome(iid, Outcome(OutcomeKind.HEALED, "ok", T0 + timedelta(minutes=4)))
    page = client.get(f"/incidents/{iid}").text
    markers = re.findall(r'<line class="marker (m-[a-z]+)"[^>]*><title>([^<]*)</title>', page)
    assert markers == [
        ("m-finding", "finding"),
        ("m-action", "restart succeeded"),
        ("m-rollout", "rollout complete (3/3 ready)"),
        ("m-healed", "healed"),
    ]
    assert "<p>rollout complete (3/3 ready)</p>" in page  # its step on the timeline
