"""Healer commands as processes, for the benchmarks that start and kill whole daemons
(``shards.py``, ``takeover.py``).

Each command's output goes to ``<name>.log`` in the run's folder, read while it runs (a
daemon prints its API's address there). Waiting gives up with SystemExit naming what did
not happen: a benchmark has no test runner to report an AssertionError.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def wait_for(what: str, check: Callable[[], T | None], timeout_s: float, every_s: float) -> T:
    """The first truthy answer of ``check``, asked every ``every_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every_s)
    raise SystemExit(f"timed out after {timeout_s} s waiting for {what}")


def healer(args: list[str], workdir: Path, name: str, **env: str) -> subprocess.Popen[bytes]:
    """``healer ARGS`` in ``workdir``, unbuffered, its stdout and stderr in ``<name>.log``."""
    with (workdir / f"{name}.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "healer.cli", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
            cwd=workdir,
        )
