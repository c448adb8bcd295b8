"""How the loop is doing: cycles run, findings, failures and the last cycle's time.

The cycle notes what happened (``read``, ``timed``, the last error, the failure counts);
the status endpoint, ``/metrics`` and ``/readyz`` read it back (``status``,
``readiness``), as does the runner when it says why it is not ready.

Decisions: these counts are kept apart from the cycle (``healer.daemon.Healer``), which
moves incidents: reporting reads them and never needs the cycle's collaborators, and
the cycle notes them without knowing who reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from healer.types import JsonObject


@dataclass
class Vitals:
    """Counts over all cycles, and what the latest one met."""

    cycles: int = 0
    """Cycles with data."""
    findings: int = 0
    """Findings the detector reported, over all cycles."""
    last_cycle: datetime | None = None
    """When the last cycle with data ran."""
    last_attempt: datetime | None = None
    """When the last cycle began, with data or without."""
    last_error: str | None = None
    """Why the last cycle had no data, if it had none."""
    cycle_seconds_sum: float = 0.0
    """Wall-clock seconds spent in cycles with data (for healer_cycle_seconds)."""
    last_cycle_s: float | None = None
    cycle_failures: int = 0
    """Cycles that ended in an exception (the store down, a bug), over all cycles."""
    incident_errors: int = 0
    """Unexpected exceptions (bugs) while handling one workload, each escalated."""

    def read(self, now: datetime, findings: int) -> None:
        """The cycle at ``now`` had data, and the detector reported ``findings``."""
        self.cycles += 1
        self.last_cycle = now
        self.findings += findings

    def timed(self, seconds: float) -> None:
        """A cycle with data took ``seconds`` of wall clock."""
        self.last_cycle_s = seconds
        self.cycle_seconds_sum += seconds

    def status(self) -> JsonObject:
        return {
            "findings": self.findings,
            "cycle_seconds_sum": self.cycle_seconds_sum,
            "last_cycle_seconds": self.last_cycle_s,
            "cycles": self.cycles,
            "last_cycle": self.last_cycle.isoformat() if self.last_cycle else None,
            "last_error": self.last_error,
            "cycle_failures": self.cycle_failures,
            "incident_errors": self.incident_errors,
        }

    def readiness(self, now: datetime, *, interval_s: float) -> list[str]:
        """Why the loop is not doing its job right now; empty when it is.

        Not ready: no cycle with data yet, the last one too long ago (three intervals of
        ``interval_s``: one slow cycle is not an outage), or the metrics could not be
        read last time.
        """
        reasons = []
        if self.last_error is not None:
            reasons.append(f"metrics unavailable: {self.last_error}")
        stale_s = 3 * interval_s
        if self.last_cycle is None:
            reasons.append("no cycle with metrics yet")
        elif (now - self.last_cycle).total_seconds() > stale_s:
            age_s = (now - self.last_cycle).total_seconds()
            reasons.append(f"last cycle with metrics {age_s:.0f}s ago (more than {stale_s:.0f}s)")
        return reasons
