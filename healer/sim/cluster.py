"""The simulated cluster: Kubernetes objects, their controllers, and the workloads' behaviour.

What it models, and why each piece is there:

* The Deployment and ReplicaSet controllers, as Kubernetes runs them: a pod template
  change makes a new ReplicaSet with the next ``deployment.kubernetes.io/revision`` (a
  return to an earlier template reuses that ReplicaSet with a new number); rolling
  updates progress one scrape step at a time within ``maxSurge`` and ``maxUnavailable``;
  ``status.observedGeneration`` catches up on the next controller pass, not at once.
* Pods that start, become ready after a delay, and are OOM-killed when their memory
  reaches the limit (``restartCount`` and ``lastState.terminated.reason``).
* Traffic with a daily peak, noise and short bursts; CPU that follows traffic; latency
  that climbs with utilisation and explodes past saturation, where requests are shed as
  5xx errors. Behaviour comes from the pod's image, so a bad release is a property of
  the pod template, and rolling back the template fixes it, as in a real cluster.
* Faults with ground truth: a memory leak in the running containers, a traffic surge,
  a release to another image.

Everything moves only when ``advance`` is called; all state is guarded by ``lock``,
because the API server thread reads and writes while the driver advances time.

Built to run a day of 1,000 Deployments x 5 pods in well under a minute
(bench/sim_scale.py), so a step costs almost nothing when nothing happens: the
controllers work from queues of the objects that changed (fed by the store's write
listener, as informers feed real controllers), an unchanged status is not written (no
new ``resourceVersion``), the containers' runtime state is numpy columns stepped for
every pod at once (``healer.sim.workloads``), and ``/metrics`` text is built only when
scraped.
"""

from __future__ import annotations

import hashlib
import math
import threading
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from healer.sim import hpa, workloads
from healer.sim.clock import VirtualClock
from healer.sim.containers import Container, ContainerTable
from healer.sim.disruption import budget_status, check_eviction
from healer.sim.kinds import BY_RESOURCE, INITIAL_STATUS, default_and_validate
from healer.sim.objects import (
    ApiError,
    K8s,
    ObjectStore,
    apply_patch,
    check_resource_version,
    copy_json,
    field_selector_matches,
    label_selector_matches,
    rfc3339,
    selector_matches,
    selector_string,
    template_hash,
)
from healer.sim.scenario import ApiFault, Event, Scenario, WorkloadSpec
from healer.types import Signal, WorkloadRef

SIGNALS = tuple(Signal)
REVISION = "deployment.kubernetes.io/revision"
# A container takes this long from start to passing its readiness probe.
READINESS_DELAY_S = 10.0
LATENCY_BUCKETS_S = workloads.LATENCY_BUCKETS_S
# A crashing container exits this long after it starts.
CRASH_AFTER_S = 5.0
# Restarts are sparse events: the signal averages them over this window, as the PromQL
# ``rate(kube_pod_container_status_restarts_total[10m])`` does (collect/signals.py).
RESTARTS_WINDOW_S = 600.0


@dataclass
class Overload:
    start_s: float
    factor: float
    ramp_s: float

    def multiplier(self, t_s: float) -> float:
        if t_s < self.start_s:
            return 1.0
        progress = min(1.0, (t_s - self.start_s) / self.ramp_s) if self.ramp_s > 0 else 1.0
        return 1.0 + (self.factor - 1.0) * progress


