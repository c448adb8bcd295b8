"""The actions on a DaemonSet: what ``kubectl rollout restart|undo daemonset`` sends,
from literal objects; a scale is refused."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fakes import FakeReads

from healer.actions import restart, rollback, scale
from healer.errors import PermanentActionError
from healer.types import JsonObject, WorkloadRef

AGENT = WorkloadRef("infra", "DaemonSet", "agent")
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def controller_revision(number: int, image: str) -> JsonObject:
    template = {
        "metadata": {"labels": {"app": "agent"}},
        "spec": {"containers": [{"name": "agent", "image": image}]},
        "$patch": "replace",
    }
    return {
        "metadata": {"name": f"agent-h{number}", "labels": {"app": "agent"}},
        "revision": number,
        "data": {"spec": {"template": template}},
    }


def cluster(*numbers: int) -> FakeReads:
    ds: JsonObject = {
        "metadata": {"name": "agent"},
        "spec": {"template": {"metadata": {"annotations": {}}}},
        "status": {"desiredNumberScheduled": 3},
    }
    revisions = [controller_revision(n, f"agent:{n}") for n in numbers or (2, 1)]
    return FakeReads(daemonsets={"agent": ds}, controller_revisions={"agent": revisions})


def test_rollback_sends_the_revision_data_as_kubectl_rollout_undo_daemonset_does() -> None:
    request = rollback.ACTION.request(AGENT, {"to_revision": 1, "from_revision": 2}, cluster(), NOW)
    assert request.verb == "PATCH"
    assert request.path == "/apis/apps/v1/namespaces/infra/daemonsets/agent"
    assert request.content_type == "application/strategic-merge-patch+json"
    assert request.body == controller_revision(1, "agent:1")["data"]


def test_rollback_to_a_revision_that_is_gone_is_refused() -> None:
    with pytest.raises(PermanentActionError, match="no revision 7"):
        rollback.ACTION.request(AGENT, {"to_revision": 7, "from_revision": 2}, cluster(), NOW)


def test_rollback_landed_once_the_revision_it_returned_to_is_renumbered_newest() -> None:
    params = {"params": {"to_revision": 1, "from_revision": 2}}
    assert not rollback.ACTION.landed(AGENT, params, NOW, cluster(2, 1))
    # The controller renumbers the revision it returns to: 1 becomes 3.
    assert rollback.ACTION.landed(AGENT, params, NOW, cluster(2, 3))


def test_restart_stamps_the_daemonset_template() -> None:
    reads = cluster()
    request = restart.ACTION.request(AGENT, {}, reads, NOW)
    assert request.path == "/apis/apps/v1/namespaces/infra/daemonsets/agent"
    assert request.content_type == "application/strategic-merge-patch+json"
    stamp = "2026-03-02T12:00:00Z"
    assert request.body == {
        "spec": {
            "template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": stamp}}}
        }
    }
    assert not restart.ACTION.landed(AGENT, {"params": {}}, NOW, reads)
    reads.daemonsets["agent"]["spec"] = request.body["spec"]
    assert restart.ACTION.landed(AGENT, {"params": {}}, NOW, reads)


def test_a_daemonset_cannot_be_scaled() -> None:
    with pytest.raises(PermanentActionError, match="scale does not support a DaemonSet"):
        scale.ACTION.request(AGENT, {"replicas": 3}, cluster(), NOW)
