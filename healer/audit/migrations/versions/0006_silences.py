"""The Alertmanager silences healer made: one row per silence it asked for.

A silence is made when an action is taken and expired when its incident has its
outcome; one that could not be made is kept too (state ``failed``, with the error), so
the incident shows why its alerts paged while healer worked. The index on the incident
serves the list on the incident and the expiry's read of its active silences.

Revision ID: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "silences",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "incident_id",
            sa.Integer(),
            sa.ForeignKey("incidents.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("silence_id", sa.String(64), nullable=True),
        sa.Column("matchers", sa.JSON(), nullable=False),
        sa.Column("regex", sa.JSON(), nullable=True),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_silences_incident_id", "silences", ["incident_id"])


def downgrade() -> None:
    op.drop_table("silences")