class Cluster:
    """A simulated Kubernetes cluster running a scenario."""

    def __init__(self, scenario: Scenario, clock: VirtualClock | None = None) -> None:
        self.scenario = scenario
        self.clock = clock or VirtualClock(scenario.start)
        self.lock = threading.RLock()
        self._rng = np.random.default_rng(scenario.seed)
        self.store = ObjectStore(uid=self._new_uid)
        specs = scenario.expanded()
        self._specs = {f"{w.namespace}/{w.name}": w for w in specs}
        self._table = ContainerTable(len(LATENCY_BUCKETS_S))
        self._slots: dict[str, int] = {}  # pod uid -> slot in the table
        self._overloads: dict[str, Overload] = {}
        self._leaks: dict[str, Event] = {}  # recurring leaks, by workload
        self._hashes: dict[str, tuple[int, str]] = {}  # Deployment uid -> (generation, hash)
        self.api_faults: list[ApiFault] = list(scenario.api_faults)
        # A stream of its own, so that injecting API faults leaves the workloads' draws alone.
        self._fault_rng = np.random.default_rng(scenario.seed + 1)
        self._pending = sorted(scenario.events, key=lambda e: e.at_s)
        self.timestamps: list[float] = []
        self.samples: list[np.ndarray[Any, np.dtype[np.float64]]] = []  # (W, S) per step
        self.workloads = tuple(WorkloadRef(w.namespace, "Deployment", w.name) for w in specs)
        self.applied_events: list[tuple[float, Event]] = []
        self._hpa_history: dict[str, hpa.History] = {}  # by HPA uid
        # Restarts per workload of each step in the restarts window, newest last.
        self._restart_steps: deque[np.ndarray[Any, np.dtype[np.float64]]] = deque(
            maxlen=max(1, round(RESTARTS_WINDOW_S / scenario.step_s))
        )
        self._workload_index = {key: i for i, key in enumerate(self._specs)}
        self._w = workloads.WorkloadColumns(list(self._specs.values()))
        # Work queues, as informers feed controllers: what changed since the last pass.
        self._dirty_deployments: set[tuple[str, str]] = set()
        self._dirty_statuses: set[tuple[str, str]] = set()
        self._dirty_replicasets: set[tuple[str, str]] = set()
        self._deleted_owners: list[str] = []  # uids whose dependents the GC must delete
        self.store.listeners.append(self._on_change)
        with self.lock:
            for spec in specs:
                self.create_deployment(spec.namespace, _deployment_manifest(spec))
            # The cluster was running before the scenario starts: its pods are up and ready.
            for _ in range(3):
                self._reconcile()
                self._age_pods(3600.0)

    # ---- time --------------------------------------------------------------------------

    def advance(self, seconds: float) -> None:
        """Move simulated time forward by whole scrape steps, sampling metrics each step."""
        steps = max(1, round(seconds / self.scenario.step_s))
        for _ in range(steps):
            with self.lock:
                self.clock.advance(self.scenario.step_s)
                self._apply_due_events()
                self._reconcile()
                self._run_workloads(self.scenario.step_s)
                self._autoscale()
                # Pods changed readiness while serving: the controller's status catches up.
                self._sync_statuses()
                self._update_budgets()
                self._record_sample()

    @property
    def elapsed_s(self) -> float:
        return self.clock.elapsed_s

    # ---- API-level operations (used by the API server) ---------------------------------

    def list_objects(
        self,
        resource: str,
        namespace: str | None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[K8s]:
        with self.lock:
            return [
                copy_json(o)
                for o in self.store.list(resource, namespace)
                if label_selector_matches(label_selector, o["metadata"].get("labels") or {})
                and field_selector_matches(field_selector, o, BY_RESOURCE[resource].fields)
            ]

    def get_object(self, resource: str, namespace: str, name: str) -> K8s:
        with self.lock:
            return copy_json(self.store.get(resource, namespace, name))

    def create_deployment(self, namespace: str, body: K8s, *, dry_run: bool = False) -> K8s:
        with self.lock:
            obj = copy_json(body)
            obj.setdefault("apiVersion", "apps/v1")
            obj.setdefault("kind", "Deployment")
            obj.setdefault("metadata", {})["namespace"] = namespace
            _default_deployment(obj)
            _validate_deployment(obj)
            obj["status"] = {"observedGeneration": 0}
            if dry_run:
                return obj
            return copy_json(self.store.create("deployments", obj, now=self.clock.now()))

    def replace_deployment(
        self, namespace: str, name: str, body: K8s, *, dry_run: bool = False
    ) -> K8s:
        with self.lock:
            current = self.store.get("deployments", namespace, name)
            check_resource_version(current, body)
            return self._write_deployment(current, copy_json(body), dry_run=dry_run)

    def patch_deployment(
        self, namespace: str, name: str, patch: Any, content_type: str, *, dry_run: bool = False
    ) -> K8s:
        with self.lock:
            current = self.store.get("deployments", namespace, name)
            patched = apply_patch(copy_json(current), patch, content_type)
            check_resource_version(current, patched)
            return self._write_deployment(current, patched, dry_run=dry_run)

    def delete_object(
        self, resource: str, namespace: str, name: str, *, dry_run: bool = False
    ) -> K8s:
        """Delete at once (no graceful termination); owned objects go on the next pass."""
        with self.lock:
            if dry_run:
                return copy_json(self.store.get(resource, namespace, name))
            obj = self.store.delete(resource, namespace, name)
            if resource == "pods":
                slot = self._slots.pop(obj["metadata"]["uid"], None)
                if slot is not None:
                    self._table.free(slot)
            return copy_json(obj)

    def create_object(self, resource: str, namespace: str, body: K8s, *, dry_run: bool) -> K8s:
        """Create a plain object (HPA, PodDisruptionBudget, Lease) after defaults and checks."""
        kind = BY_RESOURCE[resource]
        with self.lock:
            obj = copy_json(body)
            obj["apiVersion"], obj["kind"] = kind.group_version, kind.kind
            meta = obj.setdefault("metadata", {})
            if not isinstance(meta, dict):
                raise ApiError(400, "BadRequest", "metadata must be an object")
            meta["namespace"] = namespace
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = str(meta["generateName"]) + self._suffix()
            for key in ("uid", "resourceVersion", "creationTimestamp", "generation"):
                meta.pop(key, None)
            default_and_validate(kind, obj)
            obj.pop("status", None)
            if resource in INITIAL_STATUS:
                obj["status"] = copy_json(INITIAL_STATUS[resource])
            if self.store.find(resource, namespace, meta["name"]) is not None:
                raise ApiError(
                    409,
                    "AlreadyExists",
                    f'{kind.qualified} "{meta["name"]}" already exists',
                    {"name": meta["name"], "group": kind.group, "kind": resource},
                )
            if dry_run:
                meta["uid"], meta["creationTimestamp"] = self._new_uid(), rfc3339(self.clock.now())
                meta["generation"] = 1
                return obj
            created = self.store.create(resource, obj, now=self.clock.now())
            if resource == "poddisruptionbudgets":
                self._update_budget(created)
            return copy_json(created)

    def replace_object(
        self, resource: str, namespace: str, name: str, body: K8s, *, dry_run: bool
    ) -> K8s:
        with self.lock:
            current = self.store.get(resource, namespace, name)
            check_resource_version(current, body)
            return self._write_plain(resource, current, copy_json(body), dry_run=dry_run)

    def patch_object(
        self,
        resource: str,
        namespace: str,
        name: str,
        patch: Any,
        content_type: str,
        *,
        dry_run: bool,
    ) -> K8s:
        with self.lock:
            current = self.store.get(resource, namespace, name)
            patched = apply_patch(copy_json(current), patch, content_type)
            check_resource_version(current, patched)
            return self._write_plain(resource, current, patched, dry_run=dry_run)

    def evict_pod(self, namespace: str, name: str, body: K8s, *, dry_run: bool) -> K8s:
        """The pods/eviction subresource: delete the pod unless a disruption budget forbids."""
        with self.lock:
            pod = self.store.get("pods", namespace, name)
            named = (body.get("metadata") or {}).get("name")
            if named not in (None, name):
                raise ApiError(400, "BadRequest", "name in URL does not match name in Eviction")
            labels = pod["metadata"].get("labels") or {}
            budgets = [
                b
                for b in self.store.list("poddisruptionbudgets", namespace)
                if selector_matches(b["spec"].get("selector"), labels)
            ]
            for budget in budgets:
                self._update_budget(budget)  # decide on the pods as they are now
            check_eviction(pod, budgets, pod_ready=_pod_ready(pod))
            if not dry_run:
                self.delete_object("pods", namespace, name)
                for budget in budgets:
                    self._update_budget(budget)
            return {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "code": 201,
            }

    def get_scale(self, namespace: str, name: str) -> K8s:
        with self.lock:
            return _scale_of(self.store.get("deployments", namespace, name))

    def patch_scale(
        self, namespace: str, name: str, patch: Any, content_type: str, *, dry_run: bool = False
    ) -> K8s:
        with self.lock:
            current = self.store.get("deployments", namespace, name)
            scale = apply_patch(_scale_of(current), patch, content_type)
            return self._apply_scale(current, scale, dry_run=dry_run)

    def replace_scale(self, namespace: str, name: str, body: K8s, *, dry_run: bool = False) -> K8s:
        with self.lock:
            current = self.store.get("deployments", namespace, name)
            return self._apply_scale(current, body, dry_run=dry_run)

    def create_event(self, namespace: str, body: K8s, *, dry_run: bool = False) -> K8s:
        with self.lock:
            obj = copy_json(body)
            obj.setdefault("apiVersion", "v1")
            obj.setdefault("kind", "Event")
            meta = obj.setdefault("metadata", {})
            meta["namespace"] = namespace
            if not meta.get("name"):
                if not meta.get("generateName"):
                    raise ApiError(422, "Invalid", "Event: metadata.name: Required value")
                meta["name"] = meta["generateName"] + self._suffix()
            if not isinstance(obj.get("involvedObject"), dict):
                raise ApiError(422, "Invalid", "Event: involvedObject: Required value")
            if dry_run:
                return obj
            return copy_json(self.store.create("events", obj, now=self.clock.now()))

    def pods_of(self, namespace: str, name: str) -> list[K8s]:
        with self.lock:
            dep = self.store.get("deployments", namespace, name)
            return [
                copy_json(p)
                for rs in self._owned("replicasets", dep)
                for p in self._owned("pods", rs)
            ]

    def container(self, pod: K8s) -> Container:
        return Container(self._table, self._slots[pod["metadata"]["uid"]])

    # ---- writes ------------------------------------------------------------------------

    def _write_deployment(self, current: K8s, new: K8s, *, dry_run: bool) -> K8s:
        meta = new.setdefault("metadata", {})
        for key in ("name", "namespace", "uid", "creationTimestamp", "generation"):
            meta[key] = current["metadata"][key]
        new["status"] = copy_json(current.get("status", {}))
        _default_deployment(new)
        _validate_deployment(new)
        if new["spec"]["selector"] != current["spec"]["selector"]:
            raise ApiError(
                422,
                "Invalid",
                f'Deployment.apps "{meta["name"]}" is invalid: '
                "spec.selector: Invalid value: field is immutable",
            )
        spec_changed = new["spec"] != current["spec"]
        if dry_run:
            if spec_changed:
                meta["generation"] = current["metadata"]["generation"] + 1
            return new
        return copy_json(self.store.update("deployments", new, spec_changed=spec_changed))

    def _write_plain(self, resource: str, current: K8s, new: K8s, *, dry_run: bool) -> K8s:
        """Replace a plain object; identity fields and status are the server's, not the body's."""
        kind = BY_RESOURCE[resource]
        meta = new.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise ApiError(400, "BadRequest", "metadata must be an object")
        for key in ("name", "namespace", "uid", "creationTimestamp", "generation"):
            meta[key] = current["metadata"][key]
        new["apiVersion"], new["kind"] = kind.group_version, kind.kind
        default_and_validate(kind, new)
        if "status" in current:
            new["status"] = copy_json(current["status"])
        spec_changed = new.get("spec") != current.get("spec")
        if dry_run:
            if spec_changed:
                meta["generation"] = current["metadata"]["generation"] + 1
            return new
        return copy_json(self.store.update(resource, new, spec_changed=spec_changed))

    def _apply_scale(self, current: K8s, scale: K8s, *, dry_run: bool) -> K8s:
        check_resource_version(current, scale)
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise ApiError(
                422,
                "Invalid",
                f'Scale.autoscaling "{current["metadata"]["name"]}" '
                f"is invalid: spec.replicas: Invalid value: {replicas!r}: must be "
                "greater than or equal to 0",
            )
        new = copy_json(current)
        new["spec"]["replicas"] = replicas
        written = self._write_deployment(current, new, dry_run=dry_run)
        return _scale_of(written)

    # ---- controllers -------------------------------------------------------------------

    def _reconcile(self) -> None:
        """One pass of the controllers over the objects that changed since their last pass.

        An object nothing changed since its controller last saw it would come out of the
        pass as it went in, so only the queued ones are visited, in name order; what a
        pass writes queues its owner (and itself) for the next one.
        """
        self._collect_garbage()
        for key in _drain(self._dirty_deployments):
            dep = self.store.find("deployments", *key)
            if dep is not None:
                self._reconcile_deployment(dep)
        for key in _drain(self._dirty_replicasets):
            rs = self.store.find("replicasets", *key)
            if rs is not None:
                self._reconcile_replicaset(rs)
        # The kubelet of pods outside the scenario's workloads (created through the API).
        self._refresh_pods(self._table.live() & (self._table.workload[: self._table.size] < 0))
        self._sync_statuses()

    def _sync_statuses(self) -> None:
        for key in _drain(self._dirty_statuses):
            dep = self.store.find("deployments", *key)
            if dep is not None:
                self._update_deployment_status(dep)

    def _on_change(self, change: str, resource: str, obj: K8s) -> None:
        """The informers' event handler: queue what the change concerns.

        A pod's change concerns its ReplicaSet and that one's Deployment; a ReplicaSet's
        change itself and its Deployment; a deleted owner its dependents (the GC's).
        """
        meta = obj["metadata"]
        ns, name = meta["namespace"], meta["name"]
        if resource not in ("deployments", "replicasets", "pods"):
            return
        if change == "DELETED" and resource != "pods":
            self._deleted_owners.append(meta["uid"])
        if resource == "deployments":
            index = self._workload_index.get(f"{ns}/{name}")
            if index is not None:
                self._w.observe(index, None if change == "DELETED" else obj)
        else:
            replicaset = _owner_name(obj) if resource == "pods" else name
            self._dirty_replicasets.add((ns, replicaset))
            name = replicaset.rsplit("-", 1)[0] if resource == "pods" else _owner_name(obj)
        self._dirty_deployments.add((ns, name))
        self._dirty_statuses.add((ns, name))

    def _collect_garbage(self) -> None:
        """Background cascading deletion: ReplicaSets, then pods, whose owner is gone."""
        while self._deleted_owners:
            uid = self._deleted_owners.pop(0)
            for resource in ("replicasets", "pods"):
                for obj in self.store.owned(resource, uid):
                    meta = obj["metadata"]
                    self.delete_object(resource, meta["namespace"], meta["name"])

    def _update_budgets(self) -> None:
        for pdb in self.store.list("poddisruptionbudgets"):
            self._update_budget(pdb)

    def _update_budget(self, pdb: K8s) -> None:
        """The disruption controller's pass over one budget (see healer.sim.disruption)."""
        ns = pdb["metadata"]["namespace"]
        selector = pdb["spec"].get("selector")
        pods = [
            p
            for p in self.store.list("pods", ns)
            if selector_matches(selector, p["metadata"].get("labels") or {})
        ]
        controllers = {_deployment_of(p) for p in pods if p["metadata"].get("ownerReferences")}
        replicas = sum(
            d["spec"]["replicas"]
            for d in (self.store.find("deployments", ns, name) for name in controllers)
            if d is not None
        )
        status = budget_status(
            pdb,
            healthy=sum(1 for p in pods if _pod_ready(p)),
            matched=len(pods),
            controller_replicas=replicas,
            now=rfc3339(self.clock.now()),
        )
        if pdb.get("status") != status:
            pdb["status"] = status
            self.store.update("poddisruptionbudgets", pdb, spec_changed=False)

    def _autoscale(self) -> None:
        """The HPA controller's sync of every HorizontalPodAutoscaler (see healer.sim.hpa)."""
        now_s = self.clock.now_s()
        t, n = self._table, self._table.size
        live = t.live()
        mark_t, cpu = t.f["hpa_t"][:n], t.f["cpu_seconds"][:n]
        measured = live & ~np.isnan(mark_t) & (now_s > mark_t)
        with np.errstate(invalid="ignore", divide="ignore"):
            usage = np.where(measured, (cpu - t.f["hpa_cpu"][:n]) / (now_s - mark_t), np.nan)
        mark_t[live] = now_s
        t.f["hpa_cpu"][:n][live] = cpu[live]
        for autoscaler in self.store.list("horizontalpodautoscalers"):
            self._sync_hpa(autoscaler, usage, now_s)

    def _usage(self, usage: np.ndarray[Any, np.dtype[np.float64]], pod: K8s) -> float | None:
        slot = self._slots[pod["metadata"]["uid"]]
        value = float(usage[slot]) if slot < len(usage) else np.nan
        return None if np.isnan(value) else value

    def _sync_hpa(
        self, autoscaler: K8s, usage: np.ndarray[Any, np.dtype[np.float64]], now_s: float
    ) -> None:
        spec, meta = autoscaler["spec"], autoscaler["metadata"]
        ref = spec["scaleTargetRef"]
        dep = self.store.find("deployments", meta["namespace"], ref["name"])
        now = rfc3339(self.clock.now())
        if dep is None or ref.get("kind") != "Deployment":
            self._write_hpa_status(autoscaler, None, None, None, now)
            return
        pods = [
            hpa.PodUsage(
                ready=_pod_ready(p),
                cpu_cores=self._usage(usage, p),
                request_cores=sum(
                    hpa.cpu_cores(((c.get("resources") or {}).get("requests") or {}).get("cpu"))
                    for c in p["spec"]["containers"]
                ),
            )
            for p in self._pods_of(dep)
        ]
        target = hpa.target_utilisation_pct(spec)
        current = dep["spec"]["replicas"]
        window = ((spec.get("behavior") or {}).get("scaleDown") or {}).get(
            "stabilizationWindowSeconds", hpa.DOWNSCALE_WINDOW_S
        )
        advice = hpa.recommend(
            current=current,
            pods=pods if target is not None else [],
            target_pct=target or 80,
            min_replicas=spec.get("minReplicas", 1),
            max_replicas=spec["maxReplicas"],
            now_s=now_s,
            history=self._hpa_history.setdefault(meta["uid"], hpa.History()),
            window_s=float(window),
        )
        if advice.replicas != current and current > 0:
            dep["spec"]["replicas"] = advice.replicas
            self.store.update("deployments", dep, spec_changed=True)
            autoscaler.setdefault("status", {})["lastScaleTime"] = now
        self._write_hpa_status(autoscaler, dep, advice, current, now)

    def _write_hpa_status(
        self,
        autoscaler: K8s,
        dep: K8s | None,
        advice: hpa.Recommendation | None,
        current: int | None,
        now: str,
    ) -> None:
        old = autoscaler.get("status") or {}
        metric_ok = advice is not None and advice.utilisation_pct is not None
        conditions = [
            ("AbleToScale", dep is not None, "SucceededRescale" if dep else "FailedGetScale"),
            (
                "ScalingActive",
                metric_ok,
                "ValidMetricFound" if metric_ok else "FailedGetResourceMetric",
            ),
            (
                "ScalingLimited",
                bool(advice and advice.limited),
                (advice.limited if advice and advice.limited else "DesiredWithinRange"),
            ),
        ]
        status: K8s = {
            "observedGeneration": autoscaler["metadata"]["generation"],
            "currentReplicas": (dep or {}).get("status", {}).get("replicas", current or 0),
            "desiredReplicas": advice.replicas if advice else 0,
            "conditions": [
                _hpa_condition(old, kind, ok, reason, now) for kind, ok, reason in conditions
            ],
        }
        if old.get("lastScaleTime"):
            status["lastScaleTime"] = old["lastScaleTime"]
        if advice is not None and advice.utilisation_pct is not None:
            status["currentMetrics"] = [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "current": {"averageUtilization": advice.utilisation_pct},
                    },
                }
            ]
        if old != status:
            autoscaler["status"] = status
            self.store.update("horizontalpodautoscalers", autoscaler, spec_changed=False)

    def _template_hash(self, dep: K8s) -> str:
        """The pod-template-hash of the Deployment's template, recomputed on spec changes
        only (every template change moves ``metadata.generation``)."""
        meta = dep["metadata"]
        cached = self._hashes.get(meta["uid"])
        if cached is None or cached[0] != meta["generation"]:
            cached = (meta["generation"], template_hash(dep["spec"]["template"]))
            self._hashes[meta["uid"]] = cached
        return cached[1]

    def _owned(self, resource: str, owner: K8s) -> list[K8s]:
        return self.store.owned(resource, owner["metadata"]["uid"])

    def _reconcile_deployment(self, dep: K8s) -> None:
        sets = self._owned("replicasets", dep)
        if dep["spec"].get("paused") and sets:
            self._scale_paused(dep, sets)
            return
        new_rs = self._current_replicaset(dep, sets)
        revision = str(_revision(new_rs))
        annotations = dep["metadata"].setdefault("annotations", {})
        if annotations.get(REVISION) != revision:
            annotations[REVISION] = revision  # the controller stamps the Deployment too
            self.store.update("deployments", dep, spec_changed=False)
        old = [rs for rs in sets if rs is not new_rs]
        replicas = dep["spec"]["replicas"]
        if not any(rs["spec"]["replicas"] for rs in old):
            self._set_rs_replicas(new_rs, replicas)
        else:
            self._roll(dep, new_rs, old, replicas)
        limit = dep["spec"].get("revisionHistoryLimit", 10)
        idle = sorted(
            (rs for rs in old if rs["spec"]["replicas"] == 0 and not self._owned("pods", rs)),
            key=_revision,
        )
        for rs in idle[: max(0, len(idle) - limit)]:
            self.store.delete("replicasets", rs["metadata"]["namespace"], rs["metadata"]["name"])

    def _scale_paused(self, dep: K8s, sets: list[K8s]) -> None:
        """A paused Deployment makes no new ReplicaSet and rolls nothing, but still scales.

        As the controller does, the new replica count is given to the ReplicaSets that
        run pods, the newest absorbing the difference.
        """
        active = sorted((rs for rs in sets if rs["spec"]["replicas"] > 0), key=_revision)
        if not active:
            active = [max(sets, key=_revision)]
        extra = dep["spec"]["replicas"] - sum(rs["spec"]["replicas"] for rs in active)
        newest = active[-1]
        self._set_rs_replicas(newest, max(0, newest["spec"]["replicas"] + extra))

    def _current_replicaset(self, dep: K8s, sets: list[K8s]) -> K8s:
        """The ReplicaSet of the current template, created or renumbered if need be."""
        pod_hash = self._template_hash(dep)
        top = max((_revision(rs) for rs in sets), default=0)
        match = next(
            (rs for rs in sets if rs["metadata"]["labels"].get("pod-template-hash") == pod_hash),
            None,
        )
        if match is None:
            return self._create_replicaset(dep, pod_hash, top + 1)
        if _revision(match) != top:
            match["metadata"]["annotations"][REVISION] = str(top + 1)
            self.store.update("replicasets", match, spec_changed=False)
        return match

    def _create_replicaset(self, dep: K8s, pod_hash: str, revision: int) -> K8s:
        meta = dep["metadata"]
        template = copy_json(dep["spec"]["template"])
        template["metadata"].setdefault("labels", {})["pod-template-hash"] = pod_hash
        selector = copy_json(dep["spec"]["selector"])
        selector.setdefault("matchLabels", {})["pod-template-hash"] = pod_hash
        rs = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"{meta['name']}-{pod_hash}",
                "namespace": meta["namespace"],
                "labels": dict(template["metadata"]["labels"]),
                "annotations": {
                    # The controller copies the Deployment's annotations (change-cause, ...).
                    **{
                        k: v
                        for k, v in (meta.get("annotations") or {}).items()
                        if k not in _NOT_COPIED
                    },
                    REVISION: str(revision),
                    "deployment.kubernetes.io/desired-replicas": str(dep["spec"]["replicas"]),
                },
                "ownerReferences": [_owner_ref(dep)],
            },
            "spec": {"replicas": 0, "selector": selector, "template": template},
            "status": {"replicas": 0, "readyReplicas": 0, "availableReplicas": 0},
        }
        return self.store.create("replicasets", rs, now=self.clock.now())

    def _roll(self, dep: K8s, new_rs: K8s, old: list[K8s], replicas: int) -> None:
        """One pass of the rolling update, within maxSurge and maxUnavailable."""
        strategy = dep["spec"]["strategy"].get("rollingUpdate", {})
        surge = _resolve(strategy.get("maxSurge", "25%"), replicas, round_up=True)
        unavailable = _resolve(strategy.get("maxUnavailable", "25%"), replicas, round_up=False)
        if surge == 0 and unavailable == 0:
            unavailable = 1  # the API server rejects both zero; behave as if one were one
        everything = [new_rs, *old]
        total = sum(rs["spec"]["replicas"] for rs in everything)
        room = replicas + surge - total
        if new_rs["spec"]["replicas"] < replicas and room > 0:
            self._set_rs_replicas(new_rs, min(replicas, new_rs["spec"]["replicas"] + room))
        ready = sum(self._ready_pods(rs) for rs in everything)
        removable = ready - (replicas - unavailable)
        for rs in sorted(old, key=_revision):
            unready = rs["spec"]["replicas"] - self._ready_pods(rs)
            cut = min(rs["spec"]["replicas"], max(0, removable) + max(0, unready))
            if cut:
                self._set_rs_replicas(rs, rs["spec"]["replicas"] - cut)
                removable -= max(0, cut - max(0, unready))

    def _set_rs_replicas(self, rs: K8s, replicas: int) -> None:
        if rs["spec"]["replicas"] != replicas:
            rs["spec"]["replicas"] = replicas
            self.store.update("replicasets", rs, spec_changed=True)

    def _ready_pods(self, rs: K8s) -> int:
        return sum(1 for p in self._owned("pods", rs) if _pod_ready(p))

    def _reconcile_replicaset(self, rs: K8s) -> None:
        pods = self._owned("pods", rs)
        want = rs["spec"]["replicas"]
        for _ in range(want - len(pods)):
            self._create_pod(rs)
        if len(pods) > want:
            # Like the ReplicaSet controller: unready pods go first, then the youngest.
            doomed = sorted(
                pods,
                key=lambda p: (_pod_ready(p), -self.container(p).started_s),
            )
            for pod in doomed[: len(pods) - want]:
                self.delete_object("pods", pod["metadata"]["namespace"], pod["metadata"]["name"])
        pods = self._owned("pods", rs)
        ready = sum(1 for p in pods if _pod_ready(p))
        status = {
            "replicas": len(pods),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "observedGeneration": rs["metadata"]["generation"],
        }
        if rs.get("status") != status:
            rs["status"] = status
            self.store.update("replicasets", rs, spec_changed=False)

    def _create_pod(self, rs: K8s) -> None:
        template = copy_json(rs["spec"]["template"])
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{rs['metadata']['name']}-{self._suffix()}",
                "namespace": rs["metadata"]["namespace"],
                "labels": dict(template["metadata"].get("labels", {})),
                "annotations": dict(template["metadata"].get("annotations", {})),
                "ownerReferences": [_owner_ref(rs)],
            },
            "spec": template["spec"],
            "status": {"phase": "Pending", "conditions": [], "containerStatuses": []},
        }
        created = self.store.create("pods", pod, now=self.clock.now())
        owner = f"{rs['metadata']['namespace']}/{_owner_name(rs)}"
        slot = self._table.allocate(created, self._workload_index.get(owner, -1))
        self._slots[created["metadata"]["uid"]] = slot
        behaviour = self.scenario.behaviour(template["spec"]["containers"][0]["image"])
        f = self._table.f
        f["started_s"][slot] = self.clock.now_s()
        f["error_ratio"][slot] = behaviour.error_ratio
        f["latency_s"][slot] = behaviour.latency_s
        f["cpu_factor"][slot] = behaviour.cpu_factor
        self._table.b["crash_on_start"][slot] = behaviour.crash_on_start
        self._start_container(owner, slot)
        self._refresh_pod_status(created)

    def _update_deployment_status(self, dep: K8s) -> None:
        sets = self._owned("replicasets", dep)
        pod_hash = self._template_hash(dep)
        pods = [p for rs in sets for p in self._owned("pods", rs)]
        updated = [p for p in pods if p["metadata"]["labels"].get("pod-template-hash") == pod_hash]
        ready = sum(1 for p in pods if _pod_ready(p))
        replicas = dep["spec"]["replicas"]
        complete = len(updated) == replicas == len(pods) and ready >= replicas
        max_unavailable = _resolve(
            dep["spec"]["strategy"].get("rollingUpdate", {}).get("maxUnavailable", "25%"),
            replicas,
            round_up=False,
        )
        now = rfc3339(self.clock.now())
        status = {
            "observedGeneration": dep["metadata"]["generation"],
            "replicas": len(pods),
            "updatedReplicas": len(updated),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "unavailableReplicas": max(0, replicas - ready),
            "conditions": [
                _condition(
                    dep,
                    "Available",
                    ready >= replicas - max_unavailable,
                    "MinimumReplicasAvailable",
                    now,
                ),
                _condition(
                    dep,
                    "Progressing",
                    True,
                    "NewReplicaSetAvailable" if complete else "ReplicaSetUpdated",
                    now,
                ),
            ],
        }
        if dep.get("status") != status:
            dep["status"] = status
            self.store.update("deployments", dep, spec_changed=False)

    # ---- pods and workload behaviour ---------------------------------------------------

    def _age_pods(self, seconds: float) -> None:
        t = self._table
        t.f["started_s"][: t.size][t.live()] -= seconds
        for pod in self.store.list("pods"):
            self._refresh_pod_status(pod)

    def _refresh_pods(self, mask: np.ndarray[Any, np.dtype[np.bool_]]) -> None:
        """Refresh the status of the pods in ``mask`` whose status would change.

        What a status is built from (readiness, started, start time, restarts) is
        compared for all pods at once; only the few that differ are rebuilt, usually
        pods crossing their readiness delay.
        """
        t, n = self._table, self._table.size
        f, b = t.f, t.b
        up_s = self.clock.now_s() - f["started_s"][:n]
        changed = (
            (b["key_ready"][:n] != (up_s >= READINESS_DELAY_S))
            | (b["key_up"][:n] != (up_s >= 0))
            | (f["key_started_s"][:n] != f["started_s"][:n])
            | (f["key_restarts"][:n] != f["restarts"][:n])
        )
        for slot in np.flatnonzero(mask & changed):
            self._refresh_pod_status(t.pods[slot])

    def _refresh_pod_status(self, pod: K8s) -> None:
        slot = self._slots[pod["metadata"]["uid"]]
        f, b = self._table.f, self._table.b
        started_s = float(f["started_s"][slot])
        up_s = self.clock.now_s() - started_s
        ready = up_s >= READINESS_DELAY_S
        status = pod["status"]
        restarts = (status["containerStatuses"] or [{}])[0].get("restartCount", 0)
        # Most pods change nothing from one step to the next: skip rebuilding their status.
        key = (ready, up_s >= 0, started_s, restarts)
        if key == (
            b["key_ready"][slot],
            b["key_up"][slot],
            f["key_started_s"][slot],
            f["key_restarts"][slot],
        ):
            return
        b["key_ready"][slot], b["key_up"][slot] = ready, up_s >= 0
        f["key_started_s"][slot], f["key_restarts"][slot] = started_s, restarts
        f["restarts"][slot] = restarts
        # A new status document (not an in-place edit) to compare with the old one.
        containers = status["containerStatuses"] or [
            {"name": pod["spec"]["containers"][0]["name"], "restartCount": 0}
        ]
        image = pod["spec"]["containers"][0]["image"]
        digest = hashlib.sha256(image.encode()).hexdigest()
        first = {
            **containers[0],
            "ready": ready,
            "image": image,
            "imageID": f"{image}@sha256:{digest}",
            "started": up_s >= 0,
            "state": {"running": {"startedAt": rfc3339(_at(started_s))}}
            if up_s >= 0
            else {"waiting": {"reason": "CrashLoopBackOff"}},
        }
        new = {
            **status,
            "phase": "Running",
            "startTime": status.get("startTime") or rfc3339(self.clock.now()),
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [first, *containers[1:]],
        }
        if new != status:
            pod["status"] = new
            self.store.update("pods", pod, spec_changed=False)

    def _apply_due_events(self) -> None:
        while self._pending and self._pending[0].at_s <= self.clock.elapsed_s:
            event = self._pending.pop(0)
            self._apply_event(event)
            self.applied_events.append((self.clock.now_s(), event))

    def _apply_event(self, event: Event) -> None:
        """Start a fault; windows (scrape gaps, slow-downs) are read from the scenario."""
        if event.workload == "*":
            return
        ns, name = event.workload.split("/", 1)
        now_s = self.clock.now_s()
        if event.kind in ("memory_leak", "cpu_hog"):
            f = self._table.f
            for pod in self._pods_of(self.store.get("deployments", ns, name)):
                slot = self._slots[pod["metadata"]["uid"]]
                if event.kind == "cpu_hog":
                    f["burn_cores"][slot] = event.cores or 0.0
                else:
                    f["leak_from_s"][slot] = now_s
                    f["leak_bytes_per_s"][slot] = event.bytes_per_s or 0.0
            if event.kind == "memory_leak" and event.recur_after_s:
                self._leaks[event.workload] = event
        elif event.kind == "overload":
            self._overloads[event.workload] = Overload(now_s, event.factor or 2.0, event.ramp_s)
        elif event.kind in ("release", "crash_loop"):
            # A deploy pipeline changing the image, as `kubectl set image` would.
            container = {"name": name, "image": event.image}
            patch = {"spec": {"template": {"spec": {"containers": [container]}}}}
            self.patch_deployment(ns, name, patch, "application/strategic-merge-patch+json")

    def _pods_of(self, dep: K8s) -> list[K8s]:
        return [p for rs in self._owned("replicasets", dep) for p in self._owned("pods", rs)]

    def _start_container(self, workload: str, slot: int) -> None:
        """A container (re)starts clean, unless its workload's leak comes back."""
        f = self._table.f
        f["burn_cores"][slot], f["leak_from_s"][slot], f["memory_bytes"][slot] = 0.0, np.nan, 0.0
        leak = self._leaks.get(workload)
        if leak is not None and leak.recur_after_s:
            f["leak_from_s"][slot] = f["started_s"][slot] + leak.recur_after_s
            f["leak_bytes_per_s"][slot] = leak.bytes_per_s or 0.0

    def _active(self, kind: str, workload: str) -> Event | None:
        """The window event of ``kind`` covering now for ``workload``, if any."""
        elapsed = self.clock.elapsed_s
        for event in self.scenario.events:
            if (
                event.kind == kind
                and event.at_s <= elapsed < event.end_s
                and event.workload in ("*", workload)
            ):
                return event
        return None

    def draw_api_fault(self, verb: str) -> tuple[int | None, float]:
        """For one request: the status to fail it with (or None) and the delay, seconds."""
        with self.lock:
            elapsed = self.clock.elapsed_s
            for fault in self.api_faults:
                active = fault.from_s <= elapsed < (fault.until_s or float("inf"))
                if not active or (fault.verbs and verb not in fault.verbs):
                    continue
                draw = float(self._fault_rng.random())
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

    def metrics_available(self) -> bool:
        """False during a cluster-wide scrape gap: /metrics answers 503 then."""
        return self._active("scrape_gap", "*") is None

    def _run_workloads(self, dt_s: float) -> None:
        """One step of every scenario workload whose Deployment exists (see ``workloads``)."""
        t, w, n = self._table, self._w, self._table.size
        now_s = self.clock.now_s()
        running = t.live() & (t.workload[:n] >= 0)
        running[running] = w.exists[t.workload[:n][running]]
        f = t.f
        due = running & t.b["crash_on_start"][:n] & (now_s - f["started_s"][:n] >= CRASH_AFTER_S)
        for slot in np.flatnonzero(due):
            self._crash(int(slot), now_s)
        self._refresh_pods(running)
        surge = np.ones(w.count)
        for key, overload in self._overloads.items():
            surge[self._workload_index[key]] = overload.multiplier(now_s)
        demand = workloads.demand_rps(
            w, self.clock.now(), surge=surge, step_s=self.scenario.step_s, rng=self._rng
        )
        rps, rho = workloads.load(t, w, running, demand, now_s=now_s, dt_s=dt_s, rng=self._rng)
        ws = np.where(running, t.workload[:n], 0)
        oom = running & (f["memory_bytes"][:n] >= w.memory_limit_bytes[ws])
        for slot in np.flatnonzero(oom):
            self._kill(t.pods[slot], int(slot), "OOMKilled", 137)
        serving = ~oom & (rps > 0)
        # A downstream limit fails the excess whatever the replica count.
        with np.errstate(divide="ignore", invalid="ignore"):
            beyond = np.where(
                (w.capacity_rps > 0) & (demand > 0), 1.0 - w.capacity_rps / demand, 0.0
            )
        workloads.serve(
            t,
            serving,
            n=np.where(serving, rps * dt_s, 0.0),
            rho=rho,
            base_error=np.maximum(f["error_ratio"][:n], beyond[ws]),
            base_latency_s=f["latency_s"][:n] * self._window_factors("slowdown")[ws],
            rng=self._rng,
        )

    def _window_factors(self, kind: str) -> np.ndarray[Any, np.dtype[np.float64]]:
        """Per workload: the factor of the ``kind`` window covering now (1 outside one, 0
        for a window without a factor); the first window listed wins, as ``_active``."""
        factors = np.full(self._w.count, np.nan)
        elapsed = self.clock.elapsed_s
        for event in self.scenario.events:
            if event.kind != kind or not event.at_s <= elapsed < event.end_s:
                continue
            value = event.factor if event.factor is not None else 0.0
            if event.workload == "*":
                factors[np.isnan(factors)] = value
            else:
                index = self._workload_index.get(event.workload)
                if index is not None and np.isnan(factors[index]):
                    factors[index] = value
        factors[np.isnan(factors)] = 1.0
        return factors

    def _crash(self, slot: int, now_s: float) -> None:
        """Containers of a crashing image exit soon after each start, and back off."""
        f = self._table.f
        self._kill(self._table.pods[slot], slot, "Error", 1)
        # Kubernetes' back-off: 10 s doubling to 5 min, reset after 10 min of running.
        f["started_s"][slot] = now_s + min(300.0, 10.0 * 2.0 ** f["crashes"][slot])
        f["crashes"][slot] += 1

    def _kill(self, pod: K8s, slot: int, reason: str, exit_code: int) -> None:
        """The container died (OOM, crash); the kubelet restarts it in the same pod."""
        cs = pod["status"]["containerStatuses"][0]
        cs["restartCount"] = cs.get("restartCount", 0) + 1
        self._table.f["restarts"][slot] = cs["restartCount"]
        cs["lastState"] = {
            "terminated": {
                "reason": reason,
                "exitCode": exit_code,
                "finishedAt": rfc3339(self.clock.now()),
            }
        }
        self._table.f["started_s"][slot] = self.clock.now_s()
        self._start_container(f"{pod['metadata']['namespace']}/{_deployment_of(pod)}", slot)
        self._refresh_pod_status(pod)

    # ---- metrics -----------------------------------------------------------------------

    def _record_sample(self) -> None:
        # Counters are differenced every step, in a scrape gap too: they must move on.
        sampled = self._window_factors("scrape_gap") == 1.0
        row = workloads.signals(self._table, self._w, dt_s=self.scenario.step_s, sampled=sampled)
        self._window_restarts(row)
        self.timestamps.append(self.clock.now_s())
        self.samples.append(row)

    def _window_restarts(self, row: np.ndarray[Any, np.dtype[np.float64]]) -> None:
        """Restarts per minute over the last ``RESTARTS_WINDOW_S`` instead of one step."""
        r = SIGNALS.index(Signal.RESTARTS)
        step_s = self.scenario.step_s
        self._restart_steps.append(np.nan_to_num(row[:, r]) * step_s / 60.0)
        total = np.sum(self._restart_steps, axis=0)
        row[:, r] = np.where(np.isnan(row[:, r]), np.nan, total * 60.0 / RESTARTS_WINDOW_S)

    # ---- helpers -----------------------------------------------------------------------

    def _new_uid(self) -> str:
        high, low = (int(v) for v in self._rng.integers(0, 2**63, size=2))
        return str(uuid.UUID(int=(high << 64) | low, version=4))

    def _suffix(self) -> str:
        alphabet = "bcdfghjklmnpqrstvwxz2456789"  # the one Kubernetes uses for generated names
        return "".join(alphabet[int(i)] for i in self._rng.integers(0, len(alphabet), 5))


