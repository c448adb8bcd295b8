"""The agent's own metrics in Prometheus text format, served at ``/metrics``.

Read at scrape time, not counted as things happen: the cycle counters come from the
daemon's status (cycles run, findings seen, seconds spent), the action and guard-block
counters from the audit store. So the counts survive a restart (the store is durable),
agree with what the review page shows, and the daemon needs no metrics code on its path.
A private registry per app: two apps in one process (tests) never share series.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector

from healer.api.deps import StatusFn
from healer.audit.roles import ReviewQueue
from healer.errors import StoreError


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


class AgentCollector(Collector):
    def __init__(self, store: ReviewQueue, status: StatusFn | None) -> None:
        self._store = store
        self._status = status

    def collect(self) -> Iterable[Metric]:
        status = self._status() if self._status else {}
        cycles = _number(status.get("cycles"))
        yield CounterMetricFamily("healer_cycles", "Cycles run with metrics.", value=cycles)
        yield SummaryMetricFamily(
            "healer_cycle_seconds",
            "Time spent per cycle (wall clock).",
            count_value=int(cycles),
            sum_value=_number(status.get("cycle_seconds_sum")),
        )
        yield CounterMetricFamily(
            "healer_findings",
            "Findings reported by the detector.",
            value=_number(status.get("findings")),
        )
        yield CounterMetricFamily(
            "healer_cycle_failures",
            "Cycles that ended in an error (the audit store down, a bug); the next one runs.",
            value=_number(status.get("cycle_failures")),
        )
        yield CounterMetricFamily(
            "healer_incident_errors",
            "Unexpected errors while handling one incident; each incident was escalated.",
            value=_number(status.get("incident_errors")),
        )
        yield CounterMetricFamily(
            "healer_escalations_dropped",
            "Escalations dropped because the delivery queue was full.",
            value=_number(status.get("escalations_dropped")),
        )
        actions = CounterMetricFamily(
            "healer_actions", "Actions recorded, by kind and outcome.", labels=["kind", "outcome"]
        )
        blocks = CounterMetricFamily(
            "healer_guard_blocks", "Plans blocked, by guard.", labels=["guard"]
        )
        try:
            for (kind, outcome), count in sorted(self._store.action_counts().items()):
                actions.add_metric([str(kind), str(outcome)], count)
            for guard, count in sorted(self._store.guard_block_counts().items()):
                blocks.add_metric([guard], count)
        except StoreError:
            pass  # /metrics stays up while the store is down; /readyz reports it
        yield actions
        yield blocks


def registry_for(store: ReviewQueue, status: StatusFn | None) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AgentCollector(store, status))
    return registry
