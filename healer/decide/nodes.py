"""When to cordon, drain and uncordon a node: the cap, and the waits.

Pure rules over ``NodeState`` values and times, called by ``lifecycle.node_watch``,
which keeps what they need across cycles (when a node turned bad, when it turned
healthy, when healer cordoned it).

Decisions:

- The cap counts what cordons take away: a node cordoned (by anyone) gives no new pod
  a home, even once it recovers. healer never cordons a node that would leave fewer
  than ``nodes.min_healthy_share`` of the cluster's nodes schedulable, nor more than
  ``nodes.max_cordoned`` nodes of its own: the node is escalated instead. This is
  node-healthcheck operators' ``minHealthy``, and the node form of the anomaly brake:
  many nodes bad at once means the network or the monitoring, not the nodes.
- Nodes are judged in the order they turned bad (then by name), so that when two turn
  bad and the cap allows one, the first is cordoned and the second escalated, the same
  on every replay.
- A NotReady node is drained right after its cordon: its pods cannot recover there. A
  node under pressure is drained only if its pods still fail ``nodes.drain_after_s``
  after the cordon, since the pressure often passes once nothing new lands on it.
- healer uncordons only nodes it cordoned, after ``nodes.uncordon_after_s`` of health:
  a node a person cordoned (maintenance) is theirs, whatever its state.
"""

from __future__ import annotations

from collections.abc import Sequence, Set
from datetime import datetime

from healer.config import NodeSettings
from healer.types import GuardResult, NodePod, NodeState

CAP_GUARD = "node_cap"


def cap(
    node: NodeState, nodes: Sequence[NodeState], *, held: Set[str], settings: NodeSettings
) -> GuardResult:
    """Whether cordoning ``node`` keeps the cluster within the cap; ``held`` are the nodes
    healer holds cordoned now (those of this cycle too, which ``nodes`` may not show)."""
    total, own_cordons = len(nodes), len(held)
    gone = held | {node.name}
    left = sum(1 for n in nodes if not n.unschedulable and n.name not in gone)
    share = left / total if total else 0.0
    if own_cordons >= settings.max_cordoned:
        return GuardResult(
            CAP_GUARD,
            False,
            f"healer holds {own_cordons} nodes cordoned already (nodes.max_cordoned "
            f"{settings.max_cordoned})",
        )
    if share < settings.min_healthy_share:
        return GuardResult(
            CAP_GUARD,
            False,
            f"cordoning {node.name} would leave {left} of {total} nodes schedulable "
            f"({share:.0%}), under nodes.min_healthy_share {settings.min_healthy_share:.0%}",
        )
    return GuardResult(CAP_GUARD, True, f"{left} of {total} nodes stay schedulable ({share:.0%})")


def evictable(pods: Sequence[NodePod]) -> tuple[NodePod, ...]:
    """The pods a drain evicts: all but DaemonSet pods and those already terminating."""
    return tuple(p for p in pods if not p.daemon and not p.terminating)


def drain_due(
    node: NodeState, *, cordoned_at: datetime, now: datetime, settings: NodeSettings
) -> bool:
    """Whether the cordoned node's pods should be moved now (see the module docstring).

    ``node`` still failing pods is the caller's diagnosis; a NotReady node is drained
    at once, one under pressure after ``drain_after_s``."""
    if not node.ready:
        return True
    return (now - cordoned_at).total_seconds() >= settings.drain_after_s


def drain_overdue(*, started: datetime, now: datetime, settings: NodeSettings) -> bool:
    """A drain still unfinished ``drain_within_s`` after it began is escalated."""
    return (now - started).total_seconds() >= settings.drain_within_s


def uncordon_due(
    node: NodeState, *, healthy_since: datetime | None, now: datetime, settings: NodeSettings
) -> bool:
    """Whether a node healer cordoned has been healthy long enough to take pods again."""
    if not node.healthy or healthy_since is None:
        return False
    return (now - healthy_since).total_seconds() >= settings.uncordon_after_s


def by_onset(
    nodes: Sequence[NodeState], bad_since: dict[str, datetime], now: datetime
) -> list[NodeState]:
    """Nodes in the order they turned bad (healthy ones last), then by name."""
    return sorted(nodes, key=lambda n: (bad_since.get(n.name, now), n.name))
