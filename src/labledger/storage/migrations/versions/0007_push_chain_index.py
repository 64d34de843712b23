"""Push chains: an index for finding gaps (`before` looked up among a ref's `after`s)

Revision ID: 0007
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_pushes_chain", "pushes", ["forge", "repository_id", "ref", "after_sha"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_pushes_chain", table_name="pushes")
