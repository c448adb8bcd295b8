"""Benchmark: PrometheusSource against a real Prometheus holding 10,000 workloads.

Writes synthetic history for N Deployments (one pod each, the metric names of cAdvisor,
kube-state-metrics and an HTTP service) as OpenMetrics, turns it into TSDB blocks with
``promtool tsdb create-blocks-from openmetrics``, starts Prometheus on them, then times:

* a full fetch of a 1-hour window (7 range queries, all workloads each);
* one incremental step (the next cycle: one new step plus the overlap).

The target of issue 4 is the incremental step under 2 s for 10,000 workloads x 7
signals. A benchmark, not a test: it prints figures and asserts nothing.

    .venv/bin/python bench/prometheus_fetch.py [--workloads 10000] [--step 30]
"""

from __future__ import annotations

import argparse
import shutil
import socket
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

from healer.collect.prometheus import PrometheusClient, PrometheusSource
from healer.collect.signals import build_queries
from healer.logs import configure

# Fewer buckets than the simulator's eleven: each bucket is a series per pod, and the
# history must stay small enough to write and backfill in a minute or two.
BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0)


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

    def family(name: str, kind: str, labels: list[str], values: np.ndarray) -> Iterator[str]:
        yield f"# TYPE {name.removesuffix('_total') if kind == 'counter' else name} {kind}"
        for t, row in zip(times, values, strict=True):
            yield "\n".join(f"{lab} {v:.6f} {t}" for lab, v in zip(labels, row, strict=True))

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
        ("kube_pod_container_resource_requests", "gauge", ',resource="cpu"', const(0.25)),
        ("kube_pod_container_resource_limits", "gauge", ',resource="memory"', const(512e6)),
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
    for le in (*BUCKETS_S, float("inf")):
        share = 1.0 if le == float("inf") else min(1.0, 0.5 + le)
        label = "+Inf" if le == float("inf") else f"{le:g}"
        names = [f'http_request_duration_seconds_bucket{{{h},le="{label}"}}' for h in http]
        yield from list(family("x", "gauge", names, requests * share))[1:]
    yield "# EOF"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", type=int, default=10_000)
    parser.add_argument("--step", type=int, default=30, help="scrape interval, seconds")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each fetch")
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
    series = args.workloads * (9 + 2 + len(BUCKETS_S) + 1)
    print(
        f"history: {args.workloads} workloads, {series} series x {steps} samples "
        f"({om.stat().st_size / 1e9:.2f} GB OpenMetrics) written in {written_s:.1f} s, "
        f"backfilled by promtool in {backfill_s:.1f} s"
    )
    om.unlink()

    port = free_port()
    config = workdir / "prometheus.yml"
    config.write_text(yaml.safe_dump({"global": {"scrape_interval": f"{step}s"}}))
    server = subprocess.Popen(
        [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=100y",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        run(url, step=step, end_s=end_s, window_s=window_s, repeat=args.repeat)
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def run(url: str, *, step: int, end_s: int, window_s: int, repeat: int) -> None:
    queries = build_queries(window_s=4 * step)
    full_s, step_s = [], []
    workloads = 0
    for _ in range(repeat):
        source = PrometheusSource(
            PrometheusClient(url, timeout_s=600), queries=queries, step_s=step
        )
        began = time.perf_counter()
        frame = source.fetch(until=datetime.fromtimestamp(end_s - step, UTC), window_s=window_s)
        full_s.append(time.perf_counter() - began)
        slowest_full = max(source.stats.query_seconds.values())
        seconds = {str(k): round(v, 2) for k, v in source.stats.query_seconds.items()}
        print(f"window fetch, seconds per query: {seconds}")
        began = time.perf_counter()
        frame = source.fetch(until=datetime.fromtimestamp(end_s, UTC), window_s=window_s)
        step_s.append(time.perf_counter() - began)
        assert source.stats.incremental
        workloads = len(frame.workloads)
        gaps = float(np.isnan(frame.values).mean())
    print(
        f"frame: {workloads} workloads x {len(frame.signals)} signals x "
        f"{len(frame.timestamps)} steps of {step} s, gap share {gaps:.3f}"
    )
    print(
        f"1-hour window fetch: median {np.median(full_s):.2f} s "
        f"(runs: {', '.join(f'{s:.2f}' for s in full_s)}; slowest query {slowest_full:.2f} s)"
    )
    print(
        f"incremental step:    median {np.median(step_s):.2f} s "
        f"(runs: {', '.join(f'{s:.2f}' for s in step_s)}; target < 2 s)"
    )


if __name__ == "__main__":
    main()
