"""The simulated cluster's controllers: each one a loop that moves the cluster's state
toward what its objects ask for, as kube-controller-manager and the kubelet do.

Every part of a tick (fault injection, the controllers, the kubelet, the workloads'
containers, sampling) has the one shape of ``Controller``; the cluster runs them in a
fixed order each tick (``healer.sim.cluster.Cluster.advance``). A new kind (a
StatefulSet, a DaemonSet, a Node) is a new controller placed in that order, with no
edit to the others. The control plane's controllers also react to each write through
the API at once: they are listed again in ``Cluster.on_write``, which a new kind's
controller joins when it should react to writes too.

Decisions:

* A controller works from the state's work queues (what changed since its last pass)
  where it can, so that a tick in which nothing happens costs almost nothing.
* The order is fixed and a controller may appear in it twice (the Deployment status
  controller runs after the control plane and again after the containers ran): the
  order is part of the simulation, and it decides the order of the random draws.
"""

from __future__ import annotations

from typing import Protocol

from healer.sim.state import ClusterState, Now


class Controller(Protocol):
    """One part of a tick: reads and writes ``state`` at the instant ``now``."""

    def reconcile(self, state: ClusterState, now: Now) -> None: ...


def run(controllers: tuple[Controller, ...], state: ClusterState, now: Now) -> None:
    """One pass of ``controllers`` in their order."""
    for controller in controllers:
        controller.reconcile(state, now)
