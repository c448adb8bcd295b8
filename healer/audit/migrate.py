"""Bring an audit database to the current schema with the packaged Alembic migrations.

The store calls ``upgrade`` each time it opens, so a new release migrates the database
the old one left, with no separate step to forget. The migrations ship inside the
package (``migrations/``), found by path, so an installed wheel migrates as a checkout
does.

A database made before migrations existed (tables from ``metadata.create_all``, no
``alembic_version``) holds exactly revision 0001: it is stamped so, then upgraded.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

MIGRATIONS = Path(__file__).parent / "migrations"
_LOCK_KEY = 0x6865616C6572
"""PostgreSQL advisory lock held while migrating ("healer" in ASCII)."""
BASELINE = "0001"
"""The revision a database from before migrations is at: the tables create_all made."""


def _config(connection: object) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    """The newest revision the package knows."""
    revision = ScriptDirectory.from_config(_config(None)).get_current_head()
    assert revision is not None  # the package ships at least the baseline
    return revision


def current(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate to ``revision`` in one transaction; idempotent (a current database is left
    alone). Raises SQLAlchemyError when the database refuses."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Replicas starting together: one migrates, the others wait, then find it done.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        config = _config(connection)
        tables = set(inspect(connection).get_table_names())
        if "incidents" in tables and "alembic_version" not in tables:
            command.stamp(config, BASELINE)
        command.upgrade(config, revision)
