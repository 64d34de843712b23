"""Merkle log: queue, entries, nodes, checkpoints; salts for personal-field commitments

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from labledger.storage.migrations import frozen_append_only as append_only

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

LOG_TABLES = ("log_entries", "merkle_nodes", "checkpoints")
# Every row written before this revision enters the log in ledger order, table by table.
BACKFILL = (
    ("session", "lab_sessions"),
    ("delivery", "deliveries"),
    ("push", "pushes"),
    ("attempt", "attempts"),
    ("audit", "audit_events"),
)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    # ALTER on an append-only table is DDL, not UPDATE: the triggers do not fire.
    op.add_column("pushes", sa.Column("personal_salt", sa.LargeBinary(length=16), nullable=True))
    op.add_column("attempts", sa.Column("personal_salt", sa.LargeBinary(length=16), nullable=True))
    op.create_table(
        "log_queue",
        sa.Column("id", big_id, autoincrement=True, nullable=False),
        sa.Column("entry_type", sa.String(length=16), nullable=False),
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_log_queue")),
    )
    op.create_table(
        "log_entries",
        sa.Column("leaf_index", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("entry_type", sa.String(length=16), nullable=False),
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("integrated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("leaf_index", name=op.f("pk_log_entries")),
        sa.UniqueConstraint(
            "entry_type", "entry_id", name=op.f("uq_log_entries_entry_type_entry_id")
        ),
    )
    op.create_table(
        "merkle_nodes",
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("node_index", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("level", "node_index", name=op.f("pk_merkle_nodes")),
    )
    op.create_table(
        "checkpoints",
        sa.Column("tree_size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("root_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("frontier", sa.LargeBinary(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tree_size", name=op.f("pk_checkpoints")),
    )
    for kind, table in BACKFILL:
        op.execute(
            f"INSERT INTO log_queue (entry_type, entry_id) SELECT '{kind}', id FROM {table} "
            "ORDER BY id"
        )
    for statement in append_only.create_statements(dialect, LOG_TABLES):
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for statement in append_only.drop_statements(dialect, LOG_TABLES):
        if "DROP FUNCTION" not in statement:  # revision 0001's triggers still use it
            op.execute(statement)
    op.drop_table("checkpoints")
    op.drop_table("merkle_nodes")
    op.drop_table("log_entries")
    op.drop_table("log_queue")
    # Plain ALTER (SQLite >= 3.35): a batch copy would drop the tables' append-only triggers.
    op.execute("ALTER TABLE attempts DROP COLUMN personal_salt")
    op.execute("ALTER TABLE pushes DROP COLUMN personal_salt")
