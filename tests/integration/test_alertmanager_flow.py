"""The whole Alertmanager flow with real parts, in real processes and real time.

`healer sim serve` is the cluster; a real Prometheus scrapes it every second and
evaluates the alerting rules of ``deploy/prometheus/workload-alerts.yaml``; a real
Alertmanager (Debian's ``prometheus-alertmanager``) routes their alerts to a real
`healer run` with the receiver token. A bad release of shop/cart:

  the rule fires → Alertmanager delivers it to ``/api/v1/alerts`` → healer opens an
  incident on it and a playbook matching the alert rolls cart back → healer's silence
  on shop/cart is in Alertmanager's ``GET /api/v2/silences`` and holds the alert back
  while healer verifies → healed → the silence is expired → the rule stops firing and
  Alertmanager delivers the resolution, listed on the incident.

The detector needs a persistence longer than the test for a finding of its own, so the
alert, not the metrics, is what healer acts on; the detector still learns the baselines
the verification compares with. It takes about 75 s, set by the simulated cluster's
pods rather than by Alertmanager or Prometheus: a new pod serves 10 s after it starts,
for the release and again for the rollback, and healer wants the error ratio at its
baseline for 10 s (``fast_settings``) before it calls the workload healed.

Skipped when a binary is missing, failed under HEALER_REQUIRE_PROMETHEUS=1.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from daemons import (
    REPO,
    VIEWER,
    Process,
    fast_settings,
    healers,
    serve_sim,
    start_daemons,
    wait_for,
)
from kubernetes import client
from kubernetes import config as kube_config
from test_alertmanager import running_alertmanager
from test_healer_run import healer_events, scenario
from test_prometheus import PrometheusServer, _binary, _free_port

from healer.api.auth import hash_token
from healer.collect.rules import recording_rules

pytestmark = pytest.mark.integration

ALERT = "DeploymentErrorRatioHigh"
TOKEN = "alertmanager-receiver-token"
WAIT_S = 180.0
"""Longest wait for any step: each takes seconds; the margin is for a loaded machine."""

RULES_WINDOW_S = 10
"""The alert's rate window instead of 5 minutes: it fires within seconds of the release
and keeps firing for about this long after the rollback, past the moment healer's
silence is in place."""

RELEASE_AT_S = 25
"""Before the detector's 30 s warm-up (``fast_settings``) is over, which it needs only once the
rollback is verified, some 20 s later: the alert, not the detector, starts the incident."""

ROLLBACK_ON_ALERT = f"""\
name: rollback-on-error-alert
description: Roll back a Deployment that Alertmanager says answers with server errors.
match:
  alerts: [{ALERT}]
  min_confidence: 0.5
action:
  kind: rollback
mode: auto
verify:
  within_s: 300
  signals: [error_ratio]