def _at(unix_s: float) -> datetime:
    return datetime.fromtimestamp(unix_s, UTC)


def _drain(queue: set[tuple[str, str]]) -> Iterable[tuple[str, str]]:
    """The queued keys in name order (the order of a full pass); the queue starts afresh."""
    keys = sorted(queue)
    queue.clear()
    return keys


# Deployment annotations the controller does not copy onto its ReplicaSets.
_NOT_COPIED = frozenset(
    {
        REVISION,
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "deployment.kubernetes.io/revision-history",
        "kubectl.kubernetes.io/last-applied-configuration",
    }
)


def _hpa_condition(old: K8s, kind: str, ok: bool, reason: str, now: str) -> K8s:
    previous = next((c for c in old.get("conditions", []) if c["type"] == kind), None)
    status = "True" if ok else "False"
    unchanged = previous is not None and previous["status"] == status
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": "",
        "lastTransitionTime": previous["lastTransitionTime"] if unchanged and previous else now,
    }


def _owner_name(obj: K8s) -> str:
    return str(obj["metadata"]["ownerReferences"][0]["name"])


def _deployment_of(pod: K8s) -> str:
    """The Deployment a pod belongs to: its ReplicaSet's name less the template hash."""
    return _owner_name(pod).rsplit("-", 1)[0]


