"""Many clusters in one store: each incident, action, alert and release names its cluster.

Several healers, one per cluster, may share one PostgreSQL: ``cluster`` (the
``cluster.name`` setting of the healer that recorded the row) keeps their incidents
apart for the daemons, which resume, count their action budget and take approvals and
alerts of their own cluster only, and lets people filter the list and the overview by
cluster. Rows recorded before this revision belong to the cluster ``default``, the
setting's default, so a single-cluster store reads on as before.

Revision ID: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision: str | None = "0008"
branch_labels = None
depends_on = None

_TABLES = ("incidents", "actions", "alerts", "releases")


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column("cluster", sa.String(63), nullable=False, server_default="default")
            )
    # The list filtered by cluster, newest first; the daemon's reads of its open ones.
    op.create_index("ix_incidents_cluster_id", "incidents", ["cluster", "id"])


def downgrade() -> None:
    op.drop_index("ix_incidents_cluster_id", table_name="incidents")
    for table in reversed(_TABLES):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("cluster")
