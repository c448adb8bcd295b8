"""``healer api``: the review API in several processes on one port, over one store.

Real processes (spawned as ``healer api --workers 2`` spawns them) on a loopback port,
asked over HTTP with fresh connections, so that the kernel hands them to either worker.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from healer.api.auth import hash_token
from healer.api.server import bind
from healer.apiworkers import ApiWorkers, reserve, serve
from healer.audit import AuditStore
from healer.cli import app as cli
from healer.config import Settings
from healer.errors import ConfigError
from healer.types import Direction, Finding, Signal, SignalDeviation, WorkloadRef

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)
VIEWER, OPERATOR = "viewer-token", "operator-token"
STARTED_S = 60.0
"""Longest wait for a spawned worker to import healer and answer, on a loaded machine."""


def settings(db: Path, *, port: int = 0, secret: str | None = "shared-by-the-workers") -> Settings:
    tokens = [
        {"name": "viewer-1", "role": "viewer", "sha256": hash_token(VIEWER)},
        {"name": "operator-1", "role": "operator", "sha256": hash_token(OPERATOR)},
    ]
    return Settings(
        api={"tokens": tokens, "cursor_secret": secret, "port": port},
        store={"url": f"sqlite:///{db}"},
        playbooks_dir=REPO / "playbooks",
    )


def open_incident(db: Path, name: str) -> int:
    store = AuditStore(f"sqlite:///{db}")
    deviation = SignalDeviation(Signal.CPU, 1.5, 0.5, 8.0, Direction.UP)
    workload = WorkloadRef("shop", "Deployment", name)
    try:
        finding = Finding(workload, T0, 0.97, (deviation,), onset=T0, model_version="m")
        return store.open_incident(finding)
    finally:
        store.close()


def get(url: str, token: str = VIEWER) -> httpx.Response:
    """A request on a connection of its own, so that any worker may take it."""
    return httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def wait_until(check: object, what: str) -> None:
    deadline = time.monotonic() + STARTED_S
    while time.monotonic() < deadline:
        try:
            if callable(check) and check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"not within {STARTED_S} s: {what}")


@contextmanager
def serving(given: Settings) -> Iterator[str]:
    """Two workers serving ``given``, stopped on the way out; the API's URL."""
    sock = reserve("127.0.0.1", 0)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    stop = threading.Event()
    runner = threading.Thread(
        target=serve, args=(ApiWorkers(given, 2),), kwargs={"stop": stop, "sock": sock}
    )
    runner.start()
    try:
        wait_until(lambda: len(multiprocessing.active_children()) == 2, "two workers")
        wait_until(lambda: get(f"{url}/healthz").status_code == 200, "the API answers")
        yield url
    finally:
        stop.set()
        runner.join(30)
    assert not runner.is_alive()
    assert multiprocessing.active_children() == []  # every worker stopped with it


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    db = tmp_path / "audit.db"
    with serving(settings(db)) as url:
        yield url, db


def test_workers_without_a_cursor_secret_take_each_others_cursors(tmp_path: Path) -> None:
    """Unset, the key is drawn once for all the workers: a cursor one signed pages on
    with any other (before, each worker drew its own and refused the others')."""
    db = tmp_path / "audit.db"
    for name in ("cart", "ledger", "search"):
        open_incident(db, name)
    with serving(settings(db, secret=None)) as url:
        first = get(f"{url}/api/v1/incidents?limit=1").json()
        pages = [  # fresh connections: the kernel hands them to either worker
            get(f"{url}/api/v1/incidents?limit=1&cursor={first['next_cursor']}") for _ in range(12)
        ]
    assert [page.status_code for page in pages] == [200] * 12, pages[0].text


def test_the_workers_serve_one_store_and_see_each_others_writes(
    served: tuple[str, Path],
) -> None:
    url, db = served
    first = open_incident(db, "cart")  # written by another process: the daemon's
    wait_until(
        lambda: all(
            [i["id"] for i in get(f"{url}/api/v1/incidents").json()["items"]] == [first]
            for _ in range(10)
        ),
        "every worker lists the daemon's incident (a kept page lives a second)",
    )
    body = {"verdict": "true_positive", "note": "seen"}
    labelled = httpx.post(
        f"{url}/api/v1/incidents/{first}/feedback",
        json=body,
        headers={"Authorization": f"Bearer {OPERATOR}"},
        timeout=10,
    )
    assert labelled.status_code == 201, labelled.text
    for _ in range(10):  # fresh connections: each worker reads the label from the store
        timeline = get(f"{url}/api/v1/incidents/{first}").json()["timeline"]
        assert [s["actor"] for s in timeline if s["kind"] == "feedback"] == ["operator-1"]


