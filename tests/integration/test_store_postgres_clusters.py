"""Several clusters' healers on one PostgreSQL, and PostgreSQL restarted mid-cycle.

Each healer is the whole loop (its own simulated cluster, reached over HTTP through the
official client; its own detector) writing to one real PostgreSQL (local_postgres.py),
in virtual time, the daemons named by ``cluster.name``:

* two clusters, east and west, heal their own faults side by side; each resumes and
  budgets only its own incidents, and the API filters the shared store by cluster;
* the server is stopped and started again while a cycle runs: the cycle waits for it
  (``store.unavailable_s``), fails nothing, and every step recorded before is there.

Without PostgreSQL these tests skip, or fail when ``CI=true``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from kubernetes import config as kube_config
from local_postgres import LocalServer, local_postgres
from test_high_availability import ORDERS, PAYMENTS, SCENARIO

from healer.act.kube import KubeActuator
from healer.api import create_app
from healer.api.auth import hash_token
from healer.audit import AuditStore, IncidentFilter
from healer.config import Settings, load_settings
from healer.daemon import Healer
from healer.decide import load_playbooks
from healer.detect.streaming import StreamingDetector
from healer.sim.apiserver import serve_in_thread, write_kubeconfig
from healer.sim.cluster import Cluster
from healer.sim.scenario import load_scenario
from healer.sim.source import SimSource
from healer.types import ActionStatus, OutcomeKind
from tests.acting import held_against

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
RUN_S = 4 * 3600
TOKEN = "viewer-token"


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with local_postgres() as found:
        yield found


@dataclass
class Site:
    """One cluster and its healer, stepped together in virtual time."""

    cluster: Cluster
    healer: Healer
    store: AuditStore
    t_s: int = 0

    def now(self) -> datetime:
        return self.cluster.scenario.start + timedelta(seconds=self.t_s)

    def run_until(self, end_s: int, stop: Callable[[Site], bool] | None = None) -> None:
        step_s = int(self.cluster.scenario.step_s)
        interval_s = int(self.healer.settings.daemon.interval_s)
        while self.t_s < end_s:
            self.t_s += step_s
            self.cluster.advance(step_s)
            if self.t_s % interval_s == 0:
                self.healer.cycle(self.now())
                if stop is not None and stop(self):
                    return

    def outcomes(self) -> dict[str, tuple[ActionStatus | None, OutcomeKind | None]]:
        mine = self.store.list_incidents(IncidentFilter(cluster=self.store.cluster))
        return {str(i.workload): (i.action_status, i.outcome) for i in mine}


def settled(site: Site) -> bool:
    done = site.outcomes()
    return all(done.get(str(w), (None, None))[1] is not None for w in (ORDERS, PAYMENTS))


@pytest.fixture
def site_of(tmp_path: Path, server: LocalServer) -> Iterator[Callable[[str], Site]]:
    _empty(server.url)
    settings = load_settings(None, guards={"mode": "auto"}, playbooks_dir=str(REPO / "playbooks"))
    playbooks = load_playbooks(settings.playbooks_dir)
    opened: list[Any] = []

    def build(name: str) -> Site:
        scenario_file = tmp_path / f"{name}.yaml"
        scenario_file.write_text(yaml.safe_dump(SCENARIO))
        cluster = Cluster(load_scenario(str(scenario_file)))
        sim = serve_in_thread(cluster)
        kubeconfig = write_kubeconfig(tmp_path / f"{name}.kubeconfig", sim.url)
        api = kube_config.new_client_from_config(config_file=str(kubeconfig))
        store = AuditStore(server.url, identity=f"healer-{name}", cluster=name)
        opened.extend([sim, api, store])
        healer = Healer(
            source=SimSource(cluster),
            detector=StreamingDetector(settings.detector),
            actuator=KubeActuator(api),
            store=store,
            playbooks=playbooks,
            settings=settings,
        )
        return Site(cluster, healer, store)

    yield build
    for thing in opened:
        (thing.stop if hasattr(thing, "stop") else thing.close)()


def _empty(url: str) -> None:
    """A fresh schema: the module's tests share one server."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as db:
        db.execute(text("DROP SCHEMA public CASCADE"))
        db.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def test_two_clusters_heal_side_by_side_in_one_store_and_the_api_filters_by_cluster(
    site_of: Callable[[str], Site], server: LocalServer
) -> None:
    east, west = site_of("east"), site_of("west")
    while not (settled(east) and settled(west)) and east.t_s < RUN_S:
        east.run_until(east.t_s + 300)
        west.run_until(west.t_s + 300)
    healed = (ActionStatus.SUCCEEDED, OutcomeKind.HEALED)
    for site in (east, west):
        assert site.outcomes() == {str(ORDERS): healed, str(PAYMENTS): healed}
        assert site.healer.vitals.cycle_failures == 0
    # One restart of orders in each cluster, each on an incident of its own cluster.
    restarts = [a for a in east.store.actions() if a.workload == ORDERS]
    assert [a.status for a in restarts] == [ActionStatus.SUCCEEDED] * 2
    assert {a.incident_id for a in restarts} == {
        min(_ids(site) & {a.incident_id for a in restarts}) for site in (east, west)
    }
    # A restarted healer of east resumes none of west's incidents.
    again = AuditStore(server.url, cluster="east")
    try:
        assert {i.workload for i in again.unresolved()} <= {ORDERS, PAYMENTS}
        assert all(_cluster_of(again, i.id) == "east" for i in again.unresolved())
    finally:
        again.close()

    reader = AuditStore(server.url)
    settings = Settings.model_validate(
        {"api": {"tokens": [{"name": "vic", "role": "viewer", "sha256": hash_token(TOKEN)}]}}
    )
    try:
        app = create_app(store=reader, settings=settings, clock=east.now)
        with TestClient(app) as api:
            auth = {"Authorization": f"Bearer {TOKEN}"}
            every = api.get("/api/v1/incidents", headers=auth).json()["items"]
            assert {i["cluster"] for i in every} == {"east", "west"}
            for name, site in (("east", east), ("west", west)):
                page = api.get("/api/v1/incidents", params={"cluster": name}, headers=auth)
                items = page.json()["items"]
                assert items and {i["cluster"] for i in items} == {name}
                assert {i["id"] for i in items} == _ids(site)
            day, _ = api.get("/api/v1/overview", headers=auth).json()["windows"]
            tallied = {row["name"]: sum(row["counts"].values()) for row in day["by_cluster"]}
            assert tallied == {"east": len(_ids(east)), "west": len(_ids(west))}
    finally:
        reader.close()