on_failure: escalate
"""


def fast_rules(workdir: Path) -> list[Path]:
    """The deploy example's alerting rules, evaluated every second over RULES_WINDOW_S
    and firing after 2 s, with the pod-to-Deployment recording rule they read."""
    alerts = yaml.safe_load((REPO / "deploy/prometheus/workload-alerts.yaml").read_text())
    for group in alerts["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            assert "[5m]" in rule["expr"], "the example's windows are 5 minutes"
            rule["expr"] = rule["expr"].replace("[5m]", f"[{RULES_WINDOW_S}s]")
            rule["for"] = "2s"
    owner = recording_rules(interval_s=1)["groups"][0]
    recorded = {"groups": [{**owner, "rules": owner["rules"][:1]}]}
    paths = [workdir / "owner-rules.yaml", workdir / "alert-rules.yaml"]
    for path, rules in zip(paths, (recorded, alerts), strict=True):
        path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return paths


def routing_to(healer_url: str) -> dict[str, Any]:
    """Every alert to healer, at once (1 s group wait and interval), resolutions too."""
    return {
        "route": {
            "receiver": "healer",
            "group_by": ["alertname", "namespace", "deployment"],
            "group_wait": "1s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [
            {
                "name": "healer",
                "webhook_configs": [
                    {
                        "url": f"{healer_url}/api/v1/alerts",
                        "send_resolved": True,
                        "http_config": {"authorization": {"credentials": TOKEN}},
                    }
                ],
            }
        ],
    }


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    start = datetime.now(UTC).replace(microsecond=0)
    server, kubeconfig, target = serve_sim(
        tmp_path, scenario(start, release_at_s=RELEASE_AT_S), _free_port()
    )
    yield kubeconfig, target
    server.terminate()


@pytest.fixture
def playbooks(tmp_path: Path) -> Path:
    books = tmp_path / "playbooks"
    shutil.copytree(REPO / "playbooks", books)
    (books / "zz-alert.yaml").write_text(ROLLBACK_ON_ALERT)
    return books


def cart_image(kubeconfig: Path) -> str:
    api = kube_config.new_client_from_config(config_file=str(kubeconfig))
    try:
        deployment = client.AppsV1Api(api).read_namespaced_deployment("cart", "shop")
        return str(deployment.spec.template.spec.containers[0].image)
    finally:
        api.close()


def healers_silences(alertmanager: str) -> list[dict[str, Any]]:
    listed = httpx.get(f"{alertmanager}/api/v2/silences", timeout=5.0).json()
    return [s for s in listed if s["createdBy"] == "healer"]


def firing_alert(alertmanager: str) -> dict[str, Any] | None:
    listed = httpx.get(
        f"{alertmanager}/api/v2/alerts", params={"filter": f"alertname={ALERT}"}, timeout=5.0
    ).json()
    return listed[0] if listed else None


def test_a_firing_rule_is_routed_to_healer_which_rolls_back_under_its_silence(
    sim: tuple[Path, str], playbooks: Path, tmp_path: Path
) -> None:
    _binary("prometheus")
    kubeconfig, target = sim
    healer_port, alertmanager_port = _free_port(), _free_port()
    healer_url = f"http://127.0.0.1:{healer_port}"
    daemons: list[Process] = []
    with running_alertmanager(tmp_path, routing_to(healer_url), port=alertmanager_port) as am:
        prometheus = PrometheusServer.start(
            tmp_path,
            targets=[target],
            data_dir=tmp_path / "prometheus",
            rule_files=fast_rules(tmp_path),
            alertmanager=f"127.0.0.1:{alertmanager_port}",
        )
        try:
            settings = fast_settings(tmp_path, prometheus.url, verify_stable_s=10)
            settings["api"]["port"] = healer_port
            settings["alertmanager"] = {
                "url": am,
                "receiver_tokens": [{"name": "alertmanager", "sha256": hash_token(TOKEN)}],
                "silence_backoff_s": 0.2,
            }
            # No finding of its own before the alert's incident is healed.
            settings["detector"]["persistence_s"] = 3600
            settings["playbooks_dir"] = str(playbooks)
            daemons = start_daemons(healers(1), tmp_path, kubeconfig, settings)
            [healer] = daemons
            assert healer.api_url() == healer_url

            def incident(query: str = "") -> dict[str, Any] | None:
                healer.check_running()
                page = httpx.get(
                    f"{healer_url}/api/v1/incidents{query}", headers=VIEWER, timeout=5
                ).json()
                items: list[dict[str, Any]] = page["items"]
                return items[0] if items else None

            acted = wait_for(
                "healer to act on the alert",
                lambda: i if (i := incident()) and i["action"] else None,
                WAIT_S,
                every_s=0.2,
            )
            silence = wait_for(
                "healer's silence to hold the firing alert back",
                lambda: held_back(am),
                WAIT_S,
                every_s=0.2,
            )
            assert {(m["name"], m["value"], m["isRegex"]) for m in silence["matchers"]} == {
                ("namespace", "shop", False),
                ("deployment", "cart", False),
            }
            assert f"incident {acted['id']}" in silence["comment"]

            healed = wait_for(
                "the incident to be healed",
                lambda: i if (i := incident()) and i["outcome"] else None,
                WAIT_S,
            )
            assert (healed["action"], healed["outcome"]) == ("rollback", "healed"), healed
            wait_for(
                "healer's silence to be expired",
                lambda: [s["status"]["state"] for s in healers_silences(am)] == ["expired"] * 2,
                30,
            )
            detail = wait_for(
                "the alert's resolution on the incident",
                lambda: d if resolved(d := read_incident(healer_url, acted["id"])) else None,
                WAIT_S,
            )
        finally:
            for d in daemons:
                d.terminate()
            prometheus.stop()

    [alert] = detail["alerts"]
    assert (alert["name"], alert["labels"]["deployment"]) == (ALERT, "cart")
    assert alert["disposition"] == "opened", alert
    [plan] = [s["data"] for s in detail["timeline"] if s["kind"] == "plan"]
    assert plan["playbook"] == "rollback-on-error-alert"
    [kept, pods] = detail["silences"]
    assert (kept["silence_id"], kept["state"]) == (silence["id"], "expired")
    assert (pods["regex"], pods["state"]) == ({"pod": "cart-[a-z0-9]+-[a-z0-9]{5}"}, "expired")
    assert healer_events(kubeconfig) == ["HealerRollback"]
    assert cart_image(kubeconfig) == "shop/cart:1"


def held_back(alertmanager: str) -> dict[str, Any] | None:
    """healer's active silence, once the firing alert is suppressed by it."""
    active = [
        s
        for s in healers_silences(alertmanager)
        if s["status"]["state"] == "active" and all(m["name"] != "pod" for m in s["matchers"])
    ]
    alert = firing_alert(alertmanager)
    if not active or alert is None or alert["status"]["state"] != "suppressed":
        return None
    return active[0] if active[0]["id"] in alert["status"]["silencedBy"] else None


def read_incident(healer_url: str, incident_id: int) -> dict[str, Any]:
    answer = httpx.get(f"{healer_url}/api/v1/incidents/{incident_id}", headers=VIEWER, timeout=5)
    answer.raise_for_status()
    body: dict[str, Any] = answer.json()
    return body


def resolved(detail: dict[str, Any]) -> bool:
    return [a["status"] for a in detail["alerts"]] == ["resolved"]


def test_the_deploy_example_rules_pass_promtool() -> None:
    """As shipped (5 minute windows), beside the recording rules they read."""
    checked = subprocess.run(
        [
            _binary("promtool"),
            "check",
            "rules",
            str(REPO / "deploy/prometheus/workload-alerts.yaml"),
            str(REPO / "deploy/prometheus/healer-rules.yaml"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
