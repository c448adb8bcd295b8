"""Queries restricted to some namespaces: what one shard reads from Prometheus.

A shard owns the workloads of the namespaces that hash to it (``healer.sharding``), so
it asks Prometheus for those namespaces' series only: every vector selector of every
signal's query gets the matcher ``namespace=~"a|b|..."``. Prometheus then selects,
joins and aggregates a shard's share of the series instead of the whole cluster's,
which is what lets several shard processes split one large cluster.

Decisions:

- The matcher is added to each selector (``metric{...}``), not wrapped around the
  query (``(q) and on (namespace) ...``): a wrapper would still make Prometheus read
  and join every series before dropping most of them.
- A small lexer, not a PromQL parser: it walks the text, skips strings, label
  matchers, range and subquery brackets, and the label lists of ``by``, ``without``,
  ``on``, ``ignoring``, ``group_left`` and ``group_right``; any other name not followed
  by ``(`` is a metric name. PromQL has no other place where a bare name may stand, so
  the queries of ``collect.signals`` and any override written in PromQL come out right.
- The matcher names the label that holds the namespace of the *workload* a series is
  about, which depends on who exports it (``NAMESPACE_LABELS``): Istio's sidecars put
  the serving workload's namespace in ``destination_workload_namespace`` (their own
  ``namespace`` label, when a scrape adds one, is the reporting pod's), so a shard
  restricting ``istio_requests_total`` on ``namespace`` would read the wrong workloads
  or none. Chosen per metric name, since one query may join several exporters.
- Which namespaces exist is asked of Prometheus every cycle (``NAMESPACES``, one
  instant query of kube-state-metrics' series): a namespace created since the last
  cycle reaches its shard at the next one, and no Kubernetes list is needed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import replace
from datetime import datetime

import numpy as np
import structlog

from healer.collect.pod_queries import namespaces_regex
from healer.collect.prometheus import PrometheusSource, RangeClient, RangeResult
from healer.collect.signals import RECORDS
from healer.types import Frame, NodeState, PodFrame, WorkloadRef

log = structlog.get_logger(__name__)

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"}
    | {"by", "without", "on", "ignoring", "group_left", "group_right"}
    # Aggregations may be followed by ``by (...)`` rather than by their ``(``.
    | {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values"}
    | {"bottomk", "topk", "quantile", "limitk", "limit_ratio"}
)
_LABEL_LISTS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
_CLOSING = {"{": "}", "[": "]"}
_NAMED = re.compile(r'__name__\s*=\s*"([^"]*)"')
"""An exact ``__name__`` matcher, which names the metric of a selector without a name."""

NAMESPACES = (
    "group by (namespace) (kube_deployment_spec_replicas or kube_statefulset_replicas"
    " or kube_daemonset_status_desired_number_scheduled)"
)
"""Every namespace with a workload, from kube-state-metrics (one series each)."""

NAMESPACES_RECORDED = "group by (namespace) (namespace_deployment:healer_replicas_ready:ratio)"
"""The same from the recording rules' ready-ratio series, when they are used."""

NAMESPACE_LABELS: tuple[tuple[str, str], ...] = (("istio_", "destination_workload_namespace"),)
"""(metric name prefix, label): the label naming the workload's namespace on the series
of those metrics; ``namespace`` (kube-state-metrics, cAdvisor, instrumented services,
the recording rules) for any other."""


def namespace_label(metric: str) -> str:
    """The label a selector of ``metric`` restricts to a shard's namespaces."""
    return next(
        (label for prefix, label in NAMESPACE_LABELS if metric.startswith(prefix)), "namespace"
    )


def restrict(promql: str, namespaces: Collection[str]) -> str:
    """``promql`` with ``namespace=~"<namespaces>"`` on every vector selector, or the
    metric's own namespace label (``namespace_label``) in place of ``namespace``.

    Pure. ``namespaces`` must not be empty: an empty alternative would match the series
    that have no namespace at all, never what a caller wants.
    """
    if not namespaces:
        raise ValueError("restrict needs at least one namespace")
    regex = namespaces_regex(namespaces)

    def matcher(metric: str) -> str:
        return f'{namespace_label(metric)}=~"{regex}"'

    out: list[str] = []
    i, n = 0, len(promql)
    label_list_next = False
    while i < n:
        char = promql[i]
        if char in "\"'`":
            end = _string_end(promql, i)
            out.append(promql[i:end])
            i = end
        elif char == "{":  # a selector without a metric name: {__name__=~"..."}
            end = _closing(promql, i)
            named = _NAMED.search(promql, i, end)
            out.append(_with_matcher(promql[i:end], matcher(named.group(1) if named else "")))
            i = end
        elif char == "[":
            end = _closing(promql, i)
            out.append(promql[i:end])
            i = end
        elif char == "(" and label_list_next:
            end = promql.index(")", i) + 1
            out.append(promql[i:end])
            label_list_next = False
            i = end
        elif (match := _NAME.match(promql, i)) and not _inside_number(promql, i):
            name, i = match.group(0), match.end()
            label_list_next = name in _LABEL_LISTS
            following = _next_char(promql, i)
            if name in _KEYWORDS or following == "(":
                out.append(name)
            elif following == "{":
                gap = promql[i : promql.index("{", i)]
                end = _closing(promql, i + len(gap))
                out.append(name + gap + _with_matcher(promql[i + len(gap) : end], matcher(name)))
                i = end
            else:
                out.append(f"{name}{{{matcher(name)}}}")
        else:
            if not char.isspace():
                label_list_next = False
            out.append(char)
            i += 1
    return "".join(out)


