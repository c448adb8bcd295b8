"""The HPA floor keeper: floors raised for overloads, handed back once the load settles.

A scale-up of a workload an HPA owns raises the HPA's ``minReplicas`` (decide.handback);
the keeper notes each floor in the store's kept state and, once the workload has been
left alone for ``surge.hand_back_after_s`` and its requests no longer climb, lowers it
again as an incident of its own (opened, planned, acted and settled in one cycle).

Decisions: the notes are read from the store once, then kept in step with it (a read
every cycle would cost more than the rest of a small cycle).
"""

from __future__ import annotations

from collections.abc import Callable, Container
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import structlog

from healer.audit.roles import DaemonStore
from healer.config import Settings
from healer.decide import handback
from healer.lifecycle import surge_watch
from healer.types import (
    ActionRecord,
    ActionStatus,
    Finding,
    Frame,
    Mode,
    Outcome,
    OutcomeKind,
    Plan,
    WorkloadRef,
    WorkloadState,
)

log = structlog.get_logger("healer.daemon")

CLIMBING = 1.1
"""Requests count as still climbing when their trend carried over the surge lead time
adds more than a tenth: an HPA floor is not handed back then."""


class Cluster(Protocol):
    def read_state(self, workload: WorkloadRef) -> WorkloadState: ...

    def apply(self, plan: Plan, *, now: datetime) -> ActionRecord: ...


@dataclass
class FloorKeeper:
    """The floors raised and not yet handed back; the store and settings are the
    cycle's, passed in at each call."""

    _notes: dict[str, handback.Floor] | None = field(default=None, repr=False)

    def floors(self, store: DaemonStore) -> dict[str, handback.Floor]:
        if self._notes is None:
            self._notes = handback.from_json(store.load_state(handback.FLOORS_KEY))
        return self._notes

    def note(
        self, plan: Plan, now: datetime, baseline_rps: float | None, *, store: DaemonStore
    ) -> None:
        """``plan`` raised an HPA floor at ``now``; ``baseline_rps`` the load before."""
        self._save(handback.noted(self.floors(store), plan, now, baseline_rps), now, store)

    def due(
        self, now: datetime, settings: Settings, *, busy: Container[WorkloadRef], store: DaemonStore
    ) -> list[tuple[str, handback.Floor]]:
        """The floors held long enough, of workloads not ``busy`` (watched or surging)."""
        hold_s = settings.surge.hand_back_after_s
        return [
            (key, floor)
            for key, floor in list(self.floors(store).items())
            if (now - floor.at).total_seconds() >= hold_s and floor.workload not in busy
        ]

    def hand_back(
        self,
        key: str,
        floor: handback.Floor,
        frame: Frame,
        now: datetime,
        settings: Settings,
        *,
        store: DaemonStore,
        cluster: Cluster,
        policy_mode: Callable[[WorkloadState], Mode | None] = lambda state: None,
    ) -> None:
        """Lower ``floor`` unless the load still climbs; forget it once it is not ours.
        ``policy_mode`` is the mode the policy objects matching the workload ask for."""
        state = cluster.read_state(floor.workload)
        if handback.still_ours(floor, state):
            demand = surge_watch.demand(frame, state, settings.surge)
            climbing = demand is not None and demand.projected_rps > CLIMBING * demand.rps
            plan = handback.hand_back(
                floor,
                state,
                now=now,
                hold_s=settings.surge.hand_back_after_s,
                climbing=climbing,
                guards=settings.guards,
                rps=demand.rps if demand is not None else None,
                policy_mode=policy_mode(state),
            )
            if plan is None or not _take(plan, floor, now, store=store, cluster=cluster):
                return  # kept: tried again next cycle
        self._save({k: f for k, f in self.floors(store).items() if k != key}, now, store)

    def _save(self, floors: dict[str, handback.Floor], now: datetime, store: DaemonStore) -> None:
        store.save_state(handback.FLOORS_KEY, handback.to_json(floors), at=now)
        self._notes = floors


def _take(
    plan: Plan, floor: handback.Floor, now: datetime, *, store: DaemonStore, cluster: Cluster
) -> bool:
    """Hand the floor back as an incident of its own; True when the HPA took it."""
    finding = Finding(floor.workload, now, 0.0, (), floor.at, handback.HAND_BACK)
    incident = store.open_incident(finding)
    store.record_plan(incident, plan, at=now)
    record = cluster.apply(plan, now=now)
    store.record_action(incident, record)
    log.info("hpa_floor_handed_back", workload=str(floor.workload), status=record.status)
    if record.status is not ActionStatus.SUCCEEDED:
        outcome = Outcome(OutcomeKind.ESCALATED, f"hand-back failed: {record.error}", now)
        store.record_outcome(incident, outcome)
        return False
    store.record_outcome(incident, Outcome(OutcomeKind.HEALED, plan.reason, now))
    return True
