"""The simulated cluster's metrics in the Prometheus text format.

Metric names and labels are those of cAdvisor, kube-state-metrics and an instrumented
HTTP service, so that the PromQL healer runs against a real cluster runs unchanged
against a Prometheus server scraping the simulator.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from healer.sim.nodemetrics import node_families, pod_info
from healer.sim.podstatus import pod_status

if TYPE_CHECKING:
    from healer.sim.cluster import Cluster


def _labels(**labels: str) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return "{" + inner + "}"


def _cores(quantity: str) -> float:
    return float(quantity[:-1]) / 1000.0 if quantity.endswith("m") else float(quantity)


def render_metrics(cluster: Cluster) -> str:
    """Every series the simulator exposes, at the cluster's current time."""
    lines: list[str] = []
    for name, kind, rows in _families(cluster):
        lines.append(f"# TYPE {name} {kind}")
        # repr keeps every digit: counters of long runs must not lose resolution.
        lines.extend(f"{name}{labels} {float(value)!r}" for labels, value in rows)
    return "\n".join(lines) + "\n"


def _families(cluster: Cluster) -> Iterator[tuple[str, str, list[tuple[str, float]]]]:
    from healer.sim.cluster import LATENCY_BUCKETS_S

    deployments = cluster.store.list("deployments")
    yield (
        "kube_deployment_spec_replicas",
        "gauge",
        [
            (
                _labels(namespace=d["metadata"]["namespace"], deployment=d["metadata"]["name"]),
                d["spec"]["replicas"],
            )
            for d in deployments
        ],
    )
    for field, metric in (
        ("availableReplicas", "kube_deployment_status_replicas_available"),
        ("observedGeneration", "kube_deployment_status_observed_generation"),
    ):
        yield (
            metric,
            "gauge",
            [
                (
                    _labels(namespace=d["metadata"]["namespace"], deployment=d["metadata"]["name"]),
                    d.get("status", {}).get(field, 0),
                )
                for d in deployments
            ],
        )
    yield (
        "kube_deployment_metadata_generation",
        "gauge",
        [
            (
                _labels(namespace=d["metadata"]["namespace"], deployment=d["metadata"]["name"]),
                d["metadata"]["generation"],
            )
            for d in deployments
        ],
    )
    yield (
        "kube_replicaset_owner",
        "gauge",
        [
            (
                _labels(
                    namespace=rs["metadata"]["namespace"],
                    replicaset=rs["metadata"]["name"],
                    owner_kind="Deployment",
                    owner_name=d["metadata"]["name"],
                ),
                1.0,
            )
            for d in deployments
            for rs in cluster.store.owned("replicasets", d["metadata"]["uid"])
        ],
    )
    yield from _statefulset_families(cluster)
    yield from _daemonset_families(cluster)
    yield from node_families(cluster)  # kube-state-metrics' and node-exporter's
    yield from pod_info(cluster)
    yield from pod_status(cluster)  # readiness and deletion, for telling bad nodes apart
    pods = cluster.store.list("pods")
    owner_rows: list[tuple[str, float]] = []
    cpu, memory, restarts, requests, limits = (list[tuple[str, float]]() for _ in range(5))
    http: list[tuple[str, float]] = []
    buckets: list[tuple[str, float]] = []
    for pod in pods:
        meta = pod["metadata"]
        ns, name = meta["namespace"], meta["name"]
        owner = meta["ownerReferences"][0]
        owner_rows.append(
            (
                _labels(namespace=ns, pod=name, owner_kind=owner["kind"], owner_name=owner["name"]),
                1.0,
            )
        )
        if not cluster.state.running(pod):
            continue  # waiting for a node: no container to measure
        c = cluster.container(pod)
        spec = pod["spec"]["containers"][0]
        container = spec["name"]
        base = {"namespace": ns, "pod": name, "container": container}
        cpu.append((_labels(**base), c.cpu_seconds))
        memory.append((_labels(**base), c.memory_bytes))
        restarts.append(
            (_labels(**base), pod["status"]["containerStatuses"][0].get("restartCount", 0))
        )
        res = spec.get("resources", {})
        requests.append(
            (
                _labels(**base, resource="cpu", unit="core"),
                _cores(res.get("requests", {}).get("cpu", "0")),
            )
        )
        limits.append(
            (
                _labels(**base, resource="memory", unit="byte"),
                float(res.get("limits", {}).get("memory", "0")),
            )
        )
        http.append((_labels(namespace=ns, pod=name, code="200"), c.requests_ok))
        http.append((_labels(namespace=ns, pod=name, code="500"), c.requests_err))
        total = c.requests_ok + c.requests_err
        for le, count in zip(LATENCY_BUCKETS_S, c.latency_buckets, strict=True):
            buckets.append(("_bucket" + _labels(namespace=ns, pod=name, le=f"{le:g}"), count))
        buckets.append(("_bucket" + _labels(namespace=ns, pod=name, le="+Inf"), total))
        buckets.append(("_sum" + _labels(namespace=ns, pod=name), c.latency_sum_s))
        buckets.append(("_count" + _labels(namespace=ns, pod=name), total))
    yield "kube_pod_owner", "gauge", owner_rows
    yield "container_cpu_usage_seconds_total", "counter", cpu
    yield "container_memory_working_set_bytes", "gauge", memory
    yield "kube_pod_container_status_restarts_total", "counter", restarts
    yield "kube_pod_container_resource_requests", "gauge", requests
    yield "kube_pod_container_resource_limits", "gauge", limits
    yield "http_requests_total", "counter", http
    # A histogram family: its rows carry the _bucket, _sum and _count suffixes.
    yield "http_request_duration_seconds", "histogram", buckets


