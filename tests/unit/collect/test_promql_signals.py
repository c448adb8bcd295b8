"""The PromQL table: one query per signal, aggregated by (namespace, deployment)."""

from __future__ import annotations

import pytest

from healer.collect.signals import (
    ISTIO,
    STANDARD,
    build_queries,
    kube_state_label,
)
from healer.types import Signal


def test_every_signal_has_one_query_in_signal_order() -> None:
    queries = build_queries()
    assert [q.signal for q in queries] == list(Signal)
    assert set(STANDARD) == set(ISTIO) == set(Signal)


@pytest.mark.parametrize("signal_set", ["standard", "istio"])
def test_every_query_aggregates_by_workload_and_has_no_tokens_left(signal_set: str) -> None:
    for query in build_queries(signal_set=signal_set, window_s=90):  # type: ignore[arg-type]
        assert "by (namespace, deployment" in query.promql
        assert "$window" not in query.promql and "$pod_owner" not in query.promql
        if query.signal is Signal.RESTARTS:  # sparse events: a window of their own
            assert "[10m]" in query.promql
        else:
            assert "[90s]" in query.promql or query.signal in (Signal.MEMORY, Signal.READY_RATIO)
        assert query.promql.count("(") == query.promql.count(")")


def test_owner_mapping_joins_pods_to_deployments_through_replicasets() -> None:
    cpu = build_queries()[0].promql
    assert "kube_pod_owner" in cpu and "kube_replicaset_owner" in cpu
    assert 'label_replace(kube_pod_owner{owner_kind="ReplicaSet"}' in cpu
    assert '"deployment", "$1", "owner_name", "(.+)"' in cpu
    assert "kube_pod_labels" not in cpu


def test_pod_label_mapping_reads_kube_pod_labels() -> None:
    cpu = build_queries(mapping="pod_label", pod_label="app.kubernetes.io/name")[0].promql
    assert 'kube_pod_labels{label_app_kubernetes_io_name!=""}' in cpu
    assert "kube_replicaset_owner" not in cpu
    assert kube_state_label("app") == "label_app"


def test_definitions_match_the_signal_units() -> None:
    by = {q.signal: q.promql for q in build_queries()}
    assert "container_cpu_usage_seconds_total" in by[Signal.CPU]
    assert 'kube_pod_container_resource_requests{resource="cpu"' in by[Signal.CPU]
    assert by[Signal.MEMORY].startswith("avg by (namespace, deployment)")
    assert 'kube_pod_container_resource_limits{resource="memory"}' in by[Signal.MEMORY]
    assert by[Signal.RESTARTS].startswith("60 * ")  # per minute
    assert 'code=~"5.."' in by[Signal.ERROR_RATIO]
    assert by[Signal.LATENCY_P99].startswith("histogram_quantile(0.99,")
    assert "sum by (namespace, deployment, le)" in by[Signal.LATENCY_P99]
    assert "kube_deployment_status_replicas_available" in by[Signal.READY_RATIO]


def test_istio_set_replaces_only_the_http_signals() -> None:
    standard = {q.signal: q.promql for q in build_queries()}
    istio = {q.signal: q.promql for q in build_queries(signal_set="istio")}
    for signal in (Signal.REQUEST_RATE, Signal.ERROR_RATIO, Signal.LATENCY_P99):
        assert "istio_re" in istio[signal] and "destination_workload" in istio[signal]
    assert istio[Signal.LATENCY_P99].endswith("/ 1000")  # milliseconds to seconds
    for signal in (Signal.CPU, Signal.MEMORY, Signal.RESTARTS, Signal.READY_RATIO):
        assert istio[signal] == standard[signal]


def test_overrides_replace_one_signal_and_get_tokens_filled() -> None:
    queries = build_queries(
        overrides={Signal.REQUEST_RATE: "sum by (namespace, deployment) (rate(x[$window]))"},
        window_s=30,
    )
    by = {q.signal: q for q in queries}
    assert by[Signal.REQUEST_RATE].promql == "sum by (namespace, deployment) (rate(x[30s]))"
    assert by[Signal.REQUEST_RATE].overridden
    assert not by[Signal.CPU].overridden
