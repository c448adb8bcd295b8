"""Alertmanager's alerts in the cycle: joined to an incident, opening one that a playbook
matching the alert acts on, or recorded and never acted on. Fakes at both I/O ends, a
real audit store, virtual time."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from healer.config import load_settings
from healer.daemon import Healer
from healer.decide import load_playbooks
from healer.errors import PermanentActionError
from healer.types import (
    ActionKind,
    Alert,
    AlertDisposition,
    AlertStatus,
    Cause,
    WorkloadRef,
    WorkloadState,
)
from tests.unit.test_daemon import OVERLOAD, REPO, SEARCH, T0, FakeActuator, Loop, make_loop

ALERT_PLAYBOOK = """\
name: restart-on-crash-looping-alert
description: A restart when Alertmanager says the pods crash-loop.
match:
  alerts: [KubePodCrashLooping]
  min_confidence: 0.5
action:
  kind: restart
mode: auto
verify:
  within_s: 600
  signals: [restarts]
"""


class MissingActuator(FakeActuator):
    def read_state(self, workload: WorkloadRef) -> WorkloadState:
        if workload.name == "gone":
            raise PermanentActionError('404 Not Found: deployments.apps "gone" not found')
        return super().read_state(workload)


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[Loop]:
    books = tmp_path / "playbooks"
    shutil.copytree(REPO / "playbooks", books)
    (books / "zz-alert.yaml").write_text(ALERT_PLAYBOOK)
    settings = load_settings(None, guards={"mode": "auto"})
    for made in make_loop(tmp_path, settings):
        made.healer.playbooks = load_playbooks(books)
        made.healer.actuator = made.actuator = MissingActuator()
        yield made


def alert(
    name: str = "KubePodCrashLooping",
    fingerprint: str = "f1",
    status: AlertStatus = AlertStatus.FIRING,
    **labels: str,
) -> Alert:
    where = {"namespace": "shop", "deployment": "search"} | labels
    ends = T0 + timedelta(minutes=9) if status is AlertStatus.RESOLVED else None
    return Alert(fingerprint, name, status, T0, ends, {"alertname": name, **where}, {})


def settled(loop: Loop) -> list[tuple[str, AlertDisposition | None, int | None]]:
    detail = [loop.store.get_incident(s.id) for s in loop.store.list_incidents()]
    joined = [
        (a.alert.fingerprint, a.disposition, a.incident_id) for d in detail if d for a in d.alerts
    ]
    return sorted(joined)


def test_a_firing_alert_opens_an_incident_a_playbook_matching_it_acts_on(loop: Loop) -> None:
    loop.store.record_alerts([alert()], at=T0)
    loop.run()
    assert [(p.playbook, p.action) for p in loop.actuator.applied] == [
        ("restart-on-crash-looping-alert", ActionKind.RESTART)
    ]
    (incident,) = loop.store.list_incidents()
    assert (incident.workload, incident.cause) == (SEARCH, Cause.UNKNOWN)
    assert settled(loop) == [("f1", AlertDisposition.OPENED, incident.id)]
    detail = loop.store.get_incident(incident.id)
    assert detail is not None
    assert detail.timeline[0].data["model_version"] == "alertmanager:KubePodCrashLooping"
    assert "KubePodCrashLooping" in next(
        str(s.data) for s in detail.timeline if s.kind == "diagnosis"
    )
    loop.run(cycles=3)
    assert len(loop.actuator.applied) == 1, "a repeated delivery changes nothing"


def test_an_alert_no_playbook_matches_is_escalated_not_acted_on(loop: Loop) -> None:
    loop.store.record_alerts([alert("KubeCPUOvercommit")], at=T0)
    loop.run()
    assert loop.actuator.applied == []
    (incident,) = loop.store.list_incidents()
    assert incident.outcome == "escalated"


def test_an_alert_joins_the_open_incident_of_its_workload(loop: Loop) -> None:
    loop.detector.anomalous = {SEARCH: OVERLOAD}
    loop.run()
    (incident,) = loop.store.list_incidents()
    loop.store.record_alerts([alert("KubeHpaMaxedOut"), alert(fingerprint="f2")], at=T0)
    loop.run()
    assert len(loop.store.list_incidents()) == 1
    assert settled(loop) == [
        ("f1", AlertDisposition.JOINED, incident.id),
        ("f2", AlertDisposition.JOINED, incident.id),
    ]
    assert [p.action for p in loop.actuator.applied] == [ActionKind.SCALE]
    assert any(s.kind == "alert" for s in loop.steps)


@pytest.mark.parametrize(
    ("labels", "disposition", "detail"),
    [
        ({"namespace": "kube-system", "deployment": "coredns"}, "denied", "kube-system is denied"),
        ({"deployment": "gone"}, "unknown_workload", "404 Not Found"),
        ({"deployment": "", "pod": "search-7d9"}, "no_workload", "pod shop/search-7d9"),
    ],
)
def test_an_alert_it_may_not_act_on_is_recorded_and_never_acted_on(
    loop: Loop, tmp_path: Path, labels: dict[str, str], disposition: str, detail: str
) -> None:
    loop.store.record_alerts([alert(**labels)], at=T0)
    loop.run(cycles=2)
    assert loop.actuator.applied == []
    assert loop.store.list_incidents() == []
    assert loop.store.pending_alerts() == []
    with sqlite3.connect(tmp_path / "audit.db") as db:
        rows = list(db.execute("SELECT disposition, detail, incident_id FROM alerts"))
    db.close()
    [(got, why, incident)] = rows
    assert (got, incident) == (disposition, None)
    assert detail in why


def test_a_resolved_alert_is_recorded_and_never_taken(loop: Loop) -> None:
    loop.store.record_alerts([alert(status=AlertStatus.RESOLVED)], at=T0)
    loop.run()
    assert loop.store.list_incidents() == []
    assert loop.actuator.applied == []


def test_an_alert_whose_workload_cannot_be_read_now_is_taken_next_cycle(loop: Loop) -> None:
    loop.store.record_alerts([alert()], at=T0)
    loop.actuator.unreachable = True
    loop.run()
    assert loop.store.list_incidents() == []
    assert len(loop.store.pending_alerts()) == 1
    loop.actuator.unreachable = False
    loop.run()
    assert [p.playbook for p in loop.actuator.applied] == ["restart-on-crash-looping-alert"]


def test_a_restarted_daemon_plans_an_approved_action_on_the_same_alerts(
    tmp_path: Path, loop: Loop
) -> None:
    """The alert playbook's action waits for approval; the daemon restarts; approved,
    the action is planned anew on the incident's alerts and taken."""
    settings = load_settings(None, guards={"mode": "approval"})
    loop.healer.settings = settings
    loop.store.record_alerts([alert()], at=T0)
    loop.run()
    [pending] = loop.store.actions()
    assert pending.status == "pending_approval"
    again = Healer(
        source=loop.source,
        detector=loop.detector,
        actuator=loop.actuator,
        store=loop.store,
        playbooks=loop.healer.playbooks,
        settings=load_settings(None, guards={"mode": "auto"}),
    )
    assert again.resume() == 1
    loop.store.approve_action(pending.id, by="ann", reason="crash loop", at=loop.now)
    loop.healer = again
    loop.run()
    taken = [p for p in loop.actuator.applied if p.mode == "auto"]
    assert [p.playbook for p in taken] == ["restart-on-crash-looping-alert"]


