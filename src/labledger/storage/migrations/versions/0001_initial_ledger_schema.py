"""initial ledger schema

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from labledger.storage.migrations import frozen_append_only as append_only

# Frozen copy of the tables this revision made append-only; later revisions add their own.
LEDGER_TABLES = (
    "lab_sessions",
    "deliveries",
    "pushes",
    "push_commits",
    "attempts",
    "audit_events",
)


revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target_type", sa.String(length=32), nullable=False),
        sa.Column("target_id", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index(
        "ix_audit_events_target", "audit_events", ["target_type", "target_id"], unique=False
    )

    op.create_table(
        "deliveries",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("forge", sa.String(length=16), nullable=False),
        sa.Column("delivery_id", sa.String(length=100), nullable=False),
        sa.Column("hook_id", sa.String(length=40), nullable=True),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("body_sha256", sa.LargeBinary(length=32), nullable=False),
        sa.Column("body_size", sa.Integer(), nullable=False),
        sa.Column("body_zlib", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
        sa.UniqueConstraint("forge", "delivery_id", name=op.f("uq_deliveries_forge_delivery_id")),
    )
    op.create_table(
        "lab_sessions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("lab_id", sa.Text(), nullable=False),
        sa.Column("subject_id", sa.Text(), nullable=False),
        sa.Column("forge", sa.String(length=16), nullable=False),
        sa.Column("repository_id", sa.BigInteger(), nullable=False),
        sa.Column("repository_full_name", sa.Text(), nullable=True),
        sa.Column("branch_glob", sa.Text(), nullable=False),
        sa.Column("opens_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closes_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lab_sessions")),
    )
    op.create_index("ix_lab_sessions_lab_id", "lab_sessions", ["lab_id"], unique=False)
    op.create_index(
        "ix_lab_sessions_repository", "lab_sessions", ["forge", "repository_id"], unique=False
    )

    op.create_table(
        "pushes",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("delivery_pk", sa.BigInteger(), nullable=False),
        sa.Column("forge", sa.String(length=16), nullable=False),
        sa.Column("repository_id", sa.BigInteger(), nullable=False),
        sa.Column("repository_full_name", sa.Text(), nullable=False),
        sa.Column("ref", sa.Text(), nullable=False),
        sa.Column("before_sha", sa.String(length=64), nullable=False),
        sa.Column("after_sha", sa.String(length=64), nullable=False),
        sa.Column("created", sa.Boolean(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("forced", sa.Boolean(), nullable=False),
        sa.Column("pusher_name", sa.Text(), nullable=True),
        sa.Column("pusher_email", sa.Text(), nullable=True),
        sa.Column("sender_login", sa.Text(), nullable=False),
        sa.Column("sender_id", sa.BigInteger(), nullable=False),
        sa.Column("pushed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("commit_count", sa.Integer(), nullable=False),
        sa.Column("commit_list_complete", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_pk"], ["deliveries.id"], name=op.f("fk_pushes_delivery_pk_deliveries")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pushes")),
        sa.UniqueConstraint("delivery_pk", name=op.f("uq_pushes_delivery_pk")),
    )
    op.create_index("ix_pushes_repository", "pushes", ["forge", "repository_id"], unique=False)

    op.create_table(
        "attempts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("session_id", sa.BigInteger(), nullable=False),
        sa.Column("commit_sha", sa.String(length=64), nullable=False),
        sa.Column("tree_sha", sa.String(length=64), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("author_name", sa.Text(), nullable=True),
        sa.Column("author_email", sa.Text(), nullable=True),
        sa.Column("author_username", sa.Text(), nullable=True),
        sa.Column("committer_name", sa.Text(), nullable=True),
        sa.Column("committer_email", sa.Text(), nullable=True),
        sa.Column("committer_username", sa.Text(), nullable=True),
        sa.Column("claimed_timestamp", sa.Text(), nullable=True),
        sa.Column("is_distinct", sa.Boolean(), nullable=False),
        sa.Column("branch", sa.Text(), nullable=False),
        sa.Column("changed_files", sa.JSON(), nullable=False),
        sa.Column("push_id", sa.BigInteger(), nullable=False),
        sa.Column("delivery_pk", sa.BigInteger(), nullable=False),
        sa.Column("pushed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_pk"], ["deliveries.id"], name=op.f("fk_attempts_delivery_pk_deliveries")
        ),
        sa.ForeignKeyConstraint(
            ["push_id"], ["pushes.id"], name=op.f("fk_attempts_push_id_pushes")
        ),
        sa.ForeignKeyConstraint(
            ["session_id"], ["lab_sessions.id"], name=op.f("fk_attempts_session_id_lab_sessions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attempts")),
        sa.UniqueConstraint(
            "session_id", "commit_sha", name=op.f("uq_attempts_session_id_commit_sha")
        ),
    )
    op.create_index("ix_attempts_commit_sha", "attempts", ["commit_sha"], unique=False)
    op.create_index("ix_attempts_delivery_pk", "attempts", ["delivery_pk"], unique=False)
    op.create_index("ix_attempts_session_id_id", "attempts", ["session_id", "id"], unique=False)

    op.create_table(
        "push_commits",
        sa.Column("push_id", sa.BigInteger(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("commit_sha", sa.String(length=64), nullable=False),
        sa.Column("is_distinct", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["push_id"], ["pushes.id"], name=op.f("fk_push_commits_push_id_pushes")
        ),
        sa.PrimaryKeyConstraint("push_id", "position", name=op.f("pk_push_commits")),
    )
    op.create_index("ix_push_commits_commit_sha", "push_commits", ["commit_sha"], unique=False)

    dialect = op.get_bind().dialect.name
    for statement in append_only.create_statements(dialect, LEDGER_TABLES):
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for statement in append_only.drop_statements(dialect, LEDGER_TABLES):
        op.execute(statement)
    op.drop_index("ix_push_commits_commit_sha", table_name="push_commits")

    op.drop_table("push_commits")
    op.drop_index("ix_attempts_session_id_id", table_name="attempts")
    op.drop_index("ix_attempts_delivery_pk", table_name="attempts")
    op.drop_index("ix_attempts_commit_sha", table_name="attempts")

    op.drop_table("attempts")
    op.drop_index("ix_pushes_repository", table_name="pushes")

    op.drop_table("pushes")
    op.drop_index("ix_lab_sessions_repository", table_name="lab_sessions")
    op.drop_index("ix_lab_sessions_lab_id", table_name="lab_sessions")

    op.drop_table("lab_sessions")
    op.drop_table("deliveries")
    op.drop_index("ix_audit_events_target", table_name="audit_events")

    op.drop_table("audit_events")