def _revision(rs: K8s) -> int:
    return int(rs["metadata"].get("annotations", {}).get(REVISION, "0"))


def _pod_ready(pod: K8s) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", [])
    )


def _resolve(value: int | str, replicas: int, *, round_up: bool) -> int:
    if isinstance(value, int):
        return value
    share = float(value.rstrip("%")) / 100.0 * replicas
    return math.ceil(share) if round_up else math.floor(share)


def _owner_ref(owner: K8s) -> K8s:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _condition(dep: K8s, kind: str, ok: bool, reason: str, now: str) -> K8s:
    previous = next(
        (c for c in dep.get("status", {}).get("conditions", []) if c["type"] == kind), None
    )
    status = "True" if ok else "False"
    if previous is not None and previous["status"] == status and previous["reason"] == reason:
        # As the controller's SetDeploymentCondition: an unchanged condition is kept as it
        # is, so that a Deployment nothing happened to is not rewritten.
        return dict(previous)
    changed = previous is None or previous["status"] != status
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "lastUpdateTime": now,
        "lastTransitionTime": now
        if changed or previous is None
        else previous["lastTransitionTime"],
    }


def _scale_of(dep: K8s) -> K8s:
    meta = dep["metadata"]
    selector = selector_string(dep["spec"]["selector"])
    return {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta.get("resourceVersion"),
            "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": dep["spec"]["replicas"]},
        "status": {"replicas": dep.get("status", {}).get("replicas", 0), "selector": selector},
    }


