"""Serving an ASGI app on a loopback or cluster port, in a thread of its own.

The API and the simulated cluster both run in-process next to the loop: uvicorn in a
daemon thread, on a socket bound beforehand, so that a port in use is a clear error
before anything starts, and a test can bind port 0 and read the port back.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

import uvicorn

from healer.errors import ConfigError


def bind(host: str, port: int) -> socket.socket:
    """Bind a listening socket; a port in use is a ConfigError naming it."""
    sock = bound(host, port)
    sock.listen(128)
    return sock


def bound(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A TCP socket bound to ``host:port``, not listening yet; a port in use is a
    ConfigError naming it. ``reuse_port``: several processes' sockets share the port
    (``SO_REUSEPORT``), and the kernel spreads connections over them."""
    # Name the protocol: asyncio turns Nagle's algorithm off only on sockets that say
    # they are TCP, and with it on, every response waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    if port != 0 or not reuse_port:
        # As uvicorn does: a restart right after a stop must not wait for TIME_WAIT to
        # end. Not on port 0 with SO_REUSEPORT: the kernel could then pick a port a
        # connection uses, where the workers could bind but not listen.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    return sock


class ServerThread:
    """An ASGI app served by uvicorn on an already-bound socket, in a daemon thread."""

    def __init__(self, app: Any, sock: socket.socket) -> None:
        self.sock = sock
        host, port = sock.getsockname()[:2]
        self.url = f"http://{host}:{port}"
        config = uvicorn.Config(app, log_level="error", lifespan="off", access_log=False)
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"http-{port}")

    def _run(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.sock]))

    def start(self) -> ServerThread:
        self._thread.start()
        while not self.server.started and self._thread.is_alive():
            threading.Event().wait(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=5)
        self.sock.close()