def _ids(site: Site) -> set[int]:
    return {i.id for i in site.store.list_incidents(IncidentFilter(cluster=site.store.cluster))}


def _cluster_of(store: AuditStore, incident_id: int) -> str:
    (summary,) = [i for i in store.list_incidents(limit=500) if i.id == incident_id]
    return summary.cluster


def test_postgresql_restarted_during_a_cycle_loses_nothing_and_the_cycle_carries_on(
    site_of: Callable[[str], Site], server: LocalServer
) -> None:
    site = site_of("solo")
    # Until the leak in orders has an open incident with its action taken.
    site.run_until(RUN_S, stop=lambda s: s.outcomes().get(str(ORDERS), (None,))[0] is not None)
    before = site.store.get_incident(next(iter(_ids(site))))
    assert before is not None
    server.stop()
    restarted = threading.Timer(3.0, server.start)
    restarted.start()
    began = time.monotonic()
    site.run_until(site.t_s + 60)  # two cycles: the first waits for the server
    waited_s = time.monotonic() - began
    restarted.join()
    assert waited_s >= 2.0, "the cycle should have waited for the server"
    assert site.healer.vitals.cycle_failures == 0
    after = site.store.get_incident(before.summary.id)
    assert after is not None and after.timeline[: len(before.timeline)] == before.timeline
    site.run_until(RUN_S, stop=settled)
    healed = (ActionStatus.SUCCEEDED, OutcomeKind.HEALED)
    assert site.outcomes() == {str(ORDERS): healed, str(PAYMENTS): healed}
    restarts = [a for a in site.store.actions() if a.workload == ORDERS]
    assert [a.status for a in restarts] == [ActionStatus.SUCCEEDED]  # never taken twice
    assert site.healer.vitals.cycle_failures == 0


def test_the_acting_lock_lets_one_replica_of_a_cluster_act_at_a_time(server: LocalServer) -> None:
    """Shards of one cluster plan on one budget: their planning and acting take turns
    (an advisory lock); another cluster's healer is never held up by them."""
    first, second, other = (
        AuditStore(server.url, cluster=name) for name in ("east", "east", "west")
    )
    try:
        with held_against(first, second, wait_s=1.0), other.acting():
            pass  # west's lock is another key: taken while east's is held
    finally:
        for store in (first, second, other):
            store.close()
