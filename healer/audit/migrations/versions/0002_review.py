"""Review: actions as rows, guard verdicts, feedback, guard state, and who wrote each step.

Actions already recorded as steps get their row, with the step's time and JSON.

Revision ID: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels = None
depends_on = None

ENUM = sa.String(32)
WHEN = sa.DateTime(timezone=True)
ACTOR = sa.String(255)


def _incident_fk() -> sa.Column[int]:
    return sa.Column(
        "incident_id", sa.Integer, sa.ForeignKey("incidents.id", ondelete="CASCADE"), nullable=False
    )


def upgrade() -> None:
    with op.batch_alter_table("incident_steps") as batch:
        batch.add_column(sa.Column("actor", ACTOR, nullable=False, server_default=""))
    op.create_index("ix_incidents_opened", "incidents", ["opened"])
    op.create_index("ix_incidents_cause", "incidents", ["cause"])
    op.create_table(
        "actions",
        sa.Column("id", sa.Integer, primary_key=True),
        _incident_fk(),
        sa.Column("kind", ENUM, nullable=False),
        sa.Column("namespace", sa.String(63), nullable=False),
        sa.Column("workload_kind", sa.String(63), nullable=False),
        sa.Column("name", sa.String(253), nullable=False),
        sa.Column("status", ENUM, nullable=False),
        sa.Column("intent", sa.JSON, nullable=False),
        sa.Column("request", sa.JSON, nullable=False),
        sa.Column("response", sa.JSON, nullable=True),
        sa.Column("created", WHEN, nullable=False),
        sa.Column("started", WHEN, nullable=True),
        sa.Column("finished", WHEN, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("reviewed_by", ACTOR, nullable=True),
        sa.Column("reviewed_at", WHEN, nullable=True),
        sa.Column("review_reason", sa.Text, nullable=True),
        sa.Column("actor", ACTOR, nullable=False),
    )
    op.create_index("ix_actions_incident_id", "actions", ["incident_id"])
    op.create_index("ix_actions_status", "actions", ["status"])
    op.create_table(
        "guard_verdicts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "step_id",
            sa.Integer,
            sa.ForeignKey("incident_steps.id", ondelete="CASCADE"),
            nullable=False,
        ),
        _incident_fk(),
        sa.Column("guard", sa.String(63), nullable=False),
        sa.Column("passed", sa.Boolean, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("at", WHEN, nullable=False),
    )
    op.create_index("ix_guard_verdicts_incident_id", "guard_verdicts", ["incident_id"])
    op.create_index("ix_guard_verdicts_guard", "guard_verdicts", ["guard"])
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer, primary_key=True),
        _incident_fk(),
        sa.Column("verdict", ENUM, nullable=False),
        sa.Column("cause", ENUM, nullable=True),
        sa.Column("right_action", ENUM, nullable=True),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("by", ACTOR, nullable=False),
        sa.Column("at", WHEN, nullable=False),
        sa.Column("window_start", WHEN, nullable=False),
        sa.Column("window_end", WHEN, nullable=False),
    )
    op.create_index("ix_feedback_incident_id", "feedback", ["incident_id"])
    op.create_index("ix_feedback_at", "feedback", ["at"])
    op.create_table(
        "guard_state",
        sa.Column("key", sa.String(63), primary_key=True),
        sa.Column("value", sa.JSON, nullable=False),
        sa.Column("updated", WHEN, nullable=False),
        sa.Column("actor", ACTOR, nullable=False),
    )
    _backfill_actions()


def _backfill_actions() -> None:
    """One ``actions`` row per action step recorded before this revision."""
    steps = sa.table(
        "incident_steps",
        sa.column("incident_id", sa.Integer),
        sa.column("kind", sa.String),
        sa.column("at", WHEN),
        sa.column("data", sa.JSON),
    )
    actions = sa.table(
        "actions",
        *(
            sa.column(name, kind)
            for name, kind in (
                ("incident_id", sa.Integer()),
                ("kind", sa.String()),
                ("namespace", sa.String()),
                ("workload_kind", sa.String()),
                ("name", sa.String()),
                ("status", sa.String()),
                ("intent", sa.JSON()),
                ("request", sa.JSON()),
                ("response", sa.JSON()),
                ("created", WHEN),
                ("started", WHEN),
                ("finished", WHEN),
                ("error", sa.Text()),
                ("actor", sa.String()),
            )
        ),
    )
    bind = op.get_bind()
    rows = []
    for incident_id, at, data in bind.execute(
        sa.select(steps.c.incident_id, steps.c.at, steps.c.data).where(steps.c.kind == "action")
    ):
        target = data.get("target") or {}
        rows.append(
            {
                "incident_id": incident_id,
                "kind": data.get("kind"),
                "namespace": target.get("namespace", ""),
                "workload_kind": target.get("kind", "Deployment"),
                "name": target.get("name", ""),
                "status": data.get("status"),
                "intent": {},
                "request": data.get("request") or {},
                "response": {"status": data.get("status"), "error": data.get("error")},
                "created": at,
                "started": at,
                "finished": at,
                "error": data.get("error"),
                "actor": "",
            }
        )
    if rows:
        op.bulk_insert(actions, rows)


def downgrade() -> None:
    for table in ("guard_state", "feedback", "guard_verdicts", "actions"):
        op.drop_table(table)
    op.drop_index("ix_incidents_cause", "incidents")
    op.drop_index("ix_incidents_opened", "incidents")
    with op.batch_alter_table("incident_steps") as batch:
        batch.drop_column("actor")
