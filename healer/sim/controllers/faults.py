"""Fault injection with ground truth: the scenario's events, started when they fall due.

A memory leak or a runaway thread is put into the running containers (a pod fault,
``pod_leak`` or ``pod_slow``, into one pod's only); a traffic surge
is recorded for the workloads' step; a release or a crash loop changes the image
through the API, as a deploy pipeline's ``kubectl set image`` would. Windows (scrape
gaps, slow-downs) are not started: the parts they concern read them from the scenario
(``window_factors``, ``active``). Injected API failures (``ApiFaults``) are drawn per
request by the API server.

Decisions:

* API faults draw from a random stream of their own (the scenario's seed + 1), so that
  injecting them leaves the workloads' draws, and so a run's physics, alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from healer.sim.controllers.maintenance import NodeApi, continue_drains, start_drain
from healer.sim.scenario import NODE_EVENTS, ApiFault, Event, Scenario
from healer.sim.state import ClusterState, NodeTrouble, Now, Overload
from healer.sim.verbs import PatchesWorkloads


class WorkloadPatcher(NodeApi, PatchesWorkloads, Protocol):
    """The API verbs a release, a person's scale and a maintenance drain go through (the
    cluster's own)."""

    def patch_scale(
        self,
        namespace: str,
        name: str,
        patch: Any,
        content_type: str,
        *,
        dry_run: bool = False,
        resource: str = "deployments",
    ) -> Any: ...


class FaultInjector:
    """Starts each scenario event when the clock reaches it, and keeps the list of those
    started (the ground truth the benchmarks score against)."""

    def __init__(
        self,
        scenario: Scenario,
        api: WorkloadPatcher,
        git: Callable[[Event, Now], object] | None = None,
    ) -> None:
        self._api = api
        self._git = git
        """The deploy pipeline's commit, for a release that arrives through Git."""
        self._pending = sorted(scenario.events, key=lambda e: e.at_s)
        self.applied: list[tuple[float, Event]] = []

    def reconcile(self, state: ClusterState, now: Now) -> None:
        while self._pending and self._pending[0].at_s <= now.elapsed_s:
            event = self._pending.pop(0)
            self._apply(state, event, now)
            self.applied.append((now.unix_s, event))
        if state.faults.drains:
            continue_drains(self._api, state, now)

    def _apply(self, state: ClusterState, event: Event, now: Now) -> None:
        if event.kind in NODE_EVENTS:
            self._apply_to_nodes(state, event, now)
            return
        if event.workload == "*":
            return
        ns, name = event.workload.split("/", 1)
        if event.kind in ("memory_leak", "cpu_hog"):
            f = state.table.f
            workload = state.workload(ns, name)
            for pod in state.pods_of(workload) if workload is not None else []:
                if not state.running(pod):
                    continue  # waiting for a node: its container starts clean
                slot = state.slots[pod["metadata"]["uid"]]
                if event.kind == "cpu_hog":
                    f["burn_cores"][slot] = event.cores or 0.0
                else:
                    f["leak_from_s"][slot] = now.unix_s
                    f["leak_bytes_per_s"][slot] = event.bytes_per_s or 0.0
            if event.kind == "memory_leak" and event.recur_after_s:
                state.faults.leaks[event.workload] = event
        elif event.kind in ("pod_leak", "pod_slow"):
            hit = _pod_slot(state, ns, name, event.pod or 0)
            if hit is None:
                return
            if event.kind == "pod_leak":
                state.table.f["leak_from_s"][hit] = now.unix_s
                state.table.f["leak_bytes_per_s"][hit] = event.bytes_per_s or 0.0
            else:
                state.table.f["slow_factor"][hit] = event.factor or 1.0
        elif event.kind == "overload":
            state.faults.overloads[event.workload] = Overload(
                now.unix_s, event.factor or 2.0, event.ramp_s
            )
        elif event.kind in ("release", "crash_loop") and event.via == "git":
            assert self._git is not None, "a release through git needs the scenario's gitops"
            self._git(event, now)
        elif event.kind in ("release", "crash_loop"):
            # A deploy pipeline changing the image, as `kubectl set image` would.
            container = {"name": name, "image": event.image}
            patch = {"spec": {"template": {"spec": {"containers": [container]}}}}
            self._api.patch_workload(
                _resource(state, ns, name),
                ns,
                name,
                patch,
                "application/strategic-merge-patch+json",
            )
        elif event.kind == "manual_scale":
            # A person's `kubectl scale`: a merge patch of the scale subresource.
            self._api.patch_scale(
                ns,
                name,
                {"spec": {"replicas": event.replicas}},
                "application/merge-patch+json",
                resource=_resource(state, ns, name),
            )

    def _apply_to_nodes(self, state: ClusterState, event: Event, now: Now) -> None:
        """A node event, on each node it names: a trouble the node lifecycle follows,
        or a person's drain."""
        end_s = now.unix_s + event.duration_s if event.duration_s else float("inf")
        nodes = [
            (n["metadata"]["name"], n["metadata"].get("labels") or {})
            for n in state.store.list("nodes")
        ]
        for name in event.nodes_of(nodes):
            if event.kind == "node_drain":
                start_drain(self._api, state, name, end_s, now)
            else:
                state.faults.nodes[name] = NodeTrouble(
                    event.kind,
                    now.unix_s,
                    end_s,
                    unreachable=event.unreachable,
                    bytes_per_s=event.bytes_per_s or DEFAULT_LEAK_BYTES_PER_S,
                )


