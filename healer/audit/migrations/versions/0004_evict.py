"""``delete_pod`` is now ``evict``: the action kinds stored under the old name follow.

The kind columns store enum values as plain strings, read back through the value list
of ``ActionKind``; a row still saying ``delete_pod`` would not read. Step JSON keeps the
old name and reads as ``evict`` (``ActionKind`` maps it). Downgrading restores nothing:
an earlier release cannot carry an eviction out anyway.

Revision ID: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels = None
depends_on = None

_COLUMNS = (("incidents", "action"), ("actions", "kind"), ("feedback", "right_action"))


def upgrade() -> None:
    for table, column in _COLUMNS:
        op.execute(sa.text(f"UPDATE {table} SET {column} = 'evict' WHERE {column} = 'delete_pod'"))


def downgrade() -> None:
    pass
