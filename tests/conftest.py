"""Shared fixtures: the simulated cluster served over HTTP, and a client for it."""

from __future__ import annotations

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
