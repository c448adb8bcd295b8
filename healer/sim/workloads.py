"""The workloads' behaviour, one simulated step for every pod at once.

Traffic per workload (daily and weekly shape, noise, bursts, surges), then per pod: CPU
that follows the requests it serves, memory that grows with load and leaks, latency
that climbs with utilisation and explodes past saturation (where requests are shed as
5xx errors), and the counters that ``/metrics`` exposes. Everything is a numpy
expression over all pods (``ContainerTable`` slots) or all workloads, because a Python
loop per pod cannot step 5,000 pods 5,760 times in a minute. The few things that must
touch API objects (a container killed by the OOM killer) are returned as slot indices
for the cluster to act on.

Random draws come from the cluster's generator in a fixed order (per step: traffic
noise and bursts per workload, memory noise per pod, then errors and latency noise
per serving pod), so a run is reproducible per seed.
"""

from __future__ import annotations

import math
from datetime import datetime

import numpy as np
from numpy.typing import NDArray
from scipy.special import ndtr

from healer.sim.containers import ContainerTable, Floats
from healer.sim.objects import K8s
from healer.sim.scenario import WorkloadSpec

Mask = NDArray[np.bool_]

# Per-request latency is log-normal with this shape; p99 = median * exp(2.326 * sigma).
LATENCY_SIGMA = 0.45
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_LOG_BUCKETS = np.log(np.asarray(LATENCY_BUCKETS_S))
# Past saturation, requests wait until the client's timeout.
TIMEOUT_S = 5.0
# Relative standard deviation of memory use from one scrape to the next.
MEMORY_NOISE = 0.004
# Relative standard deviation of p99 latency from one scrape to the next.
LATENCY_NOISE = 0.03
# A burst multiplies one scrape's traffic by this much.
BURST_FACTOR = 1.3


class WorkloadColumns:
    """The scenario's workloads as columns: their parameters, and what their Deployment
    says now (kept current by the cluster's informer handler)."""

    def __init__(self, specs: list[WorkloadSpec]) -> None:
        def column(values: list[float]) -> Floats:
            return np.asarray(values, dtype=np.float64)

        self.count = len(specs)
        traffic = [s.traffic for s in specs]
        res = [s.resources for s in specs]
        self.base_rps = column([t.base_rps for t in traffic])
        self.peak_factor = column([t.peak_factor for t in traffic])
        self.peak_hour_utc = column([t.peak_hour_utc for t in traffic])
        self.peak_width_h = column([t.peak_width_h for t in traffic])
        self.weekend_factor = column([t.weekend_factor for t in traffic])
        self.noise = column([t.noise for t in traffic])
        self.bursts_per_h = column([t.bursts_per_h for t in traffic])
        self.capacity_rps = column([s.capacity_rps or 0.0 for s in specs])
        self.cpu_request_cores = column([r.cpu_request_cores for r in res])
        self.cpu_limit_cores = column([r.cpu_limit_cores for r in res])
        self.cpu_seconds_per_request = column([r.cpu_seconds_per_request for r in res])
        self.memory_limit_bytes = column([float(r.memory_limit_bytes) for r in res])
        self.memory_base_bytes = column([float(r.memory_base_bytes) for r in res])
        self.exists = np.zeros(self.count, dtype=bool)
        self.replicas = np.zeros(self.count)
        self.available = np.zeros(self.count)

    def observe(self, index: int, dep: K8s | None) -> None:
        """Record what the workload's Deployment (StatefulSet, DaemonSet) says after a
        write (None: deleted); a DaemonSet's replicas are the nodes it should run on."""
        self.exists[index] = dep is not None
        if dep is None:
            return
        status = dep.get("status") or {}
        if dep.get("kind") == "DaemonSet":
            self.replicas[index] = status.get("desiredNumberScheduled", 0)
            self.available[index] = status.get("numberAvailable", 0)
            return
        self.replicas[index] = dep["spec"]["replicas"]
        self.available[index] = status.get("availableReplicas", 0)


def demand_rps(
    w: WorkloadColumns,
    now: datetime,
    *,
    surge: Floats,
    step_s: float,
    rng: np.random.Generator,
) -> Floats:
    """Requests per second each existing workload receives this step (0 for the others)."""
    hour = now.hour + now.minute / 60 + now.second / 3600
    apart = np.abs(hour - w.peak_hour_utc)
    distance = np.minimum(apart, 24 - apart)
    daily = 1.0 + (w.peak_factor - 1.0) * np.exp(-0.5 * (distance / w.peak_width_h) ** 2)
    daily *= 1.0 + (w.weekend_factor - 1.0) * weekend_weight(now)
    on = w.exists
    noise = np.exp(rng.normal(0.0, w.noise[on]))
    burst = np.where(
        rng.random(int(on.sum())) < w.bursts_per_h[on] * step_s / 3600.0, BURST_FACTOR, 1.0
    )
    demand = np.zeros(w.count)
    demand[on] = (w.base_rps * daily * surge)[on] * noise * burst
    return demand


