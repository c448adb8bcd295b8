"""Whether a pod template may run on a node: taints against tolerations, the
``nodeSelector`` and the required node affinity, as the DaemonSet controller judges a
node (``NodeShouldRunDaemonPod`` in kube-controller-manager).

Pure functions over the JSON of a Node and of a pod spec, so that the judgment is
tested with literals; the taint, selector and affinity rules are the scheduler's
(``healer.sim.nodes``), so that both place pods by one reading of them.

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

from healer.sim.nodes import selects, tolerates
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
    if not selects(node, {"spec": pod_spec}):
        return Verdict(False, False)
    tolerations = pod_spec.get("tolerations") or []
    taints = [t for t in (node.get("spec") or {}).get("taints") or [] if isinstance(t, dict)]
    untolerated = [t for t in taints if not tolerates(tolerations, t)]
    blocking = [t for t in untolerated if t.get("effect") in _EFFECTS_THAT_BLOCK]
    evicting = [t for t in untolerated if t.get("effect") == "NoExecute"]
    return Verdict(not blocking, not evicting)
