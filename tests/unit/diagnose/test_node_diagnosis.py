"""A node is diagnosed when its condition is bad and it fails pods whose replicas
elsewhere serve; not when either half is missing."""

from __future__ import annotations

from healer.diagnose.nodes import diagnose
from healer.types import Cause, NodePod, NodeState, node_ref


def pod(name: str, owner: str = "ReplicaSet/cart-7f", *, ready: bool = True) -> NodePod:
    return NodePod("shop", name, owner, ready)


def node(
    name: str, *pods: NodePod, ready: bool = True, pressure: tuple[str, ...] = ()
) -> NodeState:
    return NodeState(name, ready, pressure, False, pods)


def test_a_notready_node_failing_pods_whose_replicas_elsewhere_serve_is_diagnosed() -> None:
    bad = node(
        "a", pod("cart-1", ready=False), pod("web-1", "ReplicaSet/web-5", ready=False), ready=False
    )
    others = [node("b", pod("cart-2"), pod("web-2", "ReplicaSet/web-5")), node("c", pod("cart-3"))]

    found = diagnose(bad, [bad, *others])

    assert found is not None
    assert (found.workload, found.cause, found.confidence) == (
        node_ref("a"),
        Cause.NODE_NOT_READY,
        0.9,
    )
    assert found.explanation == (
        "node a is NotReady and 2 pods on it fail (shop/ReplicaSet/cart-7f, "
        "shop/ReplicaSet/web-5) while their 3 pods on other nodes are Ready."
    )


def test_memory_pressure_is_its_own_cause_with_less_confidence() -> None:
    bad = node("a", pod("cart-1", ready=False), pressure=("MemoryPressure",))
    found = diagnose(bad, [bad, node("b", pod("cart-2"))])

    assert found is not None
    assert (found.cause, found.confidence) == (Cause.NODE_PRESSURE, 0.8)
    assert "node a is under MemoryPressure" in found.explanation


def test_a_bad_node_whose_pods_serve_hurts_nobody() -> None:
    bad = node("a", pod("cart-1"), ready=False)
    assert diagnose(bad, [bad, node("b", pod("cart-2"))]) is None


def test_pods_failing_on_every_node_are_their_workloads_fault_not_the_nodes() -> None:
    bad = node("a", pod("cart-1", ready=False), ready=False)
    elsewhere = node("b", pod("cart-2", ready=False))
    assert diagnose(bad, [bad, elsewhere]) is None


def test_a_healthy_node_with_a_failing_pod_is_not_diagnosed() -> None:
    fine = node("a", pod("cart-1", ready=False))
    assert diagnose(fine, [fine, node("b", pod("cart-2"))]) is None


def test_daemonset_pods_are_no_evidence() -> None:
    bad = node("a", pod("agent-a", "DaemonSet/agent", ready=False), ready=False)
    assert diagnose(bad, [bad, node("b", pod("agent-b", "DaemonSet/agent"))]) is None


def test_a_workload_with_no_pod_elsewhere_counts_with_less_confidence() -> None:
    bad = node("a", pod("solo-1", "ReplicaSet/solo-1", ready=False), ready=False)
    found = diagnose(bad, [bad, node("b")])

    assert found is not None
    assert found.confidence == 0.9 - 0.2
    assert found.explanation.endswith("and they run nowhere else to compare with.")


def test_two_bad_nodes_do_not_clear_each_other() -> None:
    a = node("a", pod("cart-1", ready=False), ready=False)
    b = node("b", pod("cart-2", ready=False), ready=False)
    c = node("c", pod("cart-3"))

    assert diagnose(a, [a, b, c]) is not None
    assert diagnose(b, [a, b, c]) is not None
