"""The cycle's silences and pages: a workload acted on is silenced until its verification
deadline, the silence is expired at the outcome, a healed incident is resolved and an
escalated one carries what was tried. Fakes at the I/O ends, a real audit store, virtual
time."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from healer.act.silences import SilenceKeeper
from healer.config import load_settings
from healer.decide.escalation import EscalationQueue
from healer.decide.paging import Escalation, Resolution
from healer.errors import StoreError
from healer.types import ActionStatus, OutcomeKind, WorkloadRef
from tests.unit.test_daemon import OVERLOAD, SEARCH, STRANGE, Loop, make_loop


@dataclass
class RecordingSilencer:
    said: list[tuple[str, int, datetime, datetime | str]] = field(default_factory=list)

    def silence(
        self, incident_id: int, workload: WorkloadRef, *, starts: datetime, ends: datetime
    ) -> None:
        assert workload == SEARCH
        self.said.append(("silence", incident_id, starts, ends))

    def expire(self, incident_id: int, *, at: datetime, why: str) -> None:
        self.said.append(("expire", incident_id, at, why))


@dataclass
class RecordingPager:
    escalated: list[Escalation] = field(default_factory=list)
    resolved: list[Resolution] = field(default_factory=list)

    def notify(self, escalation: Escalation) -> list[str]:
        self.escalated.append(escalation)
        return []

    def resolve(self, resolution: Resolution) -> list[str]:
        self.resolved.append(resolution)
        return []


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[tuple[Loop, RecordingSilencer, RecordingPager]]:
    for made in make_loop(tmp_path, load_settings(None, guards={"mode": "auto"})):
        silencer, pager = RecordingSilencer(), RecordingPager()
        made.healer.silences, made.healer.notifier = silencer, pager
        yield made, silencer, pager


def test_the_workload_is_silenced_while_verified_and_unsilenced_when_healed(
    loop: tuple[Loop, RecordingSilencer, RecordingPager],
) -> None:
    run, silencer, pager = loop
    run.detector.anomalous = {SEARCH: OVERLOAD}
    run.run()
    acted = run.now
    [incident] = run.store.list_incidents()
    # scale-up-on-overload verifies within 300 s
    assert silencer.said == [("silence", incident.id, acted, acted + timedelta(seconds=300))]
    run.detector.anomalous = {}
    run.run(cycles=5)
    assert run.outcomes() == [OutcomeKind.HEALED]
    kind, _, at, why = silencer.said[-1]
    assert (kind, at) == ("expire", run.now)
    assert str(why).startswith("healed:")
    assert pager.escalated == []
    [resolved] = pager.resolved
    assert (resolved.incident_id, resolved.playbook) == (incident.id, "scale-up-on-overload")


def test_each_action_of_a_chain_is_silenced_and_the_escalation_tells_what_was_tried(
    loop: tuple[Loop, RecordingSilencer, RecordingPager],
) -> None:
    run, silencer, pager = loop
    run.detector.anomalous = {SEARCH: OVERLOAD}
    run.run(cycles=33)  # both scale-ups, past the second one's window
    assert run.outcomes() == [OutcomeKind.NOT_HEALED]
    assert [s[0] for s in silencer.said] == ["silence", "silence", "expire"]
    [escalation] = pager.escalated
    assert escalation.tried == ("scale succeeded", "scale succeeded")
    assert escalation.finding is not None and "latency_p99 up 40σ" in escalation.finding
    assert escalation.diagnosis is not None and escalation.diagnosis.startswith("overload")
    assert pager.resolved == []


def test_an_action_that_failed_is_not_silenced_and_pages_at_once(
    loop: tuple[Loop, RecordingSilencer, RecordingPager],
) -> None:
    run, silencer, pager = loop
    run.actuator.status = ActionStatus.FAILED
    run.detector.anomalous = {SEARCH: OVERLOAD}
    run.run()
    assert [s[0] for s in silencer.said] == ["expire"], "nothing made; nothing to keep"
    [escalation] = pager.escalated
    assert escalation.tried == ("scale failed",)


def test_a_store_that_cannot_be_read_costs_the_page_its_story_not_the_page(
    loop: tuple[Loop, RecordingSilencer, RecordingPager], monkeypatch: pytest.MonkeyPatch
) -> None:
    run, _, pager = loop
    run.actuator.status = ActionStatus.FAILED

    def unreadable(incident_id: int) -> None:
        raise StoreError(f"cannot read incident {incident_id}: database is locked")

    monkeypatch.setattr(run.store, "get_incident", unreadable)
    run.detector.anomalous = {SEARCH: OVERLOAD}
    run.run()
    [escalation] = pager.escalated
    assert escalation.tried == ()


def test_an_incident_never_acted_on_is_escalated_without_a_silence(
    loop: tuple[Loop, RecordingSilencer, RecordingPager],
) -> None:
    run, silencer, pager = loop
    run.detector.anomalous = {SEARCH: STRANGE}
    run.run()
    assert [s[0] for s in silencer.said] == ["expire"]
    [escalation] = pager.escalated
    assert escalation.tried == ()


def test_the_settings_build_the_keeper_and_the_receivers(tmp_path: Path) -> None:
    settings = load_settings(
        None,
        alertmanager={"url": "http://127.0.0.1:9"},
        escalation={"pagerduty_routing_key": "k", "pagerduty_url": "http://127.0.0.1:9/pd"},
    )
    for made in make_loop(tmp_path, settings):
        assert isinstance(made.healer.silences, SilenceKeeper)
        assert isinstance(made.healer.notifier, EscalationQueue)
    (tmp_path / "none").mkdir()
    for made in make_loop(tmp_path / "none", load_settings(None)):
        assert made.healer.silences is None and made.healer.notifier is None


def test_an_escalated_incident_whose_workload_recovers_closes_its_page(
    loop: tuple[Loop, RecordingSilencer, RecordingPager],
) -> None:
    run, _, pager = loop
    run.detector.anomalous = {SEARCH: STRANGE}
    run.run()
    [escalation] = pager.escalated
    run.run(cycles=3)
    assert pager.resolved == [], "still anomalous: the page stays open"
    run.detector.anomalous = {}
    run.run(cycles=6)  # quiet for verify_stable_s: the incident is no longer watched
    [back] = pager.resolved
    assert (back.incident_id, back.healed) == (escalation.incident_id, False)
    assert back.evidence == "recovered: quiet for 120 s since the escalation"
    run.run(cycles=3)
    assert len(pager.resolved) == 1
