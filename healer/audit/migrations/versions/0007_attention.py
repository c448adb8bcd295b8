"""What people do from the overview: acknowledge an escalation, silence healer on a workload.

``acknowledgements`` holds one row per escalated incident a person has seen (who, when,
a note); the overview lists the escalations without one. ``opt_outs`` holds the
time-limited opt-outs people made from the page: while one is active the daemon plans
nothing for the workload and records why. ``incidents.detected`` is the time of an
incident's first finding (``opened`` is the anomaly's onset), so the overview's median
time to detect is one column subtraction, not a read of every timeline; incidents
recorded before this revision have none and are left out of that median.

Revision ID: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision: str | None = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "acknowledgements",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "incident_id",
            sa.Integer(),
            sa.ForeignKey("incidents.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("by", sa.String(255), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.UniqueConstraint("incident_id", name="uq_acknowledgements_incident_id"),
    )
    op.create_table(
        "opt_outs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("namespace", sa.String(63), nullable=False),
        sa.Column("kind", sa.String(63), nullable=False),
        sa.Column("name", sa.String(253), nullable=False),
        sa.Column("by", sa.String(255), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_by", sa.String(255), nullable=True),
    )
    op.create_index("ix_opt_outs_until", "opt_outs", ["until"])
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("detected", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_incidents_outcome", "incidents", ["outcome"])
    op.create_index("ix_actions_created", "actions", ["created"])
    op.create_index("ix_guard_verdicts_at", "guard_verdicts", ["at"])


def downgrade() -> None:
    op.drop_index("ix_guard_verdicts_at", "guard_verdicts")
    op.drop_index("ix_actions_created", "actions")
    op.drop_index("ix_incidents_outcome", "incidents")
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("detected")
    op.drop_table("opt_outs")
    op.drop_table("acknowledgements")
