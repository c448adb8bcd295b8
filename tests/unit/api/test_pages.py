"""The review page, rendered by the server: the incident list and an incident's story."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from healer.api import create_app
from healer.audit import AuditStore
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

T0 = datetime(2026, 3, 2, 12, 16, tzinfo=UTC)
CART = WorkloadRef("shop", "Deployment", "cart")


@pytest.fixture
def client(store: AuditStore) -> Iterator[TestClient]:
    with TestClient(create_app(store=store)) as c:
        yield c


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
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert f'href="/incidents/{iid}"' in page.text
    for text in ("shop/cart", "bad_release", "rollback", "healed"):
        assert text in page.text


def test_the_list_filters_by_status(client: TestClient, store: AuditStore) -> None:
    rolled_back(store)
    assert "shop/cart" not in client.get("/", params={"status": "open"}).text
    assert client.get("/", params={"status": "bogus"}).status_code == 422


def test_an_incident_page_tells_the_whole_story(client: TestClient, store: AuditStore) -> None:
    page = client.get(f"/incidents/{rolled_back(store)}")
    assert page.status_code == 200
    text = page.text
    order = [text.index(kind) for kind in ("finding", "diagnosis", "plan", "action", "outcome")]
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
    assert "No incidents" in client.get("/").text
