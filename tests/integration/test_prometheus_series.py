"""Awkward series through a real Prometheus: counter resets, stale series, NaN and Inf.

A scripted exporter serves one page per scrape (Prometheus scrapes it every second),
numbered by a gauge, so each grid point of a Frame is traced to the page of the newest
scrape before it even if a scrape of a busy machine is lost.
The series carry ``namespace`` and ``deployment`` labels themselves, and the queries are
configured overrides, so what is tested is the path from Prometheus to the Frame.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import numpy as np
import pytest
from scraping import scraping
from structlog.testing import capture_logs

from healer.collect.prometheus import PrometheusClient, PrometheusSource
from healer.collect.signals import SignalQuery
from healer.types import Frame, Signal, WorkloadRef

pytestmark = pytest.mark.integration

PAGES = 12
RESET_AT = 6  # the counter restarts from 5 at this page (its container restarted)
GONE_AT = 5  # the "old" Deployment's series is missing from this page on
NAN_AT, INF_AT = 3, 4

CART = WorkloadRef("shop", "Deployment", "cart")
OLD = WorkloadRef("shop", "Deployment", "old")
API = WorkloadRef("web", "Deployment", "api")

QUERIES = (
    # The page number, read through the same path (the signal is only a slot here).
    SignalQuery(Signal.CPU, 'app_page{deployment="cart"}', overridden=True),
    SignalQuery(
        Signal.REQUEST_RATE,
        "sum by (namespace, deployment) (rate(app_requests_total[3s]))",
        overridden=True,
    ),
    # A raw difference, as an override without rate() might read a counter.
    SignalQuery(Signal.RESTARTS, "idelta(app_requests_total[3s])", overridden=True),
    SignalQuery(Signal.READY_RATIO, "app_ready", overridden=True),
    SignalQuery(Signal.LATENCY_P99, "app_latency_seconds", overridden=True),
)


def counter(page: int) -> float:
    return 10.0 * page if page < RESET_AT else 5.0 + 10.0 * (page - RESET_AT)


def page_text(page: int) -> str:
    latency = {NAN_AT: "NaN", INF_AT: "+Inf"}.get(page, "0.2")
    lines = [
        "# TYPE app_page gauge",
        f'app_page{{namespace="shop",deployment="cart"}} {page}',
        "# TYPE app_requests_total counter",
        f'app_requests_total{{namespace="shop",deployment="cart"}} {counter(page)}',
        "# TYPE app_ready gauge",
        'app_ready{namespace="shop",deployment="cart"} 1',
        "# TYPE app_latency_seconds gauge",
        f'app_latency_seconds{{namespace="web",deployment="api"}} {latency}',
    ]
    if page < GONE_AT:
        lines.append('app_ready{namespace="shop",deployment="old"} 1')
    return "\n".join(lines) + "\n"


@dataclass
class Scraped:
    url: str
    last_scrape_s: float


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scraped]:
    workdir = tmp_path_factory.mktemp("prometheus-series")
    page = lambda n: page_text(min(n, PAGES - 1))  # noqa: E731
    with scraping(workdir, page, job="app", scrapes=PAGES + 2, timeout_s=90) as url:
        answer = httpx.get(f"{url}/api/v1/query", params={"query": "app_page[5m]"}, timeout=10)
        points = answer.json()["data"]["result"][0]["values"]
        last = next(float(t) for t, v in points if int(float(v)) == PAGES - 1)
        yield Scraped(url, last)


def _frame(scraped: Scraped) -> tuple[Frame, np.ndarray[Any, np.dtype[np.float64]]]:
    """The Frame over the scripted pages, and the page behind each of its grid points
    (-1 before the first scrape)."""
    source = PrometheusSource(
        PrometheusClient(scraped.url, timeout_s=10.0), queries=QUERIES, step_s=1
    )
    until = datetime.fromtimestamp(scraped.last_scrape_s + 0.5, UTC)
    frame = source.fetch(until=until, window_s=PAGES + 5)
    page = np.nan_to_num(frame.series(CART, Signal.CPU), nan=-1.0)
    return frame, page


def test_counter_reset_keeps_rates_right_and_raw_drops_are_gaps(scraped: Scraped) -> None:
    with capture_logs() as logs:
        frame, page = _frame(scraped)
    rate = frame.series(CART, Signal.REQUEST_RATE)
    settled = (page >= 3) & (page < PAGES)
    assert np.all(rate[settled] >= 0) and not np.isnan(rate[settled]).any()
    # Away from the reset every rate is the counter's 10 per second.
    calm = settled & ((page < RESET_AT) | (page >= RESET_AT + 3))
    np.testing.assert_allclose(rate[calm], 10.0, rtol=0.15)
    # The raw difference across the reset is -45: a gap, not a value, and logged.
    raw = frame.series(CART, Signal.RESTARTS)
    assert RESET_AT in page and calm.sum() >= 4
    assert np.all(np.isnan(raw[page == RESET_AT]))
    np.testing.assert_allclose(raw[(page >= 1) & (page != RESET_AT) & (page < PAGES)], 10.0)
    dropped = [e for e in logs if e["event"] == "prometheus_values_dropped"]
    assert any(e["signal"] == "restarts" and e["negative"] >= 1 for e in dropped)


def test_a_series_gone_from_the_scrape_is_a_gap_at_once_not_its_last_value(
    scraped: Scraped,
) -> None:
    frame, page = _frame(scraped)
    ready = frame.series(OLD, Signal.READY_RATIO)
    present, gone = (page >= 0) & (page < GONE_AT), page >= GONE_AT
    assert present.sum() >= 3 and gone.sum() >= 3
    assert np.all(ready[present] == 1.0)
    # Prometheus marks the series stale at the first scrape without it, so it is not
    # carried forward for the 5-minute look-back.
    assert np.all(np.isnan(ready[gone]))
    assert np.all(frame.series(CART, Signal.READY_RATIO)[page >= 0] == 1.0)


def test_nan_and_inf_samples_are_gaps(scraped: Scraped) -> None:
    with capture_logs() as logs:
        frame, page = _frame(scraped)
    latency = frame.series(API, Signal.LATENCY_P99)
    assert {NAN_AT, INF_AT} <= set(page.tolist())
    assert np.all(np.isnan(latency[(page == NAN_AT) | (page == INF_AT)]))
    others = (page >= 0) & (page != NAN_AT) & (page != INF_AT)
    assert np.all(latency[others] == 0.2)
    dropped = [e for e in logs if e["event"] == "prometheus_values_dropped"]
    assert any(e["signal"] == "latency_p99" and e["infinite"] >= 1 for e in dropped)
