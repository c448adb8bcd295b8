"""Literal values the unit tests build again and again: one shop/cart Deployment at noon."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from healer.types import Revision, Signal, WorkloadRef, WorkloadState

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
CART = WorkloadRef("shop", "Deployment", "cart")
HEALTHY: dict[Signal, float] = {
    Signal.CPU: 0.5,
    Signal.MEMORY: 0.4,
    Signal.RESTARTS: 0.0,
    Signal.REQUEST_RATE: 100.0,
    Signal.ERROR_RATIO: 0.002,
    Signal.LATENCY_P99: 0.08,
    Signal.READY_RATIO: 1.0,
}
"""A healthy service's level of each signal: half a core, 40% of its memory, 100
requests a second, 0.2% errors, 80 ms p99, every pod ready."""


def revision(number: int) -> Revision:
    """Revision ``number`` of cart, created ``number`` days ago."""
    return Revision(number, f"cart-{number}", NOW - timedelta(days=number), (f"cart:{number}",))


def state(*revisions: Revision, **changes: object) -> WorkloadState:
    """cart at rest with 3 replicas; revisions 4 and 3 unless others are given."""
    base = WorkloadState(
        workload=CART,
        replicas=3,
        ready_replicas=3,
        updated_replicas=3,
        available_replicas=3,
        generation=4,
        observed_generation=4,
        paused=False,
        revisions=revisions or (revision(4), revision(3)),
    )
    return replace(base, **changes)  # type: ignore[arg-type]  # a test helper: fields vary
