"""The daemon of one shard: it resumes, approves and acts for its namespaces only."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from test_daemon import OTHERS, OVERLOAD, SEARCH, T0, make_loop

from healer.audit import AuditStore, IncidentFilter
from healer.config import load_settings
from healer.lifecycle.brake_share import BrakeShare
from healer.lifecycle.brake_watch import BrakeWatch
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
        assert west.list_incidents(IncidentFilter(cluster="west")) == []
    finally:
        west.close()
        default.close()


def test_the_brake_counts_the_anomalous_workloads_of_every_shard(tmp_path: Path) -> None:
    """Two shards each see two of five workloads turn anomalous: alone, each is under
    the brake's minimum of three; through the store, the event is four of ten."""
    settings = load_settings(None, guards={"mode": "auto"})
    halves = ({OTHERS[0], OTHERS[1]}, {OTHERS[2], OTHERS[3]})
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    loops = [next(make_loop(tmp_path / name, settings)) for name in ("a", "b")]
    shared = AuditStore(f"sqlite:///{tmp_path / 'shared.db'}")
    try:
        for loop, name in zip(loops, ("a", "b"), strict=True):
            loop.healer.brake_share = BrakeShare(shared, f"replica-{name}", fresh_s=90)
        for loop, half in zip(loops, halves, strict=True):
            loop.detector.rising = set(half)  # anomalous, not yet findings
            loop.run()
        for loop, half in zip(loops, halves, strict=True):
            loop.detector.rising = set()
            loop.detector.anomalous = dict.fromkeys(half, OVERLOAD)
            loop.run()
        for loop in loops:
            assert loop.actuator.applied == []
            (incident, _) = loop.store.list_incidents()
            detail = loop.store.get_incident(incident.id)
            assert detail is not None
            outcome = detail.summary.outcome
            assert outcome is not None, detail
            steps = [s.data for s in detail.timeline if s.kind == "outcome"]
            assert "anomaly_brake" in str(steps), steps
            assert "4 of 10 watched workloads" in str(steps), steps
    finally:
        shared.close()
        for loop in loops:
            loop.store.close()


def test_alone_each_shard_would_have_acted(tmp_path: Path) -> None:
    settings = load_settings(None, guards={"mode": "auto"})
    for loop in make_loop(tmp_path, settings):
        loop.detector.rising = {OTHERS[0], OTHERS[1]}
        loop.run()
        loop.detector.rising = set()
        loop.detector.anomalous = dict.fromkeys((OTHERS[0], OTHERS[1]), OVERLOAD)
        loop.run()
        assert len(loop.actuator.applied) == 2


def test_a_stopped_replicas_share_is_left_out(tmp_path: Path) -> None:
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    try:
        mine, theirs = (BrakeShare(store, name, fresh_s=90) for name in ("a", "b"))
        stale = BrakeWatch(onsets={OTHERS[0]: T0})
        theirs.exchange(stale, watched=7, now=T0)
        brake = BrakeWatch()
        mine.exchange(brake, watched=5, now=T0 + timedelta(seconds=60))
        assert (mine.peer_watched, brake.onsets) == (7, {OTHERS[0]: T0})
        later = BrakeWatch()
        mine.exchange(later, watched=5, now=T0 + timedelta(seconds=200))
        assert (mine.peer_watched, later.onsets) == (0, {})
    finally:
        store.close()
