"""Nodes from kube-state-metrics' series, as Prometheus answers them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from healer.collect.nodes import QUERIES, Sample, node_states, read_nodes
from healer.collect.prometheus import PrometheusSource, RangeResult
from healer.errors import PrometheusUnavailable
from healer.types import NodePod, NodeState

AT = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def pod_info(pod: str, node: str, kind: str = "ReplicaSet", owner: str = "cart-7f") -> Sample:
    labels = {"namespace": "shop", "pod": pod, "node": node}
    return (labels | {"created_by_kind": kind, "created_by_name": owner}, 1.0)


def ready(pod: str, value: float = 1.0) -> Sample:
    return ({"namespace": "shop", "pod": pod, "condition": "true"}, value)


PARTS: dict[str, list[Sample]] = {
    "conditions": [
        ({"node": "a", "condition": "MemoryPressure", "status": "true"}, 1.0),
        ({"node": "b", "condition": "Ready", "status": "true"}, 1.0),
        ({"node": "c", "condition": "Ready", "status": "true"}, 1.0),
    ],
    "unschedulable": [({"node": n}, 1.0 if n == "c" else 0.0) for n in "abc"],
    "pods": [
        pod_info("cart-1", "a"),
        pod_info("cart-2", "b"),
        pod_info("agent-a", "a", "DaemonSet", "agent"),
        pod_info("bare", "b", "<none>", "<none>"),
    ],
    "ready": [ready("cart-1", 0.0), ready("cart-2"), ready("agent-a"), ready("bare")],
    "deleting": [({"namespace": "shop", "pod": "bare"}, 1.77e9)],
}


def test_conditions_cordons_and_pods_make_each_node() -> None:
    a, b, c = node_states(PARTS)

    assert a == NodeState(
        "a",
        ready=False,
        pressure=("MemoryPressure",),
        unschedulable=False,
        pods=(
            NodePod("shop", "agent-a", "DaemonSet/agent", True),
            NodePod("shop", "cart-1", "ReplicaSet/cart-7f", False),
        ),
    )
    assert (b.ready, b.pressure, b.unschedulable) == (True, (), False)
    assert b.pods == (
        NodePod("shop", "bare", "", True, terminating=True),
        NodePod("shop", "cart-2", "ReplicaSet/cart-7f", True),
    )
    assert (c.healthy, c.unschedulable, c.pods) == (True, True, ())


class FakeClient:
    url = "http://prometheus.test"

    def __init__(self, fail: str | None = None) -> None:
        self.asked: list[tuple[str, int, int]] = []
        self.fail = fail

    def query_range(self, promql: str, *, start_s: int, end_s: int, step_s: int) -> RangeResult:
        from healer.collect.prometheus import HttpFailure

        self.asked.append((promql, start_s, end_s))
        if self.fail and self.fail in promql:
            raise HttpFailure(None, "connection refused")
        part = next(k for k, q in QUERIES.items() if q == promql)
        series = [{"metric": dict(m), "values": [[end_s, str(v)]]} for m, v in PARTS[part]]
        return RangeResult(series)  # type: ignore[arg-type]  # literal JSON of the HTTP API


def test_prometheus_is_read_once_per_part_for_every_node_at_one_instant() -> None:
    client = FakeClient()
    source = PrometheusSource(client, queries=(), step_s=15)

    nodes = source.nodes(until=AT)

    assert [n.name for n in nodes] == ["a", "b", "c"]
    assert [q for q, _, _ in client.asked] == list(QUERIES.values())
    assert {(s, e) for _, s, e in client.asked} == {(int(AT.timestamp()),) * 2}


def test_a_failed_part_names_itself_and_its_query() -> None:
    source = PrometheusSource(FakeClient(fail="kube_pod_info"), queries=(), step_s=15)
    with pytest.raises(PrometheusUnavailable, match=r"nodes \(pods: kube_pod_info.*refused"):
        read_nodes(source, at=AT)
