"""A shard's Istio queries against a real Prometheus: restricted on the serving
workload's namespace.

An exporter serves Istio-shaped request counters of two workloads in two namespaces.
Like the sidecars' own endpoint they carry ``destination_workload_namespace``, and no
``namespace`` label at all, so a matcher on ``namespace`` would select nothing.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from test_prometheus import _binary

from healer.api.server import ServerThread, bind
from healer.collect.scope import restrict
from healer.collect.signals import build_queries
from healer.types import Signal

pytestmark = pytest.mark.integration

SCRAPES = 4  # a rate over the window needs two samples; a few more for a lost scrape


def page_text(scrape: int) -> str:
    common = 'reporter="destination",response_code="200"'
    return (
        "\n".join(
            [
                "# TYPE istio_requests_total counter",
                f'istio_requests_total{{{common},destination_workload="cart",'
                f'destination_workload_namespace="shop"}} {10 * scrape}',
                f'istio_requests_total{{{common},destination_workload="api",'
                f'destination_workload_namespace="web"}} {20 * scrape}',
            ]
        )
        + "\n"
    )


@pytest.fixture(scope="module")
def prometheus_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    prometheus = _binary("prometheus")
    workdir = tmp_path_factory.mktemp("prometheus-istio")
    served = [0]

    async def metrics(request: Request) -> PlainTextResponse:
        served[0] += 1
        return PlainTextResponse(page_text(served[0]))

    exporter = ServerThread(
        Starlette(routes=[Route("/metrics", metrics)]), bind("127.0.0.1", 0)
    ).start()
    config = workdir / "prometheus.yml"
    scrape = {"job_name": "istio", "honor_labels": True}
    scrape["static_configs"] = [{"targets": [exporter.url.removeprefix("http://")]}]
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
                "scrape_configs": [scrape],
            }
        )
    )
    sock = bind("127.0.0.1", 0)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()
    log = workdir / "prometheus.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                prometheus,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address={url.removeprefix('http://')}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while served[0] < SCRAPES + 1 and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()[-2000:]
            time.sleep(0.2)
        assert served[0] >= SCRAPES + 1, "Prometheus did not scrape the exporter"
        time.sleep(1.5)  # the last scrapes are ingested
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        exporter.stop()


def instant(url: str, promql: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=10)
    assert answer.status_code == 200, answer.text
    result: list[dict[str, Any]] = answer.json()["data"]["result"]
    return result


def test_a_shard_reads_the_istio_request_rate_of_its_namespaces_only(prometheus_url: str) -> None:
    (query,) = (
        q for q in build_queries(signal_set="istio", window_s=30) if q.signal is Signal.REQUEST_RATE
    )
    everything = instant(prometheus_url, query.promql)
    assert {(s["metric"]["namespace"], s["metric"]["deployment"]) for s in everything} == {
        ("shop", "cart"),
        ("web", "api"),
    }
    shop = instant(prometheus_url, restrict(query.promql, {"shop"}))
    assert [(s["metric"]["namespace"], s["metric"]["deployment"]) for s in shop] == [
        ("shop", "cart")
    ]
    assert float(shop[0]["value"][1]) > 0
    on_namespace = query.promql.replace(
        "istio_requests_total{", 'istio_requests_total{namespace=~"shop", '
    )
    assert instant(prometheus_url, on_namespace) == []  # what the old matcher read
