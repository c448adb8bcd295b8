"""The cap on cordoned nodes, what a drain evicts, and when to drain and uncordon."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from healer.config import NodeSettings
from healer.decide import nodes as policy
from healer.types import NodePod, NodeState

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
SETTINGS = NodeSettings(min_healthy_share=0.5, max_cordoned=3)


def node(
    name: str, *, ready: bool = True, cordoned: bool = False, pressure: tuple[str, ...] = ()
) -> NodeState:
    return NodeState(name, ready, pressure, cordoned)


def test_the_first_of_two_bad_nodes_is_cordoned_the_second_would_go_below_the_share() -> None:
    nodes = [node("a", ready=False), node("b", ready=False), node("c")]

    first = policy.cap(nodes[0], nodes, held=set(), settings=SETTINGS)
    after = [node("a", ready=False, cordoned=True), nodes[1], nodes[2]]
    second = policy.cap(after[1], after, held={"a"}, settings=SETTINGS)
    # The same when the snapshot predates the cordon (both judged in one cycle).
    assert not policy.cap(nodes[1], nodes, held={"a"}, settings=SETTINGS).passed

    assert first.passed and first.detail == "2 of 3 nodes stay schedulable (67%)"
    assert not second.passed
    assert second.detail == (
        "cordoning b would leave 1 of 3 nodes schedulable (33%), under nodes.min_healthy_share 50%"
    )


def test_a_persons_cordon_counts_against_the_share() -> None:
    nodes = [node("a", ready=False), node("b", cordoned=True), node("c"), node("d")]
    verdict = policy.cap(nodes[0], nodes, held=set(), settings=NodeSettings(min_healthy_share=0.6))
    assert not verdict.passed and "2 of 4 nodes schedulable" in verdict.detail


def test_healer_holds_no_more_than_max_cordoned_nodes() -> None:
    nodes = [node(str(i)) for i in range(10)]
    verdict = policy.cap(nodes[0], nodes, held={"5"}, settings=NodeSettings(max_cordoned=1))
    assert not verdict.passed
    assert verdict.detail == "healer holds 1 nodes cordoned already (nodes.max_cordoned 1)"


def test_a_drain_leaves_daemonset_pods_and_terminating_ones() -> None:
    pods = [
        NodePod("shop", "cart-1", "ReplicaSet/cart-7f", True),
        NodePod("kube-system", "agent-x", "DaemonSet/agent", True),
        NodePod("shop", "web-1", "ReplicaSet/web-5", False, terminating=True),
        NodePod("shop", "bare", "", False),
    ]
    assert [p.name for p in policy.evictable(pods)] == ["cart-1", "bare"]


def test_a_notready_node_drains_at_once_one_under_pressure_after_the_wait() -> None:
    settings = NodeSettings(drain_after_s=120)
    down = node("a", ready=False)
    pressed = node("a", pressure=("MemoryPressure",))

    assert policy.drain_due(down, cordoned_at=NOW, now=NOW, settings=settings)
    assert not policy.drain_due(
        pressed, cordoned_at=NOW, now=NOW + timedelta(seconds=119), settings=settings
    )
    assert policy.drain_due(
        pressed, cordoned_at=NOW, now=NOW + timedelta(seconds=120), settings=settings
    )


def test_a_drain_is_overdue_after_its_deadline() -> None:
    settings = NodeSettings(drain_within_s=600)
    assert not policy.drain_overdue(
        started=NOW, now=NOW + timedelta(seconds=599), settings=settings
    )
    assert policy.drain_overdue(started=NOW, now=NOW + timedelta(seconds=600), settings=settings)


def test_uncordon_waits_for_health_to_last() -> None:
    settings = NodeSettings(uncordon_after_s=600)
    since = NOW - timedelta(seconds=600)

    assert policy.uncordon_due(
        node("a", cordoned=True), healthy_since=since, now=NOW, settings=settings
    )
    assert not policy.uncordon_due(
        node("a", cordoned=True),
        healthy_since=since + timedelta(seconds=1),
        now=NOW,
        settings=settings,
    )
    assert not policy.uncordon_due(
        node("a", ready=False, cordoned=True), healthy_since=since, now=NOW, settings=settings
    )


def test_nodes_are_judged_in_the_order_they_turned_bad_then_by_name() -> None:
    nodes = [node("c"), node("b"), node("a")]
    bad_since = {"c": NOW - timedelta(minutes=5), "b": NOW - timedelta(minutes=1)}
    assert [n.name for n in policy.by_onset(nodes, bad_since, NOW)] == ["c", "b", "a"]
