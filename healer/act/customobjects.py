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

from healer.act.apicall import call
from healer.errors import PermanentActionError
from healer.types import JsonObject, ObjectRef

MERGE_PATCH = "application/merge-patch+json"


class CustomObjects:
    """Get and annotate namespaced custom objects."""

    def __init__(self, api: Any, *, timeout_s: float = 10.0) -> None:
        self._api = client.CustomObjectsApi(api)
        self._timeout_s = timeout_s

    def get(self, ref: ObjectRef) -> JsonObject:
        """The object; PermanentActionError when it does not exist or may not be read."""
        found = self._call(ref, self._api.get_namespaced_custom_object)
        if not isinstance(found, dict):
            raise PermanentActionError(f"{ref}: the API server answered no object")
        return cast(JsonObject, found)  # JSON from the API server, as kubectl prints it

    def annotate(self, ref: ObjectRef, annotations: Mapping[str, str]) -> None:
        """Set ``annotations`` on the object (merge patch; others are left alone)."""
        body = {"metadata": {"annotations": dict(annotations)}}
        patch = self._api.patch_namespaced_custom_object
        self._call(ref, patch, body, _content_type=MERGE_PATCH)

    def _call(self, ref: ObjectRef, method: Any, *args: Any, **kwargs: Any) -> Any:
        where = (ref.group, ref.version, ref.namespace, ref.plural, ref.name)
        return call(str(ref), method, *where, *args, timeout_s=self._timeout_s, **kwargs)
