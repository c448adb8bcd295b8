"""A real Prometheus scraping a local exporter every second, for tests that need known
samples in a real TSDB: the exporter serves ``page(n)`` on its n-th scrape (from 0)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from test_prometheus import _binary

from healer.api.server import ServerThread, bind


@contextmanager
def scraping(
    workdir: Path, page: Callable[[int], str], *, job: str, scrapes: int, timeout_s: float = 60
) -> Iterator[str]:
    """Prometheus' URL once it has scraped ``scrapes`` pages and ingested the last
    (labels as exported: ``honor_labels``); both stopped on exit."""
    served = [0]

    async def metrics(request: Request) -> PlainTextResponse:
        text = page(served[0])
        served[0] += 1
        return PlainTextResponse(text)

    exporter = ServerThread(
        Starlette(routes=[Route("/metrics", metrics)]), bind("127.0.0.1", 0)
    ).start()
    config = workdir / "prometheus.yml"
    target = {"targets": [exporter.url.removeprefix("http://")]}
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
                "scrape_configs": [
                    {"job_name": job, "honor_labels": True, "static_configs": [target]}
                ],
            }
        )
    )
    sock = bind("127.0.0.1", 0)
    address = f"127.0.0.1:{sock.getsockname()[1]}"
    sock.close()
    log = workdir / "prometheus.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                _binary("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address={address}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + timeout_s
        while served[0] < scrapes and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()[-2000:]
            time.sleep(0.2)
        assert served[0] >= scrapes, "Prometheus did not scrape the exporter"
        time.sleep(1.5)  # the last scrapes are ingested
        yield f"http://{address}"
    finally:
        process.terminate()
        process.wait(timeout=10)
        exporter.stop()
