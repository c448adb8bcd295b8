"""The review API alone, served by several processes on one port (``healer api``).

One Python process reads and encodes about 1,400 incident-list pages not kept in memory
a second (0.7 ms of CPU each, ``bench/api_incidents.py``): the interpreter runs one request at a
time, whatever the cores. A team whose people and dashboards ask more than that runs
the API beside the daemon, over the same store, in ``api.workers`` processes.

Decisions:

- One listening socket, bound here before any worker starts (a port in use is a clear
  error at once), inherited by every worker: the kernel hands each new connection to
  one of the processes waiting in ``accept``, as uvicorn's own ``--workers`` does. Our
  own processes rather than uvicorn's, because each worker builds its app with
  ``create_app`` from the settings it is given, not from an import string and the
  environment.
- The store is opened (and migrated) once here before the workers start, so that they
  never race to migrate a new file; each then opens its own connections. Writes (an
  approval, a label) go to the shared database: the daemon takes an approval from there
  on its next cycle, as from its own API. A page a worker keeps in memory is at most a
  second behind another worker's writes (``listing.TTL_S``), as between replicas.
- Workers are started with ``spawn``: a fork of a process that already holds database
  connections and threads would share them.
- A worker that dies is started again after ``RESTART_WAIT_S``; stopping (SIGTERM, or
  Ctrl-C) asks every worker to finish what it is answering, then waits for them.
- The daemon's own API (``healer run``) stays one server in the daemon's process.
"""

from __future__ import annotations

import multiprocessing
import socket
import threading
from dataclasses import dataclass
from multiprocessing.process import BaseProcess

import structlog
import uvicorn

from healer.api.app import create_app
from healer.api.server import bind
from healer.audit import AuditStore
from healer.config import Settings
from healer.decide import load_playbooks

log = structlog.get_logger(__name__)

RESTART_WAIT_S = 1.0
"""Wait before starting a worker again after it died, so that one that fails at once
(a store gone) does not spin."""

STOP_WAIT_S = 10.0
"""How long a worker may take to finish its requests once asked to stop."""


@dataclass(frozen=True)
class ApiWorkers:
    """What ``serve`` was asked to run: settings for every worker, and how many."""

    settings: Settings
    workers: int

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"api.workers: {self.workers}, at least 1 is needed")


def serve(plan: ApiWorkers, *, stop: threading.Event, sock: socket.socket | None = None) -> None:
    """Serve the API on ``api.host:api.port`` (or ``sock``, already bound) in
    ``plan.workers`` processes until ``stop`` is set.

    Raises ConfigError for a port in use and StoreError for a store that cannot be
    opened, before any worker starts.
    """
    settings = plan.settings
    sock = sock or bind(settings.api.host, settings.api.port)
    running: list[BaseProcess] = []
    try:
        AuditStore(settings.store.url, cluster=settings.cluster.name).close()  # migrate once
        load_playbooks(settings.playbooks_dir)  # a bad playbook stops start-up here
        running.extend(_start(settings, sock) for _ in range(plan.workers))
        log.info("api_workers_started", workers=plan.workers, address=_address(sock))
        while not stop.wait(0.5):
            running[:] = [_restarted(settings, sock, p) for p in running]
    finally:
        _stop_all(running)
        sock.close()


def _start(settings: Settings, sock: socket.socket) -> BaseProcess:
    context = multiprocessing.get_context("spawn")
    process = context.Process(target=run_worker, args=(settings, sock), name="healer-api")
    process.start()
    return process


def _restarted(settings: Settings, sock: socket.socket, process: BaseProcess) -> BaseProcess:
    if process.is_alive():
        return process
    log.warning("api_worker_died", pid=process.pid, exitcode=process.exitcode)
    threading.Event().wait(RESTART_WAIT_S)
    return _start(settings, sock)


def _stop_all(processes: list[BaseProcess]) -> None:
    for process in processes:
        process.terminate()  # SIGTERM: uvicorn finishes the requests under way
    for process in processes:
        process.join(STOP_WAIT_S)
        if process.is_alive():
            process.kill()
            process.join()


def _address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{host}:{port}"


def run_worker(settings: Settings, sock: socket.socket) -> None:
    """One worker: its own store connections and app, serving on the shared socket
    until SIGTERM or SIGINT (uvicorn's own handlers)."""
    store = AuditStore(
        settings.store.url,
        cluster=settings.cluster.name,
        unavailable_s=settings.store.unavailable_s,
    )
    app = create_app(
        store=store,
        settings=settings,
        playbooks=load_playbooks(settings.playbooks_dir),
        models_dir=settings.detector.models_dir,
    )
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        store.close()
