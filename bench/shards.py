"""Benchmark: many workloads over shard processes; cycle time, memory, takeover.

    python bench/shards.py [--workloads 100000] [--shards 4] [--namespaces 1000]

``--shards`` `healer run --shards N` processes share one cluster (`healer sim serve`,
for its Lease API only) and one SQLite audit store, and read their metrics from a
Prometheus HTTP API that serves the recording rules' series (``recording_rules: true``)
of ``--workloads`` Deployments spread over ``--namespaces`` namespaces. Each process
asks only for its shards' namespaces (``namespace=~"..."``), as it would a Prometheus.

The metrics come from ``FrameServer`` below, not from a Prometheus server: holding
100,000 workloads' pods (cAdvisor, kube-state-metrics and HTTP series, about 2 million
series scraped) and evaluating the recording rules over them needs far more memory and
CPU than this 2-core machine shared with other work has. The server answers the same
API (``/api/v1/query_range``, the namespace matcher honoured, one series per workload
and signal, values on the step grid) with deterministic synthetic values, so a shard's
fetch parses, assembles and scores the same frames it would from Prometheus; the cost
Prometheus itself would add (``bench/prometheus_fetch.py`` measures it at 10,000
workloads) is not in these figures.

It prints, per process: the shards it holds and their workloads, its cycles, the mean
and last cycle time (``/api/v1/status``), its CPU seconds, its resident memory
(``VmRSS``) and peak (``VmHWM``), and the Leases it lost; then it SIGKILLs one process
and prints how long until another holds its shard (the Lease lasts
``leader.lease_duration_s``, 15 s; the others try every 2 s) and until that process has
cycled on the shard's namespaces, with the CPU seconds it spent meanwhile and its memory
after. A benchmark, not a test: it asserts nothing.

Figures: 4 processes, 1,000 namespaces, ``daemon.window_s`` 600 at 30 s steps, the
detector cold (``warm_s: 0``: the frame server has no history), on a 2-core, 24 GiB
machine shared with other work (load 4 to 12 during the runs: wall times are
indicative; CPU seconds are less inflated). "first 3": the mean of a process's first
three cycles, the first of which reads the whole window; "CPU": start-up (about 5 s)
and those cycles; "held", "cycled": seconds after the SIGKILL until another process
holds the shard, and until it has cycled on it. "before": the daemon without the
changes listed below, "after": with them; 100,000 ran 3 times before, twice after.

| workloads | daemon | first 3 | steady | CPU | RSS (peak) | held | cycled |
|---|---|---|---|---|---|---|---|
| 20,000 | before | 10.7-12.9 s | 0.8-1.2 s | | 0.90 GB (0.93) | 16.0 s | 41.8 s |
| 20,000 | after | 8.3-10.6 s | 0.7-1.0 s | | 0.93 GB (0.95) | 16.5 s | 38.0 s |
| 100,000 | before | 46-52 s | 4.5-10.4 s | 39-43 s | 3.0-3.1 GB (3.3) | 16.2 s | 136 s |
| 100,000 | after | 49-56 s | 4.3-12.6 s | 30-31 s | 3.1 GB (3.4) | 15.9-16.0 s | 141-160 s |

At 100,000 workloads each process holds about 25,000 (150,000 series in the shape
stage, most of its 3 GB: ``bench/daemon_scale.py`` sizes that state); the successor
holding two shards is at 5.8 GB (peak 5.9). The wall time of a first cycle is mostly
waiting: the daemons used 25 to 26 CPU seconds each for their first three or four
cycles after the changes (34 to 38 before), while the frame server, one Python process
answering every shard's 25,000-series queries in turn, used 71 CPU seconds over those
four minutes, more than any daemon. The changes: Prometheus answers decoded with orjson
instead of the standard decoder, ``gc.freeze`` after start-up, the discord search of a
young series over its own candidates only, a takeover's state copied in blocks. Of the
three runs before, one saw a process lose its Lease during its 143 s first cycle
(renewed too late: another took its shard and held two, and it stayed a spare), and one
a successor's API not answer a status request within 10 s during its takeover cycle;
the runs after saw neither, which two runs do not prove. After a takeover the successor
starts a fresh detector and reads both shards' whole window again
(``runner.Daemon.take_over``): that cycle, 108-127 s at 50,000 workloads, is most of
the time to cycle on a taken shard.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import numpy as np
import orjson
import yaml
from processes import healer, wait_for

from healer.api.auth import hash_token
from healer.collect.signals import RECORDS
from healer.sharding import shard_of
from healer.types import Signal

REPO = Path(__file__).resolve().parents[1]
TOKEN = "bench-viewer-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
_SIGNAL_OF = {record: signal for signal, record in RECORDS.items()}
STATUS_TRIES = 30
"""Status requests of 10 s each before a process counts as gone: its API thread shares
the GIL with a cycle that may hold it for long stretches at 100,000 workloads."""
SLOW_STATUS: dict[str, int] = {}
"""Status requests that timed out, per process API: printed with the figures."""
_LEVEL = {
    Signal.CPU: 0.5,
    Signal.MEMORY: 0.6,
    Signal.RESTARTS: 0.0,
    Signal.REQUEST_RATE: 50.0,
    Signal.ERROR_RATIO: 0.01,
    Signal.LATENCY_P99: 0.12,
    Signal.READY_RATIO: 1.0,
}


class Workloads:
    """``count`` Deployments ``api-<i>`` over ``namespaces`` namespaces ``ns-<j>``."""

    def __init__(self, count: int, namespaces: int) -> None:
        self.namespace = [f"ns-{i % namespaces}" for i in range(count)]
        self.name = [f"api-{i}" for i in range(count)]
        self.rows_of: dict[str, list[int]] = {}
        for i, ns in enumerate(self.namespace):
            self.rows_of.setdefault(ns, []).append(i)
        self.count = count

    def values(self, signal: Signal, rows: list[int], grid: np.ndarray) -> np.ndarray:
        """Deterministic values (rows x steps): a daily wave and noise seeded by time."""
        level = _LEVEL[signal]
        out = np.empty((len(rows), grid.size))
        index = np.asarray(rows)
        for k, t in enumerate(grid):
            noise = np.random.default_rng(int(t) * 8 + list(Signal).index(signal)).random(
                self.count
            )
            wave = 1.0 + 0.1 * np.sin(2 * np.pi * t / 86400.0)
            out[:, k] = level * wave * (1.0 + 0.05 * noise[index])
        return out


class FrameServer:
    """The Prometheus query API over ``Workloads``, in a thread, on a free port."""

    def __init__(self, workloads: Workloads) -> None:
        self.workloads = workloads
        self.requests = 0
        self.abandoned = 0
        """Answers the asking shard no longer waited for."""
        handler = self._handler()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def answer(self, query: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        self.requests += 1
        grid = np.arange(start, end + step / 2, step)
        if query.startswith("group by (namespace)"):
            return [
                {"metric": {"namespace": ns}, "values": [[float(grid[-1]), "1"]]}
                for ns in self.workloads.rows_of
            ]
        match = re.match(r'^([\w:]+)(?:\{namespace=~"([^"]*)"\})?$', query.strip())
        if match is None or match.group(1) not in _SIGNAL_OF:
            return []  # vector(1) at start-up, and anything else: no series
        signal = _SIGNAL_OF[match.group(1)]
        wanted = match.group(2).split("|") if match.group(2) else list(self.workloads.rows_of)
        rows = [r for ns in wanted for r in self.workloads.rows_of.get(ns, [])]
        values = self.workloads.values(signal, rows, grid)
        stamps = grid.tolist()
        return [
            {
                "metric": {
                    "namespace": self.workloads.namespace[r],
                    "deployment": self.workloads.name[r],
                },
                "values": [[t, repr(v)] for t, v in zip(stamps, values[i].tolist(), strict=True)],
            }
            for i, r in enumerate(rows)
        ]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._reply(parse_qs(urlparse(self.path).query))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                self._reply(parse_qs(self.rfile.read(length).decode()))

            def _reply(self, params: dict[str, list[str]]) -> None:
                def one(key: str) -> str:
                    return params.get(key, [""])[0]

                result = server.answer(
                    one("query"), float(one("start")), float(one("end")), float(one("step"))
                )
                body = orjson.dumps(
                    {"status": "success", "data": {"resultType": "matrix", "result": result}}
                )
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    server.abandoned += 1  # the shard gave up waiting (prometheus.timeout_s)

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler


def api_url(workdir: Path, name: str) -> str:
    def found() -> str | None:
        match = re.search(r"API (http://\S+)", (workdir / f"{name}.log").read_text())
        return match.group(1) if match else None

    return wait_for(f"{name}'s API", found, 180, 0.5)


def status(url: str) -> dict[str, Any]:
    """The process's ``/api/v1/status``. A busy process may answer late: asked again,
    up to ``STATUS_TRIES`` times, each slow answer counted in ``SLOW_STATUS``."""
    for _ in range(STATUS_TRIES - 1):
        try:
            return _status(url)
        except httpx.TimeoutException:
            SLOW_STATUS[url] = SLOW_STATUS.get(url, 0) + 1
    return _status(url)


def _status(url: str) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{url}/api/v1/status", headers=AUTH, timeout=10).json()
    return body


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """Resident memory now (``VmRSS``) or at its peak so far (``VmHWM``), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_s(pid: int) -> float:
    """CPU seconds the process has used (user and system): what the shared machine's
    other work inflates far less than wall time."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def leases_lost(workdir: Path, name: str) -> int:
    """Times the process lost a Lease it held (renewed too late; another took it)."""
    return (workdir / f"{name}.log").read_text().count('"leadership_lost"')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workloads", type=int, default=100_000)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--namespaces", type=int, default=1000)
    parser.add_argument("--cycles", type=int, default=3, help="cycles each before figures")
    parser.add_argument("--interval", type=float, default=20.0, help="daemon.interval_s")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="healer-shards-"))
    workloads = Workloads(args.workloads, args.namespaces)
    frames = FrameServer(workloads)
    scenario = {
        "name": "leases-only",
        "description": "a cluster for its Lease API",
        "start": "2026-03-02T12:00:00Z",
        "step_s": 15,
        "workloads": [
            {
                "name": "idle",
                "namespace": "default",
                "replicas": 1,
                "image": "i:1",
                "traffic": {"base_rps": 1},
            }
        ],
    }
    (workdir / "scenario.yaml").write_text(yaml.safe_dump(scenario))
    sim = healer(
        [
            "sim",
            "serve",
            "--port",
            "0",
            "--kubeconfig-out",
            "kubeconfig",
            "--scenario",
            "scenario.yaml",
        ],
        workdir,
        "sim",
    )
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        wait_for("the simulated cluster", lambda: (workdir / "kubeconfig").exists(), 60, 0.2)
        settings = {
            "guards": {"mode": "dry_run"},
            "store": {"url": f"sqlite:///{workdir / 'audit.db'}"},
            "api": {
                "host": "127.0.0.1",
                "port": 0,
                "tokens": [{"name": "bench", "role": "viewer", "sha256": hash_token(TOKEN)}],
            },
            # One Python process serves every shard's frames here, slower than a
            # Prometheus: the shards wait for it rather than ask again.
            "prometheus": {
                "url": frames.url,
                "recording_rules": True,
                "step_s": 30,
                "timeout_s": 120,
                "retries": 0,
            },
            "daemon": {"interval_s": args.interval, "window_s": 600},
            "detector": {"warm_s": 0},
            "nodes": {"enabled": False},
            "playbooks_dir": str(REPO / "playbooks"),
        }
        (workdir / "healer.yaml").write_text(yaml.safe_dump(settings))
        for i in range(args.shards):
            name = f"shard-{i}"
            processes[name] = healer(
                [
                    "run",
                    "--config",
                    "healer.yaml",
                    "--kubeconfig",
                    "kubeconfig",
                    "--shards",
                    str(args.shards),
                ],
                workdir,
                name,
                HEALER_LEADER__IDENTITY=name,
            )
        urls = {name: api_url(workdir, name) for name in processes}

        def cycled() -> bool:
            """Every shard held, each holder past ``args.cycles`` cycles. A process that
            lost its Lease while busy may hold none: it waits as a spare, as it would in
            a cluster, and is shown as such."""
            bodies = [status(u) for u in urls.values()]
            held = {i for b in bodies for i in b.get("shards_held") or []}
            return len(held) == args.shards and all(
                b.get("cycles", 0) >= args.cycles for b in bodies if b.get("shards_held")
            )

        wait_for(f"{args.cycles} cycles of every shard's holder", cycled, 1800, 2.0)
        print(
            f"{args.workloads} workloads, {args.namespaces} namespaces, {args.shards} shard "
            f"processes (machine shared with other work: figures are indicative)"
        )
        print(
            f"{'process':<9} {'shards':<7} {'workloads':>9} {'cycles':>6} {'mean s':>7} "
            f"{'last s':>7} {'CPU s':>6} {'RSS MB':>7} {'peak MB':>7} {'lost':>4}"
        )
        for name, url in urls.items():
            body = status(url)
            held = body.get("shards_held") or []
            owned = sum(
                len(rows)
                for ns, rows in workloads.rows_of.items()
                if shard_of(ns, args.shards) in held
            )
            mean = body["cycle_seconds_sum"] / max(body["cycles"], 1)
            print(
                f"{name:<9} {','.join(map(str, held)):<7} {owned:>9} {body['cycles']:>6} "
                f"{mean:>7.2f} {body['last_cycle_seconds'] or 0:>7.2f} "
                f"{cpu_s(processes[name].pid):>6.0f} {rss_mb(processes[name].pid):>7.0f} "
                f"{rss_mb(processes[name].pid, 'VmHWM'):>7.0f} {leases_lost(workdir, name):>4}"
            )

        victim = next(n for n, u in urls.items() if status(u).get("shards_held"))
        (lost,) = status(urls[victim])["shards_held"][:1]
        survivors = {n: u for n, u in urls.items() if n != victim}
        cycles_before = {n: status(u)["cycles"] for n, u in survivors.items()}
        cpu_before = {n: cpu_s(processes[n].pid) for n in survivors}
        processes[victim].send_signal(signal.SIGKILL)
        killed = time.monotonic()

        def taker() -> str | None:
            for n, u in survivors.items():
                if lost in (status(u).get("shards_held") or []):
                    return n
            return None

        successor = wait_for("another process to hold the shard", taker, 120, 0.1)
        held_s = time.monotonic() - killed
        wait_for(
            "its first cycle with the shard",
            lambda: status(survivors[successor])["cycles"] > cycles_before[successor] + 1,
            600,
            0.2,
        )
        cycled_s = time.monotonic() - killed
        after = status(survivors[successor])
        pid = processes[successor].pid
        print(
            f"SIGKILL of {victim}: shard {lost} held by {successor} after {held_s:.1f} s, "
            f"cycled on after {cycled_s:.1f} s (that cycle {after['last_cycle_seconds']:.1f} s; "
            f"{successor} used {cpu_s(pid) - cpu_before[successor]:.0f} CPU s meanwhile, "
            f"now {rss_mb(pid):.0f} MB, peak {rss_mb(pid, 'VmHWM'):.0f} MB; "
            f"frame server: {frames.requests} queries, {frames.abandoned} given up on)"
        )
        slow = {n: SLOW_STATUS.get(u, 0) for n, u in urls.items()}
        print(f"status requests over 10 s (API thread starved by the cycle): {slow}")
    finally:
        for process in [*processes.values(), sim]:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in [*processes.values(), sim]:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        frames.httpd.shutdown()
        print(f"logs in {workdir}")


if __name__ == "__main__":
    main()
