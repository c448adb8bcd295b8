"""Schemathesis against /openapi.json over real HTTP: generated requests, valid and not,
with and without a token. No 5xx, every answer inside the schema (documented status,
content type and body), and authentication enforced on every /api/v1 operation."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    ignored_auth,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

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
    Direction,
    Finding,
    Signal,
    SignalDeviation,
    WorkloadRef,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TOKEN = "schema-operator"
RECEIVER = "schema-alertmanager"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
MAX_EXAMPLES = 30
"""Per operation: enough to hit every parameter's edge cases, ~20 s for the whole API."""


def _app(folder: Path) -> tuple[FastAPI, AuditStore]:
    store = AuditStore(f"sqlite:///{folder / 'audit.db'}")
    cart = WorkloadRef("shop", "Deployment", "cart")
    deviation = SignalDeviation(Signal.CPU, 1.0, 0.5, 5.0, Direction.UP)
    for _ in range(3):
        iid = store.open_incident(Finding(cart, T0, 0.9, (deviation,), T0, "m"))
        record = ActionRecord(
            ActionKind.RESTART, cart, {"verb": "PATCH"}, ActionStatus.PENDING_APPROVAL, T0, T0
        )
        store.record_action(iid, record)
    tokens = [{"name": "op", "role": "operator", "sha256": hash_token(TOKEN)}]
    app = create_app(
        store=store,
        status=lambda: {"cycles": 1},
        settings=Settings(
            api={"tokens": tokens},
            alertmanager={"receiver_tokens": [{"name": "am", "sha256": hash_token(RECEIVER)}]},
            releases={"github_secret": "schema-github-secret"},
        ),
        playbooks=load_playbooks(REPO / "playbooks"),
        clock=lambda: T0,
    )
    return app, store


# The schema is read when the module is collected (Hypothesis parametrizes from it); the
# same app is served over HTTP by the fixture below.
APP, STORE = _app(Path(tempfile.mkdtemp(prefix="healer-schema-")))
schema = schemathesis.openapi.from_dict(APP.openapi())


@pytest.fixture(scope="module")
def api_url() -> Iterator[str]:
    server = ServerThread(APP, bind("127.0.0.1", 0)).start()
    yield server.url
    server.stop()
    STORE.close()


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_schema(case: schemathesis.Case, api_url: str) -> None:
    case.call_and_validate(
        base_url=api_url,
        headers={"Authorization": f"Bearer {TOKEN}"},
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
            ignored_auth,
        ],
    )


@schema.include(path="/api/v1/alerts").parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_alert_receiver_conforms_to_its_schema(case: schemathesis.Case, api_url: str) -> None:
    """Alertmanager's route with its own token: generated deliveries are stored or
    refused, never a 5xx."""
    case.call_and_validate(
        base_url=api_url,
        headers={"Authorization": f"Bearer {RECEIVER}"},
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
            ignored_auth,
        ],
    )
