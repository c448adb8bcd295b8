"""Benchmark: PrometheusSource against a real Prometheus holding 10,000 workloads.

Writes synthetic history for N Deployments (one pod each, the metric names of cAdvisor,
kube-state-metrics and an HTTP service) as OpenMetrics, turns it into TSDB blocks with
``promtool tsdb create-blocks-from openmetrics``, starts Prometheus on them with
healer's recording rules loaded (``healer rules``), then times:

* the cost of one evaluation of the rule group at the newest step (instant queries of
  its rules, in order, as Prometheus runs them every ``step_s``): the work the rules
  move from healer's queries into Prometheus;
* with ``recording_rules: true``: a full fetch of a 1-hour window, then one incremental
  step (the next cycle: one new step plus the overlap), ``--repeat`` times;
* without: one step of the seven joining queries (a 2-step window, what an incremental
  step asks for), for comparison; a 1-hour window of them takes minutes at 10,000
  workloads and is skipped unless ``--direct-window``.

The history holds the series the recording rules would have stored over the hour,
computed from the same synthetic counters (rate() over samples on the step, as
Prometheus computes it) and written on the step, without the evaluation offset a live
Prometheus adds. Backfilling them with promtool instead costs as much as the joining
queries over the hour (minutes at 10,000 workloads). The bench checks that assumption:
the recorded frame's newest steps must agree with the joining queries' frame, and it
prints the largest difference.

The target of issue 4 is the incremental step under 2 s for 10,000 workloads x 7
signals. A benchmark, not a test: it prints figures and asserts nothing.

    .venv/bin/python bench/prometheus_fetch.py [--workloads 10000] [--step 30]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import yaml
from local_prometheus import serving

from healer.collect.prometheus import PrometheusClient, PrometheusSource
from healer.collect.rules import recording_rules, rules_file
from healer.collect.signals import POD_OWNER_RECORD, RECORDS, build_queries
from healer.logs import configure
from healer.types import Frame, Signal

# Fewer buckets than the simulator's eleven: each bucket is a series per pod, and the
# history must stay small enough to write and backfill in a few minutes.
BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0)
# Share of requests at or under each bucket (and +Inf): p99 lands in (0.25, 0.5].
SHARES = (*(min(1.0, 0.5 + le) for le in BUCKETS_S), 1.0)
CPU_REQUEST_CORES = 0.25
MEMORY_LIMIT_BYTES = 512e6
RATE_STEPS = 4  # rate() over four scrape intervals, the usual choice


def p99_of_buckets() -> float:
    """histogram_quantile(0.99) of SHARES: linear inside the bucket holding rank 0.99."""
    i = next(i for i, share in enumerate(SHARES) if share >= 0.99)
    lower, upper = (BUCKETS_S[i - 1] if i else 0.0), BUCKETS_S[i]
    below = SHARES[i - 1] if i else 0.0
    return lower + (upper - lower) * (0.99 - below) / (SHARES[i] - below)


def history(workloads: int, steps: int, step_s: int, end_s: int) -> Iterator[str]:
    """OpenMetrics lines, family by family, each family time-major."""
    rng = np.random.default_rng(1)
    times = end_s - step_s * np.arange(steps)[::-1]
    ns = [f"ns-{i % 50}" for i in range(workloads)]
    dep = [f"w-{i:05d}" for i in range(workloads)]
    rs = [f"{d}-6f9c7d" for d in dep]
    pod = [f"{r}-x2k4p" for r in rs]
    rps = rng.uniform(5, 200, workloads)[None, :] * rng.lognormal(0, 0.05, (steps, workloads))
    requests = np.cumsum(rps * step_s, axis=0)
    errors = np.floor(requests * 0.002)
    cpu = np.cumsum(rps * 0.002 * step_s, axis=0)
    memory = 200e6 * rng.lognormal(0, 0.01, (steps, workloads))

    def family(
        name: str, kind: str, labels: list[str], values: np.ndarray, at: np.ndarray = times
    ) -> Iterator[str]:
        yield f"# TYPE {name.removesuffix('_total') if kind == 'counter' else name} {kind}"
        for t, row in zip(at, values, strict=True):
            yield "\n".join(f"{lab} {v:.10g} {t}" for lab, v in zip(labels, row, strict=True))

    def const(value: float) -> np.ndarray:
        return np.full((steps, workloads), value)

    base = [f'namespace="{n}",pod="{p}",container="app"' for n, p in zip(ns, pod, strict=True)]
    deps = [f'namespace="{n}",deployment="{d}"' for n, d in zip(ns, dep, strict=True)]
    yield from family(
        "kube_pod_owner",
        "gauge",
        [
            f'kube_pod_owner{{namespace="{n}",pod="{p}",owner_kind="ReplicaSet",owner_name="{r}"}}'
            for n, p, r in zip(ns, pod, rs, strict=True)
        ],
        const(1.0),
    )
    yield from family(
        "kube_replicaset_owner",
        "gauge",
        [
            f'kube_replicaset_owner{{namespace="{n}",replicaset="{r}",owner_kind="Deployment",'
            f'owner_name="{d}"}}'
            for n, r, d in zip(ns, rs, dep, strict=True)
        ],
        const(1.0),
    )
    for name, kind, values in (
        ("kube_deployment_spec_replicas", "gauge", const(1.0)),
        ("kube_deployment_status_replicas_available", "gauge", const(1.0)),
    ):
        yield from family(name, kind, [f"{name}{{{d}}}" for d in deps], values)
    for name, kind, extra, values in (
        ("container_cpu_usage_seconds_total", "counter", "", cpu),
        ("container_memory_working_set_bytes", "gauge", "", memory),
        ("kube_pod_container_status_restarts_total", "counter", "", const(0.0)),
        (
            "kube_pod_container_resource_requests",
            "gauge",
            ',resource="cpu"',
            const(CPU_REQUEST_CORES),
        ),
        (
            "kube_pod_container_resource_limits",
            "gauge",
            ',resource="memory"',
            const(MEMORY_LIMIT_BYTES),
        ),
    ):
        yield from family(name, kind, [f"{name}{{{b}{extra}}}" for b in base], values)
    http = [f'namespace="{n}",pod="{p}"' for n, p in zip(ns, pod, strict=True)]
    yield "# TYPE http_requests counter"
    for code, values in (("200", requests - errors), ("500", errors)):
        lines = list(
            family(
                "x", "gauge", [f'http_requests_total{{{h},code="{code}"}}' for h in http], values
            )
        )
        yield from lines[1:]
    yield "# TYPE http_request_duration_seconds histogram"
    for le, share in zip((*BUCKETS_S, float("inf")), SHARES, strict=True):
        label = "+Inf" if le == float("inf") else f"{le:g}"
        names = [f'http_request_duration_seconds_bucket{{{h},le="{label}"}}' for h in http]
        yield from list(family("x", "gauge", names, requests * share))[1:]
    # What the recording rules store, evaluated on the step: rate() over samples that
    # fall exactly on the range's ends is the plain difference over the range.
    window_s = RATE_STEPS * step_s

    def rate(counter: np.ndarray) -> np.ndarray:
        per_second: np.ndarray = (counter[RATE_STEPS:] - counter[:-RATE_STEPS]) / window_s
        return per_second

    later = times[RATE_STEPS:]
    owners = [
        f'{POD_OWNER_RECORD}{{namespace="{n}",pod="{p}",deployment="{d}"}}'
        for n, p, d in zip(ns, pod, dep, strict=True)
    ]
    yield from family(POD_OWNER_RECORD, "gauge", owners, const(1.0))
    recorded = {
        Signal.CPU: rate(cpu) / CPU_REQUEST_CORES,
        Signal.MEMORY: memory[RATE_STEPS:] / MEMORY_LIMIT_BYTES,
        Signal.RESTARTS: np.zeros((steps - RATE_STEPS, workloads)),
        Signal.REQUEST_RATE: rate(requests),
        Signal.ERROR_RATIO: rate(errors) / rate(requests),
        Signal.LATENCY_P99: np.full((steps - RATE_STEPS, workloads), p99_of_buckets()),
        Signal.READY_RATIO: np.ones((steps - RATE_STEPS, workloads)),
    }
    for signal, values in recorded.items():
        name = RECORDS[signal]
        yield from family(name, "gauge", [f"{name}{{{d}}}" for d in deps], values, later)
    yield "# EOF"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", type=int, default=10_000)
    parser.add_argument("--step", type=int, default=30, help="scrape interval, seconds")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each fetch")
    parser.add_argument(
        "--direct-window", action="store_true", help="also time a 1-hour window of the joins"
    )
    args = parser.parse_args()
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if not prometheus or not promtool:
        sys.exit("bench: needs the prometheus and promtool binaries (Debian package prometheus)")
    configure(level="warning")
    workdir = Path(tempfile.mkdtemp(prefix="healer-bench-prom-"))
    step = args.step
    end_s = (int(time.time()) // 3600 - 1) * 3600  # an hour ago, on the hour
    window_s = 3600
    steps = (window_s + 5 * 60) // step  # the window plus room for rate()'s range

    began = time.perf_counter()
    om = workdir / "history.om"
    with om.open("w") as out:
        for line in history(args.workloads, steps, step, end_s):
            out.write(line + "\n")
    written_s = time.perf_counter() - began
    began = time.perf_counter()
    subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(om), str(workdir / "data")],
        check=True,
        capture_output=True,
    )
    backfill_s = time.perf_counter() - began
    series = args.workloads * (9 + 2 + len(BUCKETS_S) + 1 + 1 + len(RECORDS))
    print(
        f"history: {args.workloads} workloads, {series} series x {steps} samples "
        f"({om.stat().st_size / 1e9:.2f} GB OpenMetrics) written in {written_s:.1f} s, "
        f"backfilled by promtool in {backfill_s:.1f} s"
    )
    om.unlink()

    rules = workdir / "healer-rules.yaml"
    rules.write_text(rules_file(window_s=RATE_STEPS * step, interval_s=step))
    config = workdir / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": f"{step}s", "evaluation_interval": f"{step}s"},
                "rule_files": [str(rules)],
            }
        )
    )
    try:
        # The joining queries over an hour of 10,000 workloads outlast the default 2m.
        with serving(
            prometheus, config=config, data=workdir / "data", extra=("--query.timeout=30m",)
        ) as url:
            rule_group_cost(url, step=step, end_s=end_s)
            run(url, step=step, end_s=end_s, window_s=window_s, args=args)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def rule_group_cost(url: str, *, step: int, end_s: int) -> None:
    """One evaluation of the rule group at ``end_s``: its rules in order, as instant queries."""
    group = recording_rules(window_s=RATE_STEPS * step, interval_s=step)["groups"][0]
    seconds = {}
    for rule in group["rules"]:
        began = time.perf_counter()
        answer = httpx.get(
            f"{url}/api/v1/query",
            params={"query": rule["expr"], "time": end_s},
            timeout=600,
        )
        answer.raise_for_status()
        seconds[rule["record"].split(":")[1]] = time.perf_counter() - began
    print(
        f"rule group evaluation (Prometheus, every {step} s): {sum(seconds.values()):.2f} s "
        f"({', '.join(f'{k} {v:.2f}' for k, v in seconds.items())})"
    )


def run(url: str, *, step: int, end_s: int, window_s: int, args: argparse.Namespace) -> None:
    recorded = build_queries(recorded=True)
    direct = build_queries(window_s=RATE_STEPS * step)
    full_s, step_s = [], []
    frame: Frame | None = None
    slowest_full = 0.0
    for _ in range(args.repeat):
        source = PrometheusSource(
            PrometheusClient(url, timeout_s=1800), queries=recorded, step_s=step
        )
        began = time.perf_counter()
        source.fetch(until=datetime.fromtimestamp(end_s - step, UTC), window_s=window_s)
        full_s.append(time.perf_counter() - began)
        slowest_full = max(source.stats.query_seconds.values())
        began = time.perf_counter()
        frame = source.fetch(until=datetime.fromtimestamp(end_s, UTC), window_s=window_s)
        step_s.append(time.perf_counter() - began)
        assert source.stats.incremental
    assert frame is not None
    gaps = float(np.isnan(frame.values).mean())
    print(
        f"frame: {len(frame.workloads)} workloads x {len(frame.signals)} signals x "
        f"{len(frame.timestamps)} steps of {step} s, gap share {gaps:.3f}"
    )
    print("with recording_rules: true")
    print(
        f"  1-hour window fetch: median {np.median(full_s):.2f} s "
        f"(runs: {', '.join(f'{s:.2f}' for s in full_s)}; slowest query {slowest_full:.2f} s)"
    )
    print(
        f"  incremental step:    median {np.median(step_s):.2f} s "
        f"(runs: {', '.join(f'{s:.2f}' for s in step_s)}; target < 2 s)"
    )
    joined = PrometheusSource(PrometheusClient(url, timeout_s=1800), queries=direct, step_s=step)
    began = time.perf_counter()
    newest = joined.fetch(until=datetime.fromtimestamp(end_s, UTC), window_s=2 * step)
    direct_step_s = time.perf_counter() - began
    seconds = ", ".join(f"{k} {v:.1f}" for k, v in joined.stats.query_seconds.items())
    print("with the joining queries (recording_rules: false)")
    print(f"  one incremental step: {direct_step_s:.2f} s (per query: {seconds})")
    agree(frame, newest)
    if args.direct_window:
        joined.reset()
        began = time.perf_counter()
        joined.fetch(until=datetime.fromtimestamp(end_s, UTC), window_s=window_s)
        print(f"  1-hour window fetch: {time.perf_counter() - began:.1f} s")


def agree(recorded: Frame, joined: Frame) -> None:
    """Largest relative difference, per signal, between the two paths on common steps."""
    assert recorded.workloads == joined.workloads, "the two paths see different workloads"
    common = np.isin(recorded.timestamps, joined.timestamps)
    a = recorded.values[:, :, common]
    b = joined.values[:, :, np.isin(joined.timestamps, recorded.timestamps)]
    scale = np.maximum(np.abs(b), 1e-12)
    worst = np.nanmax(np.abs(a - b) / scale, axis=(0, 2))
    nan_mismatch = int((np.isnan(a) != np.isnan(b)).sum())
    print(
        "recorded vs joining queries, newest steps: largest relative difference "
        + ", ".join(f"{s} {w:.1e}" for s, w in zip(recorded.signals, worst, strict=True))
        + f"; gaps in one only: {nan_mismatch}"
    )


if __name__ == "__main__":
    main()
