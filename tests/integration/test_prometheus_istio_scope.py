"""A shard's Istio queries against a real Prometheus: restricted on the serving
workload's namespace.

An exporter serves Istio-shaped request counters of two workloads in two namespaces.
Like the sidecars' own endpoint they carry ``destination_workload_namespace``, and no
``namespace`` label at all, so a matcher on ``namespace`` would select nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from scraping import scraping

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
    workdir = tmp_path_factory.mktemp("prometheus-istio")
    with scraping(workdir, lambda n: page_text(n + 1), job="istio", scrapes=SCRAPES + 1) as url:
        yield url


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
