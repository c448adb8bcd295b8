"""API benchmark: GET /api/v1/incidents with 100,000 incidents stored, 100 clients at once.

The store is filled directly through its tables (one transaction; the point is reading),
then served by uvicorn in a separate process, as in production, so the load generator
does not share the server's interpreter. Each client is an asyncio task with its own
keep-alive connection, sending one request after another (a closed loop, no think time)
for ``--seconds``. Printed: requests, throughput, p50 / p90 / p99 / max latency, for the
first page and for a page found through a cursor. Target: p99 under 50 ms.

    python bench/api_incidents.py [--incidents 100000] [--clients 100] [--seconds 20]
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
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import insert

TOKEN = "bench-viewer-token"
T0 = datetime(2025, 1, 1, tzinfo=UTC)
CAUSES = ("memory_leak", "overload", "bad_release", "crash_loop", None)
STATUSES = ("resolved", "resolved", "resolved", "open", "verifying")


def fill(url: str, count: int) -> None:
    from healer.audit import AuditStore
    from healer.audit.tables import IncidentRow, StepRow

    store = AuditStore(url)
    engine = store._engine  # the bench writes rows in bulk, which the store's API does not
    finding = {"workload": {}, "score": 0.97, "signals": [], "model_version": "bench"}
    with engine.begin() as db:
        for start in range(0, count, 10_000):
            ids = range(start + 1, min(count, start + 10_000) + 1)
            db.execute(
                insert(IncidentRow),
                [
                    {
                        "id": i,
                        "namespace": f"ns{i % 20}",
                        "kind": "Deployment",
                        "name": f"svc{i % 500}",
                        "status": STATUSES[i % 5],
                        "opened": T0 + timedelta(minutes=i),
                        "closed": T0 + timedelta(minutes=i + 5) if i % 5 < 3 else None,
                        "score": 0.9 + (i % 10) / 100,
                        "cause": CAUSES[i % 5],
                        "confidence": 0.8 if CAUSES[i % 5] else None,
                        "action": "restart" if i % 5 < 3 else None,
                        "action_status": "succeeded" if i % 5 < 3 else None,
                        "outcome": "healed" if i % 5 < 3 else None,
                        "last_seen": T0 + timedelta(minutes=i + 1),
                    }
                    for i in ids
                ],
            )
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


def serve(url: str, port: int) -> None:
    import uvicorn

    from healer.api import create_app
    from healer.api.auth import hash_token
    from healer.audit import AuditStore
    from healer.config import Settings

    tokens = [{"name": "bench", "role": "viewer", "sha256": hash_token(TOKEN)}]
    app = create_app(store=AuditStore(url), settings=Settings(api={"tokens": tokens}))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error", access_log=False)


async def load(base: str, path: str, clients: int, seconds: float) -> list[float]:
    latencies: list[float] = []
    stop = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits) as http:

        async def client() -> None:
            while time.monotonic() < stop:
                started = time.perf_counter()
                response = await http.get(path, timeout=30)
                latencies.append(time.perf_counter() - started)
                response.raise_for_status()

        await asyncio.gather(*(client() for _ in range(clients)))
    return latencies


def report(label: str, latencies: list[float], seconds: float) -> None:
    ms = sorted(x * 1000 for x in latencies)
    q = statistics.quantiles(ms, n=100)
    print(
        f"{label:<28} {len(ms):>7} requests {len(ms) / seconds:>7.0f}/s   "
        f"p50 {q[49]:6.1f} ms  p90 {q[89]:6.1f} ms  p99 {q[98]:6.1f} ms  max {ms[-1]:6.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incidents", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--port", type=int, default=18771)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return
    url = f"sqlite:///{Path(tempfile.mkdtemp(prefix='healer-bench-api-')) / 'audit.db'}"
    started = time.perf_counter()
    fill(url, args.incidents)
    print(f"stored {args.incidents} incidents in {time.perf_counter() - started:.1f} s")
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", url, "--port", str(args.port)],
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
        asyncio.run(load(base, "/api/v1/incidents", args.clients, 2.0))  # warm-up
        print(
            f"{args.clients} concurrent clients, {args.seconds:g} s per run, "
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
        )
        for label, path in (
            ("first page (50 items)", "/api/v1/incidents"),
            ("cursor page, status filter", f"/api/v1/incidents?status=resolved&cursor={cursor}"),
        ):
            latencies = asyncio.run(load(base, path, args.clients, args.seconds))
            report(label, latencies, args.seconds)
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
