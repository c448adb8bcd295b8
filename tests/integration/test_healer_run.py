"""`healer run` as it runs beside a real cluster, in real processes and real time.

* End to end: `healer sim serve` is the cluster (the daemons reach it through a
  kubeconfig, as they would a real one), a real Prometheus scrapes its /metrics every
  second, and two `healer run` daemons share one audit store and one Lease. The leader
  heals a bad release by a rollback; then it is SIGKILLed, the other takes over and
  finds the incident already handled; a SIGTERM stops it cleanly and releases the Lease.
  The release is shipped through the API, as a pipeline's `kubectl set image` does, once
  the leader has cycled for ``WARM_HISTORY_S``.
* Three daemons with Prometheus down: they start anyway, one leads, it reports not
  ready naming prometheus.url, the followers are ready; SIGKILL of the leader and
  another leads.

The daemons' Lease lasts 6 s rather than 15 (``QUICK_LEASE``), so each takeover waits
for the Lease to expire as in a cluster, only sooner. How soon a follower takes over is
checked in virtual time (tests/unit/test_leader.py) and measured on the wall clock by
bench/takeover.py.

Without the prometheus binary the end-to-end test skips (fails when
HEALER_REQUIRE_PROMETHEUS=1, as in CI).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from daemons import (
    VIEWER,
    Process,
    daemon_settings,
    fast_settings,
    healers,
    serve_sim,
    ship,
    start_daemons,
    wait_for,
    wait_until_warm,
)
from kubernetes import client
from kubernetes import config as kube_config
from test_prometheus import PrometheusServer, _binary, _free_port

pytestmark = pytest.mark.integration


BAD_RELEASE = ("shop/cart", "shop/cart:2")
"""The release healer must roll back: cart's image failing 30% of requests."""


def scenario(start: datetime, *, release_at_s: int | None = None) -> dict[str, Any]:
    """Two services scraped every second in real time; a bad release of cart at
    ``release_at_s``, or none in the scenario (the test ships it)."""
    workload, image = BAD_RELEASE
    events = [
        {
            "at_s": release_at_s,
            "kind": "release",
            "workload": workload,
            "image": image,
            "expect": "rollback",
        }
    ]
    return {
        "name": "run-e2e",
        "description": "a bad release of cart, in real time",
        "start": start.isoformat(),
        "step_s": 1,
        "seed": 7,
        "images": {
            "shop/cart:1": {"error_ratio": 0.01},
            "shop/cart:2": {"error_ratio": 0.3, "latency_s": 0.3},
            "shop/checkout:1": {"error_ratio": 0.01},
        },
        "workloads": [
            {
                "name": "cart",
                "namespace": "shop",
                "replicas": 2,
                "image": "shop/cart:1",
                "traffic": {"base_rps": 40, "noise": 0.03},
            },
            {
                "name": "checkout",
                "namespace": "shop",
                "replicas": 2,
                "image": "shop/checkout:1",
                "traffic": {"base_rps": 30, "noise": 0.03},
            },
        ],
        "events": events if release_at_s is not None else [],
    }


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[tuple[Process, Path, str]]:
    start = datetime.now(UTC).replace(microsecond=0)
    server, kubeconfig, target = serve_sim(tmp_path, scenario(start), _free_port())
    yield server, kubeconfig, target
    server.terminate()


def lease_holder(kubeconfig: Path) -> str:
    api = kube_config.new_client_from_config(config_file=str(kubeconfig))
    try:
        lease = client.CoordinationV1Api(api).read_namespaced_lease("healer", "healer")
        return str(lease.spec.holder_identity or "")
    except client.exceptions.ApiException as exc:
        if exc.status == 404:
            return ""
        raise
    finally:
        api.close()


def healer_events(kubeconfig: Path) -> list[str]:
    api = kube_config.new_client_from_config(config_file=str(kubeconfig))
    try:
        events = client.CoreV1Api(api).list_namespaced_event("shop").items
        return [e.reason for e in events if (e.reason or "").startswith("Healer")]
    finally:
        api.close()


def takeover_after_kill(daemons: list[Process], kubeconfig: Path) -> Process:
    """SIGKILL the Lease holder; returns the daemon that took over."""
    holder = wait_for("a leader", lambda: lease_holder(kubeconfig), 60)
    leader = next(d for d in daemons if d.name == holder)
    leader.kill()
    new = wait_for(
        "another leader",
        lambda: h if (h := lease_holder(kubeconfig)) and h != holder else None,
        60,
    )
    return next(d for d in daemons if d.name == new)


