"""The simulated cluster's controllers, faults and metrics, and the scenario loader."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from healer.errors import ConfigError
from healer.sim.cluster import Cluster
from healer.sim.exposition import render_metrics
from healer.sim.objects import JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, ApiError
from healer.sim.scenario import (
    Behaviour,
    Event,
    Scenario,
    Traffic,
    WorkloadSpec,
    load_scenario,
)
from healer.types import Signal

SIGNALS = tuple(Signal)
NS, NAME = "shop", "web"
IMAGE_V1, IMAGE_V2 = "registry.local/shop/web:1.0", "registry.local/shop/web:2.0"
REVISION = "deployment.kubernetes.io/revision"
STEP_S = 15.0
# The simulator's Deployments roll with maxSurge 1 and maxUnavailable 0.
MAX_SURGE, MAX_UNAVAILABLE = 1, 0


def scenario(
    *events: Event,
    replicas: int = 4,
    images: dict[str, Behaviour] | None = None,
    base_rps: float = 40.0,
) -> Scenario:
    return Scenario(
        name="unit",
        description="one workload",
        start=datetime(2026, 3, 2, 11, 0, tzinfo=UTC),
        step_s=STEP_S,
        seed=3,
        images=images or {},
        workloads=[
            WorkloadSpec(
                name=NAME,
                namespace=NS,
                replicas=replicas,
                image=IMAGE_V1,
                traffic=Traffic(base_rps=base_rps, bursts_per_h=0),
            )
        ],
        events=list(events),
    )


@pytest.fixture
def small() -> Cluster:
    return Cluster(scenario())


def image_patch(image: str) -> dict[str, Any]:
    return {"spec": {"template": {"spec": {"containers": [{"name": NAME, "image": image}]}}}}


def deployment(cluster: Cluster) -> dict[str, Any]:
    return cluster.get_object("deployments", NS, NAME)


def ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"]["conditions"])


def revisions(cluster: Cluster) -> dict[str, str]:
    """ReplicaSet name -> revision annotation."""
    return {
        rs["metadata"]["name"]: rs["metadata"]["annotations"][REVISION]
        for rs in cluster.list_objects("replicasets", NS)
    }


def rollout_complete(dep: dict[str, Any]) -> bool:
    status, replicas = dep["status"], dep["spec"]["replicas"]
    return (
        status.get("observedGeneration") == dep["metadata"]["generation"]
        and status.get("updatedReplicas") == replicas
        and status.get("availableReplicas") == replicas
        and status.get("replicas") == replicas
    )


def roll_to(cluster: Cluster, image: str, max_steps: int = 60) -> list[tuple[int, int]]:
    """Patch the image and advance until the rollout completes; (pods, ready) per step."""
    cluster.patch_deployment(NS, NAME, image_patch(image), STRATEGIC_MERGE_PATCH)
    seen = []
    for _ in range(max_steps):
        cluster.advance(STEP_S)
        pods = cluster.pods_of(NS, NAME)
        seen.append((len(pods), sum(ready(p) for p in pods)))
        if rollout_complete(deployment(cluster)):
            return seen
    raise AssertionError(f"rollout to {image} did not complete in {max_steps} steps: {seen}")


def signal(cluster: Cluster, name: Signal) -> np.ndarray[Any, np.dtype[np.float64]]:
    """The series of one signal of the only workload, one value per step."""
    return np.array(cluster.samples)[:, 0, SIGNALS.index(name)]


# ---- start-up --------------------------------------------------------------------------


def test_default_scenario_starts_with_every_pod_ready(cluster: Cluster) -> None:
    for spec in cluster.scenario.workloads:
        pods = cluster.pods_of(spec.namespace, spec.name)
        assert len(pods) == spec.replicas
        assert all(ready(p) for p in pods), spec.name
        dep = cluster.get_object("deployments", spec.namespace, spec.name)
        assert rollout_complete(dep), dep["status"]
        assert dep["metadata"]["generation"] == 1


def test_small_scenario_starts_with_one_replicaset_at_revision_1(small: Cluster) -> None:
    assert list(revisions(small).values()) == ["1"]
    assert all(p["spec"]["containers"][0]["image"] == IMAGE_V1 for p in small.pods_of(NS, NAME))


# ---- rolling updates -------------------------------------------------------------------


def test_image_change_creates_a_replicaset_at_revision_2(small: Cluster) -> None:
    small.patch_deployment(NS, NAME, image_patch(IMAGE_V2), STRATEGIC_MERGE_PATCH)
    small.advance(STEP_S)
    sets = small.list_objects("replicasets", NS)
    assert sorted(rs["metadata"]["annotations"][REVISION] for rs in sets) == ["1", "2"]
    new = next(rs for rs in sets if rs["metadata"]["annotations"][REVISION] == "2")
    assert new["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE_V2


def test_rollout_completes_within_surge_and_unavailability_bounds(small: Cluster) -> None:
    replicas = deployment(small)["spec"]["replicas"]
    seen = roll_to(small, IMAGE_V2)
    for pods, ready_pods in seen:
        assert pods <= replicas + MAX_SURGE, seen
        assert ready_pods >= replicas - MAX_UNAVAILABLE, seen
    dep = deployment(small)
    status = dep["status"]
    assert status["updatedReplicas"] == replicas == status["availableReplicas"]
    assert status["observedGeneration"] == dep["metadata"]["generation"] == 2
    pods = small.pods_of(NS, NAME)
    assert len(pods) == replicas
    assert {p["spec"]["containers"][0]["image"] for p in pods} == {IMAGE_V2}


@pytest.mark.parametrize(
    ("replicas", "surge", "unavailable", "bound_surge", "bound_unavailable"),
    [
        (4, "25%", "25%", 1, 1),
        (10, "25%", "25%", 3, 2),
        (4, 0, 1, 0, 1),
        (3, 2, 1, 2, 1),
        (5, "50%", "0%", 3, 0),
        (1, 1, 0, 1, 0),
    ],
)
def test_rollout_respects_the_strategy_in_the_spec(
    replicas: int,
    surge: int | str,
    unavailable: int | str,
    bound_surge: int,
    bound_unavailable: int,
) -> None:
    cluster = Cluster(scenario(replicas=replicas))
    cluster.patch_deployment(
        NS,
        NAME,
        {
            "spec": {
                "strategy": {"rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}
            }
        },
        STRATEGIC_MERGE_PATCH,
    )
    for pods, ready_pods in roll_to(cluster, IMAGE_V2):
        assert pods <= replicas + bound_surge
        assert ready_pods >= replicas - bound_unavailable
    assert {p["spec"]["containers"][0]["image"] for p in cluster.pods_of(NS, NAME)} == {IMAGE_V2}


def test_rollout_scales_the_old_replicaset_to_zero_and_keeps_it(small: Cluster) -> None:
    roll_to(small, IMAGE_V2)
    by_revision = {
        rs["metadata"]["annotations"][REVISION]: rs["spec"]["replicas"]
        for rs in small.list_objects("replicasets", NS)
    }
    assert by_revision == {"1": 0, "2": deployment(small)["spec"]["replicas"]}


def test_reverting_the_image_reuses_revision_1_renumbered_to_3(small: Cluster) -> None:
    (original,) = revisions(small)
    roll_to(small, IMAGE_V2)
    roll_to(small, IMAGE_V1)
    after = revisions(small)
    assert len(after) == 2
    assert after[original] == "3"
    assert sorted(after.values()) == ["2", "3"]
    assert {p["metadata"]["labels"]["pod-template-hash"] for p in small.pods_of(NS, NAME)} == {
        small.get_object("replicasets", NS, original)["metadata"]["labels"]["pod-template-hash"]
    }


def test_a_write_makes_the_replicaset_at_once_and_observed_generation_lags(
    small: Cluster,
) -> None:
    patched = small.patch_deployment(NS, NAME, image_patch(IMAGE_V2), STRATEGIC_MERGE_PATCH)
    assert patched["metadata"]["generation"] == 2
    assert patched["status"]["observedGeneration"] == 1
    assert sorted(revisions(small).values()) == ["1", "2"]  # the controller reacted
    assert deployment(small)["status"]["observedGeneration"] == 1  # the status waits
    small.advance(STEP_S)
    assert deployment(small)["status"]["observedGeneration"] == 2


def test_metadata_only_change_does_not_bump_generation(small: Cluster) -> None:
    before = deployment(small)
    patched = small.patch_deployment(
        NS, NAME, {"metadata": {"annotations": {"note": "x"}}}, MERGE_PATCH
    )
    assert patched["metadata"]["generation"] == before["metadata"]["generation"]
    assert int(patched["metadata"]["resourceVersion"]) > int(before["metadata"]["resourceVersion"])


def test_paused_deployment_makes_no_new_replicaset_on_a_template_change(small: Cluster) -> None:
    # Kubernetes' deployment controller syncs a paused Deployment without creating the new
    # ReplicaSet (getAllReplicaSetsAndSyncRevision(..., createIfNotExisted=false)).
    patch = image_patch(IMAGE_V2)
    patch["spec"]["paused"] = True
    small.patch_deployment(NS, NAME, patch, STRATEGIC_MERGE_PATCH)
    small.advance(4 * STEP_S)
    assert list(revisions(small).values()) == ["1"]


def test_paused_deployment_still_scales(small: Cluster) -> None:
    # Kubernetes scales a paused Deployment (syncDeployment -> sync -> scale); only rollouts
    # are held.
    small.patch_deployment(NS, NAME, {"spec": {"paused": True}}, MERGE_PATCH)
    small.patch_scale(NS, NAME, {"spec": {"replicas": 6}}, MERGE_PATCH)
    small.advance(2 * STEP_S)
    assert len(small.pods_of(NS, NAME)) == 6


def test_resumed_deployment_rolls_out_the_template_changed_while_paused(small: Cluster) -> None:
    small.patch_deployment(NS, NAME, {"spec": {"paused": True}}, MERGE_PATCH)
    small.patch_deployment(NS, NAME, image_patch(IMAGE_V2), STRATEGIC_MERGE_PATCH)
    small.advance(4 * STEP_S)
    assert {p["spec"]["containers"][0]["image"] for p in small.pods_of(NS, NAME)} == {IMAGE_V1}
    small.patch_deployment(NS, NAME, {"spec": {"paused": False}}, MERGE_PATCH)
    for _ in range(40):
        small.advance(STEP_S)
        if rollout_complete(deployment(small)):
            break
    assert {p["spec"]["containers"][0]["image"] for p in small.pods_of(NS, NAME)} == {IMAGE_V2}


# ---- scale -----------------------------------------------------------------------------


@pytest.mark.parametrize("replicas", [6, 1, 0])
def test_patch_scale_changes_the_number_of_pods(small: Cluster, replicas: int) -> None:
    scale = small.patch_scale(NS, NAME, {"spec": {"replicas": replicas}}, MERGE_PATCH)
    assert scale["kind"] == "Scale"
    assert scale["spec"]["replicas"] == replicas
    assert deployment(small)["spec"]["replicas"] == replicas
    small.advance(2 * STEP_S)
    pods = small.pods_of(NS, NAME)
    assert len(pods) == replicas
    assert all(ready(p) for p in pods)
    small.advance(STEP_S)  # the Deployment's status catches up with its pods on the next pass
    assert rollout_complete(deployment(small))


def test_scale_bumps_generation_but_makes_no_new_revision(small: Cluster) -> None:
    small.patch_scale(NS, NAME, {"spec": {"replicas": 6}}, MERGE_PATCH)
    assert deployment(small)["metadata"]["generation"] == 2
    small.advance(STEP_S)
    assert list(revisions(small).values()) == ["1"]


# ---- dry run, conflicts, validation ----------------------------------------------------


def test_dry_run_patch_answers_as_if_applied_and_changes_nothing(small: Cluster) -> None:
    before = deployment(small)
    store_version = small.store.resource_version
    answer = small.patch_deployment(
        NS, NAME, image_patch(IMAGE_V2), STRATEGIC_MERGE_PATCH, dry_run=True
    )
    assert answer["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE_V2
    assert answer["metadata"]["generation"] == 2
    assert deployment(small) == before
    assert small.store.resource_version == store_version
    small.advance(STEP_S)
    assert len(revisions(small)) == 1
    assert deployment(small)["spec"] == before["spec"]


def test_dry_run_scale_changes_nothing(small: Cluster) -> None:
    before = deployment(small)
    store_version = small.store.resource_version
    answer = small.patch_scale(NS, NAME, {"spec": {"replicas": 9}}, MERGE_PATCH, dry_run=True)
    assert answer["spec"]["replicas"] == 9
    assert deployment(small) == before
    assert small.store.resource_version == store_version


def test_dry_run_replace_changes_nothing(small: Cluster) -> None:
    before = deployment(small)
    body = deployment(small)
    body["spec"]["replicas"] = 7
    answer = small.replace_deployment(NS, NAME, body, dry_run=True)
    assert answer["spec"]["replicas"] == 7
    assert deployment(small) == before


def test_replace_with_a_stale_resource_version_is_409(small: Cluster) -> None:
    stale = deployment(small)
    small.patch_scale(NS, NAME, {"spec": {"replicas": 5}}, MERGE_PATCH)
    stale["spec"]["replicas"] = 2
    with pytest.raises(ApiError) as caught:
        small.replace_deployment(NS, NAME, stale)
    assert (caught.value.code, caught.value.reason) == (409, "Conflict")
    assert deployment(small)["spec"]["replicas"] == 5


def test_replace_with_the_current_resource_version_succeeds(small: Cluster) -> None:
    body = deployment(small)
    body["spec"]["replicas"] = 2
    written = small.replace_deployment(NS, NAME, body)
    assert written["spec"]["replicas"] == 2
    assert written["metadata"]["generation"] == 2


def test_patch_naming_a_stale_resource_version_is_409(small: Cluster) -> None:
    stale_version = deployment(small)["metadata"]["resourceVersion"]
    small.patch_scale(NS, NAME, {"spec": {"replicas": 5}}, MERGE_PATCH)
    with pytest.raises(ApiError) as caught:
        small.patch_deployment(
            NS,
            NAME,
            {"metadata": {"resourceVersion": stale_version}, "spec": {"replicas": 1}},
            MERGE_PATCH,
        )
    assert caught.value.code == 409


@pytest.mark.parametrize("replicas", [-1, "3", 2.5, True, None])
def test_patch_scale_with_invalid_replicas_is_422(small: Cluster, replicas: Any) -> None:
    before = deployment(small)
    with pytest.raises(ApiError) as caught:
        small.patch_scale(NS, NAME, {"spec": {"replicas": replicas}}, MERGE_PATCH)
    assert (caught.value.code, caught.value.reason) == (422, "Invalid")
    assert deployment(small) == before


@pytest.mark.parametrize("replicas", [-2, "many"])
def test_deployment_with_invalid_replicas_is_422(small: Cluster, replicas: Any) -> None:
    before = deployment(small)
    with pytest.raises(ApiError) as caught:
        small.patch_deployment(
            NS, NAME, [{"op": "replace", "path": "/spec/replicas", "value": replicas}], JSON_PATCH
        )
    assert caught.value.code == 422
    assert "spec.replicas" in caught.value.message
    body = deployment(small)
    body["spec"]["replicas"] = replicas
    with pytest.raises(ApiError) as caught:
        small.replace_deployment(NS, NAME, body)
    assert caught.value.code == 422
    assert deployment(small) == before


def test_changing_the_selector_is_422(small: Cluster) -> None:
    with pytest.raises(ApiError) as caught:
        small.patch_deployment(
            NS, NAME, {"spec": {"selector": {"matchLabels": {"app": "x"}}}}, MERGE_PATCH
        )
    assert caught.value.code == 422


# ---- faults ----------------------------------------------------------------------------


def test_memory_leak_left_alone_ends_in_oom_kill_and_restart() -> None:
    leak = Event(
        at_s=30,
        kind="memory_leak",
        workload=f"{NS}/{NAME}",
        bytes_per_s=4 * 2**20,
        expect="restart",
    )
    cluster = Cluster(scenario(leak))
    cluster.advance(30)
    assert all(
        p["status"]["containerStatuses"][0]["restartCount"] == 0 for p in cluster.pods_of(NS, NAME)
    )
    cluster.advance(240)  # 312 MiB of headroom at 4 MiB/s: OOM-killed after ~80 s
    statuses = [p["status"]["containerStatuses"][0] for p in cluster.pods_of(NS, NAME)]
    assert all(s["restartCount"] >= 1 for s in statuses), statuses
    assert all(s["lastState"]["terminated"]["reason"] == "OOMKilled" for s in statuses)
    assert np.nanmax(signal(cluster, Signal.RESTARTS)) > 0
    assert np.nanmax(signal(cluster, Signal.MEMORY)) > 0.8


def test_no_restarts_without_a_fault(small: Cluster) -> None:
    small.advance(600)
    assert np.nanmax(signal(small, Signal.RESTARTS)) == 0
    assert all(
        p["status"]["containerStatuses"][0]["restartCount"] == 0 for p in small.pods_of(NS, NAME)
    )


def test_overload_raises_cpu_and_latency() -> None:
    surge = Event(
        at_s=300, kind="overload", workload=f"{NS}/{NAME}", factor=4.0, ramp_s=60, expect="scale"
    )
    cluster = Cluster(scenario(surge))
    cluster.advance(900)
    before, after = slice(0, 19), slice(30, None)  # the surge starts at sample 19, full by 23
    for name, factor in ((Signal.REQUEST_RATE, 3.0), (Signal.CPU, 3.0), (Signal.LATENCY_P99, 1.2)):
        series = signal(cluster, name)
        assert np.nanmean(series[after]) > factor * np.nanmean(series[before]), name


def test_bad_release_raises_error_ratio_after_the_rollout() -> None:
    bad = "registry.local/shop/web:1.1-bad"
    release = Event(at_s=300, kind="release", workload=f"{NS}/{NAME}", image=bad, expect="rollback")
    cluster = Cluster(scenario(release, images={bad: Behaviour(error_ratio=0.2)}))
    cluster.advance(300)  # the release is applied on the last of these steps
    errors_before = signal(cluster, Signal.ERROR_RATIO)
    assert deployment(cluster)["metadata"]["generation"] == 2
    for _ in range(60):
        cluster.advance(STEP_S)
        if rollout_complete(deployment(cluster)):
            break
    cluster.advance(120)
    errors_after = signal(cluster, Signal.ERROR_RATIO)[-8:]
    assert np.nanmean(errors_before) < 0.01
    assert 0.15 < np.nanmean(errors_after) < 0.25
    assert {p["spec"]["containers"][0]["image"] for p in cluster.pods_of(NS, NAME)} == {bad}


def test_samples_have_one_row_per_step_in_signal_order(small: Cluster) -> None:
    small.advance(10 * STEP_S)
    assert len(small.samples) == len(small.timestamps) == 10
    assert np.diff(small.timestamps).tolist() == [STEP_S] * 9
    assert small.samples[0].shape == (1, len(SIGNALS))
    ready_ratio = signal(small, Signal.READY_RATIO)
    assert np.all(ready_ratio == 1.0)
    assert np.all(signal(small, Signal.REQUEST_RATE) > 20)


# ---- metrics exposition ----------------------------------------------------------------


def test_metrics_contain_the_families_healer_queries(cluster: Cluster) -> None:
    cluster.advance(60)
    text = render_metrics(cluster)
    for family in (
        "kube_deployment_spec_replicas",
        "container_memory_working_set_bytes",
        "kube_pod_owner",
        "http_requests_total",
    ):
        assert f"# TYPE {family} " in text, family
        assert any(line.startswith(family + "{") for line in text.splitlines()), family
    assert "# TYPE http_request_duration_seconds histogram" in text
    assert 'kube_deployment_spec_replicas{namespace="web",deployment="storefront"} 4' in text


def test_latency_histogram_buckets_are_cumulative_and_inf_equals_count(small: Cluster) -> None:
    small.advance(120)
    families = {f.name: f for f in text_string_to_metric_families(render_metrics(small))}
    histogram = families["http_request_duration_seconds"]
    assert histogram.type == "histogram"
    buckets: dict[str, list[tuple[float, float]]] = defaultdict(list)
    counts: dict[str, float] = {}
    for sample in histogram.samples:
        pod = sample.labels["pod"]
        if sample.name.endswith("_bucket"):
            buckets[pod].append((float(sample.labels["le"]), sample.value))
        elif sample.name.endswith("_count"):
            counts[pod] = sample.value
    assert set(buckets) == set(counts) == {p["metadata"]["name"] for p in small.pods_of(NS, NAME)}
    for pod, rows in buckets.items():
        rows.sort()
        values = [v for _, v in rows]
        assert values == sorted(values), (pod, rows)
        assert rows[-1][0] == float("inf")
        assert rows[-1][1] == counts[pod] > 0


# ---- scenarios -------------------------------------------------------------------------


def test_load_unknown_scenario_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"'nope'.*default"):
        load_scenario("nope")


def test_load_scenario_file_with_an_unknown_field_names_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(
        "name: mine\ndescription: d\nstart: 2026-03-02T11:00:00Z\n"
        "workloads:\n  - {name: web, image: 'web:1', replicaz: 3, traffic: {base_rps: 5}}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_scenario(str(path))
    message = str(caught.value)
    assert str(path) in message
    assert f"{path}:5: workloads[0].replicaz: Extra inputs are not permitted" == message


def test_load_scenario_file_with_an_unknown_top_level_field(tmp_path: Path) -> None:
    path = tmp_path / "mine.yml"
    path.write_text(
        "name: mine\ndescription: d\nstart: 2026-03-02T11:00:00Z\ncolour: red\n"
        "workloads: [{name: web, image: 'web:1', traffic: {base_rps: 5}}]\n"
    )
    with pytest.raises(ConfigError, match=r"mine\.yml.*colour"):
        load_scenario(str(path))


def test_load_scenario_file_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(
        "name: ok\ndescription: d\nstart: 2026-03-02T11:00:00Z\n"
        "workloads: [{name: web, image: 'web:1', traffic: {base_rps: 5}}]\n"
    )
    loaded = load_scenario(str(path))
    assert loaded.name == "ok"
    assert loaded.workloads[0].replicas == 3


def test_load_missing_scenario_file_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"absent\.yaml"):
        load_scenario(str(tmp_path / "absent.yaml"))


def test_default_scenario_loads() -> None:
    default = load_scenario("default")
    assert {w.name for w in default.workloads} >= {"checkout", "search", "cart"}


# ---- the control plane reacts to writes through the API --------------------------------


def test_a_write_starts_the_rollout_at_once(small: Cluster) -> None:
    small.patch_deployment(NS, NAME, image_patch(IMAGE_V2), STRATEGIC_MERGE_PATCH)
    images = [p["spec"]["containers"][0]["image"] for p in small.pods_of(NS, NAME)]
    assert sorted(images) == [IMAGE_V1] * 4 + [IMAGE_V2] * MAX_SURGE
    fresh = [p for p in small.pods_of(NS, NAME) if p["spec"]["containers"][0]["image"] == IMAGE_V2]
    assert not ready(fresh[0])  # the kubelet moves with time only
    assert fresh[0]["metadata"]["creationTimestamp"] == "2026-03-02T11:00:00Z"


def test_a_deleted_pod_is_replaced_at_once(small: Cluster) -> None:
    before = {p["metadata"]["name"] for p in small.pods_of(NS, NAME)}
    small.delete_object("pods", NS, sorted(before)[0])
    after = {p["metadata"]["name"] for p in small.pods_of(NS, NAME)}
    assert len(after) == 4
    assert len(after - before) == 1


def test_a_write_leaves_work_it_did_not_queue_to_the_next_tick(small: Cluster) -> None:
    # A write made inside the cluster (as the HPA's) waits for the next tick's pass ...
    with small.lock:
        dep = small.store.get("deployments", NS, NAME)
        dep["spec"]["replicas"] = 6
        small.store.update("deployments", dep, spec_changed=True)
    # ... even when an unrelated write through the API comes first.
    small.create_event(NS, {"metadata": {"name": "e"}, "involvedObject": {"name": NAME}})
    small.patch_deployment(NS, NAME, {"metadata": {"labels": {"x": "y"}}}, MERGE_PATCH)
    assert len(small.pods_of(NS, NAME)) == 6  # the patch queued the Deployment itself
    with small.lock:
        dep = small.store.get("deployments", NS, NAME)
        dep["spec"]["replicas"] = 5
        small.store.update("deployments", dep, spec_changed=True)
    small.create_object("poddisruptionbudgets", NS, budget(), dry_run=False)
    assert len(small.pods_of(NS, NAME)) == 6
    small.advance(STEP_S)
    assert len(small.pods_of(NS, NAME)) == 5


def budget() -> dict[str, Any]:
    return {
        "metadata": {"name": NAME},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": NAME}}},
    }


class Recorder:
    def __init__(self) -> None:
        self.calls = 0

    def reconcile(self, state: Any, now: Any) -> None:
        self.calls += 1


def test_a_new_controller_joins_the_reaction_to_writes(small: Cluster) -> None:
    recorder = Recorder()
    small.on_write.append(recorder)
    small.patch_deployment(NS, NAME, {"metadata": {"labels": {"x": "y"}}}, MERGE_PATCH)
    assert recorder.calls == 1
    small.advance(STEP_S)  # a tick runs its own parts, not the reaction
    assert recorder.calls == 1
    with pytest.raises(ApiError):
        small.patch_deployment(NS, "missing", {}, MERGE_PATCH)
    assert recorder.calls == 1  # a refused write reacts to nothing


def test_the_same_writes_make_the_same_cluster() -> None:
    def run() -> list[str]:
        cluster = Cluster(scenario())
        cluster.patch_deployment(NS, NAME, image_patch(IMAGE_V2), STRATEGIC_MERGE_PATCH)
        cluster.advance(STEP_S)
        cluster.delete_object("pods", NS, cluster.pods_of(NS, NAME)[0]["metadata"]["name"])
        cluster.advance(4 * STEP_S)
        return sorted(p["metadata"]["name"] for p in cluster.pods_of(NS, NAME))

    assert run() == run()
