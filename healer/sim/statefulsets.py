"""StatefulSets as the API server handles them: defaults, validation (with the fields an
update may not change), and the manifest a scenario's StatefulSet workload starts from.

The controller that runs them is ``healer.sim.controllers.statefulset``; the ``scale``
subresource's view is the Deployment's (``healer.sim.deployments.scale_of``), as both
kinds answer with the same ``autoscaling/v1`` Scale.
"""

from __future__ import annotations

from typing import Any

from healer.sim import deployments
from healer.sim.kinds import BY_RESOURCE, int_or_percent, invalid
from healer.sim.objects import ApiError, K8s
from healer.sim.scenario import WorkloadSpec

_KIND = BY_RESOURCE["statefulsets"]
POLICIES = ("OrderedReady", "Parallel")
STRATEGIES = ("RollingUpdate", "OnDelete")
MUTABLE = frozenset(
    {
        "replicas",
        "ordinals",
        "template",
        "updateStrategy",
        "persistentVolumeClaimRetentionPolicy",
        "minReadySeconds",
        "revisionHistoryLimit",
    }
)
"""The spec fields an update may change; the API server refuses a change to any other."""


def manifest(spec: WorkloadSpec) -> K8s:
    """A scenario workload as a StatefulSet: the Deployment's pod template, ordered pods."""
    dep = deployments.manifest(spec)
    dep["kind"] = "StatefulSet"
    body = dep["spec"]
    body.pop("strategy")
    body["serviceName"] = spec.name
    body["podManagementPolicy"] = "OrderedReady"
    body["updateStrategy"] = {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    return dep


def default(obj: K8s) -> None:
    """The API server's defaults for apps/v1 StatefulSets."""
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        raise invalid(_KIND, _name(obj), "spec", "Invalid value: must be an object")
    spec.setdefault("replicas", 1)
    spec.setdefault("podManagementPolicy", "OrderedReady")
    spec.setdefault("revisionHistoryLimit", 10)
    strategy = spec.setdefault("updateStrategy", {"type": "RollingUpdate"})
    if isinstance(strategy, dict):
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            rolling = strategy.setdefault("rollingUpdate", {})
            if isinstance(rolling, dict):
                rolling.setdefault("partition", 0)
    spec.setdefault(
        "persistentVolumeClaimRetentionPolicy", {"whenDeleted": "Retain", "whenScaled": "Retain"}
    )
    meta = obj.setdefault("metadata", {})
    meta.setdefault("labels", {})
    meta.setdefault("annotations", {})


def validate(obj: K8s) -> None:
    """Reject what the API server rejects, naming the field (422 Invalid)."""
    name = _name(obj)
    if not isinstance(name, str) or not name:
        raise invalid(_KIND, name, "metadata.name", "Required value")
    spec = obj["spec"]
    replicas = spec.get("replicas")
    if not _count(replicas):
        raise invalid(_KIND, name, "spec.replicas", f"Invalid value: {replicas!r}: must be >= 0")
    policy = spec.get("podManagementPolicy")
    if policy not in POLICIES:
        raise invalid(
            _KIND,
            name,
            "spec.podManagementPolicy",
            f'Unsupported value: {policy!r}: supported values: "OrderedReady", "Parallel"',
        )
    _validate_strategy(name, spec.get("updateStrategy"))
    selector = (
        (spec.get("selector") or {}).get("matchLabels") if _dict(spec.get("selector")) else None
    )
    template = spec.get("template") if _dict(spec.get("template")) else {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    if not selector or any(labels.get(k) != v for k, v in selector.items()):
        raise invalid(
            _KIND,
            name,
            "spec.template.metadata.labels",
            "Invalid value: `selector` does not match template `labels`",
        )
    containers = (template.get("spec") or {}).get("containers")
    if not isinstance(containers, list) or not containers:
        raise invalid(_KIND, name, "spec.template.spec.containers", "Required value")
    for i, c in enumerate(containers):
        if not _dict(c) or not c.get("name") or not c.get("image"):
            raise invalid(
                _KIND,
                name,
                f"spec.template.spec.containers[{i}]",
                "Required value: name and image",
            )


def _validate_strategy(name: str, strategy: Any) -> None:
    if not _dict(strategy) or strategy.get("type") not in STRATEGIES:
        kind = strategy.get("type") if _dict(strategy) else strategy
        raise invalid(
            _KIND,
            name,
            "spec.updateStrategy.type",
            f'Unsupported value: {kind!r}: supported values: "OnDelete", "RollingUpdate"',
        )
    rolling = strategy.get("rollingUpdate")
    if strategy["type"] == "OnDelete":
        if rolling is not None:
            raise invalid(
                _KIND,
                name,
                "spec.updateStrategy.rollingUpdate",
                "Invalid value: only allowed for updateStrategy 'RollingUpdate'",
            )
        return
    if not _dict(rolling):
        raise invalid(_KIND, name, "spec.updateStrategy.rollingUpdate", "Invalid value")
    partition = rolling.get("partition")
    if not _count(partition):
        raise invalid(
            _KIND,
            name,
            "spec.updateStrategy.rollingUpdate.partition",
            f"Invalid value: {partition!r}: must be greater than or equal to 0",
        )
    unavailable = rolling.get("maxUnavailable")
    if unavailable is not None and (not int_or_percent(unavailable) or unavailable in (0, "0%")):
        raise invalid(
            _KIND,
            name,
            "spec.updateStrategy.rollingUpdate.maxUnavailable",
            f"Invalid value: {unavailable!r}: must be greater than 0",
        )


def check_update(current: K8s, new: K8s) -> None:
    """An update may change only the ``MUTABLE`` spec fields; 422 otherwise."""
    old_spec, new_spec = current["spec"], new["spec"]
    changed = sorted(
        key
        for key in set(old_spec) | set(new_spec)
        if key not in MUTABLE and old_spec.get(key) != new_spec.get(key)
    )
    if changed:
        raise ApiError(
            422,
            "Invalid",
            f'StatefulSet.apps "{new["metadata"]["name"]}" is invalid: spec: Forbidden: '
            "updates to statefulset spec for fields other than 'replicas', 'ordinals', "
            "'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and "
            f"'minReadySeconds' are forbidden (changed: {', '.join(changed)})",
            {
                "name": new["metadata"]["name"],
                "group": "apps",
                "kind": "StatefulSet",
                "causes": [{"reason": "FieldValueForbidden", "field": "spec"}],
            },
        )


def _name(obj: K8s) -> Any:
    meta = obj.get("metadata")
    return meta.get("name") if isinstance(meta, dict) else None


def _dict(value: Any) -> bool:
    return isinstance(value, dict)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
