"""The simulated cluster: a Kubernetes API server's verbs over an object store, and the
controllers that move the cluster on, one tick per scrape step.

The parts, each in its own module with one shape (``healer.sim.controllers.Controller``,
``reconcile(state, now)``), run in a fixed order every tick (``Cluster.tick``):

* fault injection (``controllers.faults``): the scenario's events as they fall due;
* the control plane: the garbage collector, the Deployment, ReplicaSet and StatefulSet
  controllers, the kubelet of pods outside the scenario, the Deployment status;
* the containers at work (``controllers.runtime``): traffic, CPU, memory, OOM kills,
  crashes, latency and errors, for every scenario pod at once;
* the HPA controller, the Deployment status and the StatefulSet controller again (pods
  changed readiness while serving), the disruption controller;
* sampling (``controllers.sampler``): one row of signals per workload.

This module keeps what the API server does: get, list, create, replace, patch and
delete with Kubernetes' semantics (defaults, validation, ``resourceVersion`` conflicts,
``generation``), the ``scale``, ``status`` and ``eviction`` subresources, Events. Time moves only
when ``advance`` is called; all state is guarded by ``lock``, because the API server
thread reads and writes while the driver advances time.

A write through the API does not wait for the next tick: the controllers in
``on_write`` (the garbage collector, the Deployment, ReplicaSet and StatefulSet
controllers) react to it at once, at the clock's current instant, as
kube-controller-manager reacts within a second of a write. ``kubectl rollout restart``
then ``kubectl set image`` make two revisions, and ``kubectl rollout undo`` right after
finds the previous one.

Decisions:

* The reaction covers only what the write itself queued (a fresh ``WorkQueues`` for
  its span); what it leaves, and what the last tick queued, waits for the next tick's
  pass as before. So the cluster's course depends on the writes made, not on unrelated
  requests such as a Lease renewal or an Event, and a run stays reproducible per seed.
* Writes made within a tick (a scenario's release) and while the cluster is built get
  no reaction of their own: the tick's control plane follows them in the same step,
  and the start-up passes draw their random numbers in the order they always have.
* The kubelet, the containers and sampling do not react: they move with time only.

Built to run a day of 1,000 Deployments x 5 pods in well under a minute
(bench/sim_scale.py), so a step costs almost nothing when nothing happens: the
controllers work from queues of the objects that changed (``healer.sim.state``), an
unchanged status is not written (no new ``resourceVersion``), the containers' runtime
state is numpy columns stepped for every pod at once (``healer.sim.workloads``), and
``/metrics`` text is built only when scraped.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import numpy as np

from healer.sim import controllers, crds, daemonsets, deployments, nodes, statefulsets
from healer.sim.clock import VirtualClock
from healer.sim.containers import Container
from healer.sim.controllers import kubelet
from healer.sim.controllers.autoscaling import AutoscalerController
from healer.sim.controllers.budgets import DisruptionController, update_budget
from healer.sim.controllers.daemonset import DaemonSetController
from healer.sim.controllers.deployment import DeploymentController, DeploymentStatus
from healer.sim.controllers.faults import ApiFaults, FaultInjector, active
from healer.sim.controllers.garbage import GarbageCollector
from healer.sim.controllers.gitsync import GitSync, SyncTimings
from healer.sim.controllers.nodelifecycle import CordonTaint, NodeLifecycle
from healer.sim.controllers.replicaset import ReplicaSetController
from healer.sim.controllers.runtime import ContainerRuntime
from healer.sim.controllers.sampler import SIGNALS, PodStep, Sampler
from healer.sim.controllers.scheduler import Scheduler
from healer.sim.controllers.statefulset import StatefulSetController
from healer.sim.disruption import check_eviction
from healer.sim.gitops import GitOpsSetup
from healer.sim.kinds import BY_RESOURCE, INITIAL_STATUS, Kind, default_and_validate
from healer.sim.objects import (
    ApiError,
    K8s,
    apply_patch,
    check_resource_version,
    copy_json,
    field_selector_matches,
    label_selector_matches,
    rfc3339,
    selector_matches,
)
from healer.sim.scenario import ApiFault, Event, Scenario
from healer.sim.state import (
    LATENCY_BUCKETS_S,
    REVISION,
    ClusterState,
    Now,
    WorkQueues,
    pod_ready,
)
from healer.types import WorkloadRef

__all__ = ["LATENCY_BUCKETS_S", "REVISION", "SIGNALS", "Cluster"]

# Before the scenario starts the cluster has been running: this many passes of the
# control plane, each followed by this much ageing, bring every pod up and ready.
_WARM_PASSES = 3
_WARM_AGE_S = 3600.0

_WORKLOAD_RULES = {
    "deployments": deployments,
    "statefulsets": statefulsets,
    "daemonsets": daemonsets,
}
"""Each workload kind's module of API server rules: ``default`` and ``validate``."""

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _reacts(
    write: Callable[Concatenate[Cluster, _P], _R],
) -> Callable[Concatenate[Cluster, _P], _R]:
    """Mark an API write: the ``on_write`` controllers react to it before it returns."""

    @functools.wraps(write)
    def reacting(self: Cluster, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self.lock, self._reaction():
            return write(self, *args, **kwargs)

    return reacting


def _gitops_setup(cluster: Cluster, scenario: Scenario, root: Path | None) -> GitOpsSetup | None:
    """The scenario's GitOps repositories, under ``root`` or a fresh temporary directory
    removed with the cluster."""
    if scenario.gitops is None:
        return None
    if root is None:
        root = Path(tempfile.mkdtemp(prefix="healer-sim-gitops-"))
        weakref.finalize(cluster, shutil.rmtree, root, ignore_errors=True)
    return GitOpsSetup(scenario.gitops, cluster.state.specs, root)


class Cluster:
    """A simulated Kubernetes cluster running a scenario."""

    def __init__(
        self,
        scenario: Scenario,
        clock: VirtualClock | None = None,
        *,
        git_root: Path | None = None,
    ) -> None:
        self.scenario = scenario
        self.clock = clock or VirtualClock(scenario.start)
        self.lock = threading.RLock()
        self.state = ClusterState(scenario, self.clock)
        self.store = self.state.store
        self.workloads = tuple(WorkloadRef(w.namespace, w.kind, w.name) for w in self.state.specs)
        self._api_faults = ApiFaults(list(scenario.api_faults), scenario.seed + 1)
        self.gitops = _gitops_setup(self, scenario, git_root)
        self._faults = FaultInjector(
            scenario, api=self, git=self._git_release if self.gitops else None
        )
        timings = SyncTimings()
        if scenario.gitops is not None:
            timings = SyncTimings(
                scenario.gitops.argocd_poll_s, scenario.gitops.argocd_self_heal_delay_s
            )
        self._gitsync = GitSync(self, timings)
        self._sampler = Sampler(scenario.step_s)
        status, stateful = DeploymentStatus(), StatefulSetController()
        daemon = DaemonSetController()
        self._control_plane: tuple[controllers.Controller, ...] = (
            GarbageCollector(),
            CordonTaint(),
            DeploymentController(),
            ReplicaSetController(),
            stateful,
            daemon,
            Scheduler(),
            kubelet.Kubelet(),
            status,
        )
        self.tick: tuple[controllers.Controller, ...] = (
            self._faults,
            self._gitsync,  # a no-op without GitOps objects
            NodeLifecycle(),
            *self._control_plane,
            ContainerRuntime(scenario.step_s),
            AutoscalerController(),
            status,  # pods changed readiness while serving: the status catches up
            stateful,  # and a StatefulSet's next ordinal need not wait for the next tick
            daemon,  # nor a DaemonSet's rolling update its next node
            DisruptionController(),
            self._sampler,
        )
        """The parts of one tick, in their order."""
        self.on_write: list[controllers.Controller] = [
            self._gitsync,  # a refresh is served at once, and its rollout starts with it
            GarbageCollector(),
            CordonTaint(),
            DeploymentController(),
            ReplicaSetController(),
            StatefulSetController(),
            DaemonSetController(),
            Scheduler(),
        ]
        """The controllers that react to a write through the API at once, in this order;
        a new kind's controller joins them here (they keep no state of their own)."""
        self.custom = crds.CustomResources(self.store)
        """The kinds the cluster's CustomResourceDefinitions serve (``crds``)."""
        self._quiet = 1  # > 0: writes get no reaction of their own (ticks, start-up)
        with self.lock:
            nodes.register(self.state)
            for spec in self.state.specs:
                if spec.kind == "StatefulSet":
                    self.create_workload(
                        "statefulsets", spec.namespace, statefulsets.manifest(spec)
                    )
                elif spec.kind == "DaemonSet":
                    self.create_workload("daemonsets", spec.namespace, daemonsets.manifest(spec))
                else:
                    self.create_deployment(spec.namespace, deployments.manifest(spec))
            for _ in range(_WARM_PASSES):
                now = self.state.now()
                controllers.run(self._control_plane, self.state, now)
                kubelet.age_pods(self.state, _WARM_AGE_S, now)
            self._warm_statefulsets(stateful)
            if self.gitops is not None:
                self.gitops.start(self, at=self.clock.now())
                self._gitsync.reconcile(self.state, self.state.now())
        self._quiet = 0

    def _git_release(self, event: Event, now: Now) -> None:
        assert self.gitops is not None
        self.gitops.release(event, at=now.at)

    @property
    def git_remotes(self) -> dict[str, str]:
        """Each GitOps application's repository URL (``file://``), by application name."""
        if self.gitops is None:
            return {}
        return {name: repo.url for name, repo in self.gitops.repositories.items()}

    def _warm_statefulsets(self, stateful: StatefulSetController) -> None:
        """Further start-up passes for the StatefulSets, which start one ordinal per pass
        (OrderedReady): until each has all its pods, ageing only theirs, so that the
        Deployments start as they always have."""
        sets = self.store.list("statefulsets")
        for _ in range(max((s["spec"]["replicas"] for s in sets), default=0)):
            if not self.state.queues.statefulsets:
                return
            now = self.state.now()
            stateful.reconcile(self.state, now)
            pods = [p for s in sets for p in self.state.pods_of(s)]
            kubelet.age_pods(self.state, _WARM_AGE_S, now, pods)

    # ---- time --------------------------------------------------------------------------

    def advance(self, seconds: float) -> None:
        """Move simulated time forward by whole scrape steps, sampling metrics each step."""
        steps = max(1, round(seconds / self.scenario.step_s))
        for _ in range(steps):
            with self.lock:
                self.clock.advance(self.scenario.step_s)
                self._quiet += 1
                try:
                    controllers.run(self.tick, self.state, self.state.now())
                finally:
                    self._quiet -= 1

    @contextmanager
    def _reaction(self) -> Iterator[None]:
        """Around one API write (under ``lock``): queue what the write changes apart,
        then run ``on_write`` over it; what is left joins the tick's queues."""
        if self._quiet:
            yield
            return
        outer, self.state.queues = self.state.queues, WorkQueues()
        self._quiet += 1
        try:
            yield
            controllers.run(tuple(self.on_write), self.state, self.state.now())
        finally:
            self._quiet -= 1
            left, self.state.queues = self.state.queues, outer
            outer.absorb(left)

    @property
    def elapsed_s(self) -> float:
        return self.clock.elapsed_s

    @property
    def timestamps(self) -> list[float]:
        """When each sample was taken, UNIX seconds."""
        return self._sampler.timestamps

    @property
    def samples(self) -> list[np.ndarray[Any, np.dtype[np.float64]]]:
        """One (W, S) row of signals per step, W in the order of ``workloads``."""
        return self._sampler.samples

    @property
    def pod_steps(self) -> Sequence[PodStep]:
        """The per-pod values of the last steps (``Sampler.pod_steps``), oldest first."""
        return self._sampler.pod_steps

    @property
    def applied_events(self) -> list[tuple[float, Event]]:
        """The scenario events started so far, with the UNIX second of each."""
        return self._faults.applied

    @property
    def api_faults(self) -> list[ApiFault]:
        return self._api_faults.faults

    @api_faults.setter
    def api_faults(self, faults: list[ApiFault]) -> None:
        self._api_faults.faults = faults

    def draw_api_fault(self, verb: str) -> tuple[int | None, float]:
        """For one request: the status to fail it with (or None) and the delay, seconds."""
        with self.lock:
            return self._api_faults.draw(verb, self.clock.elapsed_s)

    def metrics_available(self) -> bool:
        """False during a cluster-wide scrape gap: /metrics answers 503 then."""
        return active(self.scenario, "scrape_gap", "*", self.clock.elapsed_s) is None

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
                and field_selector_matches(field_selector, o, self.kind(resource).fields)
            ]

    def get_object(self, resource: str, namespace: str, name: str) -> K8s:
        with self.lock:
            return copy_json(self.store.get(resource, namespace, name))

    def create_deployment(self, namespace: str, body: K8s, *, dry_run: bool = False) -> K8s:
        return self.create_workload("deployments", namespace, body, dry_run=dry_run)

    def replace_deployment(
        self, namespace: str, name: str, body: K8s, *, dry_run: bool = False
    ) -> K8s:
        return self.replace_workload("deployments", namespace, name, body, dry_run=dry_run)

    def patch_deployment(
        self, namespace: str, name: str, patch: Any, content_type: str, *, dry_run: bool = False
    ) -> K8s:
        return self.patch_workload(
            "deployments", namespace, name, patch, content_type, dry_run=dry_run
        )

    @_reacts
    def create_workload(
        self, resource: str, namespace: str, body: K8s, *, dry_run: bool = False
    ) -> K8s:
        """Create a Deployment, StatefulSet or DaemonSet (``resource``) after defaults and
        checks."""
        with self.lock:
            obj = copy_json(body)
            obj.setdefault("apiVersion", "apps/v1")
            obj.setdefault("kind", BY_RESOURCE[resource].kind)
            obj.setdefault("metadata", {})["namespace"] = namespace
            rules = _WORKLOAD_RULES[resource]
            rules.default(obj)
            rules.validate(obj)
            obj["status"] = {"observedGeneration": 0}
            if resource == "statefulsets":
                obj["status"]["replicas"] = 0  # required in the Go type's status
            if resource == "daemonsets":
                daemonsets.stamp_template_generation(None, obj)
                obj["status"].update(dict.fromkeys(daemonsets.REQUIRED_STATUS, 0))
            if dry_run:
                return obj
            return copy_json(self.store.create(resource, obj, now=self.clock.now()))

    @_reacts
    def replace_workload(
        self, resource: str, namespace: str, name: str, body: K8s, *, dry_run: bool = False
    ) -> K8s:
        with self.lock:
            current = self.store.get(resource, namespace, name)
            check_resource_version(current, body)
            return self._write_workload(resource, current, copy_json(body), dry_run=dry_run)

    @_reacts
    def patch_workload(
        self,
        resource: str,
        namespace: str,
        name: str,
        patch: Any,
        content_type: str,
        *,
        dry_run: bool = False,
    ) -> K8s:
        with self.lock:
            current = self.store.get(resource, namespace, name)
            patched = apply_patch(copy_json(current), patch, content_type)
            check_resource_version(current, patched)
            return self._write_workload(resource, current, patched, dry_run=dry_run)

    @_reacts
    def write_status(
        self,
        resource: str,
        namespace: str,
        name: str,
        body: K8s,
        *,
        patch_type: str | None = None,
        dry_run: bool = False,
    ) -> K8s:
        """The ``status`` subresource: PUT (``patch_type`` None) or PATCH; only the
        status of the result is kept, as the API server's status strategy does."""
        with self.lock:
            current = self.store.get(resource, namespace, name)
            new = body if patch_type is None else apply_patch(copy_json(current), body, patch_type)
            check_resource_version(current, new)
            status = new.get("status")
            if not isinstance(status, dict):
                raise ApiError(400, "BadRequest", "status must be an object")
            written = copy_json(current)
            written["status"] = copy_json(status)
            if isinstance(kind := self.kind(resource), crds.CustomKind):
                crds.admit(kind, written, creating=False)
            if dry_run:
                return written
            current["status"] = written["status"]
            return copy_json(self.store.update(resource, current, spec_changed=False))

    @_reacts
    def delete_object(
        self,
        resource: str,
        namespace: str,
        name: str,
        *,
        dry_run: bool = False,
        resource_version: str | None = None,
    ) -> K8s:
        """Delete at once (no graceful termination); owned objects go on the next pass.
        With ``resource_version`` (the request's precondition), 409 unless the object
        is still at that version, as the API server answers."""
        with self.lock:
            if resource_version is not None:
                current = self.store.get(resource, namespace, name)["metadata"]["resourceVersion"]
                if current != resource_version:
                    raise ApiError(
                        409,
                        "Conflict",
                        f"Precondition failed: ResourceVersion in precondition: {resource_version},"
                        f" ResourceVersion in object meta: {current}",
                    )
            if dry_run:
                return copy_json(self.store.get(resource, namespace, name))
            return copy_json(self.state.delete(resource, namespace, name))

    @_reacts
    def create_object(self, resource: str, namespace: str, body: K8s, *, dry_run: bool) -> K8s:
        """Create a plain object (HPA, PodDisruptionBudget, Lease, a custom resource)
        after defaults and checks."""
        kind = self.kind(resource)
        with self.lock:
            obj = copy_json(body)
            obj["apiVersion"], obj["kind"] = kind.group_version, kind.kind
            meta = obj.setdefault("metadata", {})
            if not isinstance(meta, dict):
                raise ApiError(400, "BadRequest", "metadata must be an object")
            if kind.namespaced:
                meta["namespace"] = namespace
            else:
                meta.pop("namespace", None)
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = str(meta["generateName"]) + self.state.suffix()
            for key in ("uid", "resourceVersion", "creationTimestamp", "generation"):
                meta.pop(key, None)
            self._admit(kind, obj, creating=True)
            if kind.namespaced:  # a Node may be created with its status, as a kubelet does
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
                meta["uid"], meta["creationTimestamp"] = (
                    self.state.new_uid(),
                    rfc3339(self.clock.now()),
                )
                meta["generation"] = 1
                return obj
            created = self.store.create(resource, obj, now=self.clock.now())
            if resource == "poddisruptionbudgets":
                update_budget(self.state, created, self.state.now())
            return copy_json(created)

    @_reacts
    def replace_object(
        self, resource: str, namespace: str, name: str, body: K8s, *, dry_run: bool
    ) -> K8s:
        with self.lock:
            current = self.store.get(resource, namespace, name)
            check_resource_version(current, body)
            return self._write_plain(resource, current, copy_json(body), dry_run=dry_run)

    @_reacts
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

    @_reacts
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
            now = self.state.now()
            for budget in budgets:
                update_budget(self.state, budget, now)  # decide on the pods as they are now
            check_eviction(pod, budgets, pod_ready=pod_ready(pod))
            if not dry_run:
                self.delete_object("pods", namespace, name)
                for budget in budgets:
                    update_budget(self.state, budget, now)
            return {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "code": 201,
            }

    def get_scale(self, namespace: str, name: str, *, resource: str = "deployments") -> K8s:
        with self.lock:
            return deployments.scale_of(self.store.get(resource, namespace, name))

    @_reacts
    def patch_scale(
        self,
        namespace: str,
        name: str,
        patch: Any,
        content_type: str,
        *,
        dry_run: bool = False,
        resource: str = "deployments",
    ) -> K8s:
        with self.lock:
            current = self.store.get(resource, namespace, name)
            scale = apply_patch(deployments.scale_of(current), patch, content_type)
            return self._apply_scale(resource, current, scale, dry_run=dry_run)

    @_reacts
    def replace_scale(
        self,
        namespace: str,
        name: str,
        body: K8s,
        *,
        dry_run: bool = False,
        resource: str = "deployments",
    ) -> K8s:
        with self.lock:
            current = self.store.get(resource, namespace, name)
            return self._apply_scale(resource, current, body, dry_run=dry_run)

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
                meta["name"] = meta["generateName"] + self.state.suffix()
            if not isinstance(obj.get("involvedObject"), dict):
                raise ApiError(422, "Invalid", "Event: involvedObject: Required value")
            if dry_run:
                return obj
            return copy_json(self.store.create("events", obj, now=self.clock.now()))

    def pods_of(self, namespace: str, name: str) -> list[K8s]:
        """The pods of the Deployment (else the StatefulSet) called ``name``."""
        with self.lock:
            workload = self.state.workload(namespace, name)
            if workload is None:
                self.store.get("deployments", namespace, name)  # the 404
            return [copy_json(p) for p in self.state.pods_of(workload or {})]

    def container(self, pod: K8s) -> Container:
        return self.state.container(pod)

    # ---- writes ------------------------------------------------------------------------

    def _write_workload(self, resource: str, current: K8s, new: K8s, *, dry_run: bool) -> K8s:
        meta = new.setdefault("metadata", {})
        for key in ("name", "namespace", "uid", "creationTimestamp", "generation"):
            meta[key] = current["metadata"][key]
        new["status"] = copy_json(current.get("status", {}))
        rules = _WORKLOAD_RULES[resource]
        rules.default(new)
        rules.validate(new)
        if resource == "statefulsets":
            statefulsets.check_update(current, new)
        elif resource == "daemonsets":
            daemonsets.check_update(current, new)
            daemonsets.stamp_template_generation(current, new)
        elif new["spec"]["selector"] != current["spec"]["selector"]:
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
        return copy_json(self.store.update(resource, new, spec_changed=spec_changed))

    def _write_plain(self, resource: str, current: K8s, new: K8s, *, dry_run: bool) -> K8s:
        """Replace a plain object; identity fields and status are the server's, not the body's."""
        kind = self.kind(resource)
        meta = new.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise ApiError(400, "BadRequest", "metadata must be an object")
        for key in ("name", "namespace", "uid", "creationTimestamp", "generation"):
            if key in current["metadata"]:  # a Node has no namespace
                meta[key] = current["metadata"][key]
        new["apiVersion"], new["kind"] = kind.group_version, kind.kind
        if "status" in current:
            new["status"] = copy_json(current["status"])
        self._admit(kind, new, creating=False)
        spec_changed = crds.content(new) != crds.content(current)
        if dry_run:
            if spec_changed:
                meta["generation"] = current["metadata"]["generation"] + 1
            return new
        return copy_json(self.store.update(resource, new, spec_changed=spec_changed))

    def _apply_scale(self, resource: str, current: K8s, scale: K8s, *, dry_run: bool) -> K8s:
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
        written = self._write_workload(resource, current, new, dry_run=dry_run)
        return deployments.scale_of(written)

    # ---- CustomResourceDefinitions (``healer.sim.crds``) ---------------------------------

    def kind(self, resource: str) -> Kind:
        """The built-in or custom kind stored under ``resource``."""
        kind = BY_RESOURCE.get(resource) or self.custom.served.get(resource)
        if kind is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return kind

    def _admit(self, kind: Kind, obj: K8s, *, creating: bool) -> None:
        """Defaults and checks of a plain object: its kind's rules, a CRD's, or the
        schema its CRD gives."""
        if isinstance(kind, crds.CustomKind):
            crds.admit(kind, obj, creating=creating)
        elif kind.resource == crds.RESOURCE:
            crds.admit_crd(obj, self.custom.crd_serving)
        else:
            default_and_validate(kind, obj)
