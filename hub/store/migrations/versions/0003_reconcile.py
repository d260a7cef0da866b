"""reconcile runs and flags

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reconcile_runs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("job", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("progress", sa.Double(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("started_at", sa.Double(), nullable=True),
        sa.Column("finished_at", sa.Double(), nullable=True),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconcile_runs")),
    )
    op.create_index("ix_reconcile_runs_job_created_at", "reconcile_runs", ["job", "created_at"])
    op.create_index("ix_reconcile_runs_status_updated_at", "reconcile_runs", ["status", "updated_at"])
    op.create_table(
        "reconcile_flags",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("identity", sa.String(length=64), nullable=False),
        sa.Column("job", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("accounting_key", sa.Text(), nullable=False),
        sa.Column("crm_key", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("accounting", sa.JSON(), nullable=True),
        sa.Column("crm", sa.JSON(), nullable=True),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("first_seen", sa.Double(), nullable=False),
        sa.Column("last_seen", sa.Double(), nullable=False),
        sa.Column("resolved_at", sa.Double(), nullable=True),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconcile_flags")),
        sa.UniqueConstraint("identity", name=op.f("uq_reconcile_flags_identity")),
    )
    op.create_index("ix_reconcile_flags_job_state_kind", "reconcile_flags", ["job", "state", "kind"])


def downgrade() -> None:
    op.drop_index("ix_reconcile_flags_job_state_kind", table_name="reconcile_flags")
    op.drop_table("reconcile_flags")
    op.drop_index("ix_reconcile_runs_status_updated_at", table_name="reconcile_runs")
    op.drop_index("ix_reconcile_runs_job_created_at", table_name="reconcile_runs")
    op.drop_table("reconcile_runs")
