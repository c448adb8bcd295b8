"""Each incident keeps its entry in the incident list as JSON (``incidents.listed``);
on SQLite, an index reads a time window's incidents a day at a time in id order.

A page of the list is then read as two values a row, not fifteen made, converted and
encoded again on every read (``healer.audit.listed``). The entry of every incident
already stored is made here, in batches; a row whose stored values are not valid (an
unknown status, a time that does not parse) is left without one and is listed from its
columns, which refuses it as before.

A trigger clears the entry of a row whose listed columns an update changes without
changing the entry too: a writer that does not keep it (a process of the version
before, still running while another migrated the store, or SQL by hand) leaves that
row listed from its columns, never with an entry that says what it no longer is. The
store's own writes change the entry with its columns, in the same statement.

The index (``ix_incidents_opened_day``) is on the UTC day of ``opened`` as SQLite stores
it (ISO text), then the id, then ``opened`` itself: a window's page is each day's newest
merged, read from the index alone (``healer.audit.review._listing``), not every
incident of the window sorted by id. SQLite only: it is an index on an expression over
SQLite's text form of times, and PostgreSQL sorts a window's ids well enough itself.

Revision ID: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from healer.audit import listed, views

revision = "0011"
down_revision: str | None = "0010"
branch_labels = None
depends_on = None

BATCH = 5_000
"""Rows read and updated at a time: a bounded memory on a store of any size."""

_SUMMARY = (
    "id",
    "namespace",
    "kind",
    "name",
    "status",
    "opened",
    "closed",
    "score",
    "cause",
    "confidence",
    "action",
    "action_status",
    "outcome",
    "last_seen",
    "cluster",
)


OPENED_DAY_INDEX = (
    "CREATE INDEX ix_incidents_opened_day ON incidents (substr(opened, 1, 10), id, opened)"
)


_LISTED = ", ".join(_SUMMARY[1:])
"""The columns an entry is made of, but the id, which never changes."""

SQLITE_STALE = f"""
CREATE TRIGGER incidents_listed_stale AFTER UPDATE OF {_LISTED} ON incidents
FOR EACH ROW WHEN NEW.listed IS OLD.listed
BEGIN
    UPDATE incidents SET listed = NULL WHERE id = NEW.id;
END
"""

POSTGRES_STALE = (
    """
CREATE FUNCTION incidents_listed_stale() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.listed IS NOT DISTINCT FROM OLD.listed THEN
        NEW.listed := NULL;
    END IF;
    RETURN NEW;
END
$$
""",
    f"""
CREATE TRIGGER incidents_listed_stale BEFORE UPDATE OF {_LISTED} ON incidents
FOR EACH ROW EXECUTE FUNCTION incidents_listed_stale()
""",
)


def upgrade() -> None:
    op.add_column("incidents", sa.Column("listed", sa.Text(), nullable=True))
    if op.get_bind().dialect.name == "sqlite":
        op.execute(OPENED_DAY_INDEX)
        op.execute(SQLITE_STALE)
    elif op.get_bind().dialect.name == "postgresql":
        for statement in POSTGRES_STALE:
            op.execute(statement)
    incidents = sa.table("incidents", *(sa.column(name) for name in (*_SUMMARY, "listed")))
    read = sa.select(*(incidents.c[name] for name in _SUMMARY)).order_by(incidents.c.id)
    write = (
        incidents.update()
        .where(incidents.c.id == sa.bindparam("row_id"))
        .values(listed=sa.bindparam("entry"))
    )
    bind = op.get_bind()
    last = 0
    while rows := bind.execute(read.where(incidents.c.id > last).limit(BATCH)).all():
        last = rows[-1][0]
        entries = [entry for entry in map(_entry, rows) if entry is not None]
        if entries:
            bind.execute(write, entries)


def _entry(raw: sa.Row[tuple[object, ...]]) -> dict[str, object] | None:
    try:
        [row] = views.summary_rows([raw])
    except (KeyError, ValueError, TypeError, AttributeError):  # a value of another kind
        return None
    return {"row_id": row.id, "entry": listed.entry_json(row)}


def downgrade() -> None:
    op.execute(
        "DROP TRIGGER IF EXISTS incidents_listed_stale"
        + (" ON incidents" if op.get_bind().dialect.name == "postgresql" else "")
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS incidents_listed_stale()")
    op.execute("DROP INDEX IF EXISTS ix_incidents_opened_day")
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("listed")
