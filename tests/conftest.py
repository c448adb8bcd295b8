"""Shared fixtures: the simulated cluster served over HTTP, and a client for it.

`make test` runs the tests in parallel, one pytest-xdist worker per core, so no test may
lean on another's state: files go under ``tmp_path``, servers in the test process bind
port 0, servers started as processes take ports from a block per worker
(``test_prometheus._free_port``), and the PostgreSQL tests have a server of their own.
``--dist loadfile`` (pyproject) runs each file on one worker, so module-scoped fixtures
(a Prometheus server, a trained model, executed notebooks) are built once. (Finer,
``--dist loadgroup``, does not group on pytest 9.2: pytest-xdist issue 1386.) The
slowest files are collected first (``SLOWEST_FIRST``), so that no worker is left with a
long one at the end.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from healer.api.server import ServerThread
from healer.audit.store import AuditStore
from healer.sim.apiserver import serve_in_thread, write_kubeconfig
from healer.sim.cluster import Cluster
from healer.sim.scenario import load_scenario

REPO = Path(__file__).resolve().parent.parent

# The files taking the most wall time, longest first, from `pytest -n 3 --durations=80`
# (make test's setting): Prometheus, the chaos benchmark and daemons in real time, and
# the CLI tests' processes, two to four minutes each on a loaded machine, then those of
# half a minute or more. The other files keep pytest's order.
SLOWEST_FIRST = (
    "tests/integration/test_prometheus.py",
    "tests/integration/test_healer_run.py",
    "tests/integration/test_chaos_bench.py",
    "tests/integration/test_shards_run.py",
    "tests/integration/test_gate_release.py",
    "tests/unit/test_cli.py",
    "tests/unit/test_cli_run.py",
    "tests/integration/test_loop_generated.py",
    "tests/integration/test_high_availability.py",
    "tests/integration/test_alertmanager_flow.py",
    "tests/integration/test_train_prometheus.py",
    "tests/unit/chaos/test_chaos_cli.py",
    "tests/integration/test_warm_prometheus.py",
    "tests/integration/test_review_browser.py",
    "tests/integration/test_api_http.py",
    "tests/integration/test_api_schema.py",
    "tests/unit/test_train_cli.py",
    "tests/integration/test_loop_second_week.py",
    "tests/unit/detect/test_shape_bulk.py",
    "tests/unit/test_daemon_errors.py",
    "tests/integration/test_store_postgres_clusters.py",
    "tests/integration/test_loop_gitops.py",
    "tests/integration/test_loop_policies.py",
    "tests/integration/test_kubectl_policies.py",
    "tests/integration/test_api_workers.py",
    "tests/integration/test_prometheus_istio_scope.py",
    "tests/unit/detect/test_univariate_cli.py",
    "tests/unit/detect/test_model.py",
    "tests/unit/sim/test_faults.py",
    "tests/integration/test_notebooks.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::")[0]
        return SLOWEST_FIRST.index(path) if path in SLOWEST_FIRST else len(SLOWEST_FIRST)

    items.sort(key=rank)  # stable: the order within a rank is pytest's
    _name_each_operation(items)


def _name_each_operation(items: list[pytest.Item]) -> None:
    """Give each of schemathesis' per-operation tests its own node id.

    Since pytest 9.2 builds node ids from a callspec, the tests schemathesis makes (one
    per API operation, the operation in the name only) share one node id, and
    pytest-xdist, which schedules by node id, ran one of the twelve. Private API
    (``Node._id``): nothing is done where it is absent or the ids are already distinct.
    """
    counts = Counter(item.nodeid for item in items)
    for item in items:
        node_id = getattr(item, "_id", None)
        if counts[item.nodeid] < 2 or node_id is None or "[" not in item.name:
            continue
        params = item.name.partition("[")[2].removesuffix("]")
        item._id = dataclasses.replace(node_id, params=params)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AuditStore]:
    """An audit store on a fresh SQLite file."""
    audit = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    yield audit
    audit.close()


@pytest.fixture
def cluster() -> Cluster:
    return Cluster(load_scenario("default"))


@pytest.fixture
def sim_server(cluster: Cluster) -> Iterator[ServerThread]:
    server = serve_in_thread(cluster)
    yield server
    server.stop()


@pytest.fixture
def kubeconfig(sim_server: ServerThread, tmp_path: Path) -> Path:
    return write_kubeconfig(tmp_path / "kubeconfig", sim_server.url)


@pytest.fixture
def kube_api(kubeconfig: Path) -> Iterator[Any]:
    from kubernetes import config

    api = config.new_client_from_config(config_file=str(kubeconfig))
    yield api
    api.close()
