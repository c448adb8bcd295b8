"""API benchmark: GET /api/v1/incidents with 100,000 incidents stored, 10 and 100 clients.

The store is filled directly through its tables (one transaction; the point is reading),
then served by uvicorn in a separate process, as in production, so the load generator
does not share the server's interpreter. Each client is an asyncio task with its own
keep-alive connection, sending one request after another (a closed loop, no think time)
for ``--seconds``. The load generator is a minimal HTTP/1.1 client, because it shares
the machine's cores with the server; each run prints the CPU both used and the load
generator's share. Printed per run: requests, throughput, p50 / p90 / p99 / max latency,
for the first page, for a page found through a cursor, and for queries that all differ
(no page kept in memory: the cost of a store read and its encoding). The queries that
differ mix the filters people type (``query_shapes``: a start time, a time window, a
namespace, a cause, a status, a workload, each further on through a cursor, and a
week's window of a status or of a workload), and each shape's latencies in that run
are printed below it. Target: p99 under 50 ms at 100
clients, for every shape.

The server is the API as ``healer api --workers N`` runs it (``healer.apiworkers``):
``--workers`` processes on one port, one by default; the CPU printed is theirs together.
Figures, and the machine's load when they were taken, are in the README (the incident
list, under "Configuration").

    python bench/api_incidents.py [--incidents 100000] [--clients 10,100] [--seconds 20]
        [--workers 1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import httpx
from sqlalchemy import insert

TOKEN = "bench-viewer-token"
CURSOR_SECRET = "bench-cursor-secret"
"""The server's cursor key, so that the load generator can sign cursors of its own."""
T0 = datetime(2025, 1, 1, tzinfo=UTC)
CAUSES = ("memory_leak", "overload", "bad_release", "crash_loop", None)
STATUSES = ("resolved", "resolved", "resolved", "open", "verifying")


def fill(url: str, count: int) -> None:
    from healer.audit import AuditStore
    from healer.audit.listed import entry_json
    from healer.audit.tables import IncidentRow, StepRow
    from healer.types import ActionKind, ActionStatus, Cause, IncidentStatus, OutcomeKind

    store = AuditStore(url)
    engine = store._engine  # the bench writes rows in bulk, which the store's API does not
    finding = {"workload": {}, "score": 0.97, "signals": [], "model_version": "bench"}

    def incident(i: int) -> dict[str, object]:
        done = i % 5 < 3
        cause = CAUSES[i % 5]
        row = {
            "id": i,
            "namespace": f"ns{i % 20}",
            "kind": "Deployment",
            "name": f"svc{i % 500}",
            "status": IncidentStatus(STATUSES[i % 5]),
            "opened": T0 + timedelta(minutes=i),
            "closed": T0 + timedelta(minutes=i + 5) if done else None,
            "score": 0.9 + (i % 10) / 100,
            "cause": Cause(cause) if cause else None,
            "confidence": 0.8 if cause else None,
            "action": ActionKind.RESTART if done else None,
            "action_status": ActionStatus.SUCCEEDED if done else None,
            "outcome": OutcomeKind.HEALED if done else None,
            "last_seen": T0 + timedelta(minutes=i + 1),
            "cluster": "default",
        }
        # What the store's own writes keep beside the columns (healer.audit.listed),
        # which an insert in bulk does not make by itself.
        return {**row, "listed": entry_json(SimpleNamespace(**row))}

    with engine.begin() as db:
        for start in range(0, count, 10_000):
            ids = range(start + 1, min(count, start + 10_000) + 1)
            db.execute(insert(IncidentRow), [incident(i) for i in ids])
            db.execute(
                insert(StepRow),
                [
                    {
                        "incident_id": i,
                        "seq": 1,
                        "kind": "finding",
                        "at": T0 + timedelta(minutes=i),
                        "data": finding,
                        "actor": "bench",
                    }
                    for i in ids
                ],
            )
    store.close()


QUERIES_PER_SHAPE = 2_000
"""Distinct queries of each shape: more than the clients send of it in a run."""


