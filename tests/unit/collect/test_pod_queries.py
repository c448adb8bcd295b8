"""The per-pod view from Prometheus answers: the queries asked, and the PodFrame built."""

from __future__ import annotations

import numpy as np
import pytest

from healer.collect.pod_queries import (
    READY,
    TEMPLATES,
    build_pod_queries,
    for_namespaces,
    namespaces_regex,
)
from healer.collect.prometheus import RawSeries, assemble_pods, check_pod_labels
from healer.collect.signals import POD_OWNER_RECORD, SignalQuery
from healer.config import PrometheusSettings
from healer.errors import QueryError
from healer.types import POD_SIGNALS, Signal, WorkloadRef

CART = WorkloadRef("shop", "Deployment", "cart")
LEDGER = WorkloadRef("shop", "StatefulSet", "ledger")


def series(pod: str, workload: str, *values: float, namespace: str = "shop") -> RawSeries:
    labels = {"namespace": namespace, "pod": pod, "deployment": workload}
    return {"metric": labels, "values": [[100 + 15 * i, str(v)] for i, v in enumerate(values)]}


def test_every_pod_signal_and_readiness_has_a_query_per_pod() -> None:
    assert set(TEMPLATES) == {s.value for s in POD_SIGNALS} | {READY}
    queries = build_pod_queries(PrometheusSettings(url="http://prometheus:9090"))
    for query in queries.values():
        assert "$window" not in query and "$pod_owner" not in query
        assert "group_left (deployment)" in query
        assert 'namespace=~"shop|web"' in for_namespaces(query, ["web", "shop", "web"])


def test_recording_rules_read_the_recorded_pod_map_for_those_namespaces() -> None:
    settings = PrometheusSettings(url="http://prometheus:9090", recording_rules=True)
    memory = build_pod_queries(settings)[Signal.MEMORY.value]
    assert f'{POD_OWNER_RECORD}{{namespace=~"$namespaces"}}' in memory


def test_only_namespace_names_go_into_the_expression() -> None:
    assert namespaces_regex(["shop", "team-a", 'x"}) or vector(1']) == "shop|team-a"


def test_the_frame_holds_the_asked_workloads_pods_with_means_slopes_and_readiness() -> None:
    results = {
        Signal.MEMORY.value: [
            series("cart-a", "cart", 0.40, 0.40, 0.40),
            series("cart-b", "cart", 0.40, 0.45, 0.50),
            series("ledger-0", "statefulset/ledger", 0.3, 0.3, 0.3),
            series("search-a", "search", 0.9, 0.9, 0.9),  # not asked for
        ],
        Signal.LATENCY_P99.value: [series("cart-a", "cart", 0.08, float("nan"), 0.1)],
        READY: [series("cart-a", "cart", 1, 1), series("cart-b", "cart", 1, 0)],
    }
    frame = assemble_pods(results, {CART, LEDGER}, at=130.0)
    assert frame.workloads == (CART, LEDGER)
    assert frame.pods == ("cart-a", "cart-b", "ledger-0")
    assert list(frame.owner) == [0, 0, 1]
    assert list(frame.ready) == [True, False, False]
    memory = frame.values[:, frame.signals.index(Signal.MEMORY)]
    np.testing.assert_allclose(memory, [0.40, 0.45, 0.3])
    latency = frame.values[:, frame.signals.index(Signal.LATENCY_P99)]
    assert latency[0] == pytest.approx(0.09) and np.isnan(latency[1])
    assert frame.memory_slope[1] == pytest.approx(0.05 / 15)
    assert frame.memory_slope[0] == pytest.approx(0.0, abs=1e-12)


def test_an_answer_with_a_pod_twice_or_without_its_workload_is_a_query_error() -> None:
    query = SignalQuery(Signal.MEMORY, "memory by pod", False)
    twice = [series("cart-a", "cart", 0.4), series("cart-a", "cart", 0.5)]
    with pytest.raises(QueryError, match="more than one series for pod shop/cart-a"):
        check_pod_labels(query, twice)
    with pytest.raises(QueryError, match="without namespace, pod and deployment"):
        check_pod_labels(query, [series("cart-a", "", 0.4)])
