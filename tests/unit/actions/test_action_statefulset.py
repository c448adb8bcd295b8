"""The actions on a StatefulSet: kubectl's own requests for it, from literal objects."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from builders import state
from fakes import FakeReads

from healer.actions import REGISTRY, evict, restart, rollback, scale
from healer.errors import PermanentActionError
from healer.types import ActionKind, JsonObject, TargetKind, WorkloadRef

DB = WorkloadRef("data", "StatefulSet", "db")
AGENT = WorkloadRef("data", "DaemonSet", "agent")
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def controller_revision(number: int, image: str) -> JsonObject:
    template = {
        "metadata": {"labels": {"app": "db"}},
        "spec": {"containers": [{"name": "db", "image": image}]},
        "$patch": "replace",
    }
    return {
        "metadata": {"name": f"db-h{number}"},
        "revision": number,
        "data": {"spec": {"template": template}},
    }


def cluster(update: int = 2) -> FakeReads:
    sts: JsonObject = {
        "metadata": {"name": "db"},
        "spec": {"replicas": 3, "template": {"metadata": {"annotations": {}}}},
        "status": {"updateRevision": f"db-h{update}"},
    }
    revisions = [controller_revision(2, "db:2"), controller_revision(1, "db:1")]
    return FakeReads(statefulsets={"db": sts}, controller_revisions={"db": revisions})


def test_every_action_supports_a_statefulset_and_only_restart_and_rollback_a_daemonset() -> None:
    for kind, action in REGISTRY.items():
        if action.targets == (TargetKind.NODE,):
            continue  # cordon, drain and uncordon act on nodes only
        assert action.supports("StatefulSet"), kind
        daemon = kind in (ActionKind.RESTART, ActionKind.ROLLBACK)
        assert action.supports("DaemonSet") is daemon, kind
    assert REGISTRY[ActionKind.SCALE].targets == (TargetKind.DEPLOYMENT, TargetKind.STATEFULSET)


def test_an_action_refuses_a_kind_it_does_not_support() -> None:
    with pytest.raises(PermanentActionError, match="scale does not support a DaemonSet"):
        scale.ACTION.request(AGENT, {"replicas": 3}, FakeReads(), NOW)


def test_rollback_sends_the_revision_data_as_a_strategic_merge_patch() -> None:
    reads = cluster()
    request = rollback.ACTION.request(DB, {"to_revision": 1, "from_revision": 2}, reads, NOW)
    assert request.verb == "PATCH"
    assert request.path == "/apis/apps/v1/namespaces/data/statefulsets/db"
    assert request.content_type == "application/strategic-merge-patch+json"
    assert request.body == controller_revision(1, "db:1")["data"]


def test_rollback_to_a_revision_that_is_gone_is_refused() -> None:
    with pytest.raises(PermanentActionError, match="no revision 7"):
        rollback.ACTION.request(DB, {"to_revision": 7, "from_revision": 2}, cluster(), NOW)


def test_rollback_landed_once_the_update_revision_moved_off_the_bad_one() -> None:
    params = {"params": {"to_revision": 1, "from_revision": 2}}
    assert not rollback.ACTION.landed(DB, params, NOW, cluster(update=2))
    moved = cluster(update=3)
    moved.controller_revisions["db"].append(controller_revision(3, "db:1"))
    assert rollback.ACTION.landed(DB, params, NOW, moved)


def test_restart_and_scale_address_the_statefulset() -> None:
    reads = cluster()
    restarted = restart.ACTION.request(DB, {}, reads, NOW)
    assert restarted.path == "/apis/apps/v1/namespaces/data/statefulsets/db"
    assert restarted.content_type == "application/strategic-merge-patch+json"
    scaled = scale.ACTION.request(DB, {"replicas": 5}, reads, NOW)
    assert scaled.path == "/apis/apps/v1/namespaces/data/statefulsets/db/scale"
    assert scale.ACTION.landed(DB, {"params": {"replicas": 3}}, NOW, reads)
    assert not restart.ACTION.landed(DB, {"params": {}}, NOW, reads)


def test_evicting_a_statefulset_pod_posts_an_eviction() -> None:
    request = evict.ACTION.request(DB, {"pod": "db-2"}, cluster(), NOW)
    assert request.path == "/api/v1/namespaces/data/pods/db-2/eviction"


@pytest.mark.parametrize(
    ("updated", "held_back", "total", "complete"),
    [
        (1, 2, 3, True),  # a partition of 2: the one pod above it is updated
        (3, 2, 3, True),  # every pod updated, the partition left in place
        (0, 2, 3, False),  # the pod above the partition is not updated yet
        (2, 0, 3, False),  # no partition: every pod must be updated
    ],
)
def test_a_partitioned_rollout_is_complete_as_kubectl_rollout_status_says(
    updated: int, held_back: int, total: int, complete: bool
) -> None:
    workload = state(
        workload=DB, updated_replicas=updated, held_back=held_back, total_replicas=total
    )
    assert workload.rollout_complete is complete
