"""The Kubernetes actuator: kubectl's own requests, through the official client.

What each action kind sends is its module's business (``healer.actions``: restart,
scale, rollback, ...); this module reads the cluster for them (``Reads``), puts their
``Request`` on the wire unchanged, retries, and records. It never branches on the kind.

API errors, as kubectl and client-go treat them: 409 Conflict re-reads and retries at
once (the request is rebuilt from the fresh objects); 429 waits for ``Retry-After``;
5xx and timeouts back off exponentially; 403, 404 and 422 fail at once, since asking
again gets the same answer. Whatever the end, the record carries the API's message.

Every action posts an Event on the workload. Dry-run asks the API server to validate
without persisting (``dryRun=All``). Every request names its content type: the client
would otherwise send a JSON patch, which a real API server rejects for an object body.
Client exceptions are turned into healer's errors here and go no further; nor do client
objects: callers get WorkloadState and ActionRecord values, actions get JSON.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, assert_never

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt
from urllib3.exceptions import HTTPError

from healer.actions import handler
from healer.actions.base import Request, path_of
from healer.actions.restart import RESTARTED_AT
from healer.actions.rollback import REVISION
from healer.actions.targets import kind_of
from healer.errors import (
    ActionError,
    ConfigError,
    PermanentActionError,
    TransientActionError,
)
from healer.types import (
    ActionRecord,
    ActionStatus,
    HpaState,
    JsonObject,
    JsonValue,
    Mode,
    NodePod,
    Plan,
    PodState,
    Revision,
    TargetKind,
    WorkloadRef,
    WorkloadState,
)

# Conflicts, throttling and server-side failures are worth retrying; other 4xx are not.
_TRANSIENT_STATUSES = frozenset({409, 429, 500, 502, 503, 504})
ATTEMPTS = 4
"""Tries of one action before it is recorded as failed: enough to ride out a conflict or
a short throttle, few enough that a cycle is not held up for long."""
BACKOFF_S = 0.5
"""First wait after a 5xx or a timeout; it doubles on each further attempt."""
REQUEST_TIMEOUT_S = 10.0
"""Per-request timeout: an API server that does not answer in this long is treated like
a 5xx (retried with backoff), so that a hung connection never stalls the cycle."""
MAX_WAIT_S = 10.0
"""No single wait longer than this, whatever ``Retry-After`` asks: the cycle goes on."""


class ApiStatusError(TransientActionError):
    """A retryable answer of the API server, with what the retry policy needs."""

    def __init__(self, message: str, *, status: int | None, retry_after_s: float | None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s


def _wait_s(state: RetryCallState) -> float:
    """0 after a conflict (re-read at once), Retry-After after a 429, else backoff."""
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, ApiStatusError) and exc.status == 409:
        return 0.0
    if isinstance(exc, ApiStatusError) and exc.retry_after_s is not None:
        return min(MAX_WAIT_S, exc.retry_after_s)
    return float(min(MAX_WAIT_S, BACKOFF_S * 2 ** (state.attempt_number - 1)))


def api_client(kubeconfig: Path | None = None, context: str | None = None) -> Any:
    """A client for the configured cluster: a kubeconfig, else in-cluster, else ~/.kube."""
    try:
        if kubeconfig is not None:
            return config.new_client_from_config(config_file=str(kubeconfig), context=context)
        try:
            config.load_incluster_config()
            return client.ApiClient()
        except config.ConfigException:
            return config.new_client_from_config(context=context)
    except (config.ConfigException, OSError) as exc:
        raise ConfigError(f"kubeconfig {kubeconfig or '~/.kube/config'}: {exc}") from exc


def _controller(metadata: Any) -> Any:
    """The owner reference that controls an object, or None."""
    return next((ref for ref in metadata.owner_references or [] if ref.controller), None)


def _pod_ready(pod: Any) -> bool:
    """The pod's Ready condition is True."""
    conditions = (pod.status.conditions if pod.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def _parse_time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


class KubeActuator:
    """Reads workload state and applies plans through the Kubernetes API."""

    def __init__(
        self,
        api: Any,
        *,
        component: str = "healer",
        sleep: Callable[[float], None] = time.sleep,
        attempts: int = ATTEMPTS,
        timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> None:
        self._apps = client.AppsV1Api(api)
        self._autoscaling = client.AutoscalingV2Api(api)
        self._core = client.CoreV1Api(api)
        self._component = component
        self._sleep = sleep
        self._attempts = attempts
        self._timeout_s = timeout_s
        self.waits_s: list[float] = []
        """Every wait between attempts, in order: what the retry policy did."""
        self._reads = _Reads(self)

    # ---- reading -----------------------------------------------------------------------

    def read_state(self, workload: WorkloadRef) -> WorkloadState:
        """The workload as the cluster has it; PermanentActionError for a kind healer
        cannot read."""
        match kind_of(workload):
            case TargetKind.DEPLOYMENT:
                return self._deployment_state(workload)
            case TargetKind.STATEFULSET:
                return self._statefulset_state(workload)
            case TargetKind.DAEMONSET:
                return self._daemonset_state(workload)
            case TargetKind.NODE:
                raise PermanentActionError(f"{workload}: a node's state comes from its metrics")
            case _:
                assert_never(kind_of(workload))

    def owner_of_pod(self, namespace: str, pod: str) -> WorkloadRef | None:
        """The workload that controls the pod, as its owner references say: a ReplicaSet's
        Deployment, a StatefulSet or a DaemonSet; None for a pod of anything else (a bare
        pod, a Job, a ReplicaSet of its own). PermanentActionError when the pod does not
        exist.

        An alert often names a pod only (kube-state-metrics' ``KubePodCrashLooping``,
        ``KubePodNotReady``): healer acts on what controls it, as a person would.
        """
        body = self._call(self._core.read_namespaced_pod, pod, namespace)
        owner = _controller(body.metadata)
        if owner is None:
            return None
        if owner.kind in ("StatefulSet", "DaemonSet"):
            return WorkloadRef(namespace, owner.kind, owner.name)
        if owner.kind != "ReplicaSet":
            return None
        rs = self._call(self._apps.read_namespaced_replica_set, owner.name, namespace)
        dep = _controller(rs.metadata)
        return (
            WorkloadRef(namespace, "Deployment", dep.name)
            if dep and dep.kind == "Deployment"
            else None
        )

    def pods_on_node(self, node: str) -> tuple[NodePod, ...]:
        """The pods bound to ``node``, by the field selector ``kubectl drain`` lists them
        with (``spec.nodeName``), in every namespace."""
        pods = self._call(
            self._core.list_pod_for_all_namespaces, field_selector=f"spec.nodeName={node}"
        ).items
        return tuple(
            NodePod(
                namespace=pod.metadata.namespace,
                name=pod.metadata.name,
                owner=f"{owner.kind}/{owner.name}" if owner is not None else "",
                ready=_pod_ready(pod),
                terminating=pod.metadata.deletion_timestamp is not None,
            )
            for pod in pods
            for owner in [_controller(pod.metadata)]
        )

    def _deployment_state(self, workload: WorkloadRef) -> WorkloadState:
        dep = self._call(self._apps.read_namespaced_deployment, workload.name, workload.namespace)
        return WorkloadState(
            workload=workload,
            replicas=dep.spec.replicas or 0,
            ready_replicas=dep.status.ready_replicas or 0,
            updated_replicas=dep.status.updated_replicas or 0,
            available_replicas=dep.status.available_replicas or 0,
            generation=dep.metadata.generation or 0,
            observed_generation=dep.status.observed_generation or 0,
            paused=bool(dep.spec.paused),
            revisions=tuple(self._revisions(dep)),
            annotations=dict(dep.metadata.annotations or {}),
            labels=dict(dep.metadata.labels or {}),
            total_replicas=dep.status.replicas or 0,
            hpa=self._hpa_for(workload),
            pods=self._pods(dep),
        )

    def _statefulset_state(self, workload: WorkloadRef) -> WorkloadState:
        sts = self._call(self._apps.read_namespaced_stateful_set, workload.name, workload.namespace)
        replicas = sts.spec.replicas or 0
        rolling = sts.spec.update_strategy.rolling_update if sts.spec.update_strategy else None
        partition = (rolling.partition or 0) if rolling is not None else 0
        return WorkloadState(
            workload=workload,
            replicas=replicas,
            ready_replicas=sts.status.ready_replicas or 0,
            updated_replicas=sts.status.updated_replicas or 0,
            available_replicas=sts.status.available_replicas or 0,
            generation=sts.metadata.generation or 0,
            observed_generation=sts.status.observed_generation or 0,
            paused=False,
            revisions=tuple(self._statefulset_revisions(sts)),
            annotations=dict(sts.metadata.annotations or {}),
            labels=dict(sts.metadata.labels or {}),
            total_replicas=sts.status.replicas or 0,
            hpa=self._hpa_for(workload),
            pods=self._pods(sts),
            held_back=min(partition, replicas),
        )

    def _daemonset_state(self, workload: WorkloadRef) -> WorkloadState:
        """A DaemonSet as a workload: its replicas are the nodes it should run on
        (``desiredNumberScheduled``), its revisions its ControllerRevisions."""
        ds = self._call(self._apps.read_namespaced_daemon_set, workload.name, workload.namespace)
        status = ds.status
        return WorkloadState(
            workload=workload,
            replicas=status.desired_number_scheduled or 0,
            ready_replicas=status.number_ready or 0,
            updated_replicas=status.updated_number_scheduled or 0,
            available_replicas=status.number_available or 0,
            generation=ds.metadata.generation or 0,
            observed_generation=status.observed_generation or 0,
            paused=False,
            revisions=tuple(self._statefulset_revisions(ds)),
            annotations=dict(ds.metadata.annotations or {}),
            labels=dict(ds.metadata.labels or {}),
            total_replicas=status.current_number_scheduled or 0,
            hpa=None,  # an HPA cannot scale a DaemonSet
            pods=self._pods(ds),
        )

    def _controlled_revisions(self, sts: Any) -> list[Any]:
        revisions = self._call(
            self._apps.list_namespaced_controller_revision,
            sts.metadata.namespace,
            label_selector=_selector(sts),
        ).items
        return [
            r
            for r in revisions
            if any(
                ref.controller and ref.uid == sts.metadata.uid
                for ref in r.metadata.owner_references or []
            )
        ]

    def _statefulset_revisions(self, sts: Any) -> list[Revision]:
        """The StatefulSet's (or DaemonSet's) ControllerRevisions, newest first; the
        template each holds is its ``data``'s (a strategic merge patch of
        ``spec.template``)."""
        revisions = []
        for r in self._controlled_revisions(sts):
            template = copy.deepcopy(((r.data or {}).get("spec") or {}).get("template") or {})
            template.pop("$patch", None)
            containers = (template.get("spec") or {}).get("containers") or []
            revisions.append(
                Revision(
                    number=int(r.revision or 0),
                    replicaset=r.metadata.name,
                    created=_parse_time(r.metadata.creation_timestamp),
                    images=tuple(str(c.get("image")) for c in containers),
                    template=_fingerprint_json(template),
                )
            )
        return sorted(revisions, key=lambda r: r.number, reverse=True)

    def _pods(self, dep: Any) -> tuple[PodState, ...]:
        """The pods the Deployment's selector matches, oldest first."""
        pods = self._call(
            self._core.list_namespaced_pod,
            dep.metadata.namespace,
            label_selector=_selector(dep),
        ).items
        states = [
            PodState(
                name=pod.metadata.name,
                ready=_pod_ready(pod),
                restarts=sum(
                    c.restart_count or 0
                    for c in (pod.status.container_statuses if pod.status else None) or []
                ),
                created=_parse_time(pod.metadata.creation_timestamp),
                terminating=pod.metadata.deletion_timestamp is not None,
            )
            for pod in pods
        ]
        return tuple(sorted(states, key=lambda p: (p.created, p.name)))

    def _hpa_for(self, workload: WorkloadRef) -> HpaState | None:
        """The HorizontalPodAutoscaler that scales this Deployment, if there is one."""
        hpas = self._call(
            self._autoscaling.list_namespaced_horizontal_pod_autoscaler, workload.namespace
        ).items
        for hpa in hpas:
            ref = hpa.spec.scale_target_ref
            if ref.kind == workload.kind and ref.name == workload.name:
                return HpaState(
                    name=hpa.metadata.name,
                    min_replicas=hpa.spec.min_replicas or 1,
                    max_replicas=hpa.spec.max_replicas,
                    target_cpu_utilisation=_cpu_target(hpa.spec.metrics),
                )
        return None

    def _controlled_replicasets(self, dep: Any) -> list[Any]:
        sets = self._call(
            self._apps.list_namespaced_replica_set,
            dep.metadata.namespace,
            label_selector=_selector(dep),
        ).items
        return [
            rs
            for rs in sets
            if any(
                ref.controller and ref.uid == dep.metadata.uid
                for ref in rs.metadata.owner_references or []
            )
        ]

    def _revisions(self, dep: Any) -> list[Revision]:
        revisions = [
            Revision(
                number=int((rs.metadata.annotations or {}).get(REVISION, "0")),
                replicaset=rs.metadata.name,
                created=_parse_time(rs.metadata.creation_timestamp),
                images=tuple(c.image for c in rs.spec.template.spec.containers),
                template=self._fingerprint(rs.spec.template),
            )
            for rs in self._controlled_replicasets(dep)
        ]
        return sorted(revisions, key=lambda r: r.number, reverse=True)

    def _fingerprint(self, template: Any) -> str:
        """sha256 of the pod template as JSON, without what a restart or the ReplicaSet
        controller changes (``restartedAt``, ``pod-template-hash``)."""
        data = copy.deepcopy(self._apps.api_client.sanitize_for_serialization(template))
        return _fingerprint_json(data)

    # ---- acting ------------------------------------------------------------------------

    def apply(self, plan: Plan, *, now: datetime) -> ActionRecord:
        """Carry out an allowed plan in its mode; never raises for API errors.

        Idempotent where Kubernetes is: scaling to N twice is a no-op, and rolling back
        to a revision that is already current changes nothing. The returned record says
        what was asked of the API server and how it answered.
        """
        intent: JsonObject = {"action": plan.action.value, "params": dict(plan.params)}
        if plan.mode == Mode.APPROVAL:
            try:
                request = self._request(plan, now).to_json()
            except ActionError as exc:  # undo reads the ReplicaSets first; that can fail too
                return self._record(plan, intent, ActionStatus.FAILED, now, error=str(exc))
            return self._record(plan, request, ActionStatus.PENDING_APPROVAL, now)
        dry_run = plan.mode == Mode.DRY_RUN
        sent: list[JsonObject] = []
        try:
            retrying = self._retrying(throttled=handler(plan.action).retry_throttled)
            retrying(self._request_and_send, plan, now, dry_run, sent)
        except ActionError as exc:
            request = sent[-1] if sent else intent
            return self._record(plan, request, ActionStatus.FAILED, now, error=str(exc))
        request = sent[-1]
        try:
            followed = self._follow_up(plan, now, dry_run)
        except ActionError as exc:
            failed = f"{plan.action} was sent, but what must follow it failed: {exc}"
            return self._record(plan, request, ActionStatus.FAILED, now, error=failed)
        if followed:
            request = {**request, "then": followed}
        if not dry_run:
            self._post_event(plan, now)
        return self._record(
            plan, request, ActionStatus.DRY_RUN if dry_run else ActionStatus.SUCCEEDED, now
        )

    def _follow_up(self, plan: Plan, now: datetime, dry_run: bool) -> list[JsonValue]:
        """Send what the action kind says must follow its request (a stuck pod's
        DELETE after a StatefulSet's rollback), each retried like the request; the
        requests sent, for the record. A pod already gone (404) is what was wanted."""
        action = handler(plan.action)
        sent: list[JsonValue] = []
        for request in action.follow_up(plan.workload, plan.params, self._reads, now):
            sent.append(request.to_json())
            try:
                self._retrying()(self._send, request, dry_run=dry_run)
            except PermanentActionError as exc:
                gone = isinstance(exc.__cause__, ApiException) and exc.__cause__.status == 404
                if not gone:
                    raise
        return sent

    def _retrying(self, *, throttled: bool = True) -> Retrying:
        """Retries of transient answers; of a 429 too unless ``throttled`` is False."""

        def wait(state: RetryCallState) -> float:
            seconds = _wait_s(state)
            self.waits_s.append(seconds)
            return seconds

        def worth_retrying(exc: BaseException) -> bool:
            if not isinstance(exc, TransientActionError):
                return False
            return throttled or not (isinstance(exc, ApiStatusError) and exc.status == 429)

        return Retrying(
            retry=retry_if_exception(worth_retrying),
            stop=stop_after_attempt(self._attempts),
            wait=wait,
            sleep=self._sleep,
            reraise=True,
        )

    def _request_and_send(
        self, plan: Plan, now: datetime, dry_run: bool, sent: list[JsonObject]
    ) -> None:
        """Build the request from fresh reads (after a 409 too), then send it."""
        request = self._request(plan, now)
        sent.append(request.to_json())
        self._send(request, dry_run=dry_run)

    def _request(self, plan: Plan, now: datetime) -> Request:
        return handler(plan.action).request(plan.workload, plan.params, self._reads, now)

    def _send(self, request: Request, *, dry_run: bool) -> None:
        """Put ``request`` on the wire as it is, with ``dryRun=All`` for a dry run."""
        api = self._core.api_client
        serialized = api.param_serialize(
            request.verb,
            request.path,
            query_params=[("dryRun", "All")] if dry_run else [],
            header_params={"Accept": "application/json", "Content-Type": request.content_type},
            body=request.body,
            auth_settings=["BearerToken"],
        )

        def call(*_: Any, _request_timeout: float) -> None:
            response = api.call_api(*serialized, _request_timeout=_request_timeout)
            response.read()
            api.response_deserialize(response, {})  # raises ApiException unless 2xx

        self._call(call)

    def _post_event(self, plan: Plan, now: datetime) -> None:
        w = plan.workload
        # A cluster-scoped target (a Node) has its Events in ``default``, as the kubelet's.
        namespace = w.namespace or "default"
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{w.name}.", namespace=namespace),
            involved_object=client.V1ObjectReference(
                api_version="v1" if w.kind == TargetKind.NODE.value else "apps/v1",
                kind=w.kind,
                name=w.name,
                namespace=w.namespace or None,
            ),
            reason=f"Healer{plan.action.value.capitalize()}",
            message=f"healer {plan.action.value}: {plan.reason}"[:1024],
            type="Normal",
            count=1,
            first_timestamp=now,
            last_timestamp=now,
            source=client.V1EventSource(component=self._component),
            reporting_component=self._component,
        )
        # The action happened; a missing Event must not turn it into a failure.
        with contextlib.suppress(TransientActionError, PermanentActionError):
            self._call(self._core.create_namespaced_event, namespace, event)

    def _record(
        self,
        plan: Plan,
        request: JsonObject,
        status: ActionStatus,
        started: datetime,
        error: str | None = None,
    ) -> ActionRecord:
        return ActionRecord(
            kind=plan.action,
            target=plan.workload,
            request=request,
            status=status,
            started=started,
            finished=started,
            error=error,
        )

    def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """One API request, bounded by ``timeout_s``, its errors turned into ours."""
        try:
            return method(*args, _request_timeout=self._timeout_s, **kwargs)
        except ApiException as exc:
            message = f"{exc.status} {exc.reason}: {(exc.body or '')[:300]}"
            if exc.status in _TRANSIENT_STATUSES:
                raise ApiStatusError(
                    message, status=exc.status, retry_after_s=_retry_after_s(exc)
                ) from exc
            raise PermanentActionError(message) from exc
        except (HTTPError, OSError) as exc:
            raise ApiStatusError(
                f"Kubernetes API unreachable: {exc}", status=None, retry_after_s=None
            ) from exc

    # ---- after a restart of the daemon ---------------------------------------------------

    def already_applied(self, intent: ActionRecord) -> bool:
        """Whether an action recorded as intended (but not as done) reached the cluster.

        Read from the objects themselves, as the action kind's module judges it (a
        restart left its stamp, a scale its replicas, ...). Raises ActionError when the
        cluster cannot be read, or when the intent's parameters do not fit its kind:
        then nothing is sent again until a person looks.
        """
        return handler(intent.kind).landed(
            intent.target, intent.request, intent.started, self._reads
        )


def _fingerprint_json(data: JsonObject) -> str:
    """sha256 of a pod template (JSON) without what a restart or the controllers change
    (``restartedAt``, ``pod-template-hash``)."""
    data = copy.deepcopy(data)
    metadata = data.get("metadata")
    metadata = dict(metadata) if isinstance(metadata, dict) else {}
    annotations, labels = metadata.get("annotations"), metadata.get("labels")
    if isinstance(annotations, dict):
        annotations.pop(RESTARTED_AT, None)
    if isinstance(labels, dict):
        labels.pop("pod-template-hash", None)
    data["metadata"] = {k: v for k, v in metadata.items() if v}  # {} and absent alike
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _selector(dep: Any) -> str:
    """The Deployment's ``matchLabels`` as a label selector (``app=cart``)."""
    labels = dep.spec.selector.match_labels or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


class _Reads:
    """What actions read (``healer.actions.base.Reads``), as the JSON kubectl prints."""

    def __init__(self, actuator: KubeActuator) -> None:
        self._act = actuator

    def _json(self, obj: Any) -> JsonObject:
        data: JsonObject = self._act._apps.api_client.sanitize_for_serialization(obj)
        return data

    def deployment(self, target: WorkloadRef) -> JsonObject:
        act = self._act
        return self._json(
            act._call(act._apps.read_namespaced_deployment, target.name, target.namespace)
        )

    def workload(self, target: WorkloadRef) -> JsonObject:
        act = self._act
        read: Callable[..., Any]
        match kind_of(target):
            case TargetKind.DEPLOYMENT:
                read = act._apps.read_namespaced_deployment
            case TargetKind.STATEFULSET:
                read = act._apps.read_namespaced_stateful_set
            case TargetKind.DAEMONSET:
                read = act._apps.read_namespaced_daemon_set
            case TargetKind.NODE:
                return self.node(target.name) or {}
            case _:
                assert_never(kind_of(target))
        return self._json(act._call(read, target.name, target.namespace))

    def revisions(self, target: WorkloadRef) -> list[JsonObject]:
        """The ControllerRevisions a StatefulSet or a DaemonSet controls."""
        act = self._act
        read = (
            act._apps.read_namespaced_daemon_set
            if kind_of(target) is TargetKind.DAEMONSET
            else act._apps.read_namespaced_stateful_set
        )
        owner = act._call(read, target.name, target.namespace)
        return [self._json(r) for r in act._controlled_revisions(owner)]

    def replicasets(self, target: WorkloadRef) -> list[JsonObject]:
        act = self._act
        dep = act._call(act._apps.read_namespaced_deployment, target.name, target.namespace)
        return [self._json(rs) for rs in act._controlled_replicasets(dep)]

    def pods_of(self, target: WorkloadRef) -> list[JsonObject]:
        owner = self.workload(target)
        selector = path_of(owner, "spec", "selector", "matchLabels")
        labels = selector if isinstance(selector, dict) else {}
        act = self._act
        found = act._call(
            act._core.list_namespaced_pod,
            target.namespace,
            label_selector=",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        ).items
        return [self._json(p) for p in found]

    def pod(self, namespace: str, name: str) -> JsonObject | None:
        act = self._act
        try:
            return self._json(act._call(act._core.read_namespaced_pod, name, namespace))
        except PermanentActionError as exc:
            if isinstance(exc.__cause__, ApiException) and exc.__cause__.status == 404:
                return None
            raise

    def node(self, name: str) -> JsonObject | None:
        act = self._act
        try:
            return self._json(act._call(act._core.read_node, name))
        except PermanentActionError as exc:
            if isinstance(exc.__cause__, ApiException) and exc.__cause__.status == 404:
                return None
            raise

    def hpa(self, namespace: str, name: str) -> JsonObject:
        act = self._act
        return self._json(
            act._call(act._autoscaling.read_namespaced_horizontal_pod_autoscaler, name, namespace)
        )


def _retry_after_s(exc: ApiException) -> float | None:
    value = (exc.headers or {}).get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:  # an HTTP date: wait the usual backoff instead
        return None


def _cpu_target(metrics: Any) -> float | None:
    """The CPU ``averageUtilization`` target of an autoscaling/v2 HPA, as a fraction."""
    for metric in metrics or []:
        resource = metric.resource if metric.type == "Resource" else None
        target = resource.target if resource is not None else None
        if resource is not None and resource.name == "cpu" and target is not None:
            value = target.average_utilization
            return float(value) / 100.0 if value else None
    return None
