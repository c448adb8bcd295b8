"""The daemon's run loop: only the leader cycles, backoff after failures, stop between cycles."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from healer.daemon import run_forever
from healer.detect.streaming import Detection
from healer.errors import PrometheusUnavailable, StoreError
from healer.vitals import Vitals

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


class VirtualStop(threading.Event):
    """A stop event whose waits advance a virtual clock instead of sleeping."""

    def __init__(self, clock: list[datetime], *, after: int) -> None:
        super().__init__()
        self.clock, self.left, self.waits = clock, after, []  # type: list[float]

    def wait(self, timeout: float | None = None) -> bool:
        assert timeout is not None
        self.waits.append(timeout)
        self.clock[0] += timedelta(seconds=timeout)
        self.left -= 1
        if self.left <= 0:
            self.set()
        return self.is_set()


@dataclass
class FakeHealer:
    """Only what run_forever touches: cycle(now) -> Detection | None."""

    fail: list[type[Exception] | None] = field(default_factory=list)
    vitals: Vitals = field(default_factory=Vitals)
    cycled: list[datetime] = field(default_factory=list)

    def cycle(self, now: datetime) -> Detection | None:
        self.cycled.append(now)
        error = self.fail.pop(0) if self.fail else None
        if error is PrometheusUnavailable:
            return None  # Healer.cycle turns a metrics failure into "no detection"
        if error is not None:
            raise error("audit store unavailable")
        return object()  # type: ignore[return-value]  # any non-None detection


@dataclass
class ScriptedLeadership:
    """Leads in the given spans of time; each span is a new term."""

    spans: list[tuple[datetime, datetime]]

    def leading_term(self, now: datetime) -> int | None:
        for term, (start, end) in enumerate(self.spans, start=1):
            if start <= now < end:
                return term
        return None


def test_failures_back_off_doubling_up_to_the_cap_then_recover() -> None:
    clock = [T0]
    stop = VirtualStop(clock, after=7)
    healer = FakeHealer(fail=[PrometheusUnavailable] * 5 + [StoreError])
    run_forever(
        healer,  # type: ignore[arg-type]  # a fake with the one method used
        interval_s=30,
        stop=stop,
        now=lambda: clock[0],
        backoff_max_s=200,
    )
    assert stop.waits == [30, 60, 120, 200, 200, 200, 30]


def test_only_the_leader_cycles_and_on_lead_runs_at_each_takeover() -> None:
    clock = [T0]
    stop = VirtualStop(clock, after=100)
    at = [T0 + timedelta(seconds=s) for s in (10, 70, 71, 100)]
    leadership = ScriptedLeadership([(at[0], at[1]), (at[2], at[3])])
    taken: list[datetime] = []
    healer = FakeHealer()
    run_forever(
        healer,  # type: ignore[arg-type]  # a fake with the one method used
        interval_s=30,
        stop=stop,
        now=lambda: clock[0],
        leadership=leadership,
        on_lead=lambda: taken.append(clock[0]),
        poll_s=1.0,
    )
    # Lost at 70 s and won back at 71 s: a new term, so the incidents are picked up again.
    assert taken == [at[0], at[2]]
    assert healer.cycled == [at[0], at[0] + timedelta(seconds=30), at[2]]


def test_a_set_stop_ends_the_loop_after_the_cycle_in_flight() -> None:
    clock = [T0]
    stop = VirtualStop(clock, after=1)

    class StopsDuringCycle(FakeHealer):
        def cycle(self, now: datetime) -> Detection | None:
            stop.set()  # SIGTERM arrives while the cycle runs
            return super().cycle(now)

    healer = StopsDuringCycle()
    run_forever(healer, interval_s=30, stop=stop, now=lambda: clock[0])  # type: ignore[arg-type]  # fake
    assert healer.cycled == [T0]
