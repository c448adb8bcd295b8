"""A real Alertmanager (Debian package ``prometheus-alertmanager``) delivering to the API.

An alert posted to Alertmanager reaches ``/api/v1/alerts`` with the receiver token of
its ``http_config.authorization``, is stored once with Alertmanager's fingerprint, a
delivery answered 503 is retried by Alertmanager and stored once, and the resolution is
recorded. Skipped when the binary is missing, failed under HEALER_REQUIRE_PROMETHEUS=1.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from healer.api import create_app
from healer.api.auth import hash_token
from healer.api.server import ServerThread, bind
from healer.audit.store import AuditStore
from healer.audit.views import AlertsRecorded, StoredAlert
from healer.config import Settings
from healer.errors import StoreError
from healer.types import Alert, AlertDisposition
from tests.integration.test_prometheus import _free_port

pytestmark = pytest.mark.integration

TOKEN = "alertmanager-token"
WAIT_S = 30.0
"""Longest wait for a delivery: Alertmanager sends within a second or two here (1 s group
wait and interval); the margin is for a loaded machine."""


def _alertmanager() -> str:
    found = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if found is None:
        message = (
            "the alertmanager binary is not installed (Debian package prometheus-alertmanager)"
        )
        if os.environ.get("HEALER_REQUIRE_PROMETHEUS") == "1":
            pytest.fail(message + " and HEALER_REQUIRE_PROMETHEUS=1")
        pytest.skip(message)
    return found


@dataclass
class FlakyInbox:
    """The store, down for the first ``failures`` deliveries (as a restarting database is)."""

    store: AuditStore
    failures: int
    calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record_alerts(self, alerts: Sequence[Alert], *, at: datetime) -> AlertsRecorded:
        with self.lock:
            self.calls += 1
            if self.calls <= self.failures:
                raise StoreError("cannot record alerts: database is restarting")
        return self.store.record_alerts(alerts, at=at)

    def pending_alerts(self, *, limit: int = 1000) -> list[StoredAlert]:
        return self.store.pending_alerts(limit=limit)

    def settle_alert(
        self,
        alert_id: int,
        disposition: AlertDisposition,
        *,
        detail: str,
        at: datetime,
        incident_id: int | None = None,
    ) -> None:
        self.store.settle_alert(
            alert_id, disposition, detail=detail, at=at, incident_id=incident_id
        )

    def alerts_of(self, incident_id: int) -> list[StoredAlert]:
        return self.store.alerts_of(incident_id)


@pytest.fixture
def inbox(store: AuditStore) -> FlakyInbox:
    return FlakyInbox(store, failures=1)


@pytest.fixture
def healer_url(store: AuditStore, inbox: FlakyInbox) -> Iterator[str]:
    settings = Settings(
        alertmanager={"receiver_tokens": [{"name": "am", "sha256": hash_token(TOKEN)}]}
    )
    server = ServerThread(
        create_app(store=store, settings=settings, alerts=inbox), bind("127.0.0.1", 0)
    ).start()
    yield server.url
    server.stop()


@pytest.fixture
def alertmanager(tmp_path: Path, healer_url: str) -> Iterator[str]:
    config = {
        "route": {
            "receiver": "healer",
            "group_by": ["alertname"],
            "group_wait": "1s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [
            {
                "name": "healer",
                "webhook_configs": [
                    {
                        "url": f"{healer_url}/api/v1/alerts",
                        "send_resolved": True,
                        "http_config": {"authorization": {"credentials": TOKEN}},
                    }
                ],
            }
        ],
    }
    with running_alertmanager(tmp_path, config, port=_free_port()) as url:
        yield url


@contextmanager
def running_alertmanager(workdir: Path, config: dict[str, object], *, port: int) -> Iterator[str]:
    """Alertmanager alone (no gossip) on ``port`` with ``config``; its URL once ready.
    Skipped (failed in CI) without the binary; its log is ``alertmanager.log``."""
    binary = _alertmanager()
    (workdir / "alertmanager.yml").write_text(yaml.safe_dump(config))
    log_path = workdir / "alertmanager.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={workdir / 'alertmanager.yml'}",
            f"--storage.path={workdir / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # alone: no gossip port
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _until(lambda: _ready(url), what="alertmanager ready", log=log_path)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/-/ready", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _until(check: Callable[[], bool], *, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    tail = log.read_text()[-2000:] if log is not None and log.exists() else ""
    raise AssertionError(f"no {what} within {WAIT_S:g} s\n{tail}")


def _post(url: str, *, ends: datetime | None = None) -> None:
    started = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    alert: dict[str, object] = {
        "labels": {"alertname": "KubePodCrashLooping", "namespace": "shop", "deployment": "cart"},
        "annotations": {"summary": "cart restarts"},
        "startsAt": started.isoformat(),
        "generatorURL": "http://prometheus:9090/graph",
    }
    if ends is not None:
        alert["endsAt"] = ends.isoformat()
    answer = httpx.post(f"{url}/api/v2/alerts", json=[alert], timeout=5.0)
    assert answer.status_code == 200, answer.text


def _rows(store: AuditStore, tmp_path: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(tmp_path / "audit.db") as db:
        rows = list(db.execute("SELECT fingerprint, name, status FROM alerts ORDER BY id"))
    db.close()
    return rows


def test_alertmanager_delivers_retries_and_resolves(
    alertmanager: str, store: AuditStore, inbox: FlakyInbox, tmp_path: Path
) -> None:
    _post(alertmanager)
    _until(lambda: len(_rows(store, tmp_path)) == 1, what="alert stored")
    assert inbox.calls >= 2, "the delivery answered 503 was sent again"
    [(fingerprint, name, status)] = _rows(store, tmp_path)
    [listed] = httpx.get(f"{alertmanager}/api/v2/alerts", timeout=5.0).json()
    assert (fingerprint, name, status) == (listed["fingerprint"], "KubePodCrashLooping", "firing")
    [pending] = store.pending_alerts()
    assert str(pending.alert.workload) == "shop/cart"
    assert pending.alert.receiver == "healer"

    _post(alertmanager, ends=datetime.now(UTC) - timedelta(seconds=1))
    _until(
        lambda: _rows(store, tmp_path) == [(fingerprint, name, "resolved")],
        what="resolution stored",
    )
    assert store.pending_alerts() == []
    assert inbox.calls >= 3
