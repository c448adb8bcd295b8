"""Custom objects (Argo CD Applications, Flux Kustomizations and GitRepositories) as
JSON, through the official client's ``CustomObjectsApi``.

healer reads a GitOps syncer's objects to learn where a workload comes from, and
annotates them to ask for a sync now; that is all it does with them. Objects come back
as the plain JSON ``kubectl get -o json`` prints, so the code that reads them
(``healer.gitops.owner``) never sees a client object.

Decisions: a 404 is ``PermanentActionError`` naming the object (a workload whose
syncer object is gone cannot be rolled back through Git); 409, 429 and 5xx are
``TransientActionError``, as for every other request of the actuator. Annotations are
sent as a JSON merge patch, as ``kubectl annotate`` does for a custom resource (which has
no strategic merge).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from healer.errors import PermanentActionError, TransientActionError
from healer.types import JsonObject

MERGE_PATCH = "application/merge-patch+json"
_TRANSIENT = frozenset({409, 429, 500, 502, 503, 504})


class CustomObjects:
    """Get and annotate namespaced custom objects."""

    def __init__(self, api: Any, *, timeout_s: float = 10.0) -> None:
        self._api = client.CustomObjectsApi(api)
        self._timeout_s = timeout_s

    def get(self, group: str, version: str, plural: str, namespace: str, name: str) -> JsonObject:
        """The object; PermanentActionError when it does not exist or may not be read."""
        where = f"{plural}.{group}/{version} {namespace}/{name}"
        found = self._call(
            where, self._api.get_namespaced_custom_object, group, version, namespace, plural, name
        )
        if not isinstance(found, dict):
            raise PermanentActionError(f"{where}: the API server answered no object")
        return cast(JsonObject, found)  # JSON from the API server, as kubectl prints it

    def annotate(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str,
        name: str,
        annotations: Mapping[str, str],
    ) -> None:
        """Set ``annotations`` on the object (merge patch; others are left alone)."""
        where = f"{plural}.{group}/{version} {namespace}/{name}"
        body = {"metadata": {"annotations": dict(annotations)}}
        self._call(
            where,
            self._api.patch_namespaced_custom_object,
            group,
            version,
            namespace,
            plural,
            name,
            body,
            _content_type=MERGE_PATCH,
        )

    def _call(self, where: str, method: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, _request_timeout=self._timeout_s, **kwargs)
        except ApiException as exc:
            message = f"{where}: {exc.status} {exc.reason}: {(exc.body or '')[:300]}"
            if exc.status in _TRANSIENT:
                raise TransientActionError(message) from exc
            raise PermanentActionError(message) from exc
        except (HTTPError, OSError) as exc:
            raise TransientActionError(f"{where}: Kubernetes API unreachable: {exc}") from exc