def test_an_alert_names_a_statefulset_by_its_statefulset_label() -> None:
    named = alert("KubeStatefulSetReplicasMismatch", deployment="", statefulset="ledger")
    assert named.workload == WorkloadRef("shop", "StatefulSet", "ledger")
    assert alert(statefulset="ledger").workload == SEARCH  # the deployment label first
    assert alert(namespace="", statefulset="ledger").workload is None


class PodOwningActuator(MissingActuator):
    """Resolves pods as the cluster's owner references would."""

    def owner_of_pod(self, namespace: str, pod: str) -> WorkloadRef | None:
        if pod.startswith("gone-"):
            raise PermanentActionError(f'404 Not Found: pods "{pod}" not found')
        if pod.startswith("search-"):
            return WorkloadRef(namespace, "Deployment", "search")
        return None  # a bare pod, a Job's pod: nothing healer heals


def test_an_alert_naming_a_pod_acts_on_the_workload_that_controls_it(loop: Loop) -> None:
    loop.healer.actuator = loop.actuator = PodOwningActuator()
    loop.store.record_alerts([alert(deployment="", pod="search-7d9-x2")], at=T0)
    loop.run()
    assert [(p.workload, p.action) for p in loop.actuator.applied] == [(SEARCH, ActionKind.RESTART)]
    (incident,) = loop.store.list_incidents()
    assert incident.workload == SEARCH
    assert settled(loop) == [("f1", AlertDisposition.OPENED, incident.id)]


@pytest.mark.parametrize(
    ("pod", "disposition", "detail"),
    [
        ("gone-1", "unknown_workload", 'pods "gone-1" not found'),
        ("backup-28311-abc", "no_workload", "pod shop/backup-28311-abc"),
    ],
)
def test_an_alert_naming_a_pod_nothing_healer_heals_controls_is_never_acted_on(
    loop: Loop, tmp_path: Path, pod: str, disposition: str, detail: str
) -> None:
    loop.healer.actuator = loop.actuator = PodOwningActuator()
    loop.store.record_alerts([alert(deployment="", pod=pod)], at=T0)
    loop.run(cycles=2)
    assert loop.actuator.applied == []
    assert loop.store.list_incidents() == []
    assert loop.store.pending_alerts() == []
    with sqlite3.connect(tmp_path / "audit.db") as db:
        [(got, why)] = list(db.execute("SELECT disposition, detail FROM alerts"))
    db.close()
    assert got == disposition
    assert detail in why


def test_an_alert_names_a_daemonset_by_its_daemonset_label() -> None:
    named = alert("KubeDaemonSetRolloutStuck", deployment="", daemonset="node-proxy")
    assert named.workload == WorkloadRef("shop", "DaemonSet", "node-proxy")
