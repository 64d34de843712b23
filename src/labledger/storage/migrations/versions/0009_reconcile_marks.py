"""Reconcile marks: how far `labledger reconcile` has read each GitHub hook's deliveries

Revision ID: 0009
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "reconcile_marks",
        sa.Column("id", big_id, autoincrement=True, nullable=False),
        sa.Column("hook", sa.String(length=300), nullable=False),
        sa.Column("last_delivery_id", sa.BigInteger(), nullable=False),
        sa.Column("reconciled_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconcile_marks")),
    )
    op.create_index("ix_reconcile_marks_hook_id", "reconcile_marks", ["hook", "id"])


def downgrade() -> None:
    op.drop_index("ix_reconcile_marks_hook_id", table_name="reconcile_marks")
    op.drop_table("reconcile_marks")