DEFAULT_LEAK_BYTES_PER_S = 2**20
"""node_memory_pressure without ``bytes_per_s``: the outside process grows 1 MiB/s,
so that a few hundred MiB freed by an eviction last a few minutes."""


def _pod_slot(state: ClusterState, namespace: str, name: str, index: int) -> int | None:
    """The slot of the workload's ``index``-th live pod by name; None when it has fewer."""
    workload = state.workload(namespace, name)
    pods = state.pods_of(workload) if workload is not None else []
    live = sorted(
        (p for p in pods if not p["metadata"].get("deletionTimestamp")),
        key=lambda p: str(p["metadata"]["name"]),
    )
    if index >= len(live):
        return None
    return int(state.slots[live[index]["metadata"]["uid"]])


def _resource(state: ClusterState, namespace: str, name: str) -> str:
    """The resource of the workload called ``name``: a Deployment unless another kind is."""
    for resource in ("statefulsets", "daemonsets"):
        if state.store.find(resource, namespace, name) is not None:
            return resource
    return "deployments"


class ApiFaults:
    """The API failures to inject, and the stream they are drawn from."""

    def __init__(self, faults: list[ApiFault], seed: int) -> None:
        self.faults = faults
        self._rng = np.random.default_rng(seed)

    def draw(self, verb: str, elapsed_s: float) -> tuple[int | None, float]:
        """For one request: the status to fail it with (or None) and the delay, seconds."""
        for fault in self.faults:
            active = fault.from_s <= elapsed_s < (fault.until_s or float("inf"))
            if not active or (fault.verbs and verb not in fault.verbs):
                continue
            draw = float(self._rng.random())
            for code, rate in (
                (500, fault.error_500),
                (409, fault.conflict_409),
                (429, fault.throttle_429),
                (403, fault.forbidden_403),
            ):
                if draw < rate:
                    return code, fault.latency_s
                draw -= rate
            return None, fault.latency_s
        return None, 0.0


def active(scenario: Scenario, kind: str, workload: str, elapsed_s: float) -> Event | None:
    """The window event of ``kind`` covering ``elapsed_s`` for ``workload``, if any."""
    for event in scenario.events:
        if (
            event.kind == kind
            and event.at_s <= elapsed_s < event.end_s
            and event.workload in ("*", workload)
        ):
            return event
    return None


def window_factors(
    state: ClusterState, kind: str, elapsed_s: float
) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Per workload: the factor of the ``kind`` window covering now (1 outside one, 0 for a
    window without a factor); the first window listed wins, as ``active``."""
    factors = np.full(state.columns.count, np.nan)
    for event in state.scenario.events:
        if event.kind != kind or not event.at_s <= elapsed_s < event.end_s:
            continue
        value = event.factor if event.factor is not None else 0.0
        if event.workload == "*":
            factors[np.isnan(factors)] = value
        else:
            index = state.workload_index.get(event.workload)
            if index is not None and np.isnan(factors[index]):
                factors[index] = value
    factors[np.isnan(factors)] = 1.0
    return factors


def surge(state: ClusterState, now: Now) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Per workload: the multiplier of its demand from a surge in progress (1 without)."""
    multipliers = np.ones(state.columns.count)
    for key, overload in state.faults.overloads.items():
        multipliers[state.workload_index[key]] = overload.multiplier(now.unix_s)
    return multipliers
