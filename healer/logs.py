"""Logging: structlog, JSON lines in a cluster, a readable console on a terminal.

Events are snake_case names with data in keys. Logs serve operators; the audit store is
the record of truth.
"""

from __future__ import annotations

import logging
import sys

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
