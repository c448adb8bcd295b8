"""DaemonSets as the API server handles them: defaults, validation (the selector may not
change), the template generation it keeps, and the manifest a scenario's DaemonSet
workload starts from.

The controller that runs them, one pod per eligible node, is
``healer.sim.controllers.daemonset``. A DaemonSet has no ``replicas`` and no ``scale``
subresource: its size is the number of nodes it should run on.

Decisions:

* The API server counts template changes in the annotation
  ``deprecated.daemonset.template.generation`` (apps/v1 dropped the field
  ``templateGeneration`` but kept its value there); the controller copies it onto each
  pod as the ``pod-template-generation`` label, as the real one does.
"""

from __future__ import annotations

from typing import Any

from healer.sim import deployments
from healer.sim.kinds import BY_RESOURCE, int_or_percent, invalid
from healer.sim.objects import ApiError, K8s
from healer.sim.scenario import WorkloadSpec

_KIND = BY_RESOURCE["daemonsets"]
STRATEGIES = ("RollingUpdate", "OnDelete")
REQUIRED_STATUS = (
    "currentNumberScheduled",
    "numberMisscheduled",
    "desiredNumberScheduled",
    "numberReady",
)
"""The status fields the Go type requires, 0 until the controller's first pass."""
TEMPLATE_GENERATION = "deprecated.daemonset.template.generation"
"""The DaemonSet annotation counting its pod template's changes, from 1."""


def manifest(spec: WorkloadSpec) -> K8s:
    """A scenario workload as a DaemonSet: the Deployment's pod template, one pod a node."""
    ds = deployments.manifest(spec)
    ds["kind"] = "DaemonSet"
    body = ds["spec"]
    body.pop("replicas")
    body.pop("strategy")
    body["updateStrategy"] = {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0},
    }
    return ds


def default(obj: K8s) -> None:
    """The API server's defaults for apps/v1 DaemonSets."""
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        raise invalid(_KIND, _name(obj), "spec", "Invalid value: must be an object")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("minReadySeconds", 0)
    strategy = spec.setdefault("updateStrategy", {"type": "RollingUpdate"})
    if isinstance(strategy, dict):
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            rolling = strategy.setdefault("rollingUpdate", {})
            if isinstance(rolling, dict):
                rolling.setdefault("maxUnavailable", 1)
                rolling.setdefault("maxSurge", 0)
    template = spec.get("template")
    if isinstance(template, dict) and isinstance(template.get("spec"), dict):
        template["spec"].setdefault("restartPolicy", "Always")
    meta = obj.setdefault("metadata", {})
    meta.setdefault("labels", {})
    meta.setdefault("annotations", {})


def validate(obj: K8s) -> None:
    """Reject what the API server rejects, naming the field (422 Invalid)."""
    name = _name(obj)
    if not isinstance(name, str) or not name:
        raise invalid(_KIND, name, "metadata.name", "Required value")
    spec = obj["spec"]
    _validate_strategy(name, spec.get("updateStrategy"))
    selector = spec.get("selector")
    match_labels = selector.get("matchLabels") if isinstance(selector, dict) else None
    template = spec.get("template") if isinstance(spec.get("template"), dict) else {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    if not match_labels or any(labels.get(k) != v for k, v in match_labels.items()):
        raise invalid(
            _KIND,
            name,
            "spec.template.metadata.labels",
            "Invalid value: `selector` does not match template `labels`",
        )
    pod = template.get("spec") or {}
    if pod.get("restartPolicy", "Always") != "Always":
        raise invalid(
            _KIND,
            name,
            "spec.template.spec.restartPolicy",
            f'Unsupported value: {pod.get("restartPolicy")!r}: supported values: "Always"',
        )
    containers = pod.get("containers")
    if not isinstance(containers, list) or not containers:
        raise invalid(_KIND, name, "spec.template.spec.containers", "Required value")
    for i, c in enumerate(containers):
        if not isinstance(c, dict) or not c.get("name") or not c.get("image"):
            raise invalid(
                _KIND, name, f"spec.template.spec.containers[{i}]", "Required value: name and image"
            )
    for key in ("minReadySeconds", "revisionHistoryLimit"):
        if not _count(spec.get(key)):
            raise invalid(
                _KIND, name, f"spec.{key}", f"Invalid value: {spec.get(key)!r}: must be >= 0"
            )


def _validate_strategy(name: str, strategy: Any) -> None:
    if not isinstance(strategy, dict) or strategy.get("type") not in STRATEGIES:
        kind = strategy.get("type") if isinstance(strategy, dict) else strategy
        raise invalid(
            _KIND,
            name,
            "spec.updateStrategy.type",
            f'Unsupported value: {kind!r}: supported values: "OnDelete", "RollingUpdate"',
        )
    if strategy["type"] == "OnDelete":
        return
    rolling = strategy.get("rollingUpdate")
    if not isinstance(rolling, dict):
        raise invalid(_KIND, name, "spec.updateStrategy.rollingUpdate", "Required value")
    for key in ("maxUnavailable", "maxSurge"):
        value = rolling.get(key)
        if not int_or_percent(value):
            raise invalid(
                _KIND,
                name,
                f"spec.updateStrategy.rollingUpdate.{key}",
                f"Invalid value: {value!r}: must be an integer or a percentage, >= 0",
            )
    if rolling["maxUnavailable"] in (0, "0%") and rolling["maxSurge"] in (0, "0%"):
        raise invalid(
            _KIND,
            name,
            "spec.updateStrategy.rollingUpdate.maxUnavailable",
            "Invalid value: 0: may not be 0 when `maxSurge` is 0",
        )


def check_update(current: K8s, new: K8s) -> None:
    """The selector is immutable (422), as for every apps/v1 workload."""
    if new["spec"].get("selector") != current["spec"].get("selector"):
        raise ApiError(
            422,
            "Invalid",
            f'DaemonSet.apps "{new["metadata"]["name"]}" is invalid: '
            "spec.selector: Invalid value: field is immutable",
            {
                "name": new["metadata"]["name"],
                "group": "apps",
                "kind": "DaemonSet",
                "causes": [{"reason": "FieldValueInvalid", "field": "spec.selector"}],
            },
        )


def stamp_template_generation(current: K8s | None, new: K8s) -> None:
    """Count the template's changes in ``TEMPLATE_GENERATION``: 1 on create, one more on
    each write that changes ``spec.template``, kept as it was otherwise."""
    annotations = new["metadata"].setdefault("annotations", {})
    if current is None:
        annotations[TEMPLATE_GENERATION] = "1"
        return
    before = int((current["metadata"].get("annotations") or {}).get(TEMPLATE_GENERATION, "1"))
    changed = new["spec"].get("template") != current["spec"].get("template")
    annotations[TEMPLATE_GENERATION] = str(before + 1 if changed else before)


def template_generation(ds: K8s) -> int:
    return int((ds["metadata"].get("annotations") or {}).get(TEMPLATE_GENERATION, "1"))


def _name(obj: K8s) -> Any:
    meta = obj.get("metadata")
    return meta.get("name") if isinstance(meta, dict) else None


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
