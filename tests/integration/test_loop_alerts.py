"""An Alertmanager alert delivered over the API on a simulated workload opens an incident
that a playbook matching the alert acts on, through the Kubernetes API of the simulated
cluster, in virtual time."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from healer.api import create_app
from healer.api.auth import hash_token
from healer.audit.store import AuditStore
from healer.config import load_settings
from healer.harness import SimHarness
from healer.sim.scenario import load_scenario
from healer.types import ActionKind, ActionStatus, AlertDisposition

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TOKEN = "alertmanager-token"

ROLLBACK_ON_ALERT = """\
name: rollback-on-crash-looping-alert
description: Roll back a Deployment whose pods Alertmanager says crash-loop.
match:
  alerts: [KubePodCrashLooping]
  min_confidence: 0.5
action:
  kind: rollback
mode: auto
verify:
  within_s: 900
  signals: [ready_ratio]
"""


def delivery(starts_at: datetime) -> dict[str, object]:
    labels = {
        "alertname": "KubePodCrashLooping",
        "namespace": "shop",
        "deployment": "profile",
        "severity": "warning",
    }
    return {
        "version": "4",
        "groupKey": '{}:{alertname="KubePodCrashLooping"}',
        "status": "firing",
        "receiver": "healer",
        "groupLabels": {"alertname": "KubePodCrashLooping"},
        "commonLabels": labels,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": [
            {
                "status": "firing",
                "labels": labels,
                "annotations": {"summary": "profile's pods restart over and over"},
                "startsAt": starts_at.isoformat(),
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph",
                "fingerprint": "8d2c4e1f0a9b7c65",
            }
        ],
    }


def test_an_alert_on_a_crash_looping_workload_is_rolled_back(tmp_path: Path) -> None:
    books = tmp_path / "playbooks"
    shutil.copytree(REPO / "playbooks", books)
    (books / "zz-alert.yaml").write_text(ROLLBACK_ON_ALERT)
    settings = load_settings(
        None,
        guards={"mode": "auto"},
        playbooks_dir=str(books),
        alertmanager={"receiver_tokens": [{"name": "am", "sha256": hash_token(TOKEN)}]},
    )
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    harness = SimHarness.start(
        load_scenario("crash-loop"), settings=settings, store=store, workdir=tmp_path
    )
    app = create_app(store=store, settings=settings, clock=harness.cluster.clock.now)
    try:
        harness.run_for(1830)  # the bad release lands at 1800 s
        assert store.list_incidents() == [], "nothing found before the alert"
        with TestClient(app) as client:
            answer = client.post(
                "/api/v1/alerts",
                json=delivery(harness.cluster.clock.now().astimezone(UTC)),
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
        assert answer.json() == {"new": 1, "resolved": 0, "unchanged": 0}
        harness.run_for(2 * settings.daemon.interval_s)
    finally:
        harness.close()
    [incident] = store.list_incidents()
    detail = store.get_incident(incident.id)
    assert detail is not None
    assert [(a.alert.name, a.disposition) for a in detail.alerts] == [
        ("KubePodCrashLooping", AlertDisposition.OPENED)
    ]
    [plan] = [s.data for s in detail.timeline if s.kind == "plan"]
    assert plan["playbook"] == "rollback-on-crash-looping-alert"
    [action] = detail.actions
    assert (action.kind, action.status) == (ActionKind.ROLLBACK, ActionStatus.SUCCEEDED)
    deployment = harness.cluster.get_object("deployments", "shop", "profile")
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "registry.local/shop/profile:4.9.3"
    store.close()
