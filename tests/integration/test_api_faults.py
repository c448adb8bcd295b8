"""Failures of the Kubernetes API itself, injected by the simulator for reliability tests."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from healer.api.server import ServerThread
from healer.sim.cluster import Cluster
from healer.sim.scenario import ApiFault, load_scenario

MERGE = "application/merge-patch+json"


def test_a_throttled_write_answers_429_with_retry_after(kube_api: Any, cluster: Cluster) -> None:
    cluster.api_faults = [ApiFault(verbs=("PATCH",), throttle_429=1.0, retry_after_s=3)]
    apps = client.AppsV1Api(kube_api)
    with pytest.raises(ApiException) as caught:
        apps.patch_namespaced_deployment_scale(
            "cart", "shop", {"spec": {"replicas": 4}}, _content_type=MERGE
        )
    assert caught.value.status == 429
    assert caught.value.headers["Retry-After"] == "3"
    assert '"reason":"TooManyRequests"' in caught.value.body.replace(" ", "")
    assert apps.read_namespaced_deployment("cart", "shop").spec.replicas == 3  # reads pass


def test_rates_are_honoured_per_verb(sim_server: ServerThread, cluster: Cluster) -> None:
    cluster.api_faults = [ApiFault(verbs=("GET",), error_500=0.3, conflict_409=0.2)]
    with httpx.Client(base_url=sim_server.url) as http:
        path = "/apis/apps/v1/namespaces/shop/deployments/cart"
        codes = [http.get(path).status_code for _ in range(400)]
    assert codes.count(500) == pytest.approx(120, abs=35)
    assert codes.count(409) == pytest.approx(80, abs=30)
    assert codes.count(200) == pytest.approx(200, abs=40)


def test_latency_is_added(sim_server: ServerThread, cluster: Cluster) -> None:
    cluster.api_faults = [ApiFault(latency_s=0.2)]
    started = time.perf_counter()
    answer = httpx.get(f"{sim_server.url}/apis/apps/v1/namespaces/shop/deployments")
    assert answer.status_code == 200
    assert time.perf_counter() - started >= 0.2


def test_faults_are_set_at_run_time_over_http(sim_server: ServerThread, cluster: Cluster) -> None:
    url = f"{sim_server.url}/_sim/api-faults"
    answer = httpx.put(url, json=[{"verbs": ["DELETE"], "error_500": 1.0}])
    assert answer.status_code == 200
    assert cluster.api_faults == [ApiFault(verbs=("DELETE",), error_500=1.0)]
    bad = httpx.put(url, json=[{"error_500": 0.8, "throttle_429": 0.5}])
    assert bad.status_code == 422
    assert bad.json()["kind"] == "Status"


def test_faults_from_the_scenario_apply_in_their_window() -> None:
    scenario = load_scenario("default").model_copy(
        update={"api_faults": [ApiFault(error_500=1.0, from_s=600, until_s=1200)]}
    )
    cluster = Cluster(scenario)
    assert cluster.draw_api_fault("GET") == (None, 0.0)
    cluster.advance(900)
    assert cluster.draw_api_fault("GET") == (500, 0.0)
    cluster.advance(600)
    assert cluster.draw_api_fault("GET") == (None, 0.0)