def _deployment_manifest(spec: WorkloadSpec) -> K8s:
    labels = {"app": spec.name, **spec.labels}
    res = spec.resources
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": spec.name,
            "namespace": spec.namespace,
            "labels": labels,
            "annotations": dict(spec.annotations),
        },
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": {"app": spec.name}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": spec.name,
                            "image": spec.image,
                            "ports": [{"containerPort": 8080, "name": "http"}],
                            "resources": {
                                "requests": {
                                    "cpu": f"{round(res.cpu_request_cores * 1000)}m",
                                    "memory": str(res.memory_limit_bytes),
                                },
                                "limits": {
                                    "cpu": f"{round(res.cpu_limit_cores * 1000)}m",
                                    "memory": str(res.memory_limit_bytes),
                                },
                            },
                        }
                    ]
                },
            },
        },
    }


def _default_deployment(obj: K8s) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    strategy = spec.setdefault("strategy", {"type": "RollingUpdate"})
    if strategy.get("type", "RollingUpdate") == "RollingUpdate":
        strategy.setdefault("rollingUpdate", {"maxSurge": "25%", "maxUnavailable": "25%"})
    meta = obj.setdefault("metadata", {})
    meta.setdefault("labels", {})
    meta.setdefault("annotations", {})


def _validate_deployment(obj: K8s) -> None:
    name = obj["metadata"].get("name")
    where = f'Deployment.apps "{name}" is invalid'
    if not isinstance(name, str) or not name:
        raise ApiError(422, "Invalid", f"{where}: metadata.name: Required value")
    spec = obj["spec"]
    replicas = spec.get("replicas")
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise ApiError(422, "Invalid", f"{where}: spec.replicas: Invalid value: {replicas!r}")
    selector = (spec.get("selector") or {}).get("matchLabels")
    template = spec.get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    if not selector or any(labels.get(k) != v for k, v in selector.items()):
        raise ApiError(
            422,
            "Invalid",
            f"{where}: spec.template.metadata.labels: Invalid value: "
            "`selector` does not match template `labels`",
        )
    containers = (template.get("spec") or {}).get("containers")
    if not isinstance(containers, list) or not containers:
        raise ApiError(422, "Invalid", f"{where}: spec.template.spec.containers: Required value")
    for i, c in enumerate(containers):
        if not isinstance(c, dict) or not c.get("name") or not c.get("image"):
            raise ApiError(
                422,
                "Invalid",
                f"{where}: spec.template.spec.containers[{i}]: name and image are required",
            )
