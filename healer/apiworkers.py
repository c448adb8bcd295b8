"""The review API alone, served by several processes on one port (``healer api``).

One Python process answers about 3,000 incident-list pages not kept in memory a second
(0.3 ms of CPU each, ``bench/api_incidents.py``): the interpreter runs one request at a
time, whatever the cores. A team whose people and dashboards ask more than that runs
the API beside the daemon, over the same store, in ``api.workers`` processes.

Decisions:

- Each worker listens on a socket of its own, all bound to the one port with
  ``SO_REUSEPORT``, so that the kernel spreads new connections evenly over them. One
  socket shared by all (uvicorn's ``--workers``) leaves it to whichever process wakes
  first to accept, and it takes a whole burst: 100 keep-alive clients connecting at
  once mostly landed on one worker. The port is reserved here first, by a socket bound
  with the same option that never listens (a port in use is a clear error before any
  worker starts, and port 0 picks one for all). Our own processes rather than
  uvicorn's, because each worker builds its app with ``create_app`` from the settings
  it is given, not from an import string and the environment. Linux only, where the
  daemon runs.
- The store is opened (and migrated) once here before the workers start, so that they
  never race to migrate a new file; each then opens its own connections. Writes (an
  approval, a label) go to the shared database: the daemon takes an approval from there
  on its next cycle, as from its own API. A page a worker keeps in memory is at most a
  second behind another worker's writes (``listing.TTL_S``), as between replicas.
- Workers are started with ``spawn``: a fork of a process that already holds database
  connections and threads would share them.
- The workers sign cursors and review page sessions with one key: ``api.cursor_secret``,
  or one drawn here when it is unset. A key per worker (as each app draws its own)
  refused a cursor, or logged a person out, whenever a new connection landed on another
  worker.
- A worker that dies is started again after ``RESTART_WAIT_S``; stopping (SIGTERM, or
  Ctrl-C) asks every worker to finish what it is answering, then waits for them.
- The daemon's own API (``healer run``) stays one server in the daemon's process.
"""

from __future__ import annotations

import gc
import multiprocessing
import secrets
import socket
import threading
from dataclasses import dataclass
from multiprocessing.process import BaseProcess

import structlog
import uvicorn
from pydantic import SecretStr

from healer.api.app import create_app
from healer.api.server import bound
from healer.audit import AuditStore
from healer.config import Settings
from healer.decide import load_playbooks
from healer.errors import ConfigError

log = structlog.get_logger(__name__)

RESTART_WAIT_S = 1.0
"""Wait before starting a worker again after it died, so that one that fails at once
(a store gone) does not spin."""

LISTEN_BACKLOG = 128
"""Connections the kernel queues for a worker before it accepts them (as ``server.bind``)."""

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


def reserve(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` with ``SO_REUSEPORT`` that never listens: it keeps
    the port for the workers' own sockets. A port in use is a ConfigError naming it."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise ConfigError("healer api needs SO_REUSEPORT (Linux) to share api.port")
    return bound(host, port, reuse_port=True)


def serve(plan: ApiWorkers, *, stop: threading.Event, sock: socket.socket | None = None) -> None:
    """Serve the API on ``api.host:api.port`` (or the address ``sock`` reserved, from
    ``reserve``) in ``plan.workers`` processes until ``stop`` is set.

    Raises ConfigError for a port in use and StoreError for a store that cannot be
    opened, before any worker starts.
    """
    settings = _with_one_key(plan.settings)
    sock = sock or reserve(settings.api.host, settings.api.port)
    address: tuple[str, int] = sock.getsockname()[:2]
    running: list[BaseProcess] = []
    try:
        AuditStore(settings.store.url, cluster=settings.cluster.name).close()  # migrate once
        load_playbooks(settings.playbooks_dir)  # a bad playbook stops start-up here
        running.extend(_start(settings, address) for _ in range(plan.workers))
        url = f"http://{address[0]}:{address[1]}"
        log.info("api_workers_started", workers=plan.workers, address=url)
        while not stop.wait(0.5):
            for i, process in enumerate(running):  # in place: a failed restart loses none
                running[i] = _restarted(settings, address, process)
    finally:
        _stop_all(running)
        sock.close()


def _with_one_key(settings: Settings) -> Settings:
    """``settings`` with an ``api.cursor_secret`` for every worker: its own, or a random
    one for this run (cursors and sessions then end with it, as a single process's)."""
    if settings.api.cursor_secret is not None:
        return settings
    key = SecretStr(secrets.token_urlsafe(32))
    api = settings.api.model_copy(update={"cursor_secret": key})
    return settings.model_copy(update={"api": api})


def _start(settings: Settings, address: tuple[str, int]) -> BaseProcess:
    context = multiprocessing.get_context("spawn")
    process = context.Process(target=run_worker, args=(settings, address), name="healer-api")
    process.start()
    return process


def _restarted(settings: Settings, address: tuple[str, int], process: BaseProcess) -> BaseProcess:
    if process.is_alive():
        return process
    log.warning("api_worker_died", pid=process.pid, exitcode=process.exitcode)
    threading.Event().wait(RESTART_WAIT_S)
    return _start(settings, address)


def _stop_all(processes: list[BaseProcess]) -> None:
    for process in processes:
        process.terminate()  # SIGTERM: uvicorn finishes the requests under way
    for process in processes:
        process.join(STOP_WAIT_S)
        if process.is_alive():
            process.kill()
            process.join()


def run_worker(settings: Settings, address: tuple[str, int]) -> None:
    """One worker: its own store connections, app and socket on the shared port,
    serving until SIGTERM or SIGINT (uvicorn's own handlers)."""
    sock = reserve(*address)
    sock.listen(LISTEN_BACKLOG)
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
    gc.collect()  # as healer run: start-up's garbage freed, the rest never scanned again
    gc.freeze()
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        store.close()
        sock.close()
