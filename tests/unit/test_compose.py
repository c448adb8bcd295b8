"""The composition root: the loop every entry point runs, on the edges it is given."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from healer.audit.store import AuditStore
from healer.compose import build_loop
from healer.config import Settings, load_settings
from healer.daemon import Step
from healer.decide import load_playbooks
from healer.detect.streaming import StreamingDetector
from healer.types import ActionRecord, Finding, Frame, Plan, WorkloadRef, WorkloadState

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


class NoSource:
    def fetch(self, *, until: datetime, window_s: float) -> Frame:
        raise AssertionError("not cycled")


class NoCluster:
    def read_state(self, workload: WorkloadRef) -> WorkloadState:
        raise AssertionError("not called")

    def apply(self, plan: Plan, *, now: datetime) -> ActionRecord:
        raise AssertionError("not called")

    def already_applied(self, intent: ActionRecord) -> bool:
        raise AssertionError("not called")


def test_the_loop_gets_a_fresh_detector_of_the_settings_unless_given_one(
    store: AuditStore,
) -> None:
    settings = Settings()
    playbooks = load_playbooks(REPO / "playbooks")
    edges = {"source": NoSource(), "actuator": NoCluster(), "store": store}
    built = build_loop(settings, playbooks=playbooks, **edges)  # type: ignore[arg-type]
    again = build_loop(settings, playbooks=playbooks, **edges)  # type: ignore[arg-type]
    assert built.detector is not again.detector  # one per loop, never shared
    warmed = StreamingDetector(settings.detector)
    given = build_loop(settings, playbooks=playbooks, detector=warmed, **edges)  # type: ignore[arg-type]
    assert given.detector is warmed
    assert given.playbooks == playbooks and given.store is store


def test_steps_go_where_the_entry_point_says_and_nothing_is_resumed(store: AuditStore) -> None:
    settings = load_settings(None, escalation={"webhook_urls": ["http://hooks.test/x"]})
    steps: list[Step] = []
    cart = WorkloadRef("shop", "Deployment", "cart")
    store.open_incident(Finding(cart, T0, 0.9, (), T0, "test"))  # left open by a run before
    loop = build_loop(
        settings,
        source=NoSource(),
        actuator=NoCluster(),
        store=store,
        playbooks=(),
        report=steps.append,
    )
    assert loop.report == steps.append
    assert loop.notifier is not None  # the settings' webhooks, queued beside the cycle
    assert loop.tracked == {}  # the caller resumes when it starts acting
    assert loop.resume() == 1
