"""Review page benchmark: first paint of the overview, the incident list and an incident's
page in Chromium with 100,000 incidents stored. Target: first paint under 300 ms.

The store is filled as ``bench/api_incidents.py`` fills it (incident ``i`` opened ``i``
minutes after the start, two months of history), then given what the overview reads:
an escalation every seventh closed incident, half of them acknowledged, a guard block
on every eleventh, the first finding's time on each. The API is served by uvicorn in a
separate process whose clock stands at the end of that history, so the last day and
week hold about 1,440 and 10,000 incidents. Debian's Chromium (Playwright, headless)
logs in as an operator and opens each page ``--loads`` times; per page it prints the
median and the worst of the server's answer (request sent to the last byte) and of the
first contentful paint (from the start of navigation), and whether the median paint
meets the target (the worst load on a shared 2-core machine says more about the
neighbours than about the page). The overview runs twice: with its
tallies kept (a page asking again within a minute, nothing written), and counted afresh
on every load (a write before each one, as while the daemon works).

    python bench/review_page.py [--incidents 100000] [--loads 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert, text

sys.path.insert(0, str(Path(__file__).parent))
from api_incidents import T0, fill  # a sibling script, not a package

TOKEN = "bench-operator-token"
CHROMIUM = "/usr/bin/chromium"
TARGET_MS = 300.0


def enrich(url: str, count: int) -> None:
    """Escalations, acknowledgements, guard blocks and first-finding times."""
    from healer.audit import AuditStore
    from healer.audit.tables import AcknowledgementRow, GuardVerdictRow

    store = AuditStore(url)
    engine = store._engine  # bulk rows, which the store's API does not write
    with engine.begin() as db:
        db.execute(text("UPDATE incidents SET detected = last_seen"))
        db.execute(
            text(
                "UPDATE incidents SET outcome = 'escalated' WHERE id % 7 = 0 AND closed IS NOT NULL"
            )
        )
        escalated = [
            i for (i,) in db.execute(text("SELECT id FROM incidents WHERE outcome = 'escalated'"))
        ]
        db.execute(
            insert(AcknowledgementRow),
            [
                {"incident_id": i, "by": "bench", "at": T0 + timedelta(minutes=i + 10), "note": ""}
                for i in escalated[::2]
            ],
        )
        rows = db.execute(text("SELECT incident_id, id FROM incident_steps WHERE seq = 1"))
        steps = {incident: step for incident, step in rows}
        db.execute(
            insert(GuardVerdictRow),
            [
                {
                    "step_id": steps[i],
                    "incident_id": i,
                    "guard": ("cooldown", "rate_limit", "anomaly_brake")[i % 3],
                    "passed": False,
                    "detail": "bench",
                    "at": T0 + timedelta(minutes=i),
                }
                for i in range(11, count + 1, 11)
            ],
        )
    store.close()


def serve(url: str, port: int, count: int) -> None:
    import uvicorn

    from healer.api import create_app
    from healer.api.auth import hash_token
    from healer.audit import AuditStore
    from healer.config import Settings

    now = T0 + timedelta(minutes=count + 30)
    tokens = [{"name": "bench", "role": "operator", "sha256": hash_token(TOKEN)}]
    app = create_app(
        store=AuditStore(url), settings=Settings(api={"tokens": tokens}), clock=lambda: now
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error", access_log=False)


def timings(page: Any, path: str) -> tuple[float, float]:
    """(server ms, first contentful paint ms) of one navigation to ``path``."""
    page.goto(path)
    for _ in range(100):  # the paint entry may land just after the load event
        if page.evaluate("() => performance.getEntriesByName('first-contentful-paint').length"):
            break
        time.sleep(0.01)
    return page.evaluate(
        """() => {
            const nav = performance.getEntriesByType("navigation")[0];
            const paint = performance.getEntriesByName("first-contentful-paint")[0];
            return [nav.responseEnd - nav.requestStart, paint ? paint.startTime : NaN];
        }"""
    )


def report(label: str, samples: list[tuple[float, float]]) -> None:
    server = [s for s, _ in samples]
    paint = [p for _, p in samples]
    median = statistics.median(paint)
    verdict = "ok" if median < TARGET_MS else f"p50 over {TARGET_MS:.0f} ms"
    print(
        f"{label:<34} answer p50 {statistics.median(server):6.1f} ms, max {max(server):6.1f} ms;"
        f"  first paint p50 {median:6.1f} ms, max {max(paint):6.1f} ms  {verdict}"
    )


def measure(
    page: Any, path: str, loads: int, before: Callable[[], None] | None = None
) -> list[tuple[float, float]]:
    samples = []
    for _ in range(loads):
        if before is not None:
            before()
        samples.append(timings(page, path))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incidents", type=int, default=100_000)
    parser.add_argument("--loads", type=int, default=20)
    parser.add_argument("--port", type=int, default=18772)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.incidents)
        return
    from playwright.sync_api import sync_playwright

    url = f"sqlite:///{Path(tempfile.mkdtemp(prefix='healer-bench-page-')) / 'audit.db'}"
    started = time.perf_counter()
    fill(url, args.incidents)
    enrich(url, args.incidents)
    print(f"stored {args.incidents} incidents in {time.perf_counter() - started:.1f} s")
    server = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--serve",
            url,
            "--port",
            str(args.port),
            "--incidents",
            str(args.incidents),
        ],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    base = f"http://127.0.0.1:{args.port}"
    api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        for _ in range(100):
            try:
                api.get("/healthz", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                time.sleep(0.1)

        def write() -> None:  # an opt-out made and ended: two writes, the tallies counted again
            made = api.post(
                "/api/v1/opt-outs", json={"namespace": "bench", "name": "w", "for_s": 60}
            )
            api.delete(f"/api/v1/opt-outs/{made.json()['id']}").raise_for_status()

        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox"], headless=True
            )
            page = browser.new_page()
            page.goto(f"{base}/login")
            page.fill("input[name=token]", TOKEN)
            page.click("button[type=submit]")
            page.wait_for_url(f"{base}/")
            load = os.getloadavg()[0]
            print(f"{args.loads} loads per page, {os.cpu_count()} CPUs, load average {load:.1f}")
            report("overview, tallies counted afresh", measure(page, f"{base}/", args.loads, write))
            report("overview, tallies kept", measure(page, f"{base}/", args.loads))
            report("incident list (200 rows)", measure(page, f"{base}/incidents", args.loads))
            middle = args.incidents // 2
            report("an incident's page", measure(page, f"{base}/incidents/{middle}", args.loads))
            browser.close()
    finally:
        api.close()
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