def weekend_weight(now: datetime) -> float:
    """1 on Saturdays and Sundays, 0 on weekdays, ramping over 6 hours around midnight."""
    hours = now.weekday() * 24 + now.hour + now.minute / 60  # Monday 00:00 is 0
    ramp_h = 6.0
    start, end = 5 * 24.0, 7 * 24.0  # Saturday 00:00 .. Monday 00:00
    rising = (hours - (start - ramp_h / 2)) / ramp_h
    falling = ((end + ramp_h / 2) - hours) / ramp_h
    falling_early = (ramp_h / 2 - hours) / ramp_h  # Monday's first hours
    return float(max(0.0, min(1.0, rising, falling)) + max(0.0, min(1.0, falling_early)))


def load(
    t: ContainerTable,
    w: WorkloadColumns,
    running: Mask,
    demand: Floats,
    *,
    now_s: float,
    dt_s: float,
    rng: np.random.Generator,
) -> tuple[Floats, Floats]:
    """CPU and memory of the ``running`` pods over the step; returns (requests/s,
    utilisation), 0 for the others.

    Traffic is shared evenly by the workload's ready pods; a pod that is not ready
    serves nothing but still holds memory (and burns CPU when hogged). Columns are
    computed over every slot (the others masked out), which is cheaper than gathering
    and scattering the running ones.
    """
    n, f = t.size, t.f
    ws = np.where(running, t.workload[:n], 0)
    ready = running & t.b["key_ready"][:n]
    serving = np.bincount(ws[ready], minlength=w.count)
    rps = np.zeros(n)
    rps[ready] = demand[ws[ready]] / serving[ws[ready]]
    cpu_demand = rps * w.cpu_seconds_per_request[ws] * f["cpu_factor"][:n] + np.where(
        running, f["burn_cores"][:n], 0.0
    )
    limit = w.cpu_limit_cores[ws]
    rho = cpu_demand / limit
    f["cpu_seconds"][:n] += np.minimum(cpu_demand, limit) * dt_s
    leak_from = f["leak_from_s"][:n]
    with np.errstate(invalid="ignore"):
        leaking = (now_s > leak_from) & (leak_from != 0.0)
    leak = np.where(leaking, (now_s - leak_from) * f["leak_bytes_per_s"][:n], 0.0)
    noise = np.exp(rng.normal(0.0, MEMORY_NOISE, int(running.sum())))
    memory = w.memory_base_bytes[ws] * (1.0 + 0.08 * np.minimum(rho, 1.0))
    memory[running] *= noise
    memory += leak
    np.copyto(f["memory_bytes"][:n], memory, where=running)
    return rps, rho


def serve(
    t: ContainerTable,
    serving: Mask,
    *,
    n: Floats,
    rho: Floats,
    base_error: Floats,
    base_latency_s: Floats,
    rng: np.random.Generator,
) -> None:
    """Account ``n`` requests per slot at utilisation ``rho`` in the ``serving`` slots'
    counters (``n`` is 0 for the others, which therefore do not move)."""
    size, f = t.size, t.f
    with np.errstate(divide="ignore"):
        shed = np.where(rho > 1.0, np.maximum(0.0, 1.0 - 1.0 / rho), 0.0)
    error_p = np.minimum(1.0, base_error + (1 - base_error) * shed)
    trials = np.maximum(1, np.round(n[serving])).astype(np.int64)
    errors = np.zeros(size)
    errors[serving] = rng.binomial(trials, error_p[serving])
    f["requests_err"][:size] += errors
    f["requests_ok"][:size] += np.maximum(0.0, n - errors)
    busy = np.minimum(rho, 0.97)
    p99 = base_latency_s * (1.0 + 0.6 * busy / (1.0 - busy))
    with np.errstate(over="ignore"):
        p99 = np.minimum(TIMEOUT_S, np.where(rho <= 1.0, p99, p99 * rho**4))
    p99[serving] *= np.exp(rng.normal(0.0, LATENCY_NOISE, int(serving.sum())))
    median = p99 / math.exp(2.326 * LATENCY_SIGMA)
    with np.errstate(divide="ignore"):
        log_median = np.log(median)
    t.latency_buckets[:size] += n[:, None] * _below_buckets(log_median)
    f["latency_sum_s"][:size] += n * median * math.exp(LATENCY_SIGMA**2 / 2)
    np.copyto(f["last_p99_s"][:size], p99, where=serving)