def _with_matcher(braces: str, matcher: str) -> str:
    inner = braces[1:-1]
    return "{" + matcher + ("" if not inner.strip() else ", " + inner) + "}"


def _string_end(text: str, start: int) -> int:
    quote, i = text[start], start + 1
    while i < len(text):
        if text[i] == "\\" and quote != "`":
            i += 2
            continue
        if text[i] == quote:
            return i + 1
        i += 1
    raise ValueError(f"unterminated string in PromQL at {start}: {text[start : start + 40]!r}")


def _closing(text: str, start: int) -> int:
    """Index after the bracket closing the one at ``start``, strings skipped."""
    close, i = _CLOSING[text[start]], start + 1
    while i < len(text):
        if text[i] in "\"'`":
            i = _string_end(text, i)
            continue
        if text[i] == close:
            return i + 1
        i += 1
    raise ValueError(f"unclosed {text[start]!r} in PromQL at {start}")


def _next_char(text: str, start: int) -> str:
    rest = text[start:].lstrip()
    return rest[0] if rest else ""


def _inside_number(text: str, start: int) -> bool:
    """A name's first letter preceded by a digit or a dot is part of a number (1e3, 0x1f)."""
    return start > 0 and (text[start - 1].isdigit() or text[start - 1] == ".")


class ScopedSource:
    """A ``PrometheusSource`` reading only the namespaces ``owns`` accepts.

    Each fetch first asks which namespaces exist (``NAMESPACES``), keeps those owned,
    and when that set changed restricts every signal's query to it and starts the
    held window afresh (the workloads read are not the same any more). Owning none: an
    empty frame, and nothing asked beyond the namespaces. The per-pod view, the node
    reads and the client pass through: they already ask for named namespaces or for
    cluster-scoped objects.
    """

    def __init__(self, inner: PrometheusSource, *, owns: Callable[[str], bool]) -> None:
        self.inner = inner
        self.owns = owns
        self._all_queries = inner.queries
        self._recorded = any(RECORDS[q.signal] == q.promql for q in inner.queries)
        self.namespaces: frozenset[str] = frozenset()
        """The namespaces the last fetch read."""

    @property
    def client(self) -> RangeClient:
        """The inner client, restricted to the namespaces owned when it is first asked
        (warming the detector reads history through it: a shard's only)."""
        return ScopedClient(self.inner.client, owns=self.owns, recorded=self._recorded)

    def reset(self) -> None:
        self.inner.reset()

    def fetch(self, *, until: datetime, window_s: float) -> Frame:
        query = NAMESPACES_RECORDED if self._recorded else NAMESPACES
        found = {labels.get("namespace", "") for labels, _ in self.inner.instant(query, at=until)}
        mine = frozenset(ns for ns in found if ns and self.owns(ns))
        if mine != self.namespaces:
            log.info("shard_namespaces", namespaces=len(mine), was=len(self.namespaces))
            self.namespaces = mine
            self.inner.queries = (
                tuple(replace(q, promql=restrict(q.promql, mine)) for q in self._all_queries)
                if mine
                else self._all_queries
            )
            self.inner.reset()
        if not mine:
            signals = self.inner.signals
            return Frame(
                timestamps=np.empty(0),
                workloads=(),
                signals=signals,
                values=np.empty((0, len(signals), 0)),
            )
        return self.inner.fetch(until=until, window_s=window_s)

    def fetch_pods(self, *, until: datetime, workloads: Collection[WorkloadRef]) -> PodFrame:
        return self.inner.fetch_pods(until=until, workloads=workloads)

    def nodes(self, *, until: datetime) -> tuple[NodeState, ...]:
        return self.inner.nodes(until=until)


class ScopedClient:
    """A ``RangeClient`` whose every query is restricted to the owned namespaces.

    Which namespaces exist is asked over each query's own range (once per range: the
    signals of one chunk of history share it), since warming reads the oldest chunk
    first, and a namespace created since, or a Prometheus holding less history than
    asked for, would otherwise leave the shard with nothing to learn from. Owning none
    in a range, that range's answers are empty and nothing else is asked.
    """

    def __init__(self, inner: RangeClient, *, owns: Callable[[str], bool], recorded: bool) -> None:
        self.inner = inner
        self.url = inner.url
        self.owns = owns
        self.recorded = recorded
        self._range: tuple[int, int, int] | None = None
        self._namespaces: frozenset[str] = frozenset()

    def query_range(self, promql: str, *, start_s: int, end_s: int, step_s: int) -> RangeResult:
        if self._range != (start_s, end_s, step_s):
            query = NAMESPACES_RECORDED if self.recorded else NAMESPACES
            found = self.inner.query_range(query, start_s=start_s, end_s=end_s, step_s=step_s)
            names = {series["metric"].get("namespace", "") for series in found.series}
            self._namespaces = frozenset(ns for ns in names if ns and self.owns(ns))
            self._range = (start_s, end_s, step_s)
        if not self._namespaces:
            return RangeResult(series=[])
        scoped = restrict(promql, self._namespaces)
        return self.inner.query_range(scoped, start_s=start_s, end_s=end_s, step_s=step_s)
