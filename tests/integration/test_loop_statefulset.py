"""The loop heals StatefulSets, in virtual time: a bad release rolled back, a leak
restarted, an overload scaled.

The actuator reaches the simulated cluster through the official client over HTTP; the
StatefulSet controller rolls the release out one ordinal at a time and, after healer's
rollback (the ControllerRevision's data, as ``kubectl rollout undo`` sends it), back.
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
LEDGER = WorkloadRef("shop", "StatefulSet", "ledger")
GOOD, BAD = "registry.local/shop/ledger:3.0.4", "registry.local/shop/ledger:3.1.0"


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimHarness]:
    folder = tmp_path_factory.mktemp("sts-loop")
    settings = load_settings(None, guards={"mode": "auto"}, playbooks_dir=str(REPO / "playbooks"))
    store = AuditStore(f"sqlite:///{folder / 'audit.db'}")
    running = SimHarness.start(
        load_scenario("statefulset-bad-release"), settings=settings, store=store, workdir=folder
    )
    running.run_for(1.5 * 3600)
    yield running
    running.close()
    store.close()


def test_the_scenario_names_its_ground_truth(harness: SimHarness) -> None:
    [(_, event)] = harness.cluster.applied_events
    assert (event.kind, event.workload, event.expect) == ("release", "shop/ledger", "rollback")
    assert LEDGER in harness.cluster.workloads


def test_the_bad_release_is_rolled_back_to_the_previous_controller_revision(
    harness: SimHarness,
) -> None:
    [summary] = harness.store.list_incidents(limit=50)
    assert summary.workload == LEDGER
    assert summary.cause == Cause.BAD_RELEASE
    assert summary.action == ActionKind.ROLLBACK
    assert summary.action_status == ActionStatus.SUCCEEDED
    assert summary.outcome == OutcomeKind.HEALED
    release = harness.cluster.scenario.start + timedelta(seconds=1800)
    assert summary.closed is not None and summary.closed - release < timedelta(minutes=15)
    detail = harness.store.get_incident(summary.id)
    assert detail is not None
    [action] = detail.actions
    assert action.request["path"] == "/apis/apps/v1/namespaces/shop/statefulsets/ledger"
    assert action.request["content_type"] == "application/strategic-merge-patch+json"
    body = action.request["body"]
    assert isinstance(body, dict)
    assert body["spec"]["template"]["$patch"] == "replace"  # type: ignore[index,call-overload]


def test_the_cluster_runs_the_previous_release_again(harness: SimHarness) -> None:
    cluster = harness.cluster
    sts = cluster.get_object("statefulsets", "shop", "ledger")
    assert sts["spec"]["template"]["spec"]["containers"][0]["image"] == GOOD
    status = sts["status"]
    assert status["currentRevision"] == status["updateRevision"]
    assert status["readyReplicas"] == status["updatedReplicas"] == 3
    pods = cluster.pods_of("shop", "ledger")
    assert sorted(p["metadata"]["name"] for p in pods) == ["ledger-0", "ledger-1", "ledger-2"]
    assert {p["spec"]["containers"][0]["image"] for p in pods} == {GOOD}
    # The first revision came back renumbered; no third template was made.
    revisions = {
        r["revision"]: r["data"]["spec"]["template"]["spec"]["containers"][0]["image"]
        for r in cluster.list_objects("controllerrevisions", "shop")
    }
    assert revisions == {2: BAD, 3: GOOD}


def test_the_action_is_posted_as_an_event_on_the_statefulset(harness: SimHarness) -> None:
    events = harness.cluster.list_objects(
        "events", "shop", field_selector="involvedObject.kind=StatefulSet"
    )
    assert [e["reason"] for e in events] == ["HealerRollback"]
    assert events[0]["involvedObject"]["name"] == "ledger"


def as_statefulset(scenario: str, name: str) -> Scenario:
    """A built-in scenario whose faulted workload ``name`` is a StatefulSet."""
    chosen = load_scenario(scenario)
    workloads = [
        w.model_copy(update={"kind": "StatefulSet"}) if w.name == name else w
        for w in chosen.workloads
    ]
    return chosen.model_copy(update={"workloads": workloads})


def run_alone(scenario: Scenario, folder: Path) -> tuple[SimHarness, AuditStore]:
    settings = load_settings(None, guards={"mode": "auto"}, playbooks_dir=str(REPO / "playbooks"))
    store = AuditStore(f"sqlite:///{folder / 'audit.db'}")
    running = SimHarness.start(scenario, settings=settings, store=store, workdir=folder)
    running.run_for(1.5 * 3600)
    running.close()
    return running, store


def test_a_leaking_statefulset_is_restarted_ordinal_by_ordinal(tmp_path: Path) -> None:
    harness, store = run_alone(as_statefulset("memory-leak", "orders"), tmp_path)
    [summary] = store.list_incidents(limit=50)
    assert (summary.workload, summary.cause) == (
        WorkloadRef("shop", "StatefulSet", "orders"),
        Cause.MEMORY_LEAK,
    )
    assert (summary.action, summary.outcome) == (ActionKind.RESTART, OutcomeKind.HEALED)
    pods = harness.cluster.pods_of("shop", "orders")
    assert sorted(p["metadata"]["name"] for p in pods) == ["orders-0", "orders-1", "orders-2"]
    assert all("kubectl.kubernetes.io/restartedAt" in p["metadata"]["annotations"] for p in pods)
    assert all(p["status"]["containerStatuses"][0]["restartCount"] == 0 for p in pods)
    store.close()


def test_an_overloaded_statefulset_is_scaled_through_its_scale_subresource(
    tmp_path: Path,
) -> None:
    harness, store = run_alone(as_statefulset("overload", "search"), tmp_path)
    [summary] = store.list_incidents(limit=50)
    assert summary.workload == WorkloadRef("shop", "StatefulSet", "search")
    assert (summary.action, summary.outcome) == (ActionKind.SCALE, OutcomeKind.HEALED)
    detail = store.get_incident(summary.id)
    assert detail is not None
    assert all(
        a.request["path"] == "/apis/apps/v1/namespaces/shop/statefulsets/search/scale"
        for a in detail.actions
    )
    sts = harness.cluster.get_object("statefulsets", "shop", "search")
    assert sts["spec"]["replicas"] > 3
    assert sts["status"]["readyReplicas"] == sts["spec"]["replicas"]
    names = sorted(p["metadata"]["name"] for p in harness.cluster.pods_of("shop", "search"))
    assert names == sorted(f"search-{i}" for i in range(sts["spec"]["replicas"]))
    store.close()


def test_a_crash_looping_statefulset_is_rolled_back_and_its_stuck_pod_deleted(
    tmp_path: Path,
) -> None:
    """OrderedReady holds the rollout on the pod that never becomes Ready, so reverting
    the template alone changes nothing: the forced rollback deletes that pod too."""
    harness, store = run_alone(as_statefulset("crash-loop", "profile"), tmp_path)
    [summary] = store.list_incidents(limit=50)
    assert (summary.workload, summary.cause) == (
        WorkloadRef("shop", "StatefulSet", "profile"),
        Cause.CRASH_LOOP,
    )
    assert (summary.action, summary.outcome) == (ActionKind.ROLLBACK, OutcomeKind.HEALED)
    detail = store.get_incident(summary.id)
    assert detail is not None
    [action] = detail.actions
    assert action.request["path"] == "/apis/apps/v1/namespaces/shop/statefulsets/profile"
    assert action.request["then"] == [
        {
            "verb": "DELETE",
            "path": "/api/v1/namespaces/shop/pods/profile-2",
            "content_type": "application/json",
            "body": None,
        }
    ]
    pods = harness.cluster.pods_of("shop", "profile")
    good = "registry.local/shop/profile:4.9.3"
    assert {p["spec"]["containers"][0]["image"] for p in pods} == {good}
    assert all(p["status"]["containerStatuses"][0]["restartCount"] == 0 for p in pods)
    store.close()
