"""The PromQL of the per-pod view: each pod's own value of the signals a pod has.

One query per signal in ``POD_SIGNALS``, and one for readiness, each returning one
series per pod labelled ``namespace``, ``pod`` and ``deployment`` (the workload, as the
per-workload queries name it). They are asked only for the namespaces of the workloads
a cycle diagnoses (``$namespaces``, a regular expression of their names), over the
short window of ``POD_WINDOW_S``: a cycle with nothing anomalous asks nothing, and one
with a handful of findings reads a few dozen pods, whatever the cluster's size.

Latency and errors come from the application's own ``http_requests_total`` and
``http_request_duration_seconds_bucket`` per pod; a service that does not expose them
has no value there (NaN), and is judged on CPU, memory and restarts alone.

Templates use the tokens of ``healer.collect.signals`` (``$window``, ``$pod_owner``)
and ``$namespaces``; with recording rules, ``$pod_owner`` is the recorded pod map, read
for those namespaces only.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping

from healer.collect.signals import POD_OWNER_RECORD, pod_owner, render
from healer.config import PrometheusSettings
from healer.types import Signal

READY = "ready"
"""The key of the readiness query beside the signals'."""

_NS = 'namespace=~"$namespaces"'
_CONTAINERS = f'container!="", container!="POD", {_NS}'
_OWNER = "* on (namespace, pod) group_left (deployment) $pod_owner"


def _requests(extra: str = "") -> str:
    return f"sum by (namespace, pod) (rate(http_requests_total{{{_NS}{extra}}}[$window]))"


_ERRORS = _requests(', code=~"5.."')

TEMPLATES: Mapping[str, str] = {
    Signal.CPU.value: (
        f"sum by (namespace, pod) (rate(container_cpu_usage_seconds_total{{{_CONTAINERS}}}"
        "[$window]))\n/ sum by (namespace, pod) (kube_pod_container_resource_requests"
        f'{{resource="cpu", {_CONTAINERS}}})\n{_OWNER}'
    ),
    Signal.MEMORY.value: (
        f"max by (namespace, pod) (\n  container_memory_working_set_bytes{{{_CONTAINERS}}}\n"
        "  / on (namespace, pod, container)\n"
        f'  kube_pod_container_resource_limits{{resource="memory", {_NS}}}\n)\n{_OWNER}'
    ),
    Signal.RESTARTS.value: (
        "60 * sum by (namespace, pod) (rate(kube_pod_container_status_restarts_total"
        f"{{{_NS}}}[10m]))\n{_OWNER}"
    ),
    Signal.ERROR_RATIO.value: (
        f"(\n  {_ERRORS}\n  or on (namespace, pod)\n"
        f"  0 * {_requests()}\n)\n/ {_requests()}\n{_OWNER}"
    ),
    Signal.LATENCY_P99.value: (
        "histogram_quantile(0.99, sum by (namespace, pod, le) (\n"
        f"  rate(http_request_duration_seconds_bucket{{{_NS}}}[$window])\n))\n{_OWNER}"
    ),
    READY: (
        f'max by (namespace, pod) (kube_pod_status_ready{{condition="true", {_NS}}})\n{_OWNER}'
    ),
}


_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def namespaces_regex(namespaces: Collection[str]) -> str:
    """An alternative of the names (PromQL anchors ``=~`` itself). A namespace is a DNS
    label, which has nothing a regular expression would read as more than itself;
    anything else cannot name a namespace and is left out."""
    return "|".join(ns for ns in sorted(set(namespaces)) if _NAMESPACE.match(ns))


def build_pod_queries(settings: PrometheusSettings) -> dict[str, str]:
    """Every per-pod template with ``$window`` and ``$pod_owner`` filled in; the
    ``$namespaces`` token is left for each fetch."""
    if settings.recording_rules:
        owner = f"{POD_OWNER_RECORD}{{{_NS}}}"
    else:
        owner = "(" + pod_owner(settings.workload_mapping, settings.workload_label) + ")"
    return {
        key: render(template, window_s=settings.rate_window_s, owner=owner)
        for key, template in TEMPLATES.items()
    }


def for_namespaces(query: str, namespaces: Collection[str]) -> str:
    return query.replace("$namespaces", namespaces_regex(namespaces))
