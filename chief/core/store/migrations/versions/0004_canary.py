"""canary routes: canaries and the executions each counts (canary_runs)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21

Self-contained on purpose (no import of today's models), like 0001.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _ts() -> sa.types.TypeEngine:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "canaries",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("subject", sa.String(), nullable=False),
        sa.Column("stable", sa.String(), nullable=False),
        sa.Column("candidate", sa.String(), nullable=False),
        sa.Column("stages", _json(), nullable=False),
        sa.Column("stage_index", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("thresholds", _json(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.Column("finished_at", _ts(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_canaries"),
    )
    op.create_index("ix_canaries_subject", "canaries", ["subject"])
    op.create_index("ix_canaries_status", "canaries", ["status"])
    op.create_table(
        "canary_runs",
        sa.Column("execution_id", sa.String(), nullable=False),
        sa.Column("canary_id", sa.String(), nullable=False),
        sa.Column("stage_index", sa.Integer(), nullable=False),
        sa.Column("arm", sa.String(), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("execution_id", name="pk_canary_runs"),
    )
    op.create_index("ix_canary_runs_canary_id", "canary_runs", ["canary_id"])


def downgrade() -> None:
    op.drop_index("ix_canary_runs_canary_id", table_name="canary_runs")
    op.drop_table("canary_runs")
    op.drop_index("ix_canaries_status", table_name="canaries")
    op.drop_index("ix_canaries_subject", table_name="canaries")
    op.drop_table("canaries")
