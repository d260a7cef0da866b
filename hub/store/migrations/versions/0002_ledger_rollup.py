"""ledger rollup of purged rows; indexes retention and erasure look rows up by

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

INDEXES = (
    ("quarantine", "ix_quarantine_inbound_id", ["inbound_id"]),
    ("contact_keys", "ix_contact_keys_lead_id", ["lead_id"]),
    ("event_keys", "ix_event_keys_seen_at", ["seen_at"]),
    ("threads", "ix_threads_last_seen", ["last_seen"]),
)


def upgrade() -> None:
    op.create_table(
        "ledger_rollup",
        sa.Column("day", sa.Double(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("key", sa.String(length=24), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", "kind", "name", "key", name=op.f("pk_ledger_rollup")),
    )
    for table, name, columns in INDEXES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_index(name, columns, unique=False)


def downgrade() -> None:
    for table, name, _ in INDEXES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(name)
    op.drop_table("ledger_rollup")
