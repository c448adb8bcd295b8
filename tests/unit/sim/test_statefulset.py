"""StatefulSets in the simulated cluster: stable ordered pods, rolling updates with a
partition, OnDelete, ControllerRevisions and the status kubectl reads."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from healer.sim.cluster import Cluster
from healer.sim.controllers.statefulset import REVISION_LABEL
from healer.sim.objects import STRATEGIC_MERGE_PATCH, ApiError, K8s
from healer.sim.scenario import Event, Scenario, Traffic, WorkloadSpec
from healer.sim.state import pod_ready
from healer.types import Signal, WorkloadRef

NS = "data"
STEP_S = 15.0


def cluster(*workloads: WorkloadSpec, events: tuple[Event, ...] = ()) -> Cluster:
    return Cluster(
        Scenario(
            name="sts",
            description="statefulsets",
            start=datetime(2026, 3, 2, 11, 0, tzinfo=UTC),
            step_s=STEP_S,
            seed=3,
            images={"db:bad": {"error_ratio": 0.4}},
            workloads=list(workloads)
            or [WorkloadSpec(name="web", image="web:1", traffic=Traffic(base_rps=10))],
            events=list(events),
        )
    )


def body(name: str = "db", replicas: int = 3, **spec: Any) -> K8s:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "db", "image": "db:1"}]},
            },
            **spec,
        },
    }


def pods(c: Cluster, name: str = "db") -> dict[str, K8s]:
    return {p["metadata"]["name"]: p for p in c.pods_of(NS, name)}


def revision_of(pod: K8s) -> str:
    return str(pod["metadata"]["labels"][REVISION_LABEL])


def sts(c: Cluster, name: str = "db") -> K8s:
    return c.get_object("statefulsets", NS, name)


def set_image(c: Cluster, image: str, name: str = "db") -> None:
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "db", "image": image}]}}}}
    c.patch_workload("statefulsets", NS, name, patch, STRATEGIC_MERGE_PATCH)


def settle(c: Cluster, steps: int = 30) -> None:
    for _ in range(steps):
        c.advance(STEP_S)


def test_ordered_ready_creates_one_ordinal_at_a_time_each_after_the_previous_is_ready() -> None:
    c = cluster()
    c.create_workload("statefulsets", NS, body(replicas=3))
    assert list(pods(c)) == ["db-0"]  # the write's reaction made the first one only
    seen = []
    for _ in range(6):
        c.advance(STEP_S)
        now = pods(c)
        seen.append(sorted(now))
        ready = [n for n, p in now.items() if pod_ready(p)]
        assert len(now) <= len(ready) + 1  # never more than one pod not yet ready
    assert seen[-1] == ["db-0", "db-1", "db-2"]
    pod = pods(c)["db-2"]
    assert pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] == "db-2"
    assert pod["spec"]["hostname"] == "db-2" and pod["spec"]["subdomain"] == "db"
    status = sts(c)["status"]
    assert status["readyReplicas"] == status["currentReplicas"] == 3
    assert status["currentRevision"] == status["updateRevision"] == revision_of(pod)


def test_parallel_creates_every_ordinal_at_once() -> None:
    c = cluster()
    c.create_workload("statefulsets", NS, body(replicas=4, podManagementPolicy="Parallel"))
    assert sorted(pods(c)) == ["db-0", "db-1", "db-2", "db-3"]


def test_scale_down_removes_the_highest_ordinals_one_at_a_time() -> None:
    c = cluster()
    c.create_workload("statefulsets", NS, body(replicas=4))
    settle(c, 8)
    c.patch_scale(
        NS, "db", {"spec": {"replicas": 1}}, STRATEGIC_MERGE_PATCH, resource="statefulsets"
    )
    assert sorted(pods(c)) == ["db-0", "db-1", "db-2"]  # db-3 first
    c.advance(STEP_S)
    assert sorted(pods(c)) == ["db-0", "db-1"] or sorted(pods(c)) == ["db-0"]
    settle(c, 3)
    assert sorted(pods(c)) == ["db-0"]
    assert c.get_scale(NS, "db", resource="statefulsets")["spec"]["replicas"] == 1


def test_a_rolling_update_replaces_the_highest_ordinal_first_one_at_a_time() -> None:
    c = cluster()
    c.create_workload("statefulsets", NS, body(replicas=3))
    settle(c, 6)
    old = revision_of(pods(c)["db-0"])
    set_image(c, "db:2")
    new = sts(c)["status"]["updateRevision"]
    assert new != old and "db-2" not in pods(c)  # deleted at once, to come back updated
    order: list[str] = []
    for _ in range(20):
        c.advance(STEP_S)
        updated = sorted(n for n, p in pods(c).items() if revision_of(p) == new)
        if updated and (not order or updated != order[-1].split(",")):
            order.append(",".join(updated))
        stale = [n for n, p in pods(c).items() if revision_of(p) != new]
        assert len(stale) + len(updated) >= 2  # one pod at a time out of three
    assert order[0] == "db-2" and order[1] == "db-1,db-2" and order[-1] == "db-0,db-1,db-2"
    status = sts(c)["status"]
    assert status["currentRevision"] == new and status["updatedReplicas"] == 3
    revisions = {
        r["metadata"]["name"]: r["revision"] for r in c.list_objects("controllerrevisions", NS)
    }
    assert revisions == {old: 1, new: 2}


def test_a_partition_keeps_the_lower_ordinals_at_the_current_revision() -> None:
    c = cluster()
    c.create_workload(
        "statefulsets",
        NS,
        body(
            replicas=3, updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}
        ),
    )
    settle(c, 6)
    old = revision_of(pods(c)["db-0"])
    set_image(c, "db:2")
    settle(c, 10)
    by_pod = {n: revision_of(p) for n, p in pods(c).items()}
    new = sts(c)["status"]["updateRevision"]
    assert by_pod == {"db-0": old, "db-1": old, "db-2": new}
    status = sts(c)["status"]
    assert status["currentRevision"] == old  # not complete: the partition holds it
    assert (status["currentReplicas"], status["updatedReplicas"]) == (2, 1)
    # A pod below the partition that is deleted comes back at the current revision.
    c.delete_object("pods", NS, "db-0")
    settle(c, 2)
    assert revision_of(pods(c)["db-0"]) == old


def test_on_delete_replaces_only_the_pods_someone_deletes() -> None:
    c = cluster()
    c.create_workload("statefulsets", NS, body(replicas=2, updateStrategy={"type": "OnDelete"}))
    settle(c, 5)
    old = revision_of(pods(c)["db-0"])
    set_image(c, "db:2")
    settle(c, 6)
    assert {revision_of(p) for p in pods(c).values()} == {old}
    c.delete_object("pods", NS, "db-1")
    settle(c, 2)
    assert revision_of(pods(c)["db-1"]) == sts(c)["status"]["updateRevision"] != old


def test_applying_an_old_revision_renumbers_it_as_kubectl_rollout_undo_expects() -> None:
    c = cluster()
    c.create_workload("statefulsets", NS, body(replicas=2))
    settle(c, 5)
    set_image(c, "db:2")
    settle(c, 10)
    first = next(r for r in c.list_objects("controllerrevisions", NS) if r["revision"] == 1)
    # What kubectl rollout undo sends: the revision's data, a strategic merge patch.
    c.patch_workload("statefulsets", NS, "db", first["data"], STRATEGIC_MERGE_PATCH)
    settle(c, 10)
    revisions = {
        r["metadata"]["name"]: r["revision"] for r in c.list_objects("controllerrevisions", NS)
    }
    assert revisions[first["metadata"]["name"]] == 3 and len(revisions) == 2
    assert {p["spec"]["containers"][0]["image"] for p in pods(c).values()} == {"db:1"}


def test_fields_other_than_the_mutable_ones_cannot_change() -> None:
    c = cluster()
    c.create_workload("statefulsets", NS, body())
    with pytest.raises(ApiError) as caught:
        c.patch_workload(
            "statefulsets",
            NS,
            "db",
            {"spec": {"podManagementPolicy": "Parallel"}},
            "application/merge-patch+json",
        )
    assert caught.value.code == 422 and "podManagementPolicy" in caught.value.message


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"podManagementPolicy": "Random"}, "spec.podManagementPolicy"),
        ({"updateStrategy": {"type": "Sometimes"}}, "spec.updateStrategy.type"),
        (
            {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": -1}}},
            "spec.updateStrategy.rollingUpdate.partition",
        ),
        ({"replicas": -2}, "spec.replicas"),
    ],
)
def test_invalid_specs_are_refused_naming_the_field(spec: K8s, field: str) -> None:
    c = cluster()
    with pytest.raises(ApiError) as caught:
        c.create_workload("statefulsets", NS, body(**spec))
    assert caught.value.code == 422 and field in caught.value.message


def test_deleting_a_statefulset_collects_its_pods_and_revisions() -> None:
    c = cluster()
    c.create_workload("statefulsets", NS, body(replicas=2, podManagementPolicy="Parallel"))
    c.delete_object("statefulsets", NS, "db")
    c.advance(STEP_S)
    assert c.list_objects("pods", NS) == [] and c.list_objects("controllerrevisions", NS) == []


def test_a_scenario_statefulset_serves_traffic_and_is_sampled_like_a_deployment() -> None:
    spec = WorkloadSpec(
        name="db", namespace=NS, kind="StatefulSet", image="db:1", traffic=Traffic(base_rps=30)
    )
    release = Event(
        at_s=300, kind="release", workload=f"{NS}/db", image="db:bad", expect="rollback"
    )
    c = cluster(spec, events=(release,))
    assert c.workloads == (WorkloadRef(NS, "StatefulSet", "db"),)
    assert sorted(pods(c)) == ["db-0", "db-1", "db-2"]
    settle(c, 40)
    errors = [row[0, list(Signal).index(Signal.ERROR_RATIO)] for row in c.samples]
    rps = [row[0, list(Signal).index(Signal.REQUEST_RATE)] for row in c.samples]
    assert min(rps) > 0
    assert max(errors[:15]) < 0.05 < errors[-1]  # the bad release rolled out and serves errors
    assert {p["spec"]["containers"][0]["image"] for p in pods(c).values()} == {"db:bad"}


def test_a_pod_that_never_gets_ready_holds_an_ordered_rollback_until_it_is_deleted() -> None:
    # Kubernetes' documented caveat (forced rollback): with OrderedReady, reverting the
    # template does not replace a broken pod; the controller waits for it to be Ready.
    c = Cluster(
        Scenario(
            name="sts",
            description="crash loop",
            start=datetime(2026, 3, 2, 11, 0, tzinfo=UTC),
            step_s=STEP_S,
            images={"db:crash": {"crash_on_start": True}},
            workloads=[
                WorkloadSpec(
                    name="db",
                    namespace=NS,
                    kind="StatefulSet",
                    image="db:1",
                    traffic=Traffic(base_rps=10),
                )
            ],
        )
    )
    set_image(c, "db:crash")
    settle(c, 10)
    assert pods(c)["db-2"]["spec"]["containers"][0]["image"] == "db:crash"
    assert not pod_ready(pods(c)["db-2"])
    set_image(c, "db:1")  # the rollback
    settle(c, 10)
    assert pods(c)["db-2"]["spec"]["containers"][0]["image"] == "db:crash"  # still held
    c.delete_object("pods", NS, "db-2")
    settle(c, 3)
    assert {p["spec"]["containers"][0]["image"] for p in pods(c).values()} == {"db:1"}
    assert all(pod_ready(p) for p in pods(c).values())


def test_a_scenario_statefulset_has_every_ordinal_ready_when_the_scenario_starts() -> None:
    spec = WorkloadSpec(
        name="db",
        namespace=NS,
        kind="StatefulSet",
        replicas=7,
        image="db:1",
        traffic=Traffic(base_rps=30),
    )
    c = cluster(spec)
    status = sts(c)["status"]
    assert (status["replicas"], status["readyReplicas"], status["updatedReplicas"]) == (7, 7, 7)
