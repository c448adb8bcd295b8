"""Remediation over the simulated cluster's HTTP API: API errors and their retries,
evictions, paused Deployments, guards fed by the cluster and the audit store, a crash
between intent and completion, and escalation webhooks delivered to a local receiver."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kubernetes import client

from healer.act.kube import KubeActuator
from healer.audit import AuditStore, IncidentFilter
from healer.config import EscalationSettings, GuardSettings, Settings
from healer.daemon import Healer, Reading
from healer.decide import load_playbooks, plan
from healer.decide.escalation import Escalation, WebhookNotifier
from healer.detect.streaming import Detection
from healer.lifecycle.stages import Diagnosing, Reconciling, Verifying
from healer.sim.cluster import Cluster
from healer.sim.scenario import ApiFault
from healer.types import (
    ActionHistory,
    ActionKind,
    ActionRecord,
    ActionStatus,
    Cause,
    Diagnosis,
    Direction,
    Finding,
    Frame,
    Mode,
    Plan,
    Signal,
    SignalDeviation,
    WorkloadRef,
)

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
CART = WorkloadRef("shop", "Deployment", "cart")
SEARCH = WorkloadRef("shop", "Deployment", "search")
NO_HISTORY = ActionHistory({}, (), 0)


def a_plan(workload: WorkloadRef, action: ActionKind, **params: Any) -> Plan:
    return Plan(workload, "test", action, params, Mode.AUTO, (), "test", 600.0)


def actuator(kube_api: Any, waits: list[float], attempts: int = 4) -> KubeActuator:
    return KubeActuator(kube_api, sleep=waits.append, attempts=attempts)


# ---- API errors --------------------------------------------------------------------------


def test_a_conflict_is_reread_and_retried_at_once(kube_api: Any, cluster: Cluster) -> None:
    cluster.api_faults = [ApiFault(verbs=("PATCH",), conflict_409=0.6)]
    waits: list[float] = []
    record = actuator(kube_api, waits, attempts=10).apply(
        a_plan(SEARCH, ActionKind.SCALE, replicas=5), now=NOW
    )
    assert record.status == ActionStatus.SUCCEEDED, record.error
    assert waits and set(waits) == {0.0}  # conflicts: no wait, a fresh read and again
    assert cluster.get_object("deployments", "shop", "search")["spec"]["replicas"] == 5


def test_throttling_honours_retry_after_then_fails_with_the_servers_message(
    kube_api: Any, cluster: Cluster
) -> None:
    cluster.api_faults = [ApiFault(verbs=("PATCH",), throttle_429=1.0, retry_after_s=3)]
    waits: list[float] = []
    record = actuator(kube_api, waits, attempts=3).apply(
        a_plan(SEARCH, ActionKind.SCALE, replicas=5), now=NOW
    )
    assert record.status == ActionStatus.FAILED
    assert waits == [3.0, 3.0]
    assert (record.error or "").startswith("429") and "TooManyRequests" in (record.error or "")
    assert record.request["path"] == "/apis/apps/v1/namespaces/shop/deployments/search/scale"


def test_server_errors_back_off_exponentially(kube_api: Any, cluster: Cluster) -> None:
    cluster.api_faults = [ApiFault(verbs=("PATCH",), error_500=1.0)]
    waits: list[float] = []
    record = actuator(kube_api, waits).apply(a_plan(SEARCH, ActionKind.RESTART), now=NOW)
    assert record.status == ActionStatus.FAILED and (record.error or "").startswith("500")
    assert waits == [0.5, 1.0, 2.0]


def test_invalid_and_missing_are_not_retried(kube_api: Any) -> None:
    waits: list[float] = []
    act = actuator(kube_api, waits)
    invalid = act.apply(a_plan(SEARCH, ActionKind.SCALE, replicas=-1), now=NOW)
    ghost = act.apply(
        a_plan(WorkloadRef("shop", "Deployment", "ghost"), ActionKind.RESTART), now=NOW
    )
    assert (invalid.error or "").startswith("422"), invalid.error
    assert (ghost.error or "").startswith("404"), ghost.error
    assert waits == []


def test_a_timeout_is_retried_then_recorded(kube_api: Any, cluster: Cluster) -> None:
    cluster.api_faults = [ApiFault(verbs=("PATCH",), latency_s=1.5)]
    waits: list[float] = []
    act = KubeActuator(kube_api, sleep=waits.append, attempts=2, timeout_s=0.3)
    record = act.apply(a_plan(SEARCH, ActionKind.SCALE, replicas=5), now=NOW)
    assert record.status == ActionStatus.FAILED
    assert "unreachable" in (record.error or "") and "timed out" in (record.error or "")
    assert waits == [0.5]


# ---- actions -----------------------------------------------------------------------------


def test_restart_of_a_paused_deployment_is_refused(kube_api: Any, cluster: Cluster) -> None:
    apps = client.AppsV1Api(kube_api)
    apps.patch_namespaced_deployment(
        "cart", "shop", {"spec": {"paused": True}}, _content_type="application/merge-patch+json"
    )
    generation = apps.read_namespaced_deployment("cart", "shop").metadata.generation
    record = KubeActuator(kube_api).apply(a_plan(CART, ActionKind.RESTART), now=NOW)
    assert record.status == ActionStatus.FAILED and "paused" in (record.error or "")
    assert apps.read_namespaced_deployment("cart", "shop").metadata.generation == generation


def test_evict_uses_the_eviction_api_and_a_disruption_budget_holds(
    kube_api: Any, cluster: Cluster
) -> None:
    core, act = client.CoreV1Api(kube_api), KubeActuator(kube_api, sleep=lambda s: None)
    pods = [
        p.metadata.name for p in core.list_namespaced_pod("shop", label_selector="app=cart").items
    ]
    record = act.apply(a_plan(CART, ActionKind.EVICT, pod=pods[0]), now=NOW)
    assert record.status == ActionStatus.SUCCEEDED, record.error
    assert record.request["path"] == f"/api/v1/namespaces/shop/pods/{pods[0]}/eviction"
    assert act.already_applied(record)
    budget = client.V1PodDisruptionBudget(
        metadata=client.V1ObjectMeta(name="cart"),
        spec=client.V1PodDisruptionBudgetSpec(
            min_available=3, selector=client.V1LabelSelector(match_labels={"app": "cart"})
        ),
    )
    client.PolicyV1Api(kube_api).create_namespaced_pod_disruption_budget("shop", budget)
    cluster.advance(120)  # the replacement pod is up: 3 of 3, none to spare
    pods = [
        p.metadata.name for p in core.list_namespaced_pod("shop", label_selector="app=cart").items
    ]
    held = act.apply(a_plan(CART, ActionKind.EVICT, pod=pods[0]), now=NOW)
    assert held.status == ActionStatus.FAILED and (held.error or "").startswith("429")
    assert pods[0] in {p.metadata.name for p in core.list_namespaced_pod("shop").items}


# ---- guards fed by the cluster and the audit store ---------------------------------------


def finding_of(workload: WorkloadRef, *signals: Signal) -> Finding:
    deviations = tuple(SignalDeviation(s, 0.9, 0.1, 20.0, Direction.UP) for s in signals)
    return Finding(workload, NOW, 0.99, deviations, NOW - timedelta(minutes=2), "test")


def plan_over_http(
    kube_api: Any,
    workload: WorkloadRef,
    cause: Cause,
    *signals: Signal,
    history: ActionHistory = NO_HISTORY,
    guards: GuardSettings | None = None,
) -> Plan:
    state = KubeActuator(kube_api).read_state(workload)
    result = plan(
        Diagnosis(workload, cause, 0.9, "test"),
        finding_of(workload, *signals),
        state,
        playbooks=load_playbooks(REPO / "playbooks"),
        guards=guards or GuardSettings(mode=Mode.AUTO),
        history=history,
        anomalous_workloads=1,
        watched_workloads=5,
        now=NOW,
    )
    assert result is not None
    return result


def test_no_second_rollback_within_the_window_from_the_audit_store(
    kube_api: Any, cluster: Cluster, store: AuditStore
) -> None:
    client.AppsV1Api(kube_api).patch_namespaced_deployment(
        "cart",
        "shop",
        {"spec": {"template": {"spec": {"containers": [{"name": "cart", "image": "cart:2"}]}}}},
        _content_type="application/strategic-merge-patch+json",
    )
    cluster.advance(120)
    first = plan_over_http(kube_api, CART, Cause.BAD_RELEASE, Signal.ERROR_RATIO)
    assert first.allowed, first.blocked_by
    incident = store.open_incident(finding_of(CART, Signal.ERROR_RATIO))
    record = KubeActuator(kube_api).apply(first, now=NOW)
    store.record_action(incident, record)
    cluster.advance(120)
    # A replica reading the same store, or this daemon after a restart:
    history = store.action_history(now=NOW + timedelta(minutes=10), window_s=3600)
    again = plan_over_http(kube_api, CART, Cause.BAD_RELEASE, Signal.ERROR_RATIO, history=history)
    assert "flip_back" in again.blocked_by and "cooldown" in again.blocked_by


def test_a_flux_managed_workload_waits_for_approval(kube_api: Any) -> None:
    apps = client.AppsV1Api(kube_api)
    apps.patch_namespaced_deployment(
        "cart",
        "shop",
        {"metadata": {"labels": {"kustomize.toolkit.fluxcd.io/name": "shop"}}},
        _content_type="application/merge-patch+json",
    )
    result = plan_over_http(kube_api, CART, Cause.MEMORY_LEAK, Signal.MEMORY)
    assert result.mode is Mode.APPROVAL
    generation = apps.read_namespaced_deployment("cart", "shop").metadata.generation
    record = KubeActuator(kube_api).apply(result, now=NOW)
    assert record.status == ActionStatus.PENDING_APPROVAL
    assert apps.read_namespaced_deployment("cart", "shop").metadata.generation == generation


def test_namespace_lists_block_what_they_name(kube_api: Any) -> None:
    only_web = GuardSettings(mode=Mode.AUTO, allowed_namespaces=("web",))
    denied = GuardSettings(mode=Mode.AUTO, denied_namespaces=("kube-system", "shop"))
    for guards in (only_web, denied):
        result = plan_over_http(kube_api, CART, Cause.MEMORY_LEAK, Signal.MEMORY, guards=guards)
        assert result.blocked_by == ("namespace",)
    assert plan_over_http(kube_api, CART, Cause.MEMORY_LEAK, Signal.MEMORY).allowed


def test_scale_is_capped_at_twice_per_step_and_the_absolute_maximum(kube_api: Any) -> None:
    wide = plan_over_http(kube_api, SEARCH, Cause.OVERLOAD, Signal.CPU)
    assert wide.params["replicas"] == 6  # 3 replicas, at most x2
    capped = plan_over_http(
        kube_api,
        SEARCH,
        Cause.OVERLOAD,
        Signal.CPU,
        guards=GuardSettings(mode=Mode.AUTO, max_replicas=4),
    )
    assert capped.params["replicas"] == 4 and capped.allowed


# ---- escalation webhooks -----------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[str, Any]]]]:
    received: list[tuple[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, json.loads(body)))
            status = 503 if self.path == "/flaky" and len(received) == 1 else 200
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", received
    server.shutdown()
    server.server_close()


ESCALATION = Escalation(
    7, CART, NOW, "not_healed: still anomalous", "bad_release", "rb", "rollback"
)


def test_escalations_reach_generic_and_slack_receivers(
    receiver: tuple[str, list[tuple[str, Any]]],
) -> None:
    url, received = receiver
    settings = EscalationSettings(
        webhook_urls=(f"{url}/generic",), slack_webhook_urls=(f"{url}/slack",)
    )
    notifier = WebhookNotifier(settings)
    assert notifier.notify(ESCALATION) == []
    notifier.close()
    bodies = dict(received)
    assert bodies["/generic"]["incident_id"] == 7 and bodies["/generic"]["name"] == "cart"
    assert bodies["/generic"]["cause"] == "bad_release"
    assert bodies["/slack"]["text"].startswith("healer escalated incident 7 on shop/cart")
    assert bodies["/slack"]["blocks"][0]["type"] == "header"


def test_a_failing_receiver_is_retried_and_never_raises(
    receiver: tuple[str, list[tuple[str, Any]]],
) -> None:
    url, received = receiver
    settings = EscalationSettings(
        webhook_urls=(f"{url}/flaky", "http://127.0.0.1:9/closed"), backoff_s=0
    )
    notifier = WebhookNotifier(settings)
    errors = notifier.notify(ESCALATION)
    notifier.close()
    assert [path for path, _ in received] == ["/flaky", "/flaky"]  # 503, then delivered
    assert len(errors) == 1 and "127.0.0.1:9" in errors[0]


# ---- a crash between intent and completion -----------------------------------------------


def intent_of(record_plan: Plan) -> ActionRecord:
    return ActionRecord(
        record_plan.action,
        record_plan.workload,
        {"action": record_plan.action.value, "params": dict(record_plan.params)},
        ActionStatus.INTENDED,
        NOW,
        NOW,
    )


def test_an_intent_is_judged_from_the_cluster(kube_api: Any) -> None:
    act = KubeActuator(kube_api)
    restart = a_plan(CART, ActionKind.RESTART)
    assert not act.already_applied(intent_of(restart))
    act.apply(restart, now=NOW)
    assert act.already_applied(intent_of(restart))
    scale = a_plan(SEARCH, ActionKind.SCALE, replicas=5)
    assert not act.already_applied(intent_of(scale))
    act.apply(scale, now=NOW)
    assert act.already_applied(intent_of(scale))


def test_forbidden_is_not_retried_and_the_daemon_escalates(kube_api: Any, cluster: Cluster) -> None:
    cluster.api_faults = [ApiFault(verbs=("PATCH",), forbidden_403=1.0)]
    waits: list[float] = []
    record = actuator(kube_api, waits).apply(a_plan(CART, ActionKind.RESTART), now=NOW)
    assert record.status == ActionStatus.FAILED
    assert (record.error or "").startswith("403 Forbidden") and waits == []


class _Idle:
    """Source and detector for a daemon that is only resumed, never cycled."""

    def fetch(self, *, until: datetime, window_s: float) -> Any:
        raise AssertionError("not cycled")

    def update(self, frame: Any) -> Any:
        raise AssertionError("not cycled")


def _quiet_detection(workload: WorkloadRef) -> Detection:
    signals = tuple(Signal)
    zeros = np.zeros((1, len(signals)))
    return Detection(
        NOW, (workload,), signals, np.array([0.1]), zeros, zeros, zeros, (), np.array([True])
    )


def _quiet_frame() -> Frame:
    signals = tuple(Signal)
    return Frame(np.array([NOW.timestamp()]), (CART,), signals, np.zeros((1, len(signals), 1)))


def _crashed_after_intent(store: AuditStore, kube_api: Any, *, sent: bool) -> tuple[int, Plan]:
    """What a daemon leaves behind when it dies after recording its intent."""
    finding = finding_of(CART, Signal.MEMORY)
    incident = store.open_incident(finding)
    store.record_diagnosis(incident, Diagnosis(CART, Cause.MEMORY_LEAK, 0.8, "leak"), at=NOW)
    restart = a_plan(CART, ActionKind.RESTART)
    store.record_plan(incident, restart, at=NOW)
    store.record_action(incident, intent_of(restart))
    if sent:
        KubeActuator(kube_api).apply(restart, now=NOW)
    return incident, restart


@pytest.mark.parametrize("sent", [True, False])
def test_a_crash_between_intent_and_completion_never_doubles_the_action(
    kube_api: Any, store: AuditStore, sent: bool
) -> None:
    incident, _ = _crashed_after_intent(store, kube_api, sent=sent)
    apps = client.AppsV1Api(kube_api)
    generation = apps.read_namespaced_deployment("cart", "shop").metadata.generation
    healer = Healer(
        source=_Idle(),
        detector=_Idle(),
        actuator=KubeActuator(kube_api),
        store=store,
        playbooks=load_playbooks(REPO / "playbooks"),
        settings=Settings(),
    )
    assert healer.resume() == 1
    track = healer.tracked[CART]
    assert isinstance(track, Reconciling)
    reading = Reading(NOW + timedelta(seconds=30), _quiet_frame(), _quiet_detection(CART))
    healer._progress(track, reading)
    track = healer.tracked[CART]
    assert apps.read_namespaced_deployment("cart", "shop").metadata.generation == generation
    detail = store.get_incident(incident)
    assert detail is not None
    last = detail.timeline[-1].data
    if sent:
        assert isinstance(track, Verifying) and last["status"] == "succeeded"
    else:
        assert isinstance(track, Diagnosing) and last["status"] == "blocked"
        assert str(last["error"]).startswith("never sent")
        history = store.action_history(now=NOW + timedelta(minutes=1), window_s=3600)
        assert CART not in history.last_action_at  # free to act once diagnosed again


# ---- the learned diagnoser's training data -----------------------------------------------


def test_a_scenario_run_yields_labelled_diagnoses() -> None:
    from healer.groundtruth import examples_from_scenario
    from healer.sim.scenario import load_scenario

    found = examples_from_scenario(
        load_scenario("cpu-hog"), hours=1.0, playbooks_dir=REPO / "playbooks"
    )
    assert Cause.CPU_HOG in {e.cause for e in found}
    assert all(e.source == "sim:cpu-hog" and np.isfinite(e.row).all() for e in found)


# ---- rollback targets ------------------------------------------------------------------


def _set_image(kube_api: Any, image: str) -> None:
    client.AppsV1Api(kube_api).patch_namespaced_deployment(
        "cart",
        "shop",
        {"spec": {"template": {"spec": {"containers": [{"name": "cart", "image": image}]}}}},
        _content_type="application/strategic-merge-patch+json",
    )


def _restart(kube_api: Any, cluster: Cluster, at: datetime) -> None:
    record = KubeActuator(kube_api).apply(a_plan(CART, ActionKind.RESTART), now=at)
    assert record.status == ActionStatus.SUCCEEDED, record.error
    cluster.advance(120)


def test_no_earlier_revision_blocks_a_rollback(kube_api: Any) -> None:
    result = plan_over_http(kube_api, CART, Cause.BAD_RELEASE, Signal.ERROR_RATIO)
    assert result.blocked_by == ("rollback_target",)
    assert "no earlier revision" in result.guard_results[-2].detail


def test_a_history_of_restarts_only_has_nothing_to_roll_back_to(
    kube_api: Any, cluster: Cluster
) -> None:
    _restart(kube_api, cluster, NOW)
    result = plan_over_http(kube_api, CART, Cause.BAD_RELEASE, Signal.ERROR_RATIO)
    assert [r.number for r in KubeActuator(kube_api).read_state(CART).revisions] == [2, 1]
    assert result.blocked_by == ("rollback_target",)
    assert "only by a restart" in result.guard_results[-2].detail


def test_a_restart_after_a_bad_release_is_skipped_as_a_rollback_target(
    kube_api: Any, cluster: Cluster
) -> None:
    _restart(kube_api, cluster, NOW)  # revision 2: the good release, restarted
    _set_image(kube_api, "registry.local/shop/cart:2.5.0")  # revision 3: the bad release
    cluster.advance(120)
    _restart(kube_api, cluster, NOW + timedelta(minutes=5))  # revision 4: bad, restarted
    result = plan_over_http(kube_api, CART, Cause.BAD_RELEASE, Signal.ERROR_RATIO)
    assert result.allowed, result.blocked_by
    assert result.params == {"to_revision": 2, "from_revision": 4}
    assert "skipping restart-only revisions" in result.guard_results[-2].detail
    record = KubeActuator(kube_api).apply(result, now=NOW + timedelta(minutes=10))
    assert record.status == ActionStatus.SUCCEEDED, record.error
    cluster.advance(300)
    dep = client.AppsV1Api(kube_api).read_namespaced_deployment("cart", "shop")
    assert dep.spec.template.spec.containers[0].image == "registry.local/shop/cart:2.4.1"


def test_dry_run_changes_nothing_and_records_the_would_be_request(kube_api: Any) -> None:
    apps = client.AppsV1Api(kube_api)
    generation = apps.read_namespaced_deployment("cart", "shop").metadata.generation
    dry = Plan(CART, "test", ActionKind.RESTART, {}, Mode.DRY_RUN, (), "test", 600.0)
    record = KubeActuator(kube_api).apply(dry, now=NOW)
    assert record.status == ActionStatus.DRY_RUN
    assert record.request["verb"] == "PATCH"
    assert record.request["content_type"] == "application/strategic-merge-patch+json"
    assert "kubectl.kubernetes.io/restartedAt" in json.dumps(record.request["body"])
    assert apps.read_namespaced_deployment("cart", "shop").metadata.generation == generation


# ---- the loop keeps running through API errors --------------------------------------------


def test_a_forbidden_action_is_escalated_and_the_loop_goes_on(store: AuditStore) -> None:
    from healer.config import load_settings
    from healer.harness import SimHarness
    from healer.sim.scenario import load_scenario

    scenario = load_scenario("cpu-hog").model_copy(
        update={"api_faults": [ApiFault(verbs=("PATCH",), forbidden_403=1.0)]}
    )
    settings = load_settings(None, guards={"mode": "auto"}, playbooks_dir=str(REPO / "playbooks"))
    harness = SimHarness.start(scenario, settings=settings, store=store)
    try:
        harness.run_for(3600)
        cycles = harness.healer.vitals.cycles
        harness.run_for(600)
        assert harness.healer.vitals.cycles > cycles  # still cycling
    finally:
        harness.close()
    [incident] = store.list_incidents(IncidentFilter(workload="recommend"))
    assert incident.action_status == ActionStatus.FAILED
    assert incident.outcome is not None and incident.outcome.value == "escalated"
    detail = store.get_incident(incident.id)
    assert detail is not None
    [outcome] = [s.data for s in detail.timeline if s.kind == "outcome"]
    assert "403 Forbidden" in str(outcome["evidence"])
