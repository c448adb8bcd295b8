"""The containers at work: one scrape step of every scenario workload's pods at once.

Traffic with a daily peak, noise and bursts is spread over the ready pods; CPU follows
traffic; memory grows with a leak until the limit, where the container is OOM-killed;
latency climbs with utilisation and requests past saturation (or past a downstream
limit) fail. The arithmetic is ``healer.sim.workloads``'s, on the container columns;
deaths go to the kubelet. Behaviour comes from the pod's image, so a bad release is a
property of the pod template and rolling the template back fixes it.
"""

from __future__ import annotations

import numpy as np

from healer.sim import workloads
from healer.sim.controllers import kubelet
from healer.sim.controllers.faults import surge, window_factors
from healer.sim.state import ClusterState, Now

# A crashing container exits this long after it starts.
CRASH_AFTER_S = 5.0


class ContainerRuntime:
    def __init__(self, step_s: float) -> None:
        self._step_s = step_s

    def reconcile(self, state: ClusterState, now: Now) -> None:
        """One step of every scenario workload whose Deployment exists."""
        t, w, n, dt_s = state.table, state.columns, state.table.size, self._step_s
        running = t.live() & (t.workload[:n] >= 0)
        running[running] = w.exists[t.workload[:n][running]]
        f = t.f
        started_s = f["started_s"][:n]
        due = running & t.b["crash_on_start"][:n] & (now.unix_s - started_s >= CRASH_AFTER_S)
        for slot in np.flatnonzero(due):
            kubelet.crash(state, int(slot), now)
        kubelet.refresh_pods(state, running, now)
        demand = workloads.demand_rps(
            w, now.at, surge=surge(state, now), step_s=dt_s, rng=state.rng
        )
        rps, rho = workloads.load(t, w, running, demand, now_s=now.unix_s, dt_s=dt_s, rng=state.rng)
        ws = np.where(running, t.workload[:n], 0)
        oom = running & (f["memory_bytes"][:n] >= w.memory_limit_bytes[ws])
        for slot in np.flatnonzero(oom):
            kubelet.kill(state, t.pods[slot], int(slot), "OOMKilled", 137, now)
        serving = ~oom & (rps > 0)
        # A downstream limit fails the excess whatever the replica count.
        with np.errstate(divide="ignore", invalid="ignore"):
            beyond = np.where(
                (w.capacity_rps > 0) & (demand > 0), 1.0 - w.capacity_rps / demand, 0.0
            )
        slowdown = window_factors(state, "slowdown", now.elapsed_s)
        workloads.serve(
            t,
            serving,
            n=np.where(serving, rps * dt_s, 0.0),
            rho=rho,
            base_error=np.maximum(f["error_ratio"][:n], beyond[ws]) + f["node_errors"][:n],
            base_latency_s=f["latency_s"][:n] * slowdown[ws] * f["node_slowdown"][:n],
            rng=state.rng,
        )
