"""The leader-election Lease: coordination.k8s.io/v1, through the official client.

Only ``act`` talks to Kubernetes, so the Lease's three requests live here: get, create,
and replace with the ``resourceVersion`` last read, which the API server refuses with a
409 Conflict when someone else wrote the Lease in between. That conflict is what makes
the election safe: two candidates can both read an expired Lease, only one can replace
it. Callers get ``LeaseRecord`` values and healer's errors, never client objects.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from healer.act.apicall import call
from healer.errors import ActionError, PermanentActionError
from healer.types import LeaseRecord

# Seconds to connect and to read one answer. Lease calls run every retry period
# (2 s): a hung API server must fail the attempt long before the 10 s renew deadline.
_REQUEST_TIMEOUT_S = (2.0, 4.0)
SHARDS_ANNOTATION = "healer.io/shards"
"""The shard count a shard Lease's holder runs with: a replica configured with another
count reads it and refuses to start (``healer.sharding``)."""
MEMBER_LABEL = "healer.io/member-of"
"""Label of a membership Lease: the group (``leader.name``) whose shards it shares."""


class KubeLeases:
    """Get, create and replace one named Lease."""

    def __init__(self, api: Any, *, namespace: str, name: str) -> None:
        self._coordination = client.CoordinationV1Api(api)
        self.namespace = namespace
        self.name = name

    def get(self) -> LeaseRecord | None:
        """The Lease as stored, or None when it does not exist yet."""
        try:
            lease = self._call(self._coordination.read_namespaced_lease, self.name, self.namespace)
        except PermanentActionError as exc:
            if isinstance(exc.__cause__, ApiException) and exc.__cause__.status == 404:
                return None
            raise
        return _record(lease)

    def create(self, record: LeaseRecord) -> LeaseRecord:
        """Create the Lease; a 409 (someone else created it first) is a TransientActionError."""
        body = self._body(record)
        return _record(self._call(self._coordination.create_namespaced_lease, self.namespace, body))

    def replace(self, record: LeaseRecord) -> LeaseRecord:
        """Replace the Lease if it is still at ``record.resource_version``, else 409."""
        body = self._body(record)
        return _record(
            self._call(self._coordination.replace_namespaced_lease, self.name, self.namespace, body)
        )

    def _body(self, record: LeaseRecord) -> dict[str, Any]:
        return _body(self.namespace, self.name, record)

    @staticmethod
    def _call(method: Any, *args: Any, **kwargs: Any) -> Any:
        return call("lease", method, *args, timeout_s=_REQUEST_TIMEOUT_S, **kwargs)


class KubeMembers:
    """The membership Leases of one group (``healer.membership``): listed by their
    label, each replica creating and renewing its own, and deleting lapsed ones."""

    def __init__(self, api: Any, *, namespace: str, group: str) -> None:
        self._coordination = client.CoordinationV1Api(api)
        self.namespace = namespace
        self.labels = {MEMBER_LABEL: group}

    def members(self) -> dict[str, LeaseRecord]:
        """Every membership Lease of the group, by name (one list request)."""
        selector = ",".join(f"{k}={v}" for k, v in self.labels.items())
        listed = KubeLeases._call(
            self._coordination.list_namespaced_lease, self.namespace, label_selector=selector
        )
        return {lease.metadata.name: _record(lease) for lease in listed.items or ()}

    def create(self, name: str, record: LeaseRecord) -> LeaseRecord:
        body = _body(self.namespace, name, record, self.labels)
        create = self._coordination.create_namespaced_lease
        return _record(KubeLeases._call(create, self.namespace, body))

    def replace(self, name: str, record: LeaseRecord) -> LeaseRecord:
        body = _body(self.namespace, name, record, self.labels)
        replace = self._coordination.replace_namespaced_lease
        return _record(KubeLeases._call(replace, name, self.namespace, body))

    def delete(self, name: str, *, resource_version: str) -> None:
        """Delete the Lease if still at ``resource_version``: a 409 (renewed since) or a
        404 (someone deleted it first) is not an error."""
        options = client.V1DeleteOptions(
            preconditions=client.V1Preconditions(resource_version=resource_version)
        )
        try:
            KubeLeases._call(
                self._coordination.delete_namespaced_lease, name, self.namespace, body=options
            )
        except ActionError as exc:
            cause = exc.__cause__
            if not (isinstance(cause, ApiException) and cause.status in (404, 409)):
                raise


def _body(
    namespace: str, name: str, record: LeaseRecord, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        metadata["labels"] = dict(labels)
    if record.resource_version is not None:
        metadata["resourceVersion"] = record.resource_version
    if record.shards is not None:
        metadata["annotations"] = {SHARDS_ANNOTATION: str(record.shards)}
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": metadata,
        "spec": {
            "holderIdentity": record.holder,
            "leaseDurationSeconds": record.lease_duration_s,
            "acquireTime": _micro_time(record.acquired),
            "renewTime": _micro_time(record.renewed),
            "leaseTransitions": record.transitions,
        },
    }


def server_version(api: Any) -> str:
    """The API server's version (``GET /version``): the cheapest proof that it answers."""
    info = KubeLeases._call(client.VersionApi(api).get_code)
    return str(info.git_version)


def _micro_time(value: datetime | None) -> str | None:
    """A MicroTime: RFC 3339 with all six digits of microseconds, as the API server parses it.

    The client turns the string back into a datetime and sends its isoformat(), which
    drops the fraction at a whole second, and a real API server then answers 400. A
    whole second is therefore written one microsecond later (virtual time in tests is
    always whole seconds; on a wall clock it happens once in a million writes).
    """
    if value is None:
        return None
    if value.microsecond == 0:
        value += timedelta(microseconds=1)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _record(lease: Any) -> LeaseRecord:
    spec = lease.spec
    return LeaseRecord(
        holder=spec.holder_identity or "",
        lease_duration_s=spec.lease_duration_seconds or 0,
        acquired=_parse(spec.acquire_time),
        renewed=_parse(spec.renew_time),
        transitions=spec.lease_transitions or 0,
        resource_version=lease.metadata.resource_version,
        shards=_shards(lease.metadata.annotations or {}),
    )


def _shards(annotations: dict[str, str]) -> int | None:
    """The recorded shard count; None when absent or not a number (then nothing can be
    compared, and the Lease is claimed like any other)."""
    value = annotations.get(SHARDS_ANNOTATION, "")
    return int(value) if value.isdigit() else None
