"""The surge watch: request surges heading past capacity, seen before the detector
reports them, and the demand an overload's scale-up is sized from.

Decisions: functions over this cycle's frame, the settings and the cluster passed in
(the watch keeps nothing between cycles), answering with a diagnosis or a demand;
opening the incident and acting on it stay with the cycle, as for any other finding.
"""

from __future__ import annotations

from typing import Protocol

from healer.config import SurgeSettings
from healer.diagnose import surge
from healer.types import Cause, Demand, Diagnosis, Frame, WorkloadRef, WorkloadState


class StateReader(Protocol):
    def read_state(self, workload: WorkloadRef) -> WorkloadState: ...


def surges(frame: Frame, settings: SurgeSettings) -> list[surge.Surge]:
    """This frame's surges; none when the watch is switched off."""
    return surge.find_surges(frame, settings) if settings.enabled else []


def judge(
    early: surge.Surge, frame: Frame, settings: SurgeSettings, *, cluster: StateReader
) -> tuple[Diagnosis, WorkloadState] | None:
    """An overload diagnosis, with the state read, for a surge heading past capacity;
    None for one the replicas absorb (it opens nothing)."""
    state = cluster.read_state(early.finding.workload)
    demand = surge.demand_of(frame, early.workload_index, state.replicas, settings.lead_s)
    diagnosis = surge.diagnose(early, demand, state, settings)
    return None if diagnosis is None else (diagnosis, state)


def demand(frame: Frame, state: WorkloadState, settings: SurgeSettings) -> Demand | None:
    """The workload's demand as ``frame`` measures it; None when it is not in it."""
    if state.workload not in frame.workloads:
        return None
    index = frame.workloads.index(state.workload)
    return surge.demand_of(frame, index, state.replicas, settings.lead_s)


def overload_demand(
    diagnosis: Diagnosis, frame: Frame, state: WorkloadState, settings: SurgeSettings
) -> Demand | None:
    """An overload's demand as this cycle's frame measures it, to size the scale-up."""
    if diagnosis.cause is not Cause.OVERLOAD:
        return None
    return demand(frame, state, settings)
