"""Whether a DaemonSet's pod should run, and may keep running, on a node."""

from __future__ import annotations

from typing import Any

import pytest

from healer.sim.eligibility import Verdict, judge
from healer.sim.nodes import tolerates
from healer.sim.objects import K8s


def node(name: str = "n1", labels: dict[str, str] | None = None, *taints: K8s) -> K8s:
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": {"taints": list(taints)}}


def taint(key: str, effect: str, value: str | None = None) -> K8s:
    return {"key": key, "effect": effect, **({"value": value} if value else {})}


def required(*terms: K8s) -> K8s:
    return {
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}
            }
        }
    }


def test_an_untainted_node_runs_any_pod() -> None:
    assert judge(node(), {}) == Verdict(True, True)


def test_a_no_schedule_taint_keeps_new_pods_off_but_lets_a_running_one_stay() -> None:
    assert judge(node("n1", {}, taint("gpu", "NoSchedule")), {}) == Verdict(False, True)


def test_a_no_execute_taint_evicts_a_pod_that_does_not_tolerate_it() -> None:
    assert judge(node("n1", {}, taint("broken", "NoExecute")), {}) == Verdict(False, False)


def test_a_prefer_no_schedule_taint_decides_nothing() -> None:
    assert judge(node("n1", {}, taint("soft", "PreferNoSchedule")), {}) == Verdict(True, True)


@pytest.mark.parametrize(
    ("toleration", "expected"),
    [
        ({"key": "gpu", "operator": "Exists"}, True),
        ({"key": "gpu", "operator": "Equal", "value": "a100"}, True),
        ({"key": "gpu", "value": "a100"}, True),  # Equal is the default operator
        ({"key": "gpu", "operator": "Equal", "value": "t4"}, False),
        ({"key": "gpu", "operator": "Exists", "effect": "NoExecute"}, False),
        ({"operator": "Exists"}, True),  # an empty key with Exists tolerates everything
        ({"key": "other", "operator": "Exists"}, False),
    ],
)
def test_tolerations_match_as_kubernetes_has_them(toleration: K8s, expected: bool) -> None:
    assert tolerates([toleration], taint("gpu", "NoSchedule", "a100")) is expected


def test_a_node_selector_must_match_the_labels() -> None:
    spec = {"nodeSelector": {"pool": "edge"}}
    assert judge(node("n1", {"pool": "edge"}), spec).should_run
    assert judge(node("n1", {"pool": "core"}), spec) == Verdict(False, False)


@pytest.mark.parametrize(
    ("expression", "labels", "expected"),
    [
        ({"key": "zone", "operator": "In", "values": ["a", "b"]}, {"zone": "a"}, True),
        ({"key": "zone", "operator": "In", "values": ["a"]}, {"zone": "c"}, False),
        ({"key": "zone", "operator": "NotIn", "values": ["a"]}, {}, True),
        ({"key": "zone", "operator": "Exists"}, {"zone": "a"}, True),
        ({"key": "zone", "operator": "DoesNotExist"}, {"zone": "a"}, False),
        ({"key": "cores", "operator": "Gt", "values": ["8"]}, {"cores": "16"}, True),
        ({"key": "cores", "operator": "Lt", "values": ["8"]}, {"cores": "16"}, False),
        ({"key": "cores", "operator": "Gt", "values": ["8"]}, {"cores": "many"}, False),
    ],
)
def test_required_node_affinity_expressions(
    expression: K8s, labels: dict[str, str], expected: bool
) -> None:
    spec = required({"matchExpressions": [expression]})
    assert judge(node("n1", labels), spec).should_run is expected


def test_affinity_terms_are_ored_and_match_fields_read_the_node_name() -> None:
    spec: dict[str, Any] = required(
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]},
        {"matchExpressions": [{"key": "role", "operator": "In", "values": ["edge"]}]},
    )
    assert judge(node("n2"), spec).should_run
    assert judge(node("n3", {"role": "edge"}), spec).should_run
    assert not judge(node("n4"), spec).should_run


def test_a_pod_bound_to_another_node_runs_on_none_else() -> None:
    assert judge(node("n1"), {"nodeName": "n2"}) == Verdict(False, False)
