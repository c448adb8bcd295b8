"""The benchmark's cluster: autoscalers everywhere, and the ground truth it records."""

from __future__ import annotations

from pathlib import Path

from healer.chaos.contenders import HPA_MAX_FACTOR, build_cluster, gitops_settings, run_contender
from healer.config import Settings, load_settings
from healer.sim.scenario import load_scenario
from healer.types import Mode


def test_every_deployment_gets_an_autoscaler() -> None:
    scenario = load_scenario("cpu-hog")
    cluster = build_cluster(scenario)
    hpas = {
        h["metadata"]["name"]: h["spec"] for h in cluster.store.list("horizontalpodautoscalers")
    }
    assert set(hpas) == {w.name for w in scenario.workloads}
    assert hpas["recommend"]["minReplicas"] == 3
    assert hpas["recommend"]["maxReplicas"] == 3 * HPA_MAX_FACTOR


def test_the_cause_of_a_cpu_hog_stays_until_its_containers_restart() -> None:
    scenario = load_scenario("cpu-hog")
    cluster = build_cluster(scenario)
    fault = next(i for i, e in enumerate(scenario.events) if e.kind == "cpu_hog")
    cluster.advance(scenario.events[fault].at_s + 300)
    present = cluster.cause_present[fault]
    assert not any(present[:100]) and all(present[-10:])
    patch = {"spec": {"template": {"metadata": {"annotations": {"restarted": "now"}}}}}
    cluster.patch_deployment("shop", "recommend", patch, "application/strategic-merge-patch+json")
    cluster.advance(600)
    assert not present[-1]


def test_kubernetes_alone_lets_a_leak_end_in_oom_kills() -> None:
    scenario = load_scenario("memory-leak")
    trace = run_contender("kubernetes", scenario, duration_s=6000, settings=load_settings(None))
    assert {w for _, w in trace.oom_kills} == {"shop/orders"}
    assert len(trace.oom_kills) == 3  # each of the three containers, once
    assert trace.noticed == []
    assert trace.values.shape == (2, 7, 400)


def test_a_daemonset_gets_no_autoscaler() -> None:
    cluster = build_cluster(load_scenario("daemonset-crash-loop"))
    targets = [h["spec"]["scaleTargetRef"] for h in cluster.store.list("horizontalpodautoscalers")]
    assert [(t["kind"], t["name"]) for t in targets] == [("Deployment", "catalog")]


def test_a_person_scaling_a_statefulset_under_an_autoscaler_is_overruled_at_once() -> None:
    # The HPA's recommendations of the last five minutes all say 3: its next sync puts
    # the StatefulSet back, as a real HPA does with a hand-made scale.
    cluster = build_cluster(load_scenario("statefulset-scaled-by-hand"))
    cluster.advance(2700)
    [(_, event)] = cluster.applied_events
    assert (event.kind, event.replicas) == ("manual_scale", 5)
    assert cluster.get_object("statefulsets", "shop", "ledger")["spec"]["replicas"] == 3


def test_a_gitops_scenario_runs_with_the_git_path_and_without_it(tmp_path: Path) -> None:
    settings = Settings().model_copy(
        update={"guards": Settings().guards.model_copy(update={"mode": Mode.AUTO})}
    )
    gitops = load_scenario("gitops-bad-release")
    with_git = gitops_settings(settings, gitops, tmp_path, git=True)
    undo_only = gitops_settings(settings, gitops, tmp_path, git=False)
    assert with_git.gitops.enabled and not undo_only.gitops.enabled
    assert with_git.gitops.cache_dir == tmp_path / "git"
    assert with_git.guards.gitops_mode is Mode.AUTO is undo_only.guards.gitops_mode
    plain = load_scenario("bad-release")
    assert gitops_settings(settings, plain, tmp_path, git=True) is settings