# The share of a log-normal's requests under each bucket bound is Phi((log le - log
# median) / sigma). Phi of 5,000 pods x 11 buckets costs more than the rest of a step,
# so it is read from a table over log(median), linearly interpolated: steps of 0.002
# sigma keep the error under 2e-7 of the requests; medians from 0.1 µs to 1,000 s.
_GRID_STEP = 0.002
_GRID_FROM = math.log(1e-7) / LATENCY_SIGMA
_GRID = _GRID_FROM + _GRID_STEP * np.arange(
    int((math.log(1e3) / LATENCY_SIGMA - _GRID_FROM) / _GRID_STEP) + 2
)
_PHI = ndtr(_LOG_BUCKETS[None, :] / LATENCY_SIGMA - _GRID[:, None])


def _below_buckets(log_median: Floats) -> Floats:
    """(N, buckets): the share of requests at or under each bucket bound."""
    position = (log_median / LATENCY_SIGMA - _GRID_FROM) / _GRID_STEP
    np.clip(np.nan_to_num(position), 0, len(_GRID) - 2, out=position)
    index = position.astype(np.intp)
    low = _PHI[index]
    out: Floats = low + (_PHI[index + 1] - low) * (position - index)[:, None]
    return out


def signals(
    t: ContainerTable,
    w: WorkloadColumns,
    *,
    dt_s: float,
    sampled: NDArray[np.bool_],
    pods_out: list[tuple[NDArray[np.int64], Floats]] | None = None,
) -> Floats:
    """(W, 7) signals over the last step, as PromQL's rate() would see them.

    Counters are differenced per container against the marks of the previous sample,
    so pods that come and go during a rollout neither lose nor invent requests
    (Prometheus handles this per series). Workloads without a Deployment are NaN.
    ``pods_out``, when given, receives the sampled slots and their (P, 5) values of
    ``healer.types.POD_SIGNALS`` (CPU over request, memory over limit, restarts per
    minute in the step, error ratio, p99 latency), as the per-pod PromQL would see them.
    """
    n = t.size
    live = t.live() & (t.workload[:n] >= 0)
    slots = np.flatnonzero(live)
    slots = slots[w.exists[t.workload[slots]]]
    ws = t.workload[slots]
    f = t.f
    sums = []
    per_slot = []
    for counter, mark in (
        ("cpu_seconds", "mark_cpu"),
        ("requests_ok", "mark_ok"),
        ("requests_err", "mark_err"),
        ("restarts", "mark_restarts"),
    ):
        now = f[counter][slots]
        delta = np.maximum(0.0, now - f[mark][slots])
        f[mark][slots] = now
        per_slot.append(delta)
        sums.append(np.bincount(ws, delta, minlength=w.count))
    cpu, ok, err, restarts = sums
    cpu_d, ok_d, err_d, restarts_d = per_slot
    pods = np.bincount(ws, minlength=w.count).astype(np.float64)
    memory = np.bincount(ws, f["memory_bytes"][slots], minlength=w.count)
    p99 = f["last_p99_s"][slots]
    served = t.b["key_ready"][slots] & ~np.isnan(p99)
    p99_sum = np.bincount(ws[served], p99[served], minlength=w.count)
    p99_count = np.bincount(ws[served], minlength=w.count)
    requests = ok + err
    with np.errstate(invalid="ignore", divide="ignore"):
        row = np.stack(
            [
                cpu / dt_s / (w.cpu_request_cores * np.maximum(1.0, pods)),
                np.where(pods > 0, memory / pods / w.memory_limit_bytes, np.nan),
                restarts * 60.0 / dt_s,
                requests / dt_s,
                np.where(requests > 0, err / requests, np.nan),
                np.where(p99_count > 0, p99_sum / p99_count, np.nan),
                np.where(
                    w.replicas > 0, np.minimum(1.0, w.available / np.maximum(1, w.replicas)), 1.0
                ),
            ],
            axis=1,
        )
    row[~(w.exists & sampled)] = np.nan
    if pods_out is not None:
        keep = sampled[ws]
        per_pod = _per_pod(t, w, slots, ws, (cpu_d, ok_d, err_d, restarts_d), p99, served, dt_s)
        pods_out.append((slots[keep], per_pod[keep]))
    return row


def _per_pod(
    t: ContainerTable,
    w: WorkloadColumns,
    slots: NDArray[np.int64],
    ws: NDArray[np.int64],
    deltas: tuple[Floats, Floats, Floats, Floats],
    p99: Floats,
    served: Mask,
    dt_s: float,
) -> Floats:
    """(P, 5) per-pod values of the step, for the slots ``slots`` of workloads ``ws``."""
    cpu, ok, err, restarts = deltas
    requests = ok + err
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.stack(
            [
                cpu / dt_s / w.cpu_request_cores[ws],
                t.f["memory_bytes"][slots] / w.memory_limit_bytes[ws],
                restarts * 60.0 / dt_s,
                np.where(requests > 0, err / requests, np.nan),
                np.where(served, p99, np.nan),
            ],
            axis=1,
        )
