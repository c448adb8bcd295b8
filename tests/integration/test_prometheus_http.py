"""PrometheusClient and PrometheusSource over real HTTP, against a stub Prometheus API.

The stub answers /api/v1/query_range the way Prometheus and gateways in front of it do:
data with warnings, 400 bad_data, 401, 503, an HTML page. It records the requests, so
the auth headers and the server-side timeout can be checked.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from structlog.testing import capture_logs

from healer.api.server import ServerThread, bind
from healer.collect.prometheus import PrometheusClient, PrometheusSource
from healer.collect.signals import build_queries
from healer.errors import PrometheusUnavailable, QueryError
from healer.types import Signal

pytestmark = pytest.mark.integration

T0 = 1_800_000_000


@dataclass
class Stub:
    """What the next answers are, and what was asked."""

    status: int = 200
    body: Any = None
    delay_s: float = 0.0
    requests: list[Request] = field(default_factory=list)
    params: list[dict[str, str]] = field(default_factory=list)


def _ok(request: Request) -> dict[str, Any]:
    start, end, step = (int(float(request.query_params[k])) for k in ("start", "end", "step"))
    return {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [
                {
                    "metric": {"namespace": "shop", "deployment": "cart"},
                    "values": [[t, "0.5"] for t in range(start, end + 1, step)],
                }
            ],
        },
        "warnings": ["PromQL info: metric might not be a counter"],
    }


@pytest.fixture
def stub() -> Iterator[tuple[Stub, str]]:
    state = Stub()

    async def query_range(request: Request) -> Response:
        state.requests.append(request)
        state.params.append(dict(request.query_params))
        if state.delay_s:
            await asyncio.sleep(state.delay_s)
        if state.status != 200 or state.body is not None:
            if isinstance(state.body, str):
                return PlainTextResponse(state.body, status_code=state.status)
            return JSONResponse(state.body, status_code=state.status)
        return JSONResponse(_ok(request))

    app = Starlette(routes=[Route("/api/v1/query_range", query_range)])
    server = ServerThread(app, bind("127.0.0.1", 0)).start()
    yield state, server.url
    server.stop()


def _source(client: PrometheusClient, **kwargs: Any) -> PrometheusSource:
    return PrometheusSource(
        client, queries=build_queries(), step_s=15, sleep=lambda s: None, **kwargs
    )


def _fetch(source: PrometheusSource) -> Any:
    return source.fetch(until=datetime.fromtimestamp(T0, UTC), window_s=60)


def test_frame_auth_headers_timeout_and_warnings(stub: tuple[Stub, str]) -> None:
    state, url = stub
    client = PrometheusClient(url, timeout_s=7.5, bearer_token="t0ken")
    with capture_logs() as logs:
        frame = _fetch(_source(client))
    assert frame.values.shape == (1, 7, 4)
    assert len(state.requests) == 7  # one query per signal, for all workloads
    assert {r.headers["authorization"] for r in state.requests} == {"Bearer t0ken"}
    assert {p["timeout"] for p in state.params} == {"7.5s"}
    assert {p["step"] for p in state.params} == {"15"}
    warnings = [e for e in logs if e["event"] == "prometheus_warning"]
    assert {e["signal"] for e in warnings} == {str(s) for s in Signal}


def test_basic_auth(stub: tuple[Stub, str]) -> None:
    state, url = stub
    _fetch(_source(PrometheusClient(url, basic_auth=("healer", "pw"))))
    # base64("healer:pw")
    assert {r.headers["authorization"] for r in state.requests} == {"Basic aGVhbGVyOnB3"}


def test_bad_query_answer_is_a_query_error_with_prometheus_message(
    stub: tuple[Stub, str],
) -> None:
    state, url = stub
    state.status, state.body = (
        400,
        {
            "status": "error",
            "errorType": "bad_data",
            "error": '1:5: parse error: unexpected "}"',
        },
    )
    with pytest.raises(QueryError) as caught:
        _fetch(_source(PrometheusClient(url)))
    message = str(caught.value)
    assert 'HTTP 400: 1:5: parse error: unexpected "}"' in message
    assert message.startswith("signal ") and "query: " in message
    assert len(state.requests) == 7  # not retried


def test_unauthorized_is_unavailable_and_not_retried(stub: tuple[Stub, str]) -> None:
    state, url = stub
    state.status, state.body = 401, "Unauthorized"
    with pytest.raises(PrometheusUnavailable, match=r"answered HTTP 401 \(Unauthorized\)"):
        _fetch(_source(PrometheusClient(url)))
    assert len(state.requests) == 7


def test_server_errors_are_retried_then_unavailable(stub: tuple[Stub, str]) -> None:
    state, url = stub
    state.status, state.body = 503, "<html><body>upstream down</body></html>"
    with pytest.raises(PrometheusUnavailable, match=r"signal \w+: .*answered HTTP 503"):
        _fetch(_source(PrometheusClient(url), retries=2))
    assert len(state.requests) == 7 * 3


def test_a_page_that_is_not_the_api_is_unavailable(stub: tuple[Stub, str]) -> None:
    state, url = stub
    state.body = "<html>login</html>"
    with pytest.raises(PrometheusUnavailable, match=r"not Prometheus API JSON"):
        _fetch(_source(PrometheusClient(url)))


def test_unreachable_url_names_signal_url_and_query() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(PrometheusUnavailable) as caught:
        _fetch(_source(PrometheusClient(url, timeout_s=2.0), retries=1))
    message = str(caught.value)
    assert f"Prometheus at {url} is unreachable after 2 attempts" in message
    assert message.startswith("signal ") and "query: " in message


def test_a_slow_answer_times_out_and_is_retried_with_backoff(stub: tuple[Stub, str]) -> None:
    state, url = stub
    state.delay_s = 2.0
    sleeps: list[float] = []
    source = PrometheusSource(
        PrometheusClient(url, timeout_s=0.5),
        queries=build_queries()[:1],
        step_s=15,
        retries=2,
        backoff_s=0.25,
        sleep=sleeps.append,
    )
    with pytest.raises(PrometheusUnavailable) as caught:
        _fetch(source)
    message = str(caught.value)
    assert message.startswith("signal cpu: ")
    assert "unreachable after 3 attempts (no answer within 0.5 s)" in message
    assert len(state.requests) == 3
    assert sleeps == [0.25, 0.5]  # exponential backoff between the attempts
    assert {p["timeout"] for p in state.params} == {"0.5s"}
