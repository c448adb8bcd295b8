"""The cycle acts on a request surge heading past capacity before the detector reports."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from healer.audit.store import AuditStore
from healer.config import load_settings
from healer.daemon import Healer, Step
from healer.decide import load_playbooks
from healer.detect.streaming import Detection
from healer.types import (
    ActionRecord,
    ActionStatus,
    Direction,
    Finding,
    Frame,
    HpaState,
    Mode,
    Plan,
    Revision,
    Signal,
    SignalDeviation,
    WorkloadRef,
    WorkloadState,
)

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
STEP_S = 15.0
SEARCH = WorkloadRef("shop", "Deployment", "search")
SIGNALS = tuple(Signal)
CPU_PER_RPS = 0.012
"""Each request a second costs 1.2% of a replica's CPU request."""


@dataclass
class SurgingSource:
    """search at 120 requests/s, tripling over two minutes from ``surge_at``."""

    surge_at: datetime
    replicas: int = 3
    ends_at: datetime | None = None

    def rate(self, t: datetime) -> float:
        if self.ends_at is not None and t >= self.ends_at:
            return 120.0
        after_s = (t - self.surge_at).total_seconds()
        return 120.0 * (1 + 2 * min(1.0, max(0.0, after_s) / 120.0))

    def fetch(self, *, until: datetime, window_s: float) -> Frame:
        n = int(window_s // STEP_S)
        times = [until - timedelta(seconds=STEP_S * i) for i in range(n)][::-1]
        noise = np.exp(np.random.default_rng(int(until.timestamp())).normal(0, 0.03, n))
        rate = np.array([self.rate(t) for t in times]) * noise
        values = np.zeros((len(SIGNALS), n))
        values[SIGNALS.index(Signal.CPU)] = rate * CPU_PER_RPS / self.replicas
        values[SIGNALS.index(Signal.REQUEST_RATE)] = rate
        values[SIGNALS.index(Signal.LATENCY_P99)] = 0.1
        return Frame(np.array([t.timestamp() for t in times]), (SEARCH,), SIGNALS, values[None])


@dataclass
class Detector:
    """Reports ``finding`` once set: the slow detector the surge is ahead of."""

    finding: Finding | None = None

    def update(self, frame: Frame) -> Detection:
        at = datetime.fromtimestamp(float(frame.timestamps[-1]), UTC)
        shape = (1, len(frame.signals))
        return Detection(
            at,
            frame.workloads,
            frame.signals,
            np.array([0.99 if self.finding else 0.1]),
            np.zeros(shape),
            np.zeros(shape),
            np.zeros(shape),
            (self.finding,) if self.finding else (),
            np.ones(1, dtype=bool),
        )


@dataclass
class Actuator:
    """search, with an HPA (80% CPU target) whose minReplicas the plans set."""

    replicas: int = 3
    applied: list[Plan] = field(default_factory=list)
    min_replicas: int = 0

    def read_state(self, workload: WorkloadRef) -> WorkloadState:
        rev = Revision(1, "search-abc", T0 - timedelta(days=3), ("search:1",))
        floor = self.min_replicas or self.replicas
        hpa = HpaState("search", floor, 9, target_cpu_utilisation=0.8)
        n = max(self.replicas, floor)
        return WorkloadState(workload, n, n, n, n, 1, 1, False, (rev,), hpa=hpa)

    def apply(self, plan: Plan, *, now: datetime) -> ActionRecord:
        self.applied.append(plan)
        self.min_replicas = int(str(plan.params["replicas"]))
        return ActionRecord(plan.action, plan.workload, {}, ActionStatus.SUCCEEDED, now, now)

    def already_applied(self, intent: ActionRecord) -> bool:
        return False


@dataclass
class Loop:
    healer: Healer
    source: SurgingSource
    detector: Detector
    actuator: Actuator
    steps: list[Step]
    now: datetime = T0

    def run(self, seconds: float) -> None:
        end = self.now + timedelta(seconds=seconds)
        while self.now < end:
            self.now += timedelta(seconds=30)
            self.healer.cycle(self.now)


def make(tmp_path: Path, replicas: int = 3, **surge: object) -> Iterator[Loop]:
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    settings = load_settings(None, guards={"mode": "auto"}, surge=surge)
    source = SurgingSource(T0 + timedelta(minutes=10), replicas)
    detector, actuator = Detector(), Actuator(replicas)
    steps: list[Step] = []
    healer = Healer(
        source=source,
        detector=detector,
        actuator=actuator,
        store=store,
        playbooks=load_playbooks(REPO / "playbooks"),
        settings=settings,
        report=steps.append,
    )
    yield Loop(healer, source, detector, actuator, steps)
    store.close()


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[Loop]:
    yield from make(tmp_path)


def test_the_surge_is_scaled_for_within_a_minute_of_its_start(loop: Loop) -> None:
    loop.run(600)
    assert loop.actuator.applied == []
    loop.run(60)

    assert [p.action for p in loop.actuator.applied] == ["scale"]
    acted = next(s for s in loop.steps if s.kind == "action").at
    assert acted - loop.source.surge_at <= timedelta(seconds=60)
    plan = loop.actuator.applied[0]
    assert plan.params["hpa"] == "search"
    # sized for the demand ahead, not a fixed factor: more than the 3 running, at most x2
    assert 4 <= int(str(plan.params["replicas"])) <= 6
    assert "requests/s expected" in plan.reason
    diagnosis = next(s for s in loop.steps if s.kind == "diagnosis")
    assert diagnosis.text.startswith("overload: Requests surged")


def test_the_detector_finding_joins_the_surge_incident(loop: Loop) -> None:
    loop.run(660)
    late = SignalDeviation(Signal.LATENCY_P99, 0.2, 0.1, 9.0, Direction.UP)
    loop.detector.finding = Finding(SEARCH, loop.now, 0.99, (late,), loop.now, "scripted")
    loop.run(120)

    assert len(loop.actuator.applied) == 1
    assert len(loop.healer.store.list_incidents()) == 1


def test_a_surge_the_replicas_absorb_opens_nothing(tmp_path: Path) -> None:
    for loop in make(tmp_path, replicas=9):  # 360 requests/s at 1.2%: 48% on 9 replicas
        loop.run(900)
        assert loop.actuator.applied == []
        assert loop.healer.store.list_incidents() == []


def test_surges_can_be_left_to_the_detector(tmp_path: Path) -> None:
    for loop in make(tmp_path, enabled=False):
        loop.run(900)
        assert loop.actuator.applied == []


def test_the_raised_floor_is_handed_back_once_the_surge_is_over(loop: Loop) -> None:
    loop.run(660)
    raised = int(str(loop.actuator.applied[0].params["replicas"]))
    loop.run(1200)
    loop.source.ends_at = loop.now  # back to 120 requests/s, 20 minutes after the raise
    loop.run(2300)  # the hold is an hour from the raise
    assert len(loop.actuator.applied) == 1
    loop.run(200)

    assert [p.params for p in loop.actuator.applied[1:]] == [
        {"replicas": 3, "from_replicas": raised, "hpa": "search"}
    ]
    assert loop.actuator.applied[1].playbook == "hand-back-hpa-floor"
    assert loop.healer.store.load_state("hpa_floors") == {}
    loop.run(3600)
    assert len(loop.actuator.applied) == 2, "handed back once"


def test_a_floor_someone_else_changed_is_left_alone(loop: Loop) -> None:
    loop.run(660)
    loop.actuator.min_replicas = 5  # a person set it meanwhile
    loop.run(3800)

    assert len(loop.actuator.applied) == 1
    assert loop.healer.store.load_state("hpa_floors") == {}


def test_no_hand_back_while_the_workload_asks_for_approval(tmp_path: Path) -> None:
    for loop in make(tmp_path):
        loop.run(660)
        loop.healer.settings = loop.healer.settings.model_copy(
            update={
                "guards": loop.healer.settings.guards.model_copy(update={"mode": Mode.APPROVAL})
            }
        )
        loop.run(3800)
        assert len(loop.actuator.applied) == 1
        assert loop.healer.store.load_state("hpa_floors") != {}


def test_a_surge_that_stays_keeps_its_floor(loop: Loop) -> None:
    loop.run(660)
    loop.run(7200)  # two hours at three times the traffic: the new normal

    assert len(loop.actuator.applied) == 1
    assert loop.healer.store.load_state("hpa_floors") != {}
