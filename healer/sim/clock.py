"""A virtual clock: simulated time that moves only when told to.

Tests and benchmarks advance it as fast as the CPU allows (hours in seconds); the demo
advances it in step with the wall clock times a speed factor. Core code receives the
clock's reading as an argument and never reads the wall clock itself.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class VirtualClock:
    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("the virtual clock needs a timezone-aware start time")
        self._start = start.astimezone(UTC)
        self._elapsed_s = 0.0

    @property
    def elapsed_s(self) -> float:
        """Seconds of simulated time since the start."""
        return self._elapsed_s

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self._elapsed_s)

    def now_s(self) -> float:
        """Simulated time as UNIX seconds."""
        return self._start.timestamp() + self._elapsed_s

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time does not run backwards")
        self._elapsed_s += seconds
