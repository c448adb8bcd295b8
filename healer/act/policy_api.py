"""healer's policies as Kubernetes objects (``healer.io``): list, watch, write status.

Only ``act`` talks to Kubernetes, so the requests a policy watch makes live here: list
a kind across namespaces, watch it from the list's ``resourceVersion``, patch an object's
``status`` subresource, and list the workloads' labels (how many workloads each policy
matches). Callers get plain JSON objects and healer's errors, never client objects;
what a policy means is ``decide.policies``'.

Errors: a 404 on the list (the CRDs are not installed) is ``PoliciesMissing``; a 410
Gone on a watch (its version is older than the server's watch cache) is
``PolicyWatchExpired``, after which the caller lists again; anything else the server or
the network does is a ``TransientActionError``, retried with backoff by the caller.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from healer.errors import PoliciesMissing, PolicyWatchExpired, TransientActionError
from healer.types import JsonObject, WorkloadRef

GROUP = "healer.io"
VERSION = "v1alpha1"
MERGE_PATCH = "application/merge-patch+json"
# Seconds to connect and to read one answer of a list or a status write.
_REQUEST_TIMEOUT_S = (5.0, 30.0)


class KubePolicyApi:
    """The policy requests for one plural (``healingpolicies``, ``clusterhealingpolicies``)."""

    def __init__(self, api: Any) -> None:
        self._custom = client.CustomObjectsApi(api)
        self._apps = client.AppsV1Api(api)

    def list_all(self, plural: str) -> tuple[tuple[JsonObject, ...], str]:
        """Every object of ``plural`` in every namespace, and the list's version (to
        watch from)."""
        found = self._call(
            self._custom.list_cluster_custom_object,
            GROUP,
            VERSION,
            plural,
            _request_timeout=_REQUEST_TIMEOUT_S,
        )
        items = tuple(found.get("items") or ())
        return items, str((found.get("metadata") or {}).get("resourceVersion", ""))

    def watch(
        self, plural: str, resource_version: str, *, timeout_s: int
    ) -> Iterator[tuple[str, JsonObject]]:
        """``(ADDED|MODIFIED|DELETED, object)`` after ``resource_version``, until the
        server ends the watch (``timeout_s``); ``PolicyWatchExpired`` on 410."""
        # The client's watch module carries no annotations: the stream yields dicts.
        stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
            self._custom.list_cluster_custom_object,
            GROUP,
            VERSION,
            plural,
            resource_version=resource_version,
            timeout_seconds=timeout_s,
            allow_watch_bookmarks=False,
        )
        try:
            for event in stream:
                kind, obj = str(event["type"]), event["object"]
                if kind == "ERROR":
                    raise _error(obj)
                yield kind, obj
        except ApiException as exc:
            raise _wrapped(exc) from exc
        except (HTTPError, OSError) as exc:
            raise TransientActionError(f"watching {plural}.{GROUP}: {exc}") from exc

    def write_status(self, plural: str, obj: JsonObject, status: JsonObject) -> None:
        """Merge ``status`` into the object's status subresource."""
        meta = obj["metadata"]
        assert isinstance(meta, dict)
        name, namespace = str(meta["name"]), meta.get("namespace")
        body = {"status": status}
        if namespace:
            self._call(
                self._custom.patch_namespaced_custom_object_status,
                GROUP,
                VERSION,
                str(namespace),
                plural,
                name,
                body,
                _content_type=MERGE_PATCH,
                _request_timeout=_REQUEST_TIMEOUT_S,
            )
        else:
            self._call(
                self._custom.patch_cluster_custom_object_status,
                GROUP,
                VERSION,
                plural,
                name,
                body,
                _content_type=MERGE_PATCH,
                _request_timeout=_REQUEST_TIMEOUT_S,
            )

    def workload_labels(self) -> list[tuple[WorkloadRef, Mapping[str, str]]]:
        """Every Deployment, StatefulSet and DaemonSet with its labels."""
        found: list[tuple[WorkloadRef, Mapping[str, str]]] = []
        for kind, lister in (
            ("Deployment", self._apps.list_deployment_for_all_namespaces),
            ("StatefulSet", self._apps.list_stateful_set_for_all_namespaces),
            ("DaemonSet", self._apps.list_daemon_set_for_all_namespaces),
        ):
            listed = self._call(lister, _request_timeout=_REQUEST_TIMEOUT_S)
            for item in listed.items:
                meta = item.metadata
                ref = WorkloadRef(meta.namespace, kind, meta.name)
                found.append((ref, dict(meta.labels or {})))
        return found

    @staticmethod
    def _call(method: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except ApiException as exc:
            raise _wrapped(exc) from exc
        except (HTTPError, OSError) as exc:
            raise TransientActionError(f"Kubernetes API unreachable: {exc}") from exc


def _wrapped(exc: ApiException) -> TransientActionError:
    if exc.status == 404:
        return PoliciesMissing(f"{GROUP}/{VERSION} is not served (CRDs not installed)")
    if exc.status == 410:
        return PolicyWatchExpired(f"watch expired: {exc.reason}")
    return TransientActionError(f"Kubernetes API answered {exc.status} {exc.reason}")


def _error(status: Any) -> TransientActionError:
    code = status.get("code") if isinstance(status, dict) else None
    message = status.get("message") if isinstance(status, dict) else status
    if code == 410:
        return PolicyWatchExpired(f"watch expired: {message}")
    return TransientActionError(f"watch error {code}: {message}")