def query_shapes(count: int) -> dict[str, list[str]]:
    """Incident-list queries by what a person filters on, ``QUERIES_PER_SHAPE`` of each,
    all different. Filters match what ``fill`` stored (incident ``i`` is in namespace
    ``ns{i % 20}``, workload ``svc{i % 500}``, with the cause and status of ``i % 5``), and
    the cursor pages start at ids spread over the history."""
    from healer.api.cursor import CursorSigner

    signer = CursorSigner(CURSOR_SECRET.encode())
    n = range(QUERIES_PER_SHAPE)
    span_min = max(count - 24 * 60, 1)  # a one-day window starts at least a day back
    week_min = max(count - 7 * 24 * 60, 1)

    def week(k: int) -> str:  # a week's window, starting anywhere in the history
        m = k * 7919 % week_min
        return f"{at(m)}&until={at(m + 7 * 24 * 60)}"

    def at(minutes: int) -> str:
        return (T0 + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def cursor(k: int) -> str:
        return signer.dump(count - (k * 7919) % max(count - 1, 1))  # 7919: a prime stride

    base = "/api/v1/incidents?"
    return {
        "start time": [f"{base}since={at(k * count // QUERIES_PER_SHAPE)}" for k in n],
        "one-day window": [
            f"{base}since={at(m)}&until={at(m + 24 * 60)}" for m in (k * 7919 % span_min for k in n)
        ],
        "namespace, cursor": [f"{base}namespace=ns{k % 20}&cursor={cursor(k)}" for k in n],
        "cause, cursor": [f"{base}cause={CAUSES[k % 4]}&cursor={cursor(k)}" for k in n],
        "status, cursor": [f"{base}status={STATUSES[k % 5]}&cursor={cursor(k)}" for k in n],
        "workload, cursor": [
            f"{base}namespace=ns{k % 20}&workload=svc{k % 500}&cursor={cursor(k)}" for k in n
        ],
        "namespace and status": [
            f"{base}namespace=ns{k % 20}&status={STATUSES[k % 5]}&cursor={cursor(k)}" for k in n
        ],
        "status, one-week window": [f"{base}status={STATUSES[k % 5]}&since={week(k)}" for k in n],
        "workload, one-week window": [
            f"{base}namespace=ns{k % 20}&workload=svc{k % 500}&since={week(k)}" for k in n
        ],
    }


def serve(url: str, port: int, workers: int) -> None:
    """Serve the store as ``healer api --workers N`` does (``healer.apiworkers``)."""
    import signal
    import threading

    from healer.api.auth import hash_token
    from healer.apiworkers import ApiWorkers
    from healer.apiworkers import serve as serve_workers
    from healer.config import Settings

    tokens = [{"name": "bench", "role": "viewer", "sha256": hash_token(TOKEN)}]
    api = {"tokens": tokens, "cursor_secret": CURSOR_SECRET, "host": "127.0.0.1", "port": port}
    playbooks = Path(__file__).resolve().parents[1] / "playbooks"
    settings = Settings(api=api, store={"url": url}, playbooks_dir=playbooks)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    serve_workers(ApiWorkers(settings, workers), stop=stop)


class Client:
    """One keep-alive HTTP/1.1 connection sending one GET after another.

    Deliberately minimal (pre-encoded requests; the response read by Content-Length):
    the load generator shares the machine's cores with the server, and a full client
    such as httpx spends more CPU per request than a cached page costs the server, so
    it would mostly measure itself. Responses are checked: status 200 and a JSON body.
    """

    def __init__(self, port: int, requests: Sequence[bytes], first: int) -> None:
        self.port, self.requests, self.next = port, requests, first

    async def run(self, stop: float, latencies: list[tuple[int, float]]) -> None:
        """Send requests until ``stop``; append (index of the request, seconds) each."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            while time.monotonic() < stop:
                index = self.next % len(self.requests)
                self.next += 1
                started = time.perf_counter()
                writer.write(self.requests[index])
                head = await reader.readuntil(b"\r\n\r\n")
                body = await reader.readexactly(_content_length(head))
                latencies.append((index, time.perf_counter() - started))
                if not head.startswith(b"HTTP/1.1 200") or not body.startswith(b"{"):
                    raise RuntimeError(f"unexpected answer: {head[:40]!r} {body[:80]!r}")
        finally:
            writer.close()


def encode(port: int, path: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {TOKEN}\r\nAccept: application/json\r\n\r\n"
    ).encode()


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise RuntimeError(f"no Content-Length in {head!r}")


async def load(
    port: int, paths: Sequence[str], clients: int, seconds: float
) -> list[tuple[int, float]]:
    """Latencies of ``clients`` closed-loop clients for ``seconds``, each with the index
    of its path; each client sends ``paths`` in turn, client ``i`` starting at its own
    share of the list."""
    latencies: list[tuple[int, float]] = []
    stop = time.monotonic() + seconds
    requests = [encode(port, path) for path in paths]
    step = max(1, len(requests) // clients)
    await asyncio.gather(
        *(Client(port, requests, i * step).run(stop, latencies) for i in range(clients))
    )
    return latencies


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process ``pid`` and its descendants (the API's
    workers), from Linux /proc; None elsewhere."""
    try:
        stats = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rpartition(")")[2].split()
                except OSError:
                    continue  # ended meanwhile
                stats[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    except OSError:
        return None
    if pid not in stats:
        return None
    tree: set[int] = set()
    grown = {pid}
    while grown:  # the processes whose parent is in the tree, until none is added
        tree |= grown
        grown = {p for p, (parent, _) in stats.items() if parent in grown}
    ticks = sum(stats[p][1] for p in tree)
    return ticks / os.sysconf("SC_CLK_TCK")  # utime + stime


def report(label: str, latencies: Sequence[float], seconds: float, cpu: str) -> None:
    ms = sorted(x * 1000 for x in latencies)
    q = statistics.quantiles(ms, n=100)
    print(
        f"{label:<44} {len(ms):>7} requests {len(ms) / seconds:>6.0f}/s  "
        f"p50 {q[49]:6.1f} ms  p90 {q[89]:6.1f} ms  p99 {q[98]:6.1f} ms  max {ms[-1]:6.1f} ms"
        f"  {cpu}"
    )


def measure(
    server: int, port: int, paths: Sequence[str], clients: int, seconds: float
) -> tuple[list[tuple[int, float]], str]:
    """Run the load; also the CPU the server and this load generator used, in seconds
    per second of run (1.0 is one core busy), the load generator's share of both, and
    the server's CPU per request (what a loaded machine distorts least)."""
    server_before, client_before = cpu_seconds(server), time.process_time()
    latencies = asyncio.run(load(port, paths, clients, seconds))
    server_after, client_used = cpu_seconds(server), time.process_time() - client_before
    if server_before is None or server_after is None:
        return latencies, f"client cpu {client_used / seconds:.2f}"
    server_used = server_after - server_before
    share = client_used / (client_used + server_used) if client_used + server_used else 0.0
    per_request_ms = server_used / max(len(latencies), 1) * 1000
    return latencies, (
        f"cpu server {server_used / seconds:.2f} client {client_used / seconds:.2f} "
        f"(client {share:.0%}), server {per_request_ms:.2f} ms/request"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incidents", type=int, default=100_000)
    parser.add_argument(
        "--clients", default="10,100", help="concurrent clients, comma-separated runs"
    )
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--port", type=int, default=18771)
    parser.add_argument(
        "--workers", type=int, default=1, help="server processes (healer api --workers)"
    )
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.workers)
        return
    counts = [int(c) for c in args.clients.split(",")]
    url = f"sqlite:///{Path(tempfile.mkdtemp(prefix='healer-bench-api-')) / 'audit.db'}"
    started = time.perf_counter()
    fill(url, args.incidents)
    print(f"stored {args.incidents} incidents in {time.perf_counter() - started:.1f} s")
    server = subprocess.Popen(
        [
            *(sys.executable, __file__, "--serve", url),
            *("--port", str(args.port), "--workers", str(args.workers)),
        ],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    base = f"http://127.0.0.1:{args.port}"
    try:
        for _ in range(100):
            try:
                httpx.get(f"{base}/healthz", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        first = httpx.get(f"{base}/api/v1/incidents", headers={"Authorization": f"Bearer {TOKEN}"})
        cursor = first.json()["next_cursor"]
        shapes = query_shapes(args.incidents)
        # Distinct queries, so that no page is served from memory: what a store read and
        # its encoding cost. The shapes take turns, so that each client sends all of them.
        varied = [path for paths in zip(*shapes.values(), strict=True) for path in paths]
        shape_of = [label for _ in range(len(varied) // len(shapes)) for label in shapes]
        asyncio.run(load(args.port, ["/api/v1/incidents"], max(counts), 2.0))  # warm-up
        print(
            f"{args.seconds:g} s per run, {args.workers} server processes, {os.cpu_count()} CPUs, "
            f"load average {os.getloadavg()[0]:.1f} (the server and this load generator share them)"
        )
        for clients in counts:
            for label, paths in (
                ("first page (50 items)", ["/api/v1/incidents"]),
                (
                    "cursor page, status filter",
                    [f"/api/v1/incidents?status=resolved&cursor={cursor}"],
                ),
                ("varied queries (none kept)", varied),
            ):
                latencies, cpu = measure(server.pid, args.port, paths, clients, args.seconds)
                seconds = [x for _, x in latencies]
                report(f"{clients:>3} clients, {label}", seconds, args.seconds, cpu)
                if paths is varied:
                    for shape in shapes:
                        mine = [x for i, x in latencies if shape_of[i] == shape]
                        report(f"      {shape}", mine, args.seconds, "")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
