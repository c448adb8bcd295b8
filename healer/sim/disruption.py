"""PodDisruptionBudgets and the eviction subresource, as the API server enforces them.

The disruption controller's arithmetic (pkg/controller/disruption):

* ``minAvailable: N`` (an integer): ``desiredHealthy = N``, ``expectedPods`` = the pods
  the selector matches.
* ``minAvailable: P%``: ``expectedPods`` = the replicas the pods' controllers ask for
  (the Deployment's ``spec.replicas``), ``desiredHealthy = ceil(P% * expectedPods)``.
* ``maxUnavailable: N`` or ``P%``: ``expectedPods`` as above,
  ``desiredHealthy = expectedPods - N`` (a percentage rounded up).
* ``disruptionsAllowed = max(0, currentHealthy - desiredHealthy)`` where
  ``currentHealthy`` counts the matched pods that are Ready.

An eviction of a Ready pod needs ``disruptionsAllowed > 0``; otherwise the answer is
429 TooManyRequests with a ``DisruptionBudget`` cause, which clients retry later. A pod
that is not Ready may be evicted while the budget is met (the default
``unhealthyPodEvictionPolicy: IfHealthyBudget``), or always with ``AlwaysAllow``. A pod
covered by more than one budget cannot be evicted (500), as in Kubernetes.
"""

from __future__ import annotations

import math

from healer.sim.objects import ApiError, K8s


def scaled(value: int | str, total: int, *, round_up: bool) -> int:
    """An IntOrString against ``total``: ints as they are, percentages rounded."""
    if isinstance(value, int):
        return value
    share = int(value.rstrip("%")) * total / 100
    return math.ceil(share) if round_up else math.floor(share)


def budget_status(
    pdb: K8s, *, healthy: int, matched: int, controller_replicas: int, now: str
) -> K8s:
    """The status the disruption controller writes for ``pdb``."""
    spec = pdb.get("spec") or {}
    min_available, max_unavailable = spec.get("minAvailable"), spec.get("maxUnavailable")
    if isinstance(min_available, int):
        expected, desired = matched, min_available
    elif min_available is not None:
        expected = controller_replicas
        desired = scaled(min_available, expected, round_up=True)
    elif max_unavailable is not None:
        expected = controller_replicas
        desired = max(0, expected - scaled(max_unavailable, expected, round_up=True))
    else:  # neither set: the API server defaults minAvailable to 1
        expected, desired = matched, 1
    allowed = max(0, healthy - desired)
    previous = next(
        (
            c
            for c in (pdb.get("status") or {}).get("conditions", [])
            if c["type"] == "DisruptionAllowed"
        ),
        None,
    )
    state = "True" if allowed > 0 else "False"
    changed = previous is None or previous.get("status") != state
    return {
        "observedGeneration": pdb["metadata"].get("generation", 1),
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "expectedPods": expected,
        "disruptionsAllowed": allowed,
        "conditions": [
            {
                "type": "DisruptionAllowed",
                "status": state,
                "reason": "SufficientPods" if allowed > 0 else "InsufficientPods",
                "message": "",
                "observedGeneration": pdb["metadata"].get("generation", 1),
                "lastTransitionTime": previous["lastTransitionTime"]
                if previous and not changed
                else now,
            }
        ],
    }


def check_eviction(pod: K8s, budgets: list[K8s], *, pod_ready: bool) -> None:
    """Raise what the API server answers when ``budgets`` (with fresh status) forbid it."""
    if len(budgets) > 1:
        raise ApiError(
            500,
            "InternalError",
            "This pod has more than one PodDisruptionBudget, which the eviction "
            "subresource does not support.",
        )
    if not budgets:
        return
    pdb = budgets[0]
    status, spec = pdb["status"], pdb.get("spec") or {}
    if not pod_ready and (
        spec.get("unhealthyPodEvictionPolicy") == "AlwaysAllow"
        or status["currentHealthy"] >= status["desiredHealthy"]
    ):
        return
    if status["disruptionsAllowed"] > 0:
        return
    name = pdb["metadata"]["name"]
    raise ApiError(
        429,
        "TooManyRequests",
        "Cannot evict pod as it would violate the pod's disruption budget.",
        {
            "causes": [
                {
                    "reason": "DisruptionBudget",
                    "message": f"The disruption budget {name} needs {status['desiredHealthy']} "
                    f"healthy pods and has {status['currentHealthy']} currently",
                }
            ]
        },
    )