def test_two_daemons_heal_through_prometheus_and_hand_over_on_sigkill(
    sim: tuple[Process, Path, str], tmp_path: Path
) -> None:
    _binary("prometheus")
    _, kubeconfig, target = sim
    prometheus = PrometheusServer.start(
        tmp_path, targets=[target], data_dir=tmp_path / "prometheus", interval_s=1.0
    )
    daemons: list[Process] = []
    try:
        settings = fast_settings(tmp_path, prometheus.url, verify_stable_s=10)
        daemons = start_daemons(healers(2), tmp_path, kubeconfig, settings)
        urls = {d.name: d.api_url() for d in daemons}
        wait_until_warm(daemons)
        ship(kubeconfig, *BAD_RELEASE)

        def healed() -> dict[str, Any] | None:
            for d in daemons:
                d.check_running()
            page = httpx.get(
                f"{urls['healer-1']}/api/v1/incidents", headers=VIEWER, timeout=5
            ).json()
            done = [i for i in page["items"] if i["outcome"] is not None]
            return done[0] if done else None

        incident = wait_for("the bad release to be healed", healed, 240, every_s=1)
        assert incident["workload"]["name"] == "cart", incident
        assert incident["cause"] == "bad_release", incident
        assert incident["action"] == "rollback" and incident["outcome"] == "healed", incident
        assert healer_events(kubeconfig) == ["HealerRollback"]
        statuses = {d.name: d.status() for d in daemons}
        assert sum(bool(s["is_leader"]) for s in statuses.values()) == 1, statuses

        successor = takeover_after_kill(daemons, kubeconfig)
        wait_for("the successor to lead", lambda: successor.status()["is_leader"], 10)
        # The successor cycles on; the rolled-back workload is quiet: nothing is redone.
        cycles = successor.status()["cycles"]
        wait_for("a few cycles", lambda: successor.status()["cycles"] >= cycles + 3, 60)
        assert healer_events(kubeconfig) == ["HealerRollback"]
        page = httpx.get(
            f"{successor.api_url()}/api/v1/incidents", headers=VIEWER, timeout=5
        ).json()
        assert [i["action"] for i in page["items"]].count("rollback") == 1

        assert successor.terminate() == 0, successor.stderr()[-2000:]
        assert "stopped after" in successor.stdout()
        assert lease_holder(kubeconfig) == ""  # released on SIGTERM
        assert any(line.get("event") == "leadership_released" for line in successor.logs())
    finally:
        for d in daemons:
            if d.popen.poll() is None:
                d.popen.kill()
                d.popen.wait()
        prometheus.stop()


def test_three_daemons_with_prometheus_down_start_one_leads_and_hands_over(
    sim: tuple[Process, Path, str], tmp_path: Path
) -> None:
    _, kubeconfig, _ = sim
    unreachable = f"http://127.0.0.1:{_free_port()}"
    settings = daemon_settings(tmp_path, unreachable, daemon={"interval_s": 2})
    daemons = start_daemons(healers(3), tmp_path, kubeconfig, settings)
    try:
        urls = {d.name: d.api_url() for d in daemons}
        holder = wait_for("a leader", lambda: lease_holder(kubeconfig), 60)

        def readiness(name: str) -> tuple[int, dict[str, Any]]:
            answer = httpx.get(f"{urls[name]}/readyz", timeout=5)
            return answer.status_code, answer.json()

        code, body = wait_for(
            "the leader's readiness to name prometheus.url",
            lambda: r if "prometheus.url" in str((r := readiness(holder))[1]) else None,
            30,
        )
        assert code == 503 and body["status"] == "not ready", body
        for name in urls:
            if name != holder:
                assert readiness(name)[0] == 200, readiness(name)
        leader = next(d for d in daemons if d.name == holder)
        warnings = [x for x in leader.logs() if x.get("event") == "dependency_unavailable"]
        assert [w["setting"] for w in warnings] == ["prometheus.url"]

        takeover_after_kill(daemons, kubeconfig)
        for d in daemons:
            if d is not leader:
                d.check_running()
    finally:
        for d in daemons:
            if d.popen.poll() is None:
                d.popen.kill()
                d.popen.wait()


def test_a_daemon_runs_on_settings_until_the_policy_crds_come_then_writes_their_status(
    sim: tuple[Process, Path, str], tmp_path: Path
) -> None:
    """Without the CRDs it says so once per kind and keeps looking; once they are
    applied, the leader lists the policies and writes their status."""
    import yaml

    _, kubeconfig, _ = sim
    unreachable = f"http://127.0.0.1:{_free_port()}"
    settings = daemon_settings(
        tmp_path, unreachable, daemon={"interval_s": 2}, policies={"missing_retry_s": 1}
    )
    [daemon] = start_daemons(healers(1), tmp_path, kubeconfig, settings)
    api = kube_config.new_client_from_config(config_file=str(kubeconfig))
    try:

        def said(event: str) -> list[dict[str, Any]]:
            daemon.check_running()
            return [x for x in daemon.logs() if x.get("event") == event]

        wait_for("the CRDs found missing", lambda: len(said("policies_not_installed")) == 2, 60)
        crds = client.ApiextensionsV1Api(api)
        for path in sorted((Path(__file__).parents[2] / "deploy" / "crds").glob("*.yaml")):
            crds.create_custom_resource_definition(yaml.safe_load(path.read_text()))
        body = {
            "apiVersion": "healer.io/v1alpha1",
            "kind": "HealingPolicy",
            "metadata": {"name": "cautious", "namespace": "shop"},
            "spec": {"mode": "approval"},
        }
        custom = client.CustomObjectsApi(api)
        custom.create_namespaced_custom_object(
            "healer.io", "v1alpha1", "shop", "healingpolicies", body
        )

        def status() -> dict[str, Any] | None:
            got = custom.get_namespaced_custom_object(
                "healer.io", "v1alpha1", "shop", "healingpolicies", "cautious"
            )
            return got.get("status")

        written = wait_for("the policy's status", status, 60)
        assert written["matchedWorkloads"] == 2  # cart and checkout
        assert len(said("policies_not_installed")) == 2  # said once per kind, not per look
    finally:
        api.close()
        daemon.terminate()
