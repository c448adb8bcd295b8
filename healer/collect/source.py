"""The MetricsSource seam: where a cycle's Frame comes from.

Production reads Prometheus (one range query per signal for all workloads at once);
tests, benchmarks and the demo read the simulated cluster. Both return the same Frame,
so everything downstream is the same code in both cases.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Protocol, runtime_checkable

from healer.types import Frame, PodFrame, WorkloadRef


class MetricsSource(Protocol):
    def fetch(self, *, until: datetime, window_s: float) -> Frame:
        """Every watched workload's signals over ``(until - window_s, until]``.

        Raises CollectError when the metrics cannot be read; the caller takes no action
        on a cycle without data.
        """
        ...


@runtime_checkable
class PodSource(Protocol):
    """Where per-pod values come from, for the workloads a cycle diagnoses."""

    def fetch_pods(self, *, until: datetime, workloads: Collection[WorkloadRef]) -> PodFrame:
        """The pods of ``workloads`` as of ``until``, each signal averaged over a short
        window (``POD_WINDOW_S``). Raises CollectError when they cannot be read; the
        caller then diagnoses from the workload's signals alone."""
        ...


POD_WINDOW_S = 120.0
"""The window a pod's values are averaged over: eight scrapes at 15 s, enough to quiet
one scrape's noise, short enough that a pod gone bad a few minutes ago stands out."""
