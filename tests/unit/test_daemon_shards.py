"""The daemon of one shard: it resumes, approves and acts for its namespaces only."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from test_daemon import OVERLOAD, SEARCH, T0, make_loop

from healer.audit.store import AuditStore
from healer.config import load_settings
from healer.types import ActionStatus, WorkloadRef

WEB = WorkloadRef("web", "Deployment", "storefront")


def test_a_shard_resumes_only_the_incidents_of_its_namespaces(tmp_path: Path) -> None:
    settings = load_settings(None, guards={"mode": "auto"})
    for first in make_loop(tmp_path, settings):
        first.detector.anomalous = {SEARCH: OVERLOAD}
        first.run()
        assert len(first.actuator.applied) == 1
    for other in make_loop(tmp_path, settings):  # the shard of "web" only
        other.healer.scope = lambda namespace: namespace == "web"
        assert other.healer.resume() == 0
    for owner in make_loop(tmp_path, settings):  # the shard of "shop" takes it over
        owner.healer.scope = lambda namespace: namespace == "shop"
        assert owner.healer.resume() == 1
        owner.now = T0 + timedelta(minutes=1)
        owner.detector.anomalous = {SEARCH: OVERLOAD}
        owner.run(cycles=3)
        assert owner.actuator.applied == []  # verified, never taken twice


def test_approvals_wait_for_the_shard_of_their_namespace(tmp_path: Path) -> None:
    settings = load_settings(None, guards={"mode": "approval"})
    for first in make_loop(tmp_path, settings):
        first.detector.anomalous = {SEARCH: OVERLOAD}
        first.run()
        (pending,) = first.store.actions(status=ActionStatus.PENDING_APPROVAL)
        first.store.approve_action(pending.id, by="ops", reason="go", at=first.now)
    for other in make_loop(tmp_path, settings):  # the shard of "web" only
        other.healer.scope = lambda namespace: namespace == "web"
        other.healer.resume()
        other.now = T0 + timedelta(minutes=1)
        other.run()
        assert other.actuator.applied == []
        assert [a.id for a in other.store.approved_actions()] == [pending.id]
    for owner in make_loop(tmp_path, settings):
        owner.healer.scope = lambda namespace: namespace == "shop"
        owner.healer.resume()
        owner.now = T0 + timedelta(minutes=2)
        owner.run()
        assert [p.workload for p in owner.actuator.applied] == [SEARCH]


def test_each_cluster_resumes_and_budgets_its_own_incidents(tmp_path: Path) -> None:
    settings = load_settings(None, guards={"mode": "auto"})
    for east in make_loop(tmp_path, settings):
        east.detector.anomalous = {SEARCH: OVERLOAD}
        east.run()
        assert len(east.actuator.applied) == 1
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    west = AuditStore(url, cluster="west")
    default = AuditStore(url)
    try:
        assert west.unresolved() == [] and len(default.unresolved()) == 1
        later = T0 + timedelta(minutes=5)
        theirs, ours = (s.action_history(now=later, window_s=600) for s in (west, default))
        assert (theirs.recent_action_times, theirs.in_flight, theirs.last_action_at) == ((), 0, {})
        assert (len(ours.recent_action_times), ours.in_flight) == (1, 1)
        assert [i.cluster for i in west.list_incidents()] == ["default"]  # people see all
        assert west.list_incidents(cluster="west") == []
    finally:
        west.close()
        default.close()
