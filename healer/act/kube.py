"""The Kubernetes actuator: kubectl's own requests, through the official client.

* rollout restart: a strategic merge patch of the pod template's
  ``kubectl.kubernetes.io/restartedAt`` annotation;
* scale: a merge patch of the Deployment's ``scale`` subresource;
* rollout undo: the ReplicaSets the Deployment controls (selected by label, filtered by
  controller owner), the one with the wanted revision, its pod template without the
  ``pod-template-hash`` label, written back with a JSON patch of ``spec.template`` and
  the annotations, as kubectl does.

* delete a pod: an Eviction (``POST .../pods/NAME/eviction``), never a plain DELETE, so
  that PodDisruptionBudgets hold (the server answers 429 while a budget forbids it).

A restart or an undo of a paused Deployment is refused: nothing would roll out until
someone resumes it. Every patch names its content type: the client would otherwise send
a JSON patch, which a real API server rejects for an object body.

API errors, as kubectl and client-go treat them: 409 Conflict re-reads and retries at
once (an undo patch is rebuilt from the fresh objects); 429 waits for ``Retry-After``;
5xx and timeouts back off exponentially; 403, 404 and 422 fail at once, since asking
again gets the same answer. Whatever the end, the record carries the API's message.

Every action posts an Event on the Deployment. Dry-run asks the API server to validate
without persisting (``dryRun=All``).
Client exceptions are turned into healer's errors here and go no further; nor do client
objects: callers get WorkloadState and ActionRecord values.
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
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt
from urllib3.exceptions import HTTPError

from healer.errors import (
    ActionError,
    ConfigError,
    PermanentActionError,
    TransientActionError,
)
from healer.types import (
    ActionKind,
    ActionRecord,
    ActionStatus,
    HpaState,
    JsonObject,
    JsonValue,
    Mode,
    Plan,
    Revision,
    WorkloadRef,
    WorkloadState,
)

REVISION = "deployment.kubernetes.io/revision"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
STRATEGIC = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
# Annotations kubectl leaves on the Deployment when it copies a ReplicaSet's on undo.
_SKIPPED_ANNOTATIONS = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION,
        "deployment.kubernetes.io/revision-history",
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "deprecated.deployment.rollback.to",
    }
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

    # ---- reading -----------------------------------------------------------------------

    def read_state(self, workload: WorkloadRef) -> WorkloadState:
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
        )

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
        selector = ",".join(f"{k}={v}" for k, v in sorted(dep.spec.selector.match_labels.items()))
        sets = self._call(
            self._apps.list_namespaced_replica_set, dep.metadata.namespace, label_selector=selector
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
        metadata = data.get("metadata") or {}
        (metadata.get("annotations") or {}).pop(RESTARTED_AT, None)
        (metadata.get("labels") or {}).pop("pod-template-hash", None)
        data["metadata"] = {k: v for k, v in metadata.items() if v}  # {} and absent alike
        text = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

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
                request = self._request(plan, now)
            except ActionError as exc:  # undo reads the ReplicaSets first; that can fail too
                return self._record(plan, intent, ActionStatus.FAILED, now, error=str(exc))
            return self._record(plan, request, ActionStatus.PENDING_APPROVAL, now)
        dry_run = plan.mode == Mode.DRY_RUN
        sent: list[JsonObject] = []
        try:
            self._retrying()(self._request_and_send, plan, now, dry_run, sent)
        except ActionError as exc:
            request = sent[-1] if sent else intent
            return self._record(plan, request, ActionStatus.FAILED, now, error=str(exc))
        request = sent[-1]
        if not dry_run:
            self._post_event(plan, now)
        return self._record(
            plan, request, ActionStatus.DRY_RUN if dry_run else ActionStatus.SUCCEEDED, now
        )

    def _retrying(self) -> Retrying:
        def wait(state: RetryCallState) -> float:
            seconds = _wait_s(state)
            self.waits_s.append(seconds)
            return seconds

        return Retrying(
            retry=retry_if_exception_type(TransientActionError),
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
        sent.append(request)
        self._send(request, dry_run=dry_run)

    def _request(self, plan: Plan, now: datetime) -> JsonObject:
        w = plan.workload
        path = f"/apis/apps/v1/namespaces/{w.namespace}/deployments/{w.name}"
        if plan.action == ActionKind.DELETE_POD:
            pod = str(plan.params["pod"])
            eviction: JsonObject = {
                "apiVersion": "policy/v1",
                "kind": "Eviction",
                "metadata": {"name": pod, "namespace": w.namespace},
            }
            pod_path = f"/api/v1/namespaces/{w.namespace}/pods/{pod}/eviction"
            return {
                "verb": "POST",
                "path": pod_path,
                "content_type": "application/json",
                "body": eviction,
            }
        if plan.action == ActionKind.RESTART:
            self._refuse_paused(w, "restarting")
            stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            body: Any = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}
            return {"verb": "PATCH", "path": path, "content_type": STRATEGIC, "body": body}
        if plan.action == ActionKind.SCALE and plan.params.get("hpa"):
            # Raise the autoscaler's floor rather than fight it: it would undo a plain scale.
            hpa_path = (
                f"/apis/autoscaling/v2/namespaces/{w.namespace}"
                f"/horizontalpodautoscalers/{plan.params['hpa']}"
            )
            body = {"spec": {"minReplicas": plan.params["replicas"]}}
            return {"verb": "PATCH", "path": hpa_path, "content_type": MERGE, "body": body}
        if plan.action == ActionKind.SCALE:
            body = {"spec": {"replicas": plan.params["replicas"]}}
            return {"verb": "PATCH", "path": f"{path}/scale", "content_type": MERGE, "body": body}
        if plan.action == ActionKind.ROLLBACK:
            return {
                "verb": "PATCH",
                "path": path,
                "content_type": JSON_PATCH,
                "body": self._undo_patch(w, int(str(plan.params["to_revision"]))),
            }
        raise PermanentActionError(f"{plan.action} is not supported on {w}")

    def _undo_patch(self, workload: WorkloadRef, to_revision: int) -> list[JsonValue]:
        """The JSON patch `kubectl rollout undo --to-revision` sends."""
        dep = self._call(self._apps.read_namespaced_deployment, workload.name, workload.namespace)
        if dep.spec.paused:
            raise PermanentActionError(f"{workload} is paused; resume it before rolling back")
        target = next(
            (
                rs
                for rs in self._controlled_replicasets(dep)
                if (rs.metadata.annotations or {}).get(REVISION) == str(to_revision)
            ),
            None,
        )
        if target is None:
            raise PermanentActionError(f"{workload} has no revision {to_revision} to roll back to")
        template = self._apps.api_client.sanitize_for_serialization(target.spec.template)
        template = copy.deepcopy(template)
        template.get("metadata", {}).get("labels", {}).pop("pod-template-hash", None)
        annotations = {
            k: v for k, v in (dep.metadata.annotations or {}).items() if k in _SKIPPED_ANNOTATIONS
        }
        annotations.update(
            {
                k: v
                for k, v in (target.metadata.annotations or {}).items()
                if k not in _SKIPPED_ANNOTATIONS
            }
        )
        return [
            {"op": "replace", "path": "/spec/template", "value": template},
            {"op": "replace", "path": "/metadata/annotations", "value": annotations},
        ]

    def _refuse_paused(self, workload: WorkloadRef, doing: str) -> None:
        dep = self._call(self._apps.read_namespaced_deployment, workload.name, workload.namespace)
        if dep.spec.paused:
            raise PermanentActionError(
                f"{workload} is paused: resume it before {doing}; nothing would roll out"
            )

    def _send(self, request: JsonObject, *, dry_run: bool) -> None:
        path = str(request["path"]).split("/")
        if request["verb"] == "POST" and path[-1] == "eviction":
            eviction = client.V1Eviction(
                metadata=client.V1ObjectMeta(name=path[6], namespace=path[4]),
                delete_options=client.V1DeleteOptions(dry_run=["All"]) if dry_run else None,
            )
            self._call(self._core.create_namespaced_pod_eviction, path[6], path[4], eviction)
            return
        namespace, resource, name = path[5], path[6], path[7]
        kwargs: dict[str, Any] = {"_content_type": request["content_type"]}
        if dry_run:
            kwargs["dry_run"] = "All"
        method: Callable[..., Any]
        if resource == "horizontalpodautoscalers":
            method = self._autoscaling.patch_namespaced_horizontal_pod_autoscaler
        elif path[-1] == "scale":
            method = self._apps.patch_namespaced_deployment_scale
        else:
            method = self._apps.patch_namespaced_deployment
        self._call(method, name, namespace, request["body"], **kwargs)

    def _post_event(self, plan: Plan, now: datetime) -> None:
        w = plan.workload
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{w.name}.", namespace=w.namespace),
            involved_object=client.V1ObjectReference(
                api_version="apps/v1", kind=w.kind, name=w.name, namespace=w.namespace
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
            self._call(self._core.create_namespaced_event, w.namespace, event)

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

        Read from the objects themselves: a restart left its ``restartedAt`` stamp, a
        scale its replicas (or the HPA's minReplicas), a rollback moved the Deployment
        off the revision it rolled back from. An eviction is judged done when the pod
        is gone. Raises ActionError when the cluster cannot be read: then nothing is
        sent again until it can.
        """
        w, params = intent.target, _params(intent.request)
        if intent.kind is ActionKind.DELETE_POD:
            pod = params.get("pod") or str(intent.request.get("path", "")).split("/")[6]
            try:
                self._call(self._core.read_namespaced_pod, str(pod), w.namespace)
            except PermanentActionError:
                return True
            return False
        dep = self._call(self._apps.read_namespaced_deployment, w.name, w.namespace)
        if intent.kind is ActionKind.RESTART:
            stamp = intent.started.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            annotations = dep.spec.template.metadata.annotations or {}
            return bool(annotations.get(RESTARTED_AT) == stamp)
        if intent.kind is ActionKind.SCALE:
            if params.get("hpa"):
                hpa = self._call(
                    self._autoscaling.read_namespaced_horizontal_pod_autoscaler,
                    str(params["hpa"]),
                    w.namespace,
                )
                return bool(hpa.spec.min_replicas == params["replicas"])
            return bool(dep.spec.replicas == params["replicas"])
        current = (dep.metadata.annotations or {}).get(REVISION)
        return current is not None and current != str(params.get("from_revision"))


def _params(request: JsonObject) -> dict[str, JsonValue]:
    params = request.get("params")
    return dict(params) if isinstance(params, dict) else {}


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
