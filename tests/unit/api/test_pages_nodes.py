"""A node's incident on the review page and in the API: named ``node/NAME``, its
cordon, drains and uncordon in its story."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

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
    Finding,
    Mode,
    Outcome,
    OutcomeKind,
    Plan,
    node_ref,
)
from tests.unit.api.test_pages import OPERATOR, SETTINGS, T0, logged_in

NODE = node_ref("node-01")


@pytest.fixture
def client(store: AuditStore) -> Iterator[TestClient]:
    with TestClient(create_app(store=store, settings=SETTINGS)) as c:
        yield logged_in(c, OPERATOR)


def healed_node(store: AuditStore) -> int:
    iid = store.open_incident(Finding(NODE, T0, 1.0, (), T0, "node-conditions"))
    why = "node node-01 is NotReady and 2 pods on it fail (shop/ReplicaSet/cart-7f)."
    store.record_diagnosis(iid, Diagnosis(NODE, Cause.NODE_NOT_READY, 0.9, why), at=T0)
    plan = Plan(NODE, "node-heal", ActionKind.CORDON, {}, Mode.AUTO, (), why, 600.0)
    store.record_plan(iid, plan, at=T0)
    for minutes, kind, body in (
        (0, ActionKind.CORDON, {"spec": {"unschedulable": True}}),
        (1, ActionKind.DRAIN, {"kind": "Eviction", "metadata": {"name": "cart-7f-a"}}),
        (20, ActionKind.UNCORDON, {"spec": {"unschedulable": None}}),
    ):
        at = T0 + timedelta(minutes=minutes)
        request = {"verb": "PATCH", "path": "/api/v1/nodes/node-01", "body": body}
        store.record_action(iid, ActionRecord(kind, NODE, request, ActionStatus.SUCCEEDED, at, at))
    done = T0 + timedelta(minutes=20)
    store.record_outcome(iid, Outcome(OutcomeKind.HEALED, "uncordoned", done))
    return iid


def test_a_node_incident_is_listed_and_told_by_its_node(
    client: TestClient, store: AuditStore
) -> None:
    iid = healed_node(store)

    overview = client.get("/")
    listing = client.get("/incidents")
    page = client.get(f"/incidents/{iid}")
    bearer = {"Authorization": f"Bearer {OPERATOR}"}
    api = client.get("/api/v1/incidents", headers=bearer).json()

    assert overview.status_code == listing.status_code == page.status_code == 200
    assert "node-01" in listing.text and "node_not_ready" in listing.text
    for kind in ("cordon", "drain", "uncordon"):
        assert kind in page.text
    [item] = api["items"]
    assert (item["workload"]["kind"], item["workload"]["name"]) == ("Node", "node-01")
