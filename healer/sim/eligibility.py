"""Whether a pod template may run on a node: taints against tolerations, the
``nodeSelector`` and the required node affinity, as the DaemonSet controller judges a
node (``NodeShouldRunDaemonPod`` in kube-controller-manager).

Pure functions over the JSON of a Node and of a pod spec, so that the judgment is
tested with literals and shared by whoever places pods.

Decisions:

* Two answers, as Kubernetes gives them: whether a new pod should be placed on the
  node (every ``NoSchedule`` and ``NoExecute`` taint tolerated, selector and affinity
  matched) and whether a pod already there may keep running (only the ``NoExecute``
  taints count). A node tainted ``NoSchedule`` after the pod landed keeps it.
* ``spec.unschedulable`` is not read: a cordoned node carries the taint
  ``node.kubernetes.io/unschedulable:NoSchedule``, which the DaemonSet's automatic
  tolerations cover, so a cordoned node keeps (and gets) its DaemonSet pod.
* Node affinity: the ``requiredDuringSchedulingIgnoredDuringExecution`` terms, ORed,
  each term's ``matchExpressions`` (on labels) and ``matchFields`` (``metadata.name``)
  ANDed, with the operators In, NotIn, Exists, DoesNotExist, Gt and Lt. Preferred terms
  only rank nodes and do not decide eligibility.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from healer.sim.objects import K8s

_EFFECTS_THAT_BLOCK = ("NoSchedule", "NoExecute")


@dataclass(frozen=True)
class Verdict:
    """A node's judgment for one pod spec."""

    should_run: bool
    """A new pod may be placed on the node."""
    may_continue: bool
    """A pod already on the node may stay."""


def judge(node: K8s, pod_spec: K8s) -> Verdict:
    """Whether ``pod_spec`` should run, and may keep running, on ``node``."""
    wanted = pod_spec.get("nodeName")
    if wanted and wanted != node["metadata"]["name"]:
        return Verdict(False, False)
    if not _selector_matches(node, pod_spec) or not _affinity_matches(node, pod_spec):
        return Verdict(False, False)
    tolerations = pod_spec.get("tolerations") or []
    untolerated = [t for t in _taints(node) if not any(tolerates(x, t) for x in tolerations)]
    blocking = [t for t in untolerated if t.get("effect") in _EFFECTS_THAT_BLOCK]
    evicting = [t for t in untolerated if t.get("effect") == "NoExecute"]
    return Verdict(not blocking, not evicting)


def tolerates(toleration: K8s, taint: K8s) -> bool:
    """Kubernetes' ``Toleration.ToleratesTaint``: effect (empty matches all), key (empty
    with ``Exists`` matches all) and value (``Equal``, the default operator)."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    operator = toleration.get("operator") or "Equal"
    if key and key != taint.get("key"):
        return False
    if operator == "Exists":
        return True
    return bool(key) and (toleration.get("value") or "") == (taint.get("value") or "")


def _taints(node: K8s) -> list[K8s]:
    spec = node.get("spec") or {}
    return [t for t in spec.get("taints") or [] if isinstance(t, dict)]


def _labels(node: K8s) -> dict[str, str]:
    return dict(node["metadata"].get("labels") or {})


def _selector_matches(node: K8s, pod_spec: K8s) -> bool:
    labels = _labels(node)
    return all(labels.get(k) == v for k, v in (pod_spec.get("nodeSelector") or {}).items())


def _affinity_matches(node: K8s, pod_spec: K8s) -> bool:
    required = ((pod_spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms")
    if not terms:
        return True
    return any(_term_matches(node, term) for term in terms)


def _term_matches(node: K8s, term: K8s) -> bool:
    expressions = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not expressions and not fields:
        return False  # an empty term matches no node, as Kubernetes has it
    labels = _labels(node)
    by_field = {"metadata.name": node["metadata"]["name"]}
    return all(_holds(e, labels) for e in expressions) and all(_holds(f, by_field) for f in fields)


def _holds(requirement: K8s, values: dict[str, str]) -> bool:
    key, op = requirement.get("key"), requirement.get("operator")
    wanted: list[Any] = requirement.get("values") or []
    present = key in values
    value = values.get(str(key))
    match op:
        case "In":
            return present and value in wanted
        case "NotIn":
            return not present or value not in wanted
        case "Exists":
            return present
        case "DoesNotExist":
            return not present
        case "Gt" | "Lt":
            return present and _compare(str(value), wanted, op)
        case _:
            return False


def _compare(value: str, wanted: list[Any], op: str) -> bool:
    try:
        mine, bound = int(value), int(str(wanted[0]))
    except (ValueError, IndexError):
        return False
    return mine > bound if op == "Gt" else mine < bound
