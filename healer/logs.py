"""Logging: structlog, JSON lines in a cluster, a readable console on a terminal.

Events are snake_case names with data in keys. Logs serve operators; the audit store is
the record of truth.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable

import structlog


def configure(*, level: str = "info", json: bool | None = None) -> None:
    """Configure structlog once at start-up; ``json`` defaults to "stderr is not a TTY"."""
    as_json = not sys.stderr.isatty() if json is None else json
    # JSON: a logged exception's traceback as one "exception" string (the console
    # renderer prints it itself).
    rendering: list[structlog.typing.Processor] = (
        [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
        if as_json
        else [structlog.dev.ConsoleRenderer()]
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            *rendering,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


class Throttled:
    """An error event that may repeat on every request while its cause lasts: logged
    with its traceback the first time, then at most once every ``every_s`` seconds, each
    time with how many were left out (``suppressed``) in the seconds since the one
    logged before (``since_s``), so that a lasting fault neither floods the log nor goes
    unseen. Those left out after the last one logged are told with the next, if any.
    Thread-safe; ``clock`` is monotonic seconds (injected for tests)."""

    def __init__(
        self,
        logger: structlog.typing.FilteringBoundLogger,
        event: str,
        *,
        every_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger, self._event, self._every_s, self._clock = logger, event, every_s, clock
        self._lock = threading.Lock()
        self._last: float | None = None
        self._suppressed = 0

    def exception(self, **data: object) -> None:
        """Log the exception being handled, unless one was logged less than ``every_s``
        ago."""
        now = self._clock()
        with self._lock:
            last = self._last
            if last is not None and now < last + self._every_s:
                self._suppressed += 1
                return
            suppressed, self._suppressed, self._last = self._suppressed, 0, now
        since = None if last is None else round(now - last, 1)
        self._logger.exception(self._event, suppressed=suppressed, since_s=since, **data)
