"""Alert receiver benchmark: how long ``POST /api/v1/alerts`` takes to store and answer.

Alertmanager waits for the answer of each delivery (and gives up after its timeout), so
the receiver stores and answers without deciding anything. This serves the app over
real HTTP on loopback (uvicorn in a thread, a SQLite file store) and posts deliveries of
``--alerts`` alerts one after another: first new alerts, then the same deliveries again
(Alertmanager's repeats, which change nothing). Printed: p50 / p90 / max per delivery
and alerts stored per second.

    python bench/alerts_in.py [--alerts 1,20,200] [--deliveries 50]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from healer.api import create_app
from healer.api.auth import hash_token
from healer.api.server import ServerThread, bind
from healer.audit import AuditStore
from healer.config import Settings

TOKEN = "bench-alertmanager-token"
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def delivery(index: int, size: int) -> dict[str, Any]:
    alerts = [
        {
            "status": "firing",
            "labels": {
                "alertname": "KubePodCrashLooping",
                "namespace": f"ns{i % 20}",
                "deployment": f"app{index}-{i}",
                "severity": "warning",
            },
            "annotations": {"summary": "pods restart over and over", "runbook_url": "http://x"},
            "startsAt": (T0 + timedelta(seconds=index)).isoformat(),
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
            "fingerprint": f"{index:08x}{i:08x}",
        }
        for i in range(size)
    ]
    return {
        "version": "4",
        "groupKey": "{}:{}",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "healer",
        "groupLabels": {},
        "commonLabels": {"alertname": "KubePodCrashLooping"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": alerts,
    }


def run(size: int, deliveries: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="healer-alerts-bench-"))
    store = AuditStore(f"sqlite:///{folder / 'audit.db'}")
    settings = Settings(
        alertmanager={"receiver_tokens": [{"name": "am", "sha256": hash_token(TOKEN)}]},
        api={"max_body_bytes": 8 * 1024 * 1024},
    )
    server = ServerThread(create_app(store=store, settings=settings), bind("127.0.0.1", 0)).start()
    bodies = [delivery(i, size) for i in range(deliveries)]
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30.0) as client:
        for label in ("new", "repeated"):
            times_ms = []
            for body in bodies:
                started = time.perf_counter()
                answer = client.post("/api/v1/alerts", json=body)
                times_ms.append((time.perf_counter() - started) * 1000)
                assert answer.status_code == 200, answer.text
            times_ms.sort()
            p90 = times_ms[int(0.9 * (len(times_ms) - 1))]
            rate = size * len(times_ms) / (sum(times_ms) / 1000)
            print(
                f"{size:>4} alerts/delivery {label:>8}: p50 {statistics.median(times_ms):6.1f} ms"
                f"  p90 {p90:6.1f} ms  max {times_ms[-1]:6.1f} ms  {rate:8.0f} alerts/s"
            )
    server.stop()
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", default="1,20,200", help="alerts per delivery, comma-separated")
    parser.add_argument("--deliveries", type=int, default=50)
    args = parser.parse_args()
    for size in (int(s) for s in args.alerts.split(",")):
        run(size, args.deliveries)


if __name__ == "__main__":
    main()
