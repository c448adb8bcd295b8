"""Nodes read through a real Prometheus scraping the simulator agree with the simulator.

An unreachable node, two minutes into its fault: Prometheus scrapes the simulator's
kube-state-metrics series (``kube_node_status_condition``,
``kube_node_spec_unschedulable``, ``kube_pod_info``, ``kube_pod_status_ready``), and
``PrometheusSource.nodes`` makes of them the nodes the simulator's own source reads.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from test_prometheus import PrometheusServer, _binary

from healer.api.server import ServerThread, bind
from healer.collect.prometheus import PrometheusClient, PrometheusSource
from healer.diagnose.nodes import diagnose
from healer.sim.apiserver import create_api
from healer.sim.cluster import Cluster
from healer.sim.scenario import load_scenario
from healer.sim.source import SimSource
from healer.types import Cause, NodeState

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, PrometheusServer]]:
    _binary("prometheus")
    workdir = tmp_path_factory.mktemp("prometheus-nodes")
    scenario = load_scenario("node-notready")
    started = datetime.now(UTC) - timedelta(seconds=1800 + 120)
    cluster = Cluster(scenario.model_copy(update={"start": started.replace(microsecond=0)}))
    cluster.advance(1800 + 120)  # two minutes into the node's fault, then held still
    sim = ServerThread(create_api(cluster), bind("127.0.0.1", 0)).start()
    prometheus = PrometheusServer.start(
        Path(workdir), targets=[sim.url.removeprefix("http://")], data_dir=Path(workdir) / "data"
    )
    try:
        deadline = time.monotonic() + 60
        while not prometheus.instant("kube_pod_status_ready") and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.5)  # a scrape or two ingested
        yield cluster, prometheus
    finally:
        prometheus.stop()
        sim.stop()


def shape(nodes: tuple[NodeState, ...]) -> list[tuple[object, ...]]:
    return [
        (
            n.name,
            n.ready,
            n.pressure,
            n.unschedulable,
            sorted((p.name, p.owner, p.ready) for p in n.pods),
        )
        for n in nodes
    ]


def test_prometheus_and_the_simulator_read_the_same_nodes(
    served: tuple[Cluster, PrometheusServer],
) -> None:
    cluster, prometheus = served
    source = PrometheusSource(PrometheusClient(prometheus.url), queries=(), step_s=1)

    read = source.nodes(until=datetime.now(UTC))

    assert shape(read) == shape(SimSource(cluster).nodes(until=cluster.clock.now()))
    down = next(n for n in read if n.name == "node-01")
    assert not down.ready and down.pods and not any(p.ready for p in down.pods)
    found = diagnose(down, read)
    assert found is not None and found.cause is Cause.NODE_NOT_READY