# kube-state-metrics' StatefulSet gauges: (metric, where the value is read).
_STATEFULSET_GAUGES = (
    ("kube_statefulset_replicas", ("spec", "replicas")),
    ("kube_statefulset_status_replicas", ("status", "replicas")),
    ("kube_statefulset_status_replicas_ready", ("status", "readyReplicas")),
    ("kube_statefulset_status_replicas_available", ("status", "availableReplicas")),
    ("kube_statefulset_status_replicas_current", ("status", "currentReplicas")),
    ("kube_statefulset_status_replicas_updated", ("status", "updatedReplicas")),
    ("kube_statefulset_status_observed_generation", ("status", "observedGeneration")),
    ("kube_statefulset_metadata_generation", ("metadata", "generation")),
)


def _statefulset_families(cluster: Cluster) -> Iterator[tuple[str, str, list[tuple[str, float]]]]:
    sets = cluster.store.list("statefulsets")
    if not sets:
        return  # no family without a series: OpenMetrics has no empty families
    for metric, (section, field) in _STATEFULSET_GAUGES:
        yield (
            metric,
            "gauge",
            [
                (
                    _labels(
                        namespace=s["metadata"]["namespace"], statefulset=s["metadata"]["name"]
                    ),
                    (s.get(section) or {}).get(field, 0),
                )
                for s in sets
            ],
        )
    for metric, field in (
        ("kube_statefulset_status_current_revision", "currentRevision"),
        ("kube_statefulset_status_update_revision", "updateRevision"),
    ):
        yield (
            metric,
            "gauge",
            [
                (
                    _labels(
                        namespace=s["metadata"]["namespace"],
                        statefulset=s["metadata"]["name"],
                        revision=str((s.get("status") or {}).get(field, "")),
                    ),
                    1.0,
                )
                for s in sets
            ],
        )


# kube-state-metrics' DaemonSet gauges: (metric, where the value is read).
_DAEMONSET_GAUGES = (
    ("kube_daemonset_status_current_number_scheduled", ("status", "currentNumberScheduled")),
    ("kube_daemonset_status_desired_number_scheduled", ("status", "desiredNumberScheduled")),
    ("kube_daemonset_status_number_available", ("status", "numberAvailable")),
    ("kube_daemonset_status_number_misscheduled", ("status", "numberMisscheduled")),
    ("kube_daemonset_status_number_ready", ("status", "numberReady")),
    ("kube_daemonset_status_number_unavailable", ("status", "numberUnavailable")),
    ("kube_daemonset_status_updated_number_scheduled", ("status", "updatedNumberScheduled")),
    ("kube_daemonset_status_observed_generation", ("status", "observedGeneration")),
    ("kube_daemonset_metadata_generation", ("metadata", "generation")),
)


def _daemonset_families(cluster: Cluster) -> Iterator[tuple[str, str, list[tuple[str, float]]]]:
    sets = cluster.store.list("daemonsets")
    if not sets:
        return  # no family without a series: OpenMetrics has no empty families
    for metric, (section, field) in _DAEMONSET_GAUGES:
        yield (
            metric,
            "gauge",
            [
                (
                    _labels(namespace=s["metadata"]["namespace"], daemonset=s["metadata"]["name"]),
                    (s.get(section) or {}).get(field, 0),
                )
                for s in sets
            ],
        )
