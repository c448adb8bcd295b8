"""Alembic environment: migrate on the connection ``healer.audit.migrate`` hands over.

The store runs migrations itself when it opens, inside its own transaction, so this
environment never builds an engine from an ``alembic.ini``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from healer.audit.tables import Base

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("healer migrations run through healer.audit.migrate.upgrade")
# render_as_batch: SQLite alters a table by copying it; Alembic's batch mode does that.
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
