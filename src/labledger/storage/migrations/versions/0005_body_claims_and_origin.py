"""One signed body, one event; the ledger's origin (issue 21)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from labledger.storage.migrations import frozen_append_only as append_only

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

NEW_TABLES = ("delivery_bodies", "ledger_origin")


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.create_table(
        "delivery_bodies",
        sa.Column("forge", sa.String(length=16), nullable=False),
        sa.Column("body_sha256", sa.LargeBinary(length=32), nullable=False),
        sa.Column("delivery_pk", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("forge", "body_sha256", name=op.f("pk_delivery_bodies")),
    )
    op.create_table(
        "ledger_origin",
        sa.Column("origin", sa.Text(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("origin", name=op.f("pk_ledger_origin")),
    )
    # Ledgers written before this revision may hold one body under several delivery ids
    # (the replays this revision stops): the first delivery of each body claims it.
    op.execute(
        "INSERT INTO delivery_bodies (forge, body_sha256, delivery_pk) "
        "SELECT forge, body_sha256, MIN(id) FROM deliveries GROUP BY forge, body_sha256"
    )
    _record_origin()
    for statement in append_only.create_statements(dialect, NEW_TABLES):
        # 0004 made the PostgreSQL function that lets maintenance through: keep it.
        if "CREATE OR REPLACE FUNCTION" not in statement:
            op.execute(statement)


def _record_origin() -> None:
    """A ledger that already signed checkpoints keeps their origin; a new one gets a random
    name (or the one `labledger migrate --origin` gives), never the host's."""
    bind = op.get_bind()
    note = bind.execute(
        sa.text("SELECT note FROM checkpoints ORDER BY tree_size DESC LIMIT 1")
    ).scalar()
    if note is not None:
        origin = str(note).split("\n", 1)[0]
    else:
        config = op.get_context().config
        given = config.attributes.get("origin") if config is not None else None
        origin = given or f"labledger/{secrets.token_hex(8)}"
    table = sa.table(
        "ledger_origin",
        sa.column("origin", sa.Text()),
        sa.column("recorded_at", sa.DateTime(timezone=True)),
    )
    op.bulk_insert(table, [{"origin": origin, "recorded_at": datetime.now(UTC)}])


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for statement in append_only.drop_statements(dialect, NEW_TABLES):
        if "DROP FUNCTION" not in statement:  # earlier revisions' triggers still use it
            op.execute(statement)
    op.drop_table("ledger_origin")
    op.drop_table("delivery_bodies")
