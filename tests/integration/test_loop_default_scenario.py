"""The whole loop on the default scenario, hours of cluster time in seconds.

The actuator reaches the simulated cluster through the official client over HTTP; only
time is virtual. This is the foundation's acceptance test: every fault is healed by the
right action, benign events are left alone, and the audit trail is complete.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from healer.audit.store import AuditStore
from healer.config import load_settings
from healer.daemon import Step
from healer.harness import SimHarness
from healer.sim.scenario import load_scenario
from healer.types import ActionKind, ActionStatus, Cause, OutcomeKind

REPO = Path(__file__).resolve().parents[2]
THREE_HOURS_S = 3 * 3600


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SimHarness, list[Step]]]:
    folder = tmp_path_factory.mktemp("loop")
    settings = load_settings(None, guards={"mode": "auto"}, playbooks_dir=str(REPO / "playbooks"))
    store = AuditStore(f"sqlite:///{folder / 'audit.db'}")
    steps: list[Step] = []
    harness = SimHarness.start(
        load_scenario("default"),
        settings=settings,
        store=store,
        report=steps.append,
        workdir=folder,
    )
    harness.run_for(THREE_HOURS_S)
    yield harness, steps
    harness.close()
    store.close()


def incidents_by_workload(harness: SimHarness) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for summary in harness.store.list_incidents(limit=500):
        out.setdefault(str(summary.workload), []).append(summary.id)
    return out


def only_incident(harness: SimHarness, workload: str):  # type: ignore[no-untyped-def]
    ids = incidents_by_workload(harness).get(workload, [])
    assert len(ids) == 1, f"{workload}: expected one incident, got {ids}"
    detail = harness.store.get_incident(ids[0])
    assert detail is not None
    return detail


def fault_time(harness: SimHarness, workload: str):  # type: ignore[no-untyped-def]
    event = next(e for e in harness.cluster.scenario.events if e.workload == workload)
    return harness.cluster.scenario.start + timedelta(seconds=event.at_s)


def test_memory_leak_is_healed_by_a_restart(run: tuple[SimHarness, list[Step]]) -> None:
    harness, _ = run
    incident = only_incident(harness, "shop/checkout")
    assert incident.summary.cause == Cause.MEMORY_LEAK
    assert incident.summary.action == ActionKind.RESTART
    assert incident.summary.action_status == ActionStatus.SUCCEEDED
    assert incident.summary.outcome == OutcomeKind.HEALED
    assert incident.summary.closed - fault_time(harness, "shop/checkout") < timedelta(minutes=20)
    pods = harness.cluster.pods_of("shop", "checkout")
    assert all("kubectl.kubernetes.io/restartedAt" in p["metadata"]["annotations"] for p in pods)
    assert all(p["status"]["containerStatuses"][0]["restartCount"] == 0 for p in pods), (
        "healed before any container was OOM-killed"
    )


def test_overload_is_healed_by_scaling_up(run: tuple[SimHarness, list[Step]]) -> None:
    harness, _ = run
    incident = only_incident(harness, "shop/search")
    assert incident.summary.cause == Cause.OVERLOAD
    assert incident.summary.action == ActionKind.SCALE
    assert incident.summary.outcome == OutcomeKind.HEALED
    assert incident.summary.closed - fault_time(harness, "shop/search") < timedelta(minutes=15)
    replicas = harness.cluster.get_object("deployments", "shop", "search")["spec"]["replicas"]
    assert 3 < replicas <= 12


def test_bad_release_is_rolled_back_to_the_previous_revision(
    run: tuple[SimHarness, list[Step]],
) -> None:
    harness, _ = run
    incident = only_incident(harness, "shop/cart")
    assert incident.summary.cause == Cause.BAD_RELEASE
    assert incident.summary.action == ActionKind.ROLLBACK
    assert incident.summary.outcome == OutcomeKind.HEALED
    plan = next(s.data for s in incident.timeline if s.kind == "plan")
    assert plan["params"] == {"to_revision": 1, "from_revision": 2}
    deployment = harness.cluster.get_object("deployments", "shop", "cart")
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "registry.local/shop/cart:2.4.1"
    assert deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    assert incident.summary.closed - fault_time(harness, "shop/cart") < timedelta(minutes=15)


def test_good_release_and_daily_peak_are_left_alone(run: tuple[SimHarness, list[Step]]) -> None:
    harness, _ = run
    incidents = incidents_by_workload(harness)
    assert "shop/catalog" not in incidents  # the good release
    assert "web/storefront" not in incidents  # rides the daily peak at 13:00
    assert set(incidents) == {"shop/checkout", "shop/search", "shop/cart"}
    storefront = harness.cluster.get_object("deployments", "web", "storefront")
    assert storefront["metadata"]["generation"] == 1
    assert storefront["spec"]["replicas"] == 4


def test_every_incident_has_the_whole_story(run: tuple[SimHarness, list[Step]]) -> None:
    harness, steps = run
    for summary in harness.store.list_incidents(limit=500):
        detail = harness.store.get_incident(summary.id)
        assert detail is not None
        kinds = [s.kind for s in detail.timeline]
        assert kinds[0] == "finding"
        for kind in ("diagnosis", "plan", "action", "outcome"):
            assert kind in kinds, f"incident {summary.id} lacks a {kind}"
        assert (
            kinds.index("diagnosis")
            < kinds.index("plan")
            < kinds.index("action")
            < kinds.index("outcome")
        )
        if summary.outcome == "healed":  # the verifier read each rollout complete, once
            taken = sum(a.status == "succeeded" for a in detail.actions)
            assert kinds.count("rollout") == taken, f"incident {summary.id}: {kinds}"
            last = len(kinds) - 1 - kinds[::-1].index("rollout")
            assert len(kinds) - 1 - kinds[::-1].index("action") < last < kinds.index("outcome")
    assert [s.kind for s in steps].count("outcome") == 3


def test_each_action_posted_a_kubernetes_event(run: tuple[SimHarness, list[Step]]) -> None:
    harness, _ = run
    events = harness.cluster.list_objects("events", "shop")
    reasons = sorted((e["involvedObject"]["name"], e["reason"]) for e in events)
    # The overload takes two scale steps of at most x2 (scale-up-on-overload, then its
    # on_failure scale-up-again); every other fault one action.
    assert sorted(set(reasons)) == [
        ("cart", "HealerRollback"),
        ("checkout", "HealerRestart"),
        ("search", "HealerScale"),
    ]
    assert reasons.count(("search", "HealerScale")) <= 2
    assert len(reasons) - reasons.count(("search", "HealerScale")) == 2
