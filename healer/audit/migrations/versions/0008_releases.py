"""Release events from pipelines, forges and GitOps syncs: one row per event received.

The index on (namespace, kind, name, at) serves the two reads: an incident's page asks
for its workload's releases over the incident's span, and the daemon asks, when it
diagnoses a bad release, for those around the rollout it blames.

Revision ID: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision: str | None = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "releases",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("namespace", sa.String(63), nullable=False),
        sa.Column("kind", sa.String(63), nullable=False),
        sa.Column("name", sa.String(253), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("revision", sa.String(255), nullable=False),
        sa.Column("image", sa.Text(), nullable=False),
        sa.Column("commit", sa.String(255), nullable=False),
        sa.Column("author", sa.String(255), nullable=False),
        sa.Column("pipeline", sa.String(255), nullable=False),
        sa.Column("pipeline_url", sa.Text(), nullable=False),
        sa.Column("environment", sa.String(255), nullable=False),
        sa.Column("status", sa.String(63), nullable=False),
        sa.Column("report_url", sa.Text(), nullable=False),
        sa.Column("known", sa.Boolean(), nullable=True),
        sa.Column("received", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sender", sa.String(255), nullable=False),
    )
    op.create_index("ix_releases_workload_at", "releases", ["namespace", "kind", "name", "at"])


def downgrade() -> None:
    op.drop_table("releases")
