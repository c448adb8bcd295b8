"""The anomaly brake's watch: which workloads make up an event, and which it holds.

The guard itself (decide.guards ``brake``) judges one plan on a count; this watch keeps
what the count is taken from, across cycles: this cycle's anomalous workloads with the
onset of their event, the workloads the brake held with the onset it held them for, and
the onset of the last event escalated (one escalation per event, however many workloads
and cycles it holds). A restarted daemon holds again what it held (``rehold``).

Decisions: the onsets are taken once per cycle, before any workload is handled, so that
every workload of a cycle is judged alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from healer.audit.roles import DaemonState
from healer.config import Settings
from healer.decide.guards import correlated
from healer.detect.streaming import Detection
from healer.lifecycle.stages import Diagnosing, Story, Track, Watching, acted
from healer.types import Finding, OutcomeKind, WorkloadRef


@dataclass
class BrakeWatch:
    """What the brake counts and holds across cycles; the settings are passed in."""

    onsets: dict[WorkloadRef, datetime] = field(default_factory=dict)
    """This cycle's anomalous workloads the brake counts, with their onsets."""
    held: dict[WorkloadRef, datetime] = field(default_factory=dict)
    """Workloads the brake held, with the onset of the event it held them for."""
    notified_onset: datetime | None = None
    """The onset of the last event the brake held and escalated."""

    def take(
        self, detection: Detection, tracked: Mapping[WorkloadRef, Track], settings: Settings
    ) -> None:
        """Count this cycle's anomalous workloads: those nobody has handled yet (no
        incident, or one still to diagnose), those the brake held, at the onset of the
        event it held them for, and those acted on and not yet verified, at their
        finding's onset (a mass event arriving in waves is one event, not one small
        event per wave). A workload awaiting approval, healed, or escalated for its own
        reasons has been handled and does not count."""
        self.held = {w: began for w, began in self.held.items() if w in tracked}
        # A workload anomalous for less than ``persistence_s`` is no finding yet, but
        # already part of its event: a shared cause reaches some workloads a scrape or
        # two before others, and the first to become a finding must see them.
        threshold = settings.detector.score_threshold
        hot = detection.fresh & (detection.scores >= threshold)
        began = {detection.workloads[w]: detection.at for w in np.flatnonzero(hot)}
        began |= {f.workload: f.onset for f in detection.findings}
        out = {}
        for workload, onset in began.items():
            track = tracked.get(workload)
            if workload in self.held:
                out[workload] = self.held[workload]
            elif track is None or isinstance(track, Diagnosing):
                out[workload] = onset
        for workload, track in tracked.items():
            finding = track.story.finding
            if acted(track) and finding is not None:  # anomalous this cycle or not
                out.setdefault(workload, self.held.get(workload, finding.onset))
        self.onsets = out

    def event(
        self, finding: Finding, settings: Settings, *, live: bool = False
    ) -> tuple[int, datetime]:
        """The workloads of ``finding``'s event the brake counts (itself too), and the
        event's onset. ``live`` is for an action decided earlier (an approved one, a
        chain step): the largest event under way now, with the workload in it, so that
        a mass event that began since the incident holds that action too."""
        window_s = settings.guards.anomaly_brake_window_s
        onsets = {finding.onset, *self.onsets.values()} if live else {finding.onset}
        sizes = {
            began: correlated(finding.workload, began, self.onsets, window_s=window_s)
            for began in onsets
        }
        onset = max(sizes, key=lambda began: (sizes[began], began == finding.onset))
        return sizes[onset], onset

    def hold(self, workload: WorkloadRef, onset: datetime, settings: Settings) -> bool:
        """The brake held ``workload``'s action for the event that began at ``onset``:
        hold every workload of that event (they keep counting for its stragglers, and
        for nothing later). True when the event is new, so that its one escalation is
        sent."""
        window = timedelta(seconds=settings.guards.anomaly_brake_window_s)
        for held, began in {**self.onsets, workload: onset}.items():
            if abs(began - onset) <= window:
                self.held.setdefault(held, began)
        last = self.notified_onset
        if last is not None and abs(onset - last) <= window:
            return False
        self.notified_onset = onset
        return True

    def rehold(self, workload: WorkloadRef, onset: datetime) -> None:
        """After a restart: ``workload`` was held for the event that began at ``onset``."""
        self.held[workload] = onset
        last = self.notified_onset
        if last is None or onset > last:
            self.notified_onset = onset

    def resume(
        self, store: DaemonState, watched: Set[WorkloadRef], *, stable_s: float
    ) -> list[Watching]:
        """The workloads, beyond ``watched``, whose latest incident the brake held and
        that were still anomalous within ``stable_s`` of the store's latest step (a
        running daemon was still watching them): watched again, and held at their
        finding's onset, so a restart neither lets their event through nor escalates it
        twice."""
        latest = store.latest_at()
        if latest is None:
            return []
        since = latest - timedelta(seconds=stable_s)
        out = []
        for incident in store.latest_resolved(since=since, outcome=OutcomeKind.ESCALATED):
            if incident.workload in watched:
                continue  # an incident of it is open: only that one tells
            if incident.outcome is None or "anomaly_brake" not in incident.outcome.evidence:
                continue
            story = Story(incident.finding, incident.diagnosis)
            out.append(Watching(incident.id, incident.workload, story))
            self.rehold(incident.workload, incident.finding.onset)
        return out
