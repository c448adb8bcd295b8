"""The loop heals DaemonSets, in virtual time, and leaves a person's scale alone: a
crash-looping release rolled back, a leak restarted, a StatefulSet scaled by hand
untouched.

The actuator reaches the simulated cluster through the official client over HTTP; the
DaemonSet controller replaces one node's pod at a time and, after healer's rollback (the
ControllerRevision's data, as ``kubectl rollout undo daemonset`` sends it), puts the
earlier release back on that node.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from healer.audit.store import AuditStore
from healer.config import load_settings
from healer.harness import SimHarness
from healer.sim.scenario import Scenario, load_scenario
from healer.types import ActionKind, ActionStatus, Cause, OutcomeKind, WorkloadRef

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PROXY = WorkloadRef("infra", "DaemonSet", "node-proxy")
GOOD, BAD = "registry.local/infra/node-proxy:2.3.1", "registry.local/infra/node-proxy:2.4.0"


def start(scenario: Scenario, folder: Path) -> tuple[SimHarness, AuditStore]:
    settings = load_settings(None, guards={"mode": "auto"}, playbooks_dir=str(REPO / "playbooks"))
    store = AuditStore(f"sqlite:///{folder / 'audit.db'}")
    running = SimHarness.start(scenario, settings=settings, store=store, workdir=folder)
    return running, store


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimHarness]:
    running, store = start(
        load_scenario("daemonset-crash-loop"), tmp_path_factory.mktemp("ds-loop")
    )
    running.run_for(1.5 * 3600)
    yield running
    running.close()
    store.close()


def test_the_scenario_names_its_ground_truth(harness: SimHarness) -> None:
    [(_, event)] = harness.cluster.applied_events
    assert (event.kind, event.workload, event.expect) == (
        "crash_loop",
        "infra/node-proxy",
        "rollback",
    )
    assert PROXY in harness.cluster.workloads


def test_the_crash_loop_is_rolled_back_to_the_previous_controller_revision(
    harness: SimHarness,
) -> None:
    [summary] = harness.store.list_incidents(limit=50)
    assert summary.workload == PROXY
    assert summary.cause == Cause.CRASH_LOOP
    assert summary.action == ActionKind.ROLLBACK
    assert summary.action_status == ActionStatus.SUCCEEDED
    assert summary.outcome == OutcomeKind.HEALED
    release = harness.cluster.scenario.start + timedelta(seconds=1800)
    assert summary.closed is not None and summary.closed - release < timedelta(minutes=15)
    detail = harness.store.get_incident(summary.id)
    assert detail is not None
    [action] = detail.actions
    assert action.request["path"] == "/apis/apps/v1/namespaces/infra/daemonsets/node-proxy"
    assert action.request["content_type"] == "application/strategic-merge-patch+json"
    body = action.request["body"]
    assert isinstance(body, dict)
    assert body["spec"]["template"]["$patch"] == "replace"  # type: ignore[index,call-overload]


def test_every_node_runs_the_previous_release_again(harness: SimHarness) -> None:
    cluster = harness.cluster
    ds = cluster.get_object("daemonsets", "infra", "node-proxy")
    assert ds["spec"]["template"]["spec"]["containers"][0]["image"] == GOOD
    status = ds["status"]
    assert status["desiredNumberScheduled"] == 4
    assert status["numberAvailable"] == status["updatedNumberScheduled"] == 4
    pods = cluster.pods_of("infra", "node-proxy")
    assert sorted(p["spec"]["nodeName"] for p in pods) == [f"node-0{i}" for i in range(4)]
    assert {p["spec"]["containers"][0]["image"] for p in pods} == {GOOD}
    # The first revision came back renumbered; no third template was made.
    revisions = {
        r["revision"]: r["data"]["spec"]["template"]["spec"]["containers"][0]["image"]
        for r in cluster.list_objects("controllerrevisions", "infra")
    }
    assert revisions == {2: BAD, 3: GOOD}


def test_the_action_is_posted_as_an_event_on_the_daemonset(harness: SimHarness) -> None:
    events = harness.cluster.list_objects(
        "events", "infra", field_selector="involvedObject.kind=DaemonSet"
    )
    assert [e["reason"] for e in events] == ["HealerRollback"]
    assert events[0]["involvedObject"]["name"] == "node-proxy"


def as_daemonset(scenario: str, name: str) -> Scenario:
    """A built-in scenario whose faulted workload ``name`` is a DaemonSet."""
    chosen = load_scenario(scenario)
    workloads = [
        w.model_copy(update={"kind": "DaemonSet"}) if w.name == name else w
        for w in chosen.workloads
    ]
    return chosen.model_copy(update={"workloads": workloads})


def test_a_leaking_daemonset_is_restarted_node_by_node(tmp_path: Path) -> None:
    harness, store = start(as_daemonset("memory-leak", "orders"), tmp_path)
    harness.run_for(1.5 * 3600)
    harness.close()
    [summary] = store.list_incidents(limit=50)
    orders = WorkloadRef("shop", "DaemonSet", "orders")
    assert (summary.workload, summary.cause) == (orders, Cause.MEMORY_LEAK)
    assert (summary.action, summary.outcome) == (ActionKind.RESTART, OutcomeKind.HEALED)
    detail = store.get_incident(summary.id)
    assert detail is not None
    [action] = detail.actions
    assert action.request["path"] == "/apis/apps/v1/namespaces/shop/daemonsets/orders"
    pods = harness.cluster.pods_of("shop", "orders")
    nodes = harness.cluster.list_objects("nodes", None)
    assert sorted(p["spec"]["nodeName"] for p in pods) == sorted(
        n["metadata"]["name"] for n in nodes
    )
    assert all("kubectl.kubernetes.io/restartedAt" in p["metadata"]["annotations"] for p in pods)
    assert all(p["status"]["containerStatuses"][0]["restartCount"] == 0 for p in pods)
    store.close()


def test_a_statefulset_scaled_by_a_person_is_left_alone(tmp_path: Path) -> None:
    harness, store = start(load_scenario("statefulset-scaled-by-hand"), tmp_path)
    harness.run_for(3600)  # past the scale to five, at 45 minutes
    sts = harness.cluster.get_object("statefulsets", "shop", "ledger")
    assert sts["spec"]["replicas"] == sts["status"]["readyReplicas"] == 5
    harness.run_for(2.5 * 3600)  # past the scale back to three, at 2.5 hours
    harness.close()
    assert [e.kind for _, e in harness.cluster.applied_events] == ["manual_scale"] * 2
    assert store.list_incidents(limit=50) == []
    sts = harness.cluster.get_object("statefulsets", "shop", "ledger")
    assert sts["spec"]["replicas"] == 3  # the person's last word, not healer's
    events = harness.cluster.list_objects("events", "shop")
    assert not [e for e in events if str(e.get("reason", "")).startswith("Healer")]
    store.close()
