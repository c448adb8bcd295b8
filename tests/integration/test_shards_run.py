"""Three `healer run --shards 3` processes share one cluster, in real processes and time.

`healer sim serve` is the cluster, a real Prometheus scrapes it every second, and three
daemons share one audit store and the shard Leases ``healer-shard-0..2``. The cluster
has three namespaces, one per shard, and a bad release in each, shipped a few seconds
apart through the API (as `kubectl set image` would) once the daemons have cycled for
``WARM_HISTORY_S``. The test checks:

* the shards spread, one per process, each process reading and acting on the
  namespaces of its shard only (every step of an incident is written by the holder of
  its namespace's shard: ``actor``);
* the holder of one shard is SIGKILLed after its rollback, before the outcome (once
  every namespace's rollback is taken: no release is left for the fresh detector a
  takeover starts to miss): another process takes its shard over once the Lease
  expires (6 s, ``QUICK_LEASE``; the test allows 20), resumes the incident from the
  store and verifies it, and no action is ever taken twice (one rollback Event per
  workload in the cluster);
* a fourth daemon configured with another shard count is refused at start, saying why.

Without the prometheus binary the test skips (fails when HEALER_REQUIRE_PROMETHEUS=1).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from daemons import (
    VIEWER,
    Process,
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

from healer.sharding import shard_of

pytestmark = pytest.mark.integration

SHARDS = 3


def one_namespace_per_shard() -> list[str]:
    """Team namespaces, the first to land in each shard, in shard order."""
    found: dict[int, str] = {}
    for i in range(100):
        found.setdefault(shard_of(f"team-{i}", SHARDS), f"team-{i}")
    return [found[s] for s in range(SHARDS)]


NAMESPACES = one_namespace_per_shard()


RELEASE_APART_S = 3
"""Seconds between two namespaces' bad releases."""


def scenario(start: datetime) -> dict[str, Any]:
    """A service in each namespace, with a good image and a bad one (``api:2``)."""
    images: dict[str, Any] = {}
    workloads = []
    for ns in NAMESPACES:
        images[f"{ns}/api:1"] = {"error_ratio": 0.01}
        images[f"{ns}/api:2"] = {"error_ratio": 0.3, "latency_s": 0.3}
        workloads.append(
            {
                "name": "api",
                "namespace": ns,
                "replicas": 2,
                "image": f"{ns}/api:1",
                "traffic": {"base_rps": 40, "noise": 0.03},
            }
        )
    return {
        "name": "shards-e2e",
        "description": "a bad release in each of three namespaces, in real time",
        "start": start.isoformat(),
        "step_s": 1,
        "seed": 5,
        "images": images,
        "workloads": workloads,
        "events": [],
    }


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[tuple[Process, Path, str]]:
    start = datetime.now(UTC).replace(microsecond=0)
    server, kubeconfig, target = serve_sim(tmp_path, scenario(start), _free_port())
    yield server, kubeconfig, target
    server.terminate()


def rollback_events(kubeconfig: Path) -> dict[str, int]:
    api = kube_config.new_client_from_config(config_file=str(kubeconfig))
    try:
        counts: dict[str, int] = {}
        for ns in NAMESPACES:
            events = client.CoreV1Api(api).list_namespaced_event(ns).items
            counts[ns] = sum(1 for e in events if e.reason == "HealerRollback")
        return counts
    finally:
        api.close()


def shards_held(daemons: list[Process]) -> dict[int, str]:
    held: dict[int, str] = {}
    for d in daemons:
        d.check_running()
        for shard in d.status().get("shards_held") or []:
            assert shard not in held, f"shard {shard} held by {held[shard]} and {d.name}"
            held[shard] = d.name
    return held


def incidents(url: str) -> list[dict[str, Any]]:
    page = httpx.get(f"{url}/api/v1/incidents", headers=VIEWER, timeout=5).json()
    items: list[dict[str, Any]] = page["items"]
    return items


def timeline(url: str, incident_id: int) -> list[dict[str, Any]]:
    body = httpx.get(f"{url}/api/v1/incidents/{incident_id}", headers=VIEWER, timeout=5).json()
    steps: list[dict[str, Any]] = body["timeline"]
    return steps


