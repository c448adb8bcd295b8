"""The loop evicts the one bad pod, in virtual time, over HTTP through the official client.

``outlier-pod``: one of cart's four pods leaks, later one of search's three pods turns
slow. healer reads their pods' values, diagnoses each time one outlier pod, evicts that
pod (the plan names it) through the Eviction API, and leaves its siblings alone. A
workload-wide leak is still a rolling restart, and a PodDisruptionBudget that forbids
the eviction holds: the incident is escalated and the pod stays.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from healer.audit.store import AuditStore
from healer.config import load_settings
from healer.harness import SimHarness
from healer.sim.scenario import load_scenario
from healer.types import ActionKind, ActionStatus, Cause, OutcomeKind, WorkloadRef

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CART = WorkloadRef("shop", "Deployment", "cart")
SEARCH = WorkloadRef("shop", "Deployment", "search")


def pod_names(harness: SimHarness, workload: WorkloadRef) -> list[str]:
    return sorted(p["metadata"]["name"] for p in harness.cluster.pods_of("shop", workload.name))


def start(folder: Path, scenario: str) -> tuple[SimHarness, AuditStore]:
    settings = load_settings(None, guards={"mode": "auto"}, playbooks_dir=str(REPO / "playbooks"))
    store = AuditStore(f"sqlite:///{folder / 'audit.db'}")
    return SimHarness.start(
        load_scenario(scenario), settings=settings, store=store, workdir=folder
    ), store


@dataclass(frozen=True)
class Run:
    harness: SimHarness
    store: AuditStore
    cart_before: list[str]
    """cart's pods when its pod 2 began to leak, by name."""
    search_before: list[str]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    harness, store = start(tmp_path_factory.mktemp("outlier-loop"), "outlier-pod")
    harness.run_for(1800 + 15)
    cart = pod_names(harness, CART)
    harness.run_for(5400 + 15 - harness.cluster.elapsed_s)
    search = pod_names(harness, SEARCH)
    harness.run_for(2.5 * 3600 - harness.cluster.elapsed_s)
    yield Run(harness, store, cart, search)
    harness.close()
    store.close()


def test_each_outlier_pod_is_diagnosed_by_name_and_evicted(run: Run) -> None:
    summaries = sorted(run.store.list_incidents(limit=50), key=lambda s: s.id)
    assert [(s.workload, s.cause, s.action) for s in summaries] == [
        (CART, Cause.POD_OUTLIER, ActionKind.EVICT),
        (SEARCH, Cause.POD_OUTLIER, ActionKind.EVICT),
    ]
    assert all(s.action_status == ActionStatus.SUCCEEDED for s in summaries)
    assert all(s.outcome == OutcomeKind.HEALED for s in summaries)
    bad = {CART: run.cart_before[2], SEARCH: run.search_before[0]}  # the events' pods
    for summary in summaries:
        detail = run.store.get_incident(summary.id)
        assert detail is not None
        [action] = detail.actions
        pod = bad[summary.workload]
        assert action.request["path"] == f"/api/v1/namespaces/shop/pods/{pod}/eviction"
        assert action.request["body"] == {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": pod, "namespace": "shop"},
        }
        [diagnosis] = [s for s in detail.timeline if s.kind == "diagnosis"]
        assert f"One pod ({pod}) is an outlier" in str(diagnosis.data)


def test_only_the_bad_pods_were_replaced(run: Run) -> None:
    cart, search = pod_names(run.harness, CART), pod_names(run.harness, SEARCH)
    assert set(run.cart_before) - set(cart) == {run.cart_before[2]}
    assert set(run.search_before) - set(search) == {run.search_before[0]}
    assert len(cart) == 4 and len(search) == 3
    gone = run.harness.cluster
    for name in ("cart", "search"):
        events = gone.list_objects(
            "events", "shop", field_selector="involvedObject.kind=Deployment"
        )
        assert [e["reason"] for e in events if e["involvedObject"]["name"] == name] == [
            "HealerEvict"
        ]


def test_no_container_was_oom_killed(run: Run) -> None:
    pods = run.harness.cluster.pods_of("shop", "cart")
    assert all(p["status"]["containerStatuses"][0]["restartCount"] == 0 for p in pods)


def test_a_workload_wide_leak_is_still_a_rolling_restart(tmp_path: Path) -> None:
    harness, store = start(tmp_path, "memory-leak")
    harness.run_for(1.2 * 3600)
    harness.close()
    [summary] = store.list_incidents(limit=50)
    assert (summary.cause, summary.action) == (Cause.MEMORY_LEAK, ActionKind.RESTART)
    assert summary.outcome == OutcomeKind.HEALED
    store.close()


def test_a_disruption_budget_holds_the_eviction_and_the_incident_escalates(
    tmp_path: Path,
) -> None:
    harness, store = start(tmp_path, "outlier-pod")
    budget = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "cart", "namespace": "shop"},
        "spec": {"minAvailable": 4, "selector": {"matchLabels": {"app": "cart"}}},
    }
    harness.cluster.create_object("poddisruptionbudgets", "shop", budget, dry_run=False)
    harness.run_for(1800 + 15)
    leaking = pod_names(harness, CART)[2]
    harness.run_for(40 * 60)
    harness.close()
    [summary] = [s for s in store.list_incidents(limit=50) if s.workload == CART]
    assert (summary.cause, summary.action) == (Cause.POD_OUTLIER, ActionKind.EVICT)
    assert summary.action_status == ActionStatus.FAILED
    assert summary.outcome == OutcomeKind.ESCALATED
    detail = store.get_incident(summary.id)
    assert detail is not None and (detail.actions[-1].error or "").startswith("429")
    assert leaking in pod_names(harness, CART)  # never deleted behind the budget's back
    store.close()
