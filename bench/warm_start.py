"""Benchmark: warming a new daemon's detector from a real Prometheus at 1,000 workloads.

Writes synthetic history for N Deployments as the series healer's recording rules store
(``recording_rules: true``, one series per workload and signal, the setting for
thousands of workloads): the detector's whole span (``detect.warm.wanted``, about 8.5
days) at the shape bucket step, and the last hour at the scrape step; turns it into
TSDB blocks with ``promtool tsdb create-blocks-from openmetrics``, starts Prometheus on
them, then times ``warmup.warm_from_prometheus`` on a fresh detector, as ``healer run``
does at start-up: the wall time, the time spent reading the history (range queries in
chunks, in a thread, overlapping the learning), the CPU time of the process (not
Prometheus'), and the peak RSS of the process.

The signals have a daily cycle, noise and nothing else: what is timed does not depend
on the values. A benchmark, not a test: it prints figures and asserts nothing.

    .venv/bin/python bench/warm_start.py [--workloads 1000] [--days 8.5] [--keep]
    .venv/bin/python bench/warm_start.py --reuse DIR:NOW_S   # warm again from a kept TSDB
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import yaml
from local_prometheus import serving

from healer.collect.prometheus import PrometheusClient, RangeResult
from healer.collect.signals import RECORDS
from healer.config import DetectorSettings, PrometheusSettings
from healer.detect.combined import build_detector
from healer.detect.shaped import ShapedDetector
from healer.detect.warm import wanted
from healer.logs import configure
from healer.types import Signal
from healer.warmup import warm_from_prometheus

SCRAPE_S = 15
DAY_S = 86_400.0
LEVELS = {
    Signal.CPU: 0.5,
    Signal.MEMORY: 0.4,
    Signal.RESTARTS: 0.0,
    Signal.REQUEST_RATE: 100.0,
    Signal.ERROR_RATIO: 0.002,
    Signal.LATENCY_P99: 0.08,
    Signal.READY_RATIO: 1.0,
}
CYCLE = {Signal.CPU, Signal.REQUEST_RATE, Signal.LATENCY_P99}
"""Signals that follow the daily cycle of traffic."""


def history(workloads: int, times: np.ndarray, *, seed: int = 0) -> Iterator[str]:
    """OpenMetrics lines of the recorded series at ``times``, family by family."""
    rng = np.random.default_rng(seed)
    labels = [f'namespace="ns-{i % 50}",deployment="w-{i:05d}"' for i in range(workloads)]
    day = 1 + 0.3 * np.sin(2 * np.pi * times / 86_400.0)
    for signal, name in RECORDS.items():
        yield f"# TYPE {name} gauge"
        level = LEVELS[signal] * (day if signal in CYCLE else np.ones_like(times))
        names = [f"{name}{{{lab}}}" for lab in labels]
        for t, base in zip(times, level, strict=True):
            values = base * (1 + 0.03 * rng.standard_normal(workloads))
            stamp = f" {int(t)}"
            yield "\n".join(f"{n} {v:.6g}{stamp}" for n, v in zip(names, values, strict=True))
    yield "# EOF"


@dataclass
class TimedClient:
    """The HTTP client, adding up the seconds its range queries take."""

    inner: PrometheusClient
    seconds: float = 0.0
    queries: int = 0
    points: int = 0
    calls: list[float] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.inner.url

    def query_range(self, promql: str, *, start_s: int, end_s: int, step_s: int) -> RangeResult:
        began = time.perf_counter()
        result = self.inner.query_range(promql, start_s=start_s, end_s=end_s, step_s=step_s)
        self.seconds += time.perf_counter() - began
        self.queries += 1
        self.points += sum(len(s["values"]) for s in result.series)
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", type=int, default=1000)
    parser.add_argument(
        "--days",
        type=float,
        default=None,
        help="history Prometheus holds (default: all the detector wants, about 8.5 days)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the backfilled TSDB and print how to warm from it again (--reuse)",
    )
    parser.add_argument(
        "--reuse",
        metavar="DIR:NOW_S",
        default=None,
        help="warm from the TSDB a run with --keep left in DIR, its history ending at NOW_S",
    )
    args = parser.parse_args()
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if not prometheus or not promtool:
        sys.exit("bench: needs the prometheus and promtool binaries (Debian package prometheus)")
    configure(level="warning")
    settings = DetectorSettings()
    if args.reuse:
        folder, _, now = args.reuse.rpartition(":")
        workdir, now_s = Path(folder), int(now)
        if not (workdir / "data").is_dir():
            sys.exit(f"bench: --reuse {args.reuse}: no TSDB in {workdir / 'data'}")
    else:
        workdir = Path(tempfile.mkdtemp(prefix="healer-bench-warm-"))
        now_s = backfill(workdir, promtool, args.workloads, settings, args.days)
    config = workdir / "prometheus.yml"
    config.write_text(yaml.safe_dump({"global": {"scrape_interval": f"{SCRAPE_S}s"}}))
    try:
        with serving(prometheus, config=config, data=workdir / "data", extra=()) as url:
            warm(url, now_s=now_s, settings=settings, workloads=args.workloads)
    finally:
        if args.keep or args.reuse:
            print(f"kept: --reuse {workdir}:{now_s}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def backfill(
    workdir: Path, promtool: str, workloads: int, settings: DetectorSettings, days: float | None
) -> int:
    """Write the history and turn it into TSDB blocks in ``workdir``; return where it ends."""
    span = wanted(settings)
    held_s = span.total_s if days is None else days * 86_400.0
    now_s = (int(time.time()) // 3600 - 1) * 3600  # an hour ago, on the hour
    bucket = int(span.bucket_s)
    past = np.arange(now_s - held_s + bucket, now_s - span.recent_s + 1, bucket)
    recent = np.arange(now_s - span.recent_s + SCRAPE_S, now_s + 1, SCRAPE_S)
    times = np.concatenate([past, recent]).astype(np.float64)

    written_s = backfill_s = size_gb = 0.0
    # A file per day: promtool reads its whole input once per 2-hour block it writes,
    # so one file of 8.5 days would be read a hundred times.
    day = np.floor(times / DAY_S)
    for k, first in enumerate(np.unique(day)):
        began = time.perf_counter()
        om = workdir / "history.om"
        with om.open("w") as out:
            for line in history(workloads, times[day == first], seed=k):
                out.write(line + "\n")
        written_s += time.perf_counter() - began
        size_gb += om.stat().st_size / 1e9
        began = time.perf_counter()
        subprocess.run(
            [promtool, "tsdb", "create-blocks-from", "openmetrics", str(om), str(workdir / "data")],
            check=True,
            capture_output=True,
        )
        backfill_s += time.perf_counter() - began
        om.unlink()
    print(
        f"history: {workloads} workloads x {len(RECORDS)} recorded series, "
        f"{held_s / 86_400:.1f} days ({len(past)} samples at {bucket} s, then {len(recent)} "
        f"at {SCRAPE_S} s; {size_gb:.2f} GB OpenMetrics) written in {written_s:.0f} s, "
        f"backfilled by promtool in {backfill_s:.0f} s"
    )
    return now_s


def warm(url: str, *, now_s: int, settings: DetectorSettings, workloads: int) -> None:
    prometheus = PrometheusSettings(url=url, step_s=SCRAPE_S, recording_rules=True, timeout_s=600.0)
    client = TimedClient(PrometheusClient(url, timeout_s=600.0))
    detector = build_detector(settings)
    assert isinstance(detector, ShapedDetector)
    began, cpu_began = time.perf_counter(), time.process_time()
    report = warm_from_prometheus(
        detector,
        prometheus=prometheus,
        settings=settings,
        now=datetime.fromtimestamp(now_s, UTC),
        client=client,
    )
    total_s = time.perf_counter() - began
    cpu_s = time.process_time() - cpu_began  # all threads of this process, not Prometheus'
    rows = detector.shape_rows()
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(
        f"warm start at {report.workloads} workloads: {total_s:.0f} s, CPU {cpu_s:.0f} s "
        f"(reading Prometheus {client.seconds:.0f} s in {client.queries} range queries, "
        f"{client.points / 1e6:.1f} M points, while learning the chunk before), "
        f"{report.history_s / 86_400:.1f} of {report.wanted_s / 86_400:.1f} days wanted, "
        f"shape rows per series {min(rows.values())}..{max(rows.values())} "
        f"(warm from {settings.shape_warmup_buckets}), peak RSS {rss_gb:.2f} GB"
    )
    if report.workloads != workloads:
        print(f"warning: {workloads} workloads written, {report.workloads} read back")


if __name__ == "__main__":
    main()
