"""The PromQL of each signal, in one table.

Every query returns one series per workload, labelled ``namespace`` and ``deployment``,
for all workloads at once: a cycle costs seven queries whatever the cluster's size.
The definitions are those of ``healer.types.Signal`` and of the simulator's ground
truth, written over the metric names a real cluster has (cAdvisor, kube-state-metrics,
an instrumented HTTP service or Istio's sidecars), so the same text runs in tests and
in production.

Pod-level series reach their Deployment through ``$pod_owner``, a vector of 1s labelled
``(namespace, pod, deployment)``. By default it joins ``kube_pod_owner`` (pod ->
ReplicaSet) with ``kube_replicaset_owner`` (ReplicaSet -> Deployment), as kube-prometheus'
``namespace_workload_pod:kube_pod_owner:relabel`` rule does, and takes a StatefulSet's
pods from ``kube_pod_owner`` directly, labelled ``deployment="statefulset/NAME"``
(``STATEFULSET_PREFIX``), and a DaemonSet's as ``deployment="daemonset/NAME"``
(``DAEMONSET_PREFIX``); a cluster that labels its
pods with the Deployment's name can map through ``kube_pod_labels`` instead.

Templates use two tokens, replaced as plain text (PromQL's own ``$1`` is left alone):
``$window`` (the ``rate()`` range, e.g. ``60s``) and ``$pod_owner``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from healer.types import Signal

SignalSet = Literal["standard", "istio"]
WorkloadMapping = Literal["owner", "pod_label"]

# cAdvisor also reports the pod's cgroup (container="") and the pause container
# (container="POD"); both would double-count the pod's usage.
_CONTAINERS = 'container!="", container!="POD"'

STATEFULSET_PREFIX = "statefulset/"
"""A StatefulSet's series carry ``deployment="statefulset/NAME"``: the one label that
names a workload in every query, with its kind where a Deployment's name (which cannot
hold a ``/``) never is; ``healer.collect.prometheus`` reads it back as the kind."""

DAEMONSET_PREFIX = "daemonset/"
"""A DaemonSet's series carry ``deployment="daemonset/NAME"``, as a StatefulSet's do."""

POD_OWNER_BY_OWNERS = """max by (namespace, pod, deployment) (
  label_replace(
    label_replace(kube_pod_owner{owner_kind="ReplicaSet"}, "replicaset", "$1", "owner_name", "(.*)")
    * on (namespace, replicaset) group_left (owner_name)
    topk by (namespace, replicaset) (1,
      max by (namespace, replicaset, owner_name) (kube_replicaset_owner{owner_kind="Deployment"})
    ),
    "deployment", "$1", "owner_name", "(.+)"
  )
  or
  label_replace(
    kube_pod_owner{owner_kind="StatefulSet"}, "deployment", "statefulset/$1", "owner_name", "(.+)"
  )
  or
  label_replace(
    kube_pod_owner{owner_kind="DaemonSet"}, "deployment", "daemonset/$1", "owner_name", "(.+)"
  )
)"""

POD_OWNER_BY_LABEL = """max by (namespace, pod, deployment) (
  label_replace(kube_pod_labels{$label!=""}, "deployment", "$1", "$label", "(.+)")
)"""


def _per_deployment(pod_vector: str) -> str:
    return (
        "sum by (namespace, deployment) (\n"
        f"  {pod_vector}\n"
        "  * on (namespace, pod) group_left (deployment) $pod_owner\n)"
    )


_REQUESTS = "rate(http_requests_total[$window])"
_ERRORS = 'rate(http_requests_total{code=~"5.."}[$window])'

STANDARD: Mapping[Signal, str] = {
    Signal.CPU: (
        _per_deployment(f"rate(container_cpu_usage_seconds_total{{{_CONTAINERS}}}[$window])")
        + "\n/\n"
        + _per_deployment(f'kube_pod_container_resource_requests{{resource="cpu", {_CONTAINERS}}}')
    ),
    Signal.MEMORY: f"""avg by (namespace, deployment) (
  (
    container_memory_working_set_bytes{{{_CONTAINERS}}}
    / on (namespace, pod, container)
    kube_pod_container_resource_limits{{resource="memory"}}
  )
  * on (namespace, pod) group_left (deployment) $pod_owner
)""",
    # Restarts are sparse events (a crash-looping container restarts every five minutes
    # once its back-off is at its cap): a rate over the short window would be zero most
    # of the time. Ten minutes holds at least one restart of any crash loop.
    Signal.RESTARTS: "60 * "
    + _per_deployment("rate(kube_pod_container_status_restarts_total[10m])"),
    Signal.REQUEST_RATE: _per_deployment(_REQUESTS),
    # A service creates its 5xx series on its first error: until then the numerator is
    # absent, and `or ... 0 *` makes it zero rather than a gap.
    Signal.ERROR_RATIO: (
        "(\n"
        + _per_deployment(_ERRORS)
        + "\nor on (namespace, deployment)\n0 * "
        + _per_deployment(_REQUESTS)
        + "\n)\n/\n"
        + _per_deployment(_REQUESTS)
    ),
    Signal.LATENCY_P99: (
        "histogram_quantile(0.99,\n"
        + _per_deployment("rate(http_request_duration_seconds_bucket[$window])").replace(
            "sum by (namespace, deployment)", "sum by (namespace, deployment, le)", 1
        )
        + "\n)"
    ),
    # More available than desired happens mid-rollout (surge); the signal tops out at 1.
    # A Deployment scaled to zero is fully ready, as the simulator and kubectl say; a
    # StatefulSet's ready pods count the same way, and a DaemonSet's available pods over
    # the nodes it should run on.
    Signal.READY_RATIO: """clamp_max(
  sum by (namespace, deployment) (kube_deployment_status_replicas_available)
  / (sum by (namespace, deployment) (kube_deployment_spec_replicas) > 0),
  1
)
or on (namespace, deployment)
(sum by (namespace, deployment) (kube_deployment_spec_replicas) == 0) + 1
or on (namespace, deployment)
clamp_max(
  sum by (namespace, deployment) (
    label_replace(
      kube_statefulset_status_replicas_ready, "deployment", "statefulset/$1", "statefulset", "(.+)"
    )
  )
  / (sum by (namespace, deployment) (
    label_replace(kube_statefulset_replicas, "deployment", "statefulset/$1", "statefulset", "(.+)")
  ) > 0),
  1
)
or on (namespace, deployment)
(sum by (namespace, deployment) (
  label_replace(kube_statefulset_replicas, "deployment", "statefulset/$1", "statefulset", "(.+)")
) == 0) + 1
or on (namespace, deployment)
clamp_max(
  sum by (namespace, deployment) (
    label_replace(
      kube_daemonset_status_number_available, "deployment", "daemonset/$1", "daemonset", "(.+)"
    )
  )
  / (sum by (namespace, deployment) (
    label_replace(
      kube_daemonset_status_desired_number_scheduled,
      "deployment", "daemonset/$1", "daemonset", "(.+)"
    )
  ) > 0),
  1
)
or on (namespace, deployment)
(sum by (namespace, deployment) (
  label_replace(
    kube_daemonset_status_desired_number_scheduled,
    "deployment", "daemonset/$1", "daemonset", "(.+)"
  )
) == 0) + 1""",
}


def _istio(vector: str) -> str:
    """Istio labels the serving side ``destination_workload{,_namespace}``."""
    relabelled = (
        f'label_replace(label_replace(\n    {vector},\n    "namespace", "$1", '
        '"destination_workload_namespace", "(.+)"),\n  "deployment", "$1", '
        '"destination_workload", "(.+)")'
    )
    return f"sum by (namespace, deployment) (\n  {relabelled}\n)"


# reporter="destination": counted once, by the serving pod's sidecar.
_ISTIO_SEL = 'reporter="destination", destination_workload!="unknown"'
_ISTIO_REQUESTS = f"rate(istio_requests_total{{{_ISTIO_SEL}}}[$window])"
_ISTIO_ERRORS = f'rate(istio_requests_total{{{_ISTIO_SEL}, response_code=~"5.."}}[$window])'

ISTIO: Mapping[Signal, str] = {
    **STANDARD,
    Signal.REQUEST_RATE: _istio(_ISTIO_REQUESTS),
    Signal.ERROR_RATIO: (
        "(\n"
        + _istio(_ISTIO_ERRORS)
        + "\nor on (namespace, deployment)\n0 * "
        + _istio(_ISTIO_REQUESTS)
        + "\n)\n/\n"
        + _istio(_ISTIO_REQUESTS)
    ),
    # Istio measures milliseconds; the signal is in seconds.
    Signal.LATENCY_P99: (
        "histogram_quantile(0.99,\n"
        + _istio(
            f"rate(istio_request_duration_milliseconds_bucket{{{_ISTIO_SEL}}}[$window])"
        ).replace("sum by (namespace, deployment)", "sum by (namespace, deployment, le)", 1)
        + "\n) / 1000"
    ),
}

TABLES: Mapping[SignalSet, Mapping[Signal, str]] = {"standard": STANDARD, "istio": ISTIO}

# What the recording rules of ``healer.collect.rules`` store, per signal.
POD_OWNER_RECORD = "namespace_deployment_pod:kube_pod_owner:relabel"
"""``(namespace, pod, deployment)`` = 1 for every running pod of a Deployment."""

# Prometheus' naming convention, level:metric:operations; the level is the labels kept.
RECORDS: Mapping[Signal, str] = {
    Signal.CPU: "namespace_deployment:healer_cpu_usage:ratio",
    Signal.MEMORY: "namespace_deployment:healer_memory_working_set:ratio",
    Signal.RESTARTS: "namespace_deployment:healer_container_restarts:per_minute",
    Signal.REQUEST_RATE: "namespace_deployment:healer_requests:per_second",
    Signal.ERROR_RATIO: "namespace_deployment:healer_requests_5xx:ratio",
    Signal.LATENCY_P99: "namespace_deployment:healer_request_duration_seconds:p99",
    Signal.READY_RATIO: "namespace_deployment:healer_replicas_ready:ratio",
}


@dataclass(frozen=True)
class SignalQuery:
    signal: Signal
    promql: str
    overridden: bool


def kube_state_label(pod_label: str) -> str:
    """The name kube-state-metrics gives a pod label in ``kube_pod_labels``."""
    return "label_" + re.sub(r"[^a-zA-Z0-9_]", "_", pod_label)


def pod_owner(mapping: WorkloadMapping, pod_label: str = "app") -> str:
    if mapping == "owner":
        return POD_OWNER_BY_OWNERS
    return POD_OWNER_BY_LABEL.replace("$label", kube_state_label(pod_label))


def render(template: str, *, window_s: int, owner: str) -> str:
    """Fill a template's ``$window`` and ``$pod_owner`` tokens."""
    return template.replace("$pod_owner", owner).replace("$window", f"{window_s}s")


def build_queries(
    *,
    signal_set: SignalSet = "standard",
    overrides: Mapping[Signal, str] | None = None,
    window_s: int = 60,
    mapping: WorkloadMapping = "owner",
    pod_label: str = "app",
    recorded: bool = False,
) -> tuple[SignalQuery, ...]:
    """The query of every signal, in ``Signal`` order, overrides applied.

    ``recorded``: read the series the recording rules store (``RECORDS``) instead of
    evaluating the joins at every step. Pure: the same settings give the same text,
    which is what `healer collect` prints and what error messages quote.
    """
    table = RECORDS if recorded else TABLES[signal_set]
    overrides = overrides or {}
    owner = pod_owner(mapping, pod_label)
    return tuple(
        SignalQuery(
            signal=signal,
            promql=render(overrides.get(signal, table[signal]), window_s=window_s, owner=owner),
            overridden=signal in overrides,
        )
        for signal in Signal
    )