def test_three_shard_processes_split_the_work_and_take_over_a_killed_ones_shard(
    sim: tuple[Process, Path, str], tmp_path: Path
) -> None:
    _binary("prometheus")
    _, kubeconfig, target = sim
    prometheus = PrometheusServer.start(
        tmp_path, targets=[target], data_dir=tmp_path / "prometheus", interval_s=1.0
    )
    names = healers(SHARDS)
    daemons: list[Process] = []
    try:
        # A healed outcome needs 30 s of quiet: time to kill a daemon between the
        # action and its outcome.
        settings = fast_settings(tmp_path, prometheus.url, verify_stable_s=30)
        daemons = start_daemons(names, tmp_path, kubeconfig, settings, "--shards", str(SHARDS))
        urls = {d.name: d.api_url() for d in daemons}
        held = wait_for("one shard per process", lambda: _spread(daemons), 90, every_s=1)
        owner = {ns: held[shard_of(ns, SHARDS)] for ns in NAMESPACES}

        # A fourth replica with another count is refused, naming the setting.
        odd = start_daemons(
            ["healer-odd"], tmp_path, kubeconfig, settings, "--shards", str(SHARDS + 1)
        )[0]
        assert odd.popen.wait(timeout=120) != 0
        assert "sharding.shards: 4" in odd.stderr() + odd.stdout()
        assert "3 shards" in odd.stderr() + odd.stdout()

        wait_until_warm(daemons)
        for k, ns in enumerate(NAMESPACES):
            time.sleep(RELEASE_APART_S if k else 0)
            ship(kubeconfig, f"{ns}/api", f"{ns}/api:2")

        victim_ns = NAMESPACES[0]
        victim = next(d for d in daemons if d.name == owner[victim_ns])
        any_url = next(u for n, u in urls.items() if n != victim.name)

        def acted_not_healed() -> dict[str, Any] | None:
            for d in daemons:
                d.check_running()
            acted = {
                item["workload"]["namespace"]: item
                for item in incidents(any_url)
                if item["action_status"] == "succeeded"
            }
            victims = acted.get(victim_ns)
            healed = victims is None or victims["outcome"] is not None
            return None if len(acted) < len(NAMESPACES) or healed else victims

        incident = wait_for(
            "every rollback, the victim's unverified", acted_not_healed, 240, every_s=0.3
        )
        victim.kill()
        killed_at = time.monotonic()
        survivors = [d for d in daemons if d is not victim]

        def taken_over() -> str | None:
            now_held = shards_held(survivors)
            return now_held.get(shard_of(victim_ns, SHARDS))

        successor = wait_for("another process to take the shard", taken_over, 60, every_s=0.5)
        takeover_s = time.monotonic() - killed_at
        assert takeover_s < 20, f"the shard was taken over {takeover_s:.1f} s after the kill"

        def all_healed() -> list[dict[str, Any]] | None:
            for d in survivors:
                d.check_running()
            done = [i for i in incidents(any_url) if i["outcome"] is not None]
            return done if len({i["workload"]["namespace"] for i in done}) == 3 else None

        done = wait_for("every namespace's release healed", all_healed, 300, every_s=1)
        assert {(i["workload"]["namespace"], i["action"], i["outcome"]) for i in done} == {
            (ns, "rollback", "healed") for ns in NAMESPACES
        }
        # No action twice: one rollback per workload, in the cluster and in the store.
        assert rollback_events(kubeconfig) == dict.fromkeys(NAMESPACES, 1)
        for item in done:
            steps = timeline(any_url, item["id"])
            actions = [s for s in steps if s["kind"] == "action"]
            assert [a["data"]["status"] for a in actions].count("succeeded") == 1, steps
            writers = {s["actor"] for s in steps if s["kind"] != "review"}
            ns = item["workload"]["namespace"]
            if item["id"] == incident["id"]:
                # Begun by the victim, resumed and verified by the successor.
                assert steps[-1]["actor"] == successor, steps[-1]
                assert writers == {owner[ns], successor}, writers
            else:
                assert writers == {owner[ns]}, (ns, writers)
        for d in survivors:
            statuses = d.status()
            assert statuses["shards"] == SHARDS
    finally:
        for d in daemons:
            if d.popen.poll() is None:
                d.popen.kill()
                d.popen.wait()
        prometheus.stop()


def _spread(daemons: list[Process]) -> dict[int, str] | None:
    held = shards_held(daemons)
    return held if len(held) == SHARDS and len(set(held.values())) == SHARDS else None
