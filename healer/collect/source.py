"""The MetricsSource seam: where a cycle's Frame comes from.

Production reads Prometheus (one range query per signal for all workloads at once);
tests, benchmarks and the demo read the simulated cluster. Both return the same Frame,
so everything downstream is the same code in both cases.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from healer.types import Frame


class MetricsSource(Protocol):
    def fetch(self, *, until: datetime, window_s: float) -> Frame:
        """Every watched workload's signals over ``(until - window_s, until]``.

        Raises CollectError when the metrics cannot be read; the caller takes no action
        on a cycle without data.
        """
        ...
