"""The loop over the simulated cluster under policy objects, watched as ``healer run``
watches them: the CRDs applied to the simulated API server, the policies listed and
watched by their threads through the official client, the cycle planning with what
they say on its next cycle.

- A ``HealingPolicy`` in approval mode for ``shop`` holds the restart of a leak there,
  naming itself in the verdict, while the same leak in ``blog`` is healed in auto.
- Deleted, the policy no longer applies from the next cycle: a later leak in ``shop``
  is healed in auto.
- A ``ClusterHealingPolicy``'s maintenance window turns the restart into a dry-run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from healer.act.kube import api_client
from healer.act.policy_api import KubePolicyApi
from healer.audit import AuditStore, IncidentFilter
from healer.config import load_settings
from healer.decide.escalation import Escalation
from healer.harness import SimHarness
from healer.lifecycle import policy_watch
from healer.sim.scenario import Scenario, load_scenario
from healer.types import ActionKind, ActionStatus, Mode, WorkloadRef

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CAUTIOUS = {
    "apiVersion": "healer.io/v1alpha1",
    "kind": "HealingPolicy",
    "metadata": {"name": "cautious", "namespace": "shop"},
    "spec": {"mode": "approval"},
}


def two_namespaces() -> Scenario:
    """memory-leak with a copy of ``shop/orders`` in ``blog`` leaking at the same time,
    and ``shop/payments`` leaking an hour and a half later."""
    base = load_scenario("memory-leak")
    orders = next(w for w in base.workloads if w.name == "orders")
    leak = base.events[0]
    events = [
        leak,
        leak.model_copy(update={"workload": "blog/orders"}),
        leak.model_copy(update={"workload": "shop/payments", "at_s": 5400.0}),
    ]
    workloads = [*base.workloads, orders.model_copy(update={"namespace": "blog"})]
    return base.model_copy(update={"workloads": workloads, "events": events})


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[[Scenario], tuple[SimHarness, Any]]]:
    """A harness in auto mode with the CRDs installed and the policy watch running."""
    stop = threading.Event()
    started: list[SimHarness] = []

    def make(scenario: Scenario) -> tuple[SimHarness, Any]:
        settings = load_settings(
            None, guards={"mode": "auto"}, playbooks_dir=str(REPO / "playbooks")
        )
        store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
        harness = SimHarness.start(scenario, settings=settings, store=store, workdir=tmp_path)
        started.append(harness)
        for crd in sorted((REPO / "deploy" / "crds").glob("*.yaml")):
            harness.cluster.create_object(
                "customresourcedefinitions", "", yaml.safe_load(crd.read_text()), dry_run=False
            )
        book = policy_watch.PolicyBook()
        harness.healer.policies = book
        api = KubePolicyApi(api_client(harness.kubeconfig))
        policy_watch.start(
            api, book, stop=stop, leading=lambda: True, now=harness.cluster.clock.now
        )
        return harness, book

    yield make
    stop.set()
    for harness in started:
        harness.close()
        harness.store.close()


@dataclass
class Pages:
    """A notifier keeping what it is given."""

    sent: list[Escalation]

    def notify(self, escalation: Escalation) -> list[str]:
        self.sent.append(escalation)
        return []


def wait_for(check: Callable[[], bool], what: str, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def plan_of(harness: SimHarness, workload: WorkloadRef) -> tuple[Any, Any]:
    [summary] = harness.store.list_incidents(
        IncidentFilter(workload=workload.name, namespace=workload.namespace)
    )
    detail = harness.store.get_incident(summary.id)
    assert detail is not None
    [plan] = [s.data for s in detail.timeline if s.kind == "plan"][-1:]
    return summary, plan


def policy_verdict(plan: Any) -> str:
    [found] = [g["detail"] for g in plan["guard_results"] if g["guard"] == "policy"]
    return str(found)


def test_approval_in_one_namespace_auto_in_another_and_deleting_restores_auto(
    start: Callable[[Scenario], tuple[SimHarness, Any]],
) -> None:
    harness, book = start(two_namespaces())
    harness.cluster.create_object("healingpolicies", "shop", CAUTIOUS, dry_run=False)
    wait_for(lambda: len(book.current()) == 1, "the policy to be watched")
    harness.run_for(3000)

    shop, shop_plan = plan_of(harness, WorkloadRef("shop", "Deployment", "orders"))
    assert shop_plan["mode"] == Mode.APPROVAL
    assert shop.action_status == ActionStatus.PENDING_APPROVAL
    assert policy_verdict(shop_plan) == "approval required by HealingPolicy shop/cautious"
    blog, blog_plan = plan_of(harness, WorkloadRef("blog", "Deployment", "orders"))
    assert (blog_plan["mode"], blog.action) == (Mode.AUTO, ActionKind.RESTART)
    assert blog.action_status == ActionStatus.SUCCEEDED
    assert policy_verdict(blog_plan) == "no policy matches the workload"
    status = harness.cluster.get_object("healingpolicies", "shop", "cautious")["status"]
    assert status["matchedWorkloads"] == 2  # orders and payments

    harness.cluster.delete_object("healingpolicies", "shop", "cautious")
    wait_for(lambda: book.current() == (), "the deletion to be watched")
    harness.run_for(2.5 * 3600 - 3000)
    payments, payments_plan = plan_of(harness, WorkloadRef("shop", "Deployment", "payments"))
    assert (payments_plan["mode"], payments.action) == (Mode.AUTO, ActionKind.RESTART)
    assert payments.action_status == ActionStatus.SUCCEEDED
    assert policy_verdict(payments_plan) == "no policy matches the workload"


def test_a_maintenance_window_turns_the_action_into_a_dry_run(
    start: Callable[[Scenario], tuple[SimHarness, Any]],
) -> None:
    scenario = load_scenario("memory-leak")
    harness, book = start(scenario)
    start_utc = scenario.start.strftime("%H:%M")  # 09:00 UTC: 10:00 in Berlin in March
    window = {"start": "09:30", "end": "12:00", "timeZone": "Europe/Berlin"}
    policy = {
        "apiVersion": "healer.io/v1alpha1",
        "kind": "ClusterHealingPolicy",
        "metadata": {"name": "freeze"},
        "spec": {
            "namespaces": ["shop"],
            "maintenanceWindows": [window],
            "notify": {"receivers": ["shop-oncall"]},
        },
    }
    assert start_utc == "09:00"
    harness.cluster.create_object("clusterhealingpolicies", "", policy, dry_run=False)
    wait_for(lambda: len(book.current()) == 1, "the policy to be watched")
    pages: list[Escalation] = []
    harness.healer.notifier = Pages(pages)
    harness.run_for(3000)

    orders, plan = plan_of(harness, WorkloadRef("shop", "Deployment", "orders"))
    assert (plan["mode"], orders.action) == (Mode.DRY_RUN, ActionKind.RESTART)
    assert orders.action_status == ActionStatus.DRY_RUN
    assert policy_verdict(plan) == (
        "dry-run: maintenance window of ClusterHealingPolicy freeze (daily 09:30-12:00 "
        "Europe/Berlin); escalations to shop-oncall"
    )
    [page] = pages  # a dry run is escalated, to the receiver the policy names too
    assert (page.workload.name, page.receivers) == ("orders", ("shop-oncall",))
    pods = harness.cluster.pods_of("shop", "orders")
    assert not any(
        "kubectl.kubernetes.io/restartedAt" in p["metadata"]["annotations"] for p in pods
    )
