"""Retention: archives, tombstones, and the maintenance path through the append-only triggers

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from labledger.storage.migrations import frozen_append_only as append_only

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

NEW_TABLES = ("archives", "tombstones")

# PostgreSQL: the refusal now lets a transaction through that declared itself maintenance
# (`SET LOCAL labledger.maintenance = 'on'`, see storage/maintenance.py). Declaring it is not
# enough: the server's role has no UPDATE or DELETE privilege, so only the schema owner's
# `purge` and `erase` can use the path. TRUNCATE stays refused for everyone.
PG_FUNCTION_WITH_MAINTENANCE = """
CREATE OR REPLACE FUNCTION labledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE')
            AND current_setting('labledger.maintenance', true) = 'on' THEN
        IF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'labledger: % on % is refused: the ledger is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$
"""

# As revision 0001 made it: restored on downgrade.
PG_FUNCTION_REFUSING = """
CREATE OR REPLACE FUNCTION labledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'labledger: % on % is refused: the ledger is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$
"""


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "archives",
        sa.Column("id", big_id, autoincrement=True, nullable=False),
        sa.Column("first_leaf", sa.BigInteger(), nullable=False),
        sa.Column("end_leaf", sa.BigInteger(), nullable=False),
        sa.Column("checkpoint_note", sa.Text(), nullable=False),
        sa.Column("manifest_sha256", sa.LargeBinary(length=32), nullable=False),
        sa.Column("location", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_archives")),
    )
    op.create_table(
        "tombstones",
        sa.Column("entry_type", sa.String(length=16), nullable=False),
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.Column("what", sa.String(length=8), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("archive_id", sa.BigInteger(), nullable=True),
        sa.Column("personal_sha256", sa.LargeBinary(length=32), nullable=True),
        sa.PrimaryKeyConstraint("entry_type", "entry_id", "what", name=op.f("pk_tombstones")),
    )
    op.create_index("ix_tombstones_event_id", "tombstones", ["event_id"])
    # Deleting a push checks attempts.push_id (its foreign key): without an index, a scan of
    # every attempt per purged push. Erasure by forge account reads attempts by push too.
    op.create_index("ix_attempts_push_id", "attempts", ["push_id"])
    for statement in append_only.create_statements(dialect, NEW_TABLES):
        op.execute(statement)
    if dialect == "postgresql":
        op.execute(PG_FUNCTION_WITH_MAINTENANCE.strip())


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for statement in append_only.drop_statements(dialect, NEW_TABLES):
        if "DROP FUNCTION" not in statement:  # earlier revisions' triggers still use it
            op.execute(statement)
    if dialect == "postgresql":
        op.execute(PG_FUNCTION_REFUSING.strip())
    op.drop_index("ix_attempts_push_id", table_name="attempts")
    op.drop_index("ix_tombstones_event_id", table_name="tombstones")
    op.drop_table("tombstones")
    op.drop_table("archives")
