"""A throwaway PostgreSQL server for the store's tests, from Debian's ``postgresql`` package.

``HEALER_TEST_POSTGRES_URL`` names a server to use instead. Otherwise ``initdb`` makes a
cluster in a fresh temporary directory and ``postgres`` serves it on a Unix socket in
that directory only (no TCP port, so parallel test workers cannot collide), with
``fsync`` off: the data is thrown away. PostgreSQL refuses to run as root, so under root
(CI) both run as the ``postgres`` user the package creates, or ``nobody``.

Without the binaries the tests skip, or fail when ``CI=true``.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

URL_VARIABLE = "HEALER_TEST_POSTGRES_URL"


def binaries() -> Path | None:
    """The folder holding initdb and postgres: on PATH, or Debian's newest version."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("postgres"):
        return Path(on_path).parent
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    return Path(versions[-1]).parent if versions else None


def unprivileged_user() -> str | None:
    """The user to run the server as: none needed unless root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    pytest.fail("running as root and neither a postgres nor a nobody user exists")


def wait_ready(url: str, server: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
    engine = create_engine(url)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"postgres exited: {log.read_text()[-2000:]}")
            try:
                with engine.connect() as db:
                    db.execute(text("SELECT 1"))
                return
            except OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"postgres not ready after {timeout_s} s") from None
                time.sleep(0.1)
    finally:
        engine.dispose()


class LocalServer:
    """``postgres`` serving a data directory made by ``initdb``; it can be stopped and
    started again on the same data (a restart, as a database's fail-over looks)."""

    def __init__(self, binaries: Path, workdir: Path, user: str | None) -> None:
        self.binaries, self.workdir, self.user = binaries, workdir, user
        self.data, self.log = workdir / "data", workdir / "postgres.log"
        self.url = f"postgresql+psycopg://postgres@/postgres?host={workdir}"
        self.server: subprocess.Popen[bytes] | None = None

    def init(self) -> None:
        subprocess.run(
            [
                self.binaries / "initdb",
                "-D",
                self.data,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ],
            user=self.user,
            check=True,
            capture_output=True,
            cwd=self.workdir,
        )

    def start(self) -> None:
        with self.log.open("ab") as log_file:
            self.server = subprocess.Popen(
                [
                    self.binaries / "postgres",
                    "-D",
                    self.data,
                    "-k",
                    self.workdir,
                    "-c",
                    "listen_addresses=",
                    "-c",
                    "fsync=off",
                    "-c",
                    "full_page_writes=off",
                ],
                user=self.user,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
        wait_ready(self.url, self.server, self.log, timeout_s=60)

    def stop(self) -> None:
        """Fast shutdown: sessions are ended, what was committed is on disk."""
        if self.server is None or self.server.poll() is not None:
            return
        self.server.send_signal(signal.SIGINT)
        try:
            self.server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.server.kill()
            self.server.wait()


@contextmanager
def local_postgres() -> Iterator[LocalServer]:
    """Start a server in a temporary directory; yields it (``url``, ``stop``, ``start``)."""
    found = binaries()
    if found is None:
        message = f"no PostgreSQL (Debian package postgresql) and {URL_VARIABLE} is not set"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI=true)")
        pytest.skip(message)
    user = unprivileged_user()
    # mkdtemp is private to root: the server's user must own it (PostgreSQL checks).
    workdir = Path(tempfile.mkdtemp(prefix="healer-pg-"))
    if user is not None:
        shutil.chown(workdir, user=user)
    server = LocalServer(found, workdir, user)
    try:
        server.init()
        try:
            server.start()
            yield server
        finally:
            server.stop()
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"initdb failed: {exc.stderr.decode(errors='replace')}") from exc
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def local_server() -> Iterator[str]:
    """Start a server in a temporary directory; yields its SQLAlchemy URL."""
    with local_postgres() as server:
        yield server.url


@contextmanager
def postgres_url() -> Iterator[str]:
    """The server named by HEALER_TEST_POSTGRES_URL, else a local one for these tests."""
    given = os.environ.get(URL_VARIABLE, "")
    if given:
        yield given
        return
    with local_server() as url:
        yield url