def test_a_viewer_is_still_refused_what_only_an_operator_may_do(
    served: tuple[str, Path],
) -> None:
    url, db = served
    incident = open_incident(db, "cart")
    refused = httpx.post(
        f"{url}/api/v1/incidents/{incident}/feedback",
        json={"verdict": "true_positive"},
        headers={"Authorization": f"Bearer {VIEWER}"},
        timeout=10,
    )
    assert refused.status_code == 403
    assert get(f"{url}/api/v1/incidents", token="wrong").status_code == 401


def test_a_worker_that_dies_is_started_again(served: tuple[str, Path]) -> None:
    url, _ = served
    [victim, survivor] = multiprocessing.active_children()
    assert victim.pid is not None
    os.kill(victim.pid, signal.SIGKILL)
    wait_until(
        lambda: (
            len(multiprocessing.active_children()) == 2
            and victim.pid not in {p.pid for p in multiprocessing.active_children()}
        ),
        "a new worker in place of the one killed",
    )
    assert survivor.is_alive()
    wait_until(
        lambda: all(get(f"{url}/healthz").status_code == 200 for _ in range(10)),
        "both workers answer",
    )


def test_a_port_in_use_is_an_error_before_any_worker_starts(tmp_path: Path) -> None:
    taken = bind("127.0.0.1", 0)
    port = taken.getsockname()[1]
    try:
        with pytest.raises(ConfigError, match=f"127.0.0.1:{port}"):
            serve(ApiWorkers(settings(tmp_path / "a.db", port=port), 2), stop=threading.Event())
    finally:
        taken.close()
    assert multiprocessing.active_children() == []


def test_workers_below_one_are_refused_naming_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"api\.workers"):
        ApiWorkers(settings(tmp_path / "a.db"), 0)
    config = tmp_path / "healer.yaml"
    config.write_text("api:\n  workers: 0\n")
    result = CliRunner().invoke(cli, ["api", "--config", str(config)])
    assert result.exit_code != 0
    assert "api.workers" in str(result.exception)


def test_the_command_names_a_missing_settings_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["api", "--config", str(tmp_path / "nope.yaml")])
    assert isinstance(result.exception, ConfigError)
    assert "nope.yaml" in str(result.exception)


def test_the_command_takes_workers_from_the_option_over_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "healer.yaml"
    config.write_text(f"api:\n  workers: 2\nstore:\n  url: sqlite:///{tmp_path / 'a.db'}\n")
    asked: list[ApiWorkers] = []
    monkeypatch.setattr("healer.apiworkers.serve", lambda plan, **_: asked.append(plan))
    monkeypatch.setattr("healer.cli._stop_on_signals", lambda stop: None)  # pytest's own stay
    monkeypatch.setattr("healer.logs.configure", lambda **_: None)  # logs to pytest's capture
    CliRunner().invoke(cli, ["api", "--config", str(config)], catch_exceptions=False)
    CliRunner().invoke(cli, ["api", "--config", str(config), "--workers", "3"])
    assert [plan.workers for plan in asked] == [2, 3]
    assert asked[0].settings.store.url == f"sqlite:///{tmp_path / 'a.db'}"


def sockets_of(pid: int, port: int, state: str) -> int:
    """TCP sockets on ``port`` in ``state`` (01 established, 0A listening) that process
    ``pid`` holds (Linux /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd) if fd.is_symlink() else ""
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].split(":")[1], 16)
        count += local_port == port and fields[3] == state and fields[9] in inodes
    return count


def test_connections_arriving_at_once_are_spread_over_the_workers(
    served: tuple[str, Path],
) -> None:
    url, _ = served
    port = int(url.rsplit(":", 1)[1])
    workers = multiprocessing.active_children()
    wait_until(
        lambda: all(sockets_of(p.pid or 0, port, "0A") == 1 for p in workers),
        "both workers listening",
    )
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]
    try:
        request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        for client in clients:
            client.sendall(request)
        for client in clients:
            assert client.recv(4096).startswith(b"HTTP/1.1 200")
        held = [sockets_of(p.pid or 0, port, "01") for p in workers]
        assert sum(held) == 40
        assert min(held) >= 8, held  # evenly, by the kernel's hash: 20 each, give or take
    finally:
        for client in clients:
            client.close()
