"""The first schema: incidents and their steps, as the store made them before migrations.

Revision ID: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels = None
depends_on = None

ENUM = sa.String(32)
"""Enums are stored as their string values (``native_enum=False``)."""


def upgrade() -> None:
    op.create_table(
        "incidents",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("namespace", sa.String(63), nullable=False),
        sa.Column("kind", sa.String(63), nullable=False),
        sa.Column("name", sa.String(253), nullable=False),
        sa.Column("status", ENUM, nullable=False),
        sa.Column("opened", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed", sa.DateTime(timezone=True), nullable=True),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("cause", ENUM, nullable=True),
        sa.Column("confidence", sa.Float, nullable=True),
        sa.Column("action", ENUM, nullable=True),
        sa.Column("action_status", ENUM, nullable=True),
        sa.Column("outcome", ENUM, nullable=True),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_incidents_namespace", "incidents", ["namespace"])
    op.create_index("ix_incidents_name", "incidents", ["name"])
    op.create_index("ix_incidents_status", "incidents", ["status"])
    op.create_table(
        "incident_steps",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "incident_id",
            sa.Integer,
            sa.ForeignKey("incidents.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("kind", ENUM, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
        sa.UniqueConstraint("incident_id", "seq"),
    )
    op.create_index("ix_incident_steps_kind", "incident_steps", ["kind"])


def downgrade() -> None:
    op.drop_table("incident_steps")
    op.drop_table("incidents")
