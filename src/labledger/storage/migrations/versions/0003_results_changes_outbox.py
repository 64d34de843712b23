"""Verification results, deadline changes, the notification outbox

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from labledger.storage.migrations import frozen_append_only as append_only

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

NEW_TABLES = ("verification_results", "session_changes", "outbox_events", "outbox_states")


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "verification_results",
        sa.Column("id", big_id, autoincrement=True, nullable=False),
        sa.Column("attempt_id", sa.BigInteger(), nullable=False),
        sa.Column("verifier", sa.String(length=100), nullable=False),
        sa.Column("run_id", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("score_milli", sa.BigInteger(), nullable=True),
        sa.Column("max_score_milli", sa.BigInteger(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["attempt_id"],
            ["attempts.id"],
            name=op.f("fk_verification_results_attempt_id_attempts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_verification_results")),
        sa.UniqueConstraint(
            "attempt_id",
            "verifier",
            "run_id",
            name=op.f("uq_verification_results_attempt_id_verifier_run_id"),
        ),
    )
    op.create_index(
        "ix_verification_results_attempt_id_verifier_id",
        "verification_results",
        ["attempt_id", "verifier", "id"],
    )
    op.create_table(
        "session_changes",
        sa.Column("id", big_id, autoincrement=True, nullable=False),
        sa.Column("session_id", sa.BigInteger(), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closes_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["lab_sessions.id"],
            name=op.f("fk_session_changes_session_id_lab_sessions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_session_changes")),
    )
    op.create_index("ix_session_changes_session_id_id", "session_changes", ["session_id", "id"])
    op.create_table(
        "outbox_events",
        sa.Column("id", big_id, autoincrement=True, nullable=False),
        sa.Column("subscriber", sa.String(length=100), nullable=False),
        sa.Column("event_id", sa.String(length=100), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_events")),
        sa.UniqueConstraint(
            "subscriber", "event_id", name=op.f("uq_outbox_events_subscriber_event_id")
        ),
    )
    op.create_table(
        "outbox_states",
        sa.Column("id", big_id, autoincrement=True, nullable=False),
        sa.Column("outbox_id", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempt_no", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["outbox_id"],
            ["outbox_events.id"],
            name=op.f("fk_outbox_states_outbox_id_outbox_events"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_states")),
    )
    op.create_index("ix_outbox_states_outbox_id_id", "outbox_states", ["outbox_id", "id"])
    for statement in append_only.create_statements(dialect, NEW_TABLES):
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for statement in append_only.drop_statements(dialect, NEW_TABLES):
        if "DROP FUNCTION" not in statement:  # earlier revisions' triggers still use it
            op.execute(statement)
    op.drop_table("outbox_states")
    op.drop_table("outbox_events")
    op.drop_table("session_changes")
    op.drop_table("verification_results")
