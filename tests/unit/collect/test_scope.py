"""A shard's queries: the namespace matcher on every selector, and the scoped source."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from healer.collect.prometheus import PrometheusSource, RangeResult, RawSeries
from healer.collect.scope import NAMESPACES, ScopedSource, restrict
from healer.collect.signals import RECORDS, SignalQuery, build_queries
from healer.types import Signal, WorkloadRef

NS = 'namespace=~"shop|web"'


def test_every_selector_gets_the_matcher_and_nothing_else_changes() -> None:
    promql = (
        'sum by (namespace, deployment) (rate(http_requests_total{code=~"5.."}[60s] offset 1m))'
        " / on (namespace) group_left (deployment) kube_pod_owner"
        ' or label_replace(up, "x", "$1", "job", "(.+)") > 1e3'
    )
    assert restrict(promql, {"web", "shop"}) == (
        "sum by (namespace, deployment) "
        f'(rate(http_requests_total{{{NS}, code=~"5.."}}[60s] offset 1m))'
        f" / on (namespace) group_left (deployment) kube_pod_owner{{{NS}}}"
        f' or label_replace(up{{{NS}}}, "x", "$1", "job", "(.+)") > 1e3'
    )


def test_selectors_without_a_name_or_with_empty_braces() -> None:
    assert restrict('{__name__="up"} + up{}', {"shop", "web"}) == (
        f'{{{NS}, __name__="up"}} + up{{{NS}}}'
    )


def test_every_signal_query_of_the_table_restricts_every_metric_it_reads() -> None:
    for recorded in (False, True):
        for query in build_queries(recorded=recorded):
            out = restrict(query.promql, {"shop", "web"})
            # Every metric read (a name followed by { or by a range) carries the matcher.
            selectors = re.findall(r"([a-zA-Z_:][\w:]*)\{([^}]*)\}", out)
            assert selectors, query.signal
            assert all(body.startswith(NS) for _, body in selectors), (query.signal, out)
            # Aggregations, functions and label lists are left alone.
            assert f"sum{{{NS}" not in out and f"by{{{NS}" not in out
            assert out.replace(f"{NS}, ", "").replace(f"{{{NS}}}", "") == query.promql


def test_no_namespace_is_refused_rather_than_matching_everything_unlabelled() -> None:
    with pytest.raises(ValueError, match="at least one namespace"):
        restrict("up", set())


UNTIL = datetime.fromtimestamp(1_800_000_000, UTC)


class Client:
    """Answers the namespaces query and the signal queries from fixed series."""

    url = "http://prometheus.test"

    def __init__(self, namespaces: list[str]) -> None:
        self.namespaces = namespaces
        self.calls: list[str] = []

    def query_range(self, promql: str, *, start_s: int, end_s: int, step_s: int) -> RangeResult:
        self.calls.append(promql)
        if promql in (NAMESPACES,):
            return RangeResult([_point({"namespace": ns}, end_s) for ns in self.namespaces])
        wanted = re.search(r'namespace=~"([^"]*)"', promql)
        names = wanted.group(1).split("|") if wanted else self.namespaces
        return RangeResult([_point({"namespace": ns, "deployment": "api"}, end_s) for ns in names])


def _point(labels: dict[str, str], at_s: int) -> RawSeries:
    return {"metric": labels, "values": [[at_s, "1"]]}


def scoped(client: Client, owned: set[str]) -> ScopedSource:
    queries = (SignalQuery(Signal.CPU, "cpu_ratio", False),)
    source = PrometheusSource(client, queries=queries, step_s=15, retries=0)
    return ScopedSource(source, owns=lambda ns: ns in owned)


def test_the_scoped_source_reads_only_the_owned_namespaces() -> None:
    client = Client(["shop", "web", "billing"])
    owned = {"shop", "billing"}
    source = scoped(client, owned)
    frame = source.fetch(until=UNTIL, window_s=60)
    assert {w.namespace for w in frame.workloads} == {"billing", "shop"}
    assert client.calls[-1] == 'cpu_ratio{namespace=~"billing|shop"}'
    owned.add("web")  # a shard taken over: the next fetch reads its namespaces too
    frame = source.fetch(until=UNTIL, window_s=60)
    assert WorkloadRef("web", "Deployment", "api") in frame.workloads
    assert source.namespaces == {"billing", "shop", "web"}


def test_owning_no_namespace_reads_nothing_but_the_namespaces() -> None:
    client = Client(["shop"])
    frame = scoped(client, set()).fetch(until=UNTIL, window_s=60)
    assert frame.workloads == () and frame.values.shape == (0, 1, 0)
    assert client.calls == [NAMESPACES]


def test_with_recording_rules_the_namespaces_come_from_the_recorded_series() -> None:
    client = Client(["shop"])
    queries = tuple(SignalQuery(s, RECORDS[s], False) for s in Signal)
    source = ScopedSource(
        PrometheusSource(client, queries=queries, retries=0), owns=lambda ns: True
    )
    source.fetch(until=UNTIL, window_s=60)
    assert client.calls[0].startswith("group by (namespace) (namespace_deployment:")


def test_warming_reads_history_through_a_client_restricted_to_the_owned_namespaces() -> None:
    client = Client(["shop", "web", "billing"])
    source = scoped(client, {"web"})
    warm_client = source.client
    answer = warm_client.query_range("cpu_ratio", start_s=0, end_s=3600, step_s=60)
    assert {s["metric"]["namespace"] for s in answer.series} == {"web"}
    assert client.calls == [NAMESPACES, 'cpu_ratio{namespace=~"web"}']
    warm_client.query_range("mem_ratio", start_s=0, end_s=3600, step_s=60)
    assert client.calls[-1] == 'mem_ratio{namespace=~"web"}'  # namespaces asked once
    nothing = scoped(Client(["shop"]), set()).client
    assert nothing.query_range("cpu_ratio", start_s=0, end_s=60, step_s=60).series == []


ISTIO_NS = 'destination_workload_namespace=~"shop|web"'


def test_istio_series_are_restricted_on_the_serving_workloads_namespace() -> None:
    promql = (
        'sum by (namespace) (rate(istio_requests_total{reporter="destination"}[1m]))'
        ' / on (namespace) kube_deployment_spec_replicas + {__name__="istio_up"}'
    )
    assert restrict(promql, {"web", "shop"}) == (
        f'sum by (namespace) (rate(istio_requests_total{{{ISTIO_NS}, reporter="destination"}}'
        f"[1m])) / on (namespace) kube_deployment_spec_replicas{{{NS}}}"
        f' + {{{ISTIO_NS}, __name__="istio_up"}}'
    )


def test_every_istio_signal_query_restricts_each_metric_on_its_own_namespace_label() -> None:
    istio_read = 0
    for query in build_queries(signal_set="istio"):
        out = restrict(query.promql, {"shop", "web"})
        for metric, body in re.findall(r"([a-zA-Z_:][\w:]*)\{([^}]*)\}", out):
            expected = ISTIO_NS if metric.startswith("istio_") else NS
            assert body.startswith(expected), (query.signal, metric, body)
            assert "namespace=~" not in body.removeprefix(expected), (query.signal, body)
            istio_read += metric.startswith("istio_")
    assert istio_read >= 4  # request rate, errors and requests, the latency histogram


class _History:
    """A range client whose namespaces appear at given times: ``web`` has existed since
    t=0, ``shop`` only since t=5,000 (created later, or older history already gone)."""

    url = "http://prometheus.test"

    def __init__(self) -> None:
        self.asked: list[tuple[str, int, int]] = []

    def query_range(self, promql: str, *, start_s: int, end_s: int, step_s: int) -> RangeResult:
        self.asked.append((promql, start_s, end_s))
        born = {"web": 0, "shop": 5_000}
        present = [ns for ns, since in born.items() if since <= end_s]
        return RangeResult(
            series=[{"metric": {"namespace": ns}, "values": [[end_s, "1"]]} for ns in present]
        )


def test_warming_through_a_shard_asks_the_namespaces_of_each_range() -> None:
    """The oldest chunk comes first; a namespace that only appears in later chunks is
    still read, and a range shares one namespace question between its signals."""
    history = _History()
    source = ScopedSource(
        PrometheusSource(history, queries=build_queries(recorded=False), retries=0),
        owns={"shop", "web"}.__contains__,
    )
    client = source.client
    client.query_range("up", start_s=0, end_s=1_000, step_s=60)
    client.query_range("kube_pod_owner", start_s=0, end_s=1_000, step_s=60)
    client.query_range("up", start_s=6_000, end_s=7_000, step_s=60)
    questions = [(start, end) for promql, start, end in history.asked if promql == NAMESPACES]
    assert questions == [(0, 1_000), (6_000, 7_000)]
    scoped = [promql for promql, _, _ in history.asked if promql != NAMESPACES]
    assert scoped == ['up{namespace=~"web"}', 'kube_pod_owner{namespace=~"web"}', f"up{{{NS}}}"]


def test_a_range_without_an_owned_namespace_asks_nothing_more() -> None:
    history = _History()
    source = ScopedSource(
        PrometheusSource(history, queries=build_queries(recorded=False), retries=0),
        owns={"shop"}.__contains__,
    )
    assert source.client.query_range("up", start_s=0, end_s=1_000, step_s=60).series == []
    assert [promql for promql, _, _ in history.asked] == [NAMESPACES]
