"""The ledger schema, as SQLAlchemy Core tables. Migrations must yield exactly this."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING)

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
Id = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on both dialects."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the ledger; times must be aware")
        value = value.astimezone(UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment: datetime = value
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


lab_sessions = Table(
    "lab_sessions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("lab_id", Text, nullable=False),
    Column("subject_id", Text, nullable=False),
    Column("forge", String(16), nullable=False),
    Column("repository_id", BigInteger, nullable=False),
    Column("repository_full_name", Text),
    Column("branch_glob", Text, nullable=False),
    Column("opens_at", UtcDateTime, nullable=False),
    Column("due_at", UtcDateTime),
    Column("closes_at", UtcDateTime),
    Column("created_at", UtcDateTime, nullable=False),
    Index("ix_lab_sessions_repository", "forge", "repository_id"),
    Index("ix_lab_sessions_lab_id", "lab_id"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("forge", String(16), nullable=False),
    Column("delivery_id", String(100), nullable=False),
    Column("hook_id", String(40)),
    Column("event", String(64), nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    Column("body_sha256", LargeBinary(32), nullable=False),
    Column("body_size", Integer, nullable=False),
    Column("body_zlib", LargeBinary, nullable=False),
    UniqueConstraint("forge", "delivery_id"),
)

pushes = Table(
    "pushes",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("delivery_pk", BigInteger, ForeignKey("deliveries.id"), nullable=False, unique=True),
    Column("forge", String(16), nullable=False),
    Column("repository_id", BigInteger, nullable=False),
    Column("repository_full_name", Text, nullable=False),
    Column("ref", Text, nullable=False),
    Column("before_sha", String(64), nullable=False),
    Column("after_sha", String(64), nullable=False),
    Column("created", Boolean, nullable=False),
    Column("deleted", Boolean, nullable=False),
    Column("forced", Boolean, nullable=False),
    Column("pusher_name", Text),
    Column("pusher_email", Text),
    Column("sender_login", Text, nullable=False),
    Column("sender_id", BigInteger, nullable=False),
    Column("pushed_at", UtcDateTime),
    Column("commit_count", Integer, nullable=False),
    Column("commit_list_complete", Boolean, nullable=False),
    Column("personal_salt", LargeBinary(16)),
    Index("ix_pushes_repository", "forge", "repository_id"),
    # The push-chain anti-join (storage/gaps.py) looks a `before` up among a ref's `after`s.
    Index("ix_pushes_chain", "forge", "repository_id", "ref", "after_sha"),
)

push_commits = Table(
    "push_commits",
    metadata,
    Column("push_id", BigInteger, ForeignKey("pushes.id"), nullable=False),
    Column("position", Integer, nullable=False),
    Column("commit_sha", String(64), nullable=False),
    Column("is_distinct", Boolean, nullable=False),
    PrimaryKeyConstraint("push_id", "position"),
    Index("ix_push_commits_commit_sha", "commit_sha"),
)

attempts = Table(
    "attempts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("session_id", BigInteger, ForeignKey("lab_sessions.id"), nullable=False),
    Column("commit_sha", String(64), nullable=False),
    Column("tree_sha", String(64)),
    Column("message", Text, nullable=False),
    Column("author_name", Text),
    Column("author_email", Text),
    Column("author_username", Text),
    Column("committer_name", Text),
    Column("committer_email", Text),
    Column("committer_username", Text),
    Column("claimed_timestamp", Text),
    Column("is_distinct", Boolean, nullable=False),
    Column("branch", Text, nullable=False),
    Column("changed_files", JSON, nullable=False),
    Column("push_id", BigInteger, ForeignKey("pushes.id"), nullable=False),
    Column("delivery_pk", BigInteger, ForeignKey("deliveries.id"), nullable=False),
    Column("pushed_at", UtcDateTime),
    Column("received_at", UtcDateTime, nullable=False),
    Column("personal_salt", LargeBinary(16)),
    UniqueConstraint("session_id", "commit_sha"),
    Index("ix_attempts_session_id_id", "session_id", "id"),
    Index("ix_attempts_commit_sha", "commit_sha"),
    Index("ix_attempts_delivery_pk", "delivery_pk"),
    # Serves the foreign-key check when retention purges a push, and erasure by forge account.
    Index("ix_attempts_push_id", "push_id"),
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("actor", Text, nullable=False),
    Column("action", String(64), nullable=False),
    Column("target_type", String(32), nullable=False),
    Column("target_id", Text, nullable=False),
    Column("details", JSON, nullable=False),
    Index("ix_audit_events_target", "target_type", "target_id"),
)

# -- the Merkle log (contract invariant 7) ------------------------------------------------

# Entries committed but not yet in the tree. A work queue, not ledger data: the integrator
# deletes what it has integrated, and `verify` proves nothing was dropped on the way.
log_queue = Table(
    "log_queue",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("entry_type", String(16), nullable=False),
    Column("entry_id", BigInteger, nullable=False),
)

log_entries = Table(
    "log_entries",
    metadata,
    Column("leaf_index", BigInteger, primary_key=True, autoincrement=False),
    Column("entry_type", String(16), nullable=False),
    Column("entry_id", BigInteger, nullable=False),
    Column("leaf_hash", LargeBinary(32), nullable=False),
    Column("integrated_at", UtcDateTime, nullable=False),
    UniqueConstraint("entry_type", "entry_id"),
)

merkle_nodes = Table(
    "merkle_nodes",
    metadata,
    Column("level", Integer, nullable=False),
    Column("node_index", BigInteger, nullable=False),
    Column("hash", LargeBinary(32), nullable=False),
    PrimaryKeyConstraint("level", "node_index"),
)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("tree_size", BigInteger, primary_key=True, autoincrement=False),
    Column("root_hash", LargeBinary(32), nullable=False),
    Column("frontier", LargeBinary, nullable=False),
    Column("note", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

# -- opinions, deadline changes and the outbound hand-off (issue 6) -----------------------

# What a verifier (grader, CI) concluded about one attempt. Scores are integer milli-points:
# canonical leaf JSON has no floats, and 7.5/10 must hash the same on every machine.
verification_results = Table(
    "verification_results",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("attempt_id", BigInteger, ForeignKey("attempts.id"), nullable=False),
    Column("verifier", String(100), nullable=False),
    Column("run_id", String(200), nullable=False),
    Column("status", String(16), nullable=False),
    Column("score_milli", BigInteger),
    Column("max_score_milli", BigInteger),
    Column("details", JSON, nullable=False),
    Column("reported_at", UtcDateTime, nullable=False),
    Column("actor", Text, nullable=False),
    UniqueConstraint("attempt_id", "verifier", "run_id"),
    Index("ix_verification_results_attempt_id_verifier_id", "attempt_id", "verifier", "id"),
)

# A deadline change of a session: the effective due_at/closes_at are those of the newest row,
# else the session's own; the original stays untouched (contract invariant 5).
session_changes = Table(
    "session_changes",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("session_id", BigInteger, ForeignKey("lab_sessions.id"), nullable=False),
    Column("due_at", UtcDateTime),
    Column("closes_at", UtcDateTime),
    Column("reason", Text, nullable=False),
    Column("actor", Text, nullable=False),
    Column("changed_at", UtcDateTime, nullable=False),
    Index("ix_session_changes_session_id_id", "session_id", "id"),
)

# The transactional outbox: one row per subscriber per event, written in the transaction of
# the attempt or result it announces. `event_id` is the Standard Webhooks `webhook-id`.
outbox_events = Table(
    "outbox_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("subscriber", String(100), nullable=False),
    Column("event_id", String(100), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("subscriber", "event_id"),
)

# The delivery history of each outbox row, append-only: its state is its newest row
# (`retry` with next_attempt_at, `delivered`, `dead`, or `replay` asked by an operator).
outbox_states = Table(
    "outbox_states",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("outbox_id", BigInteger, ForeignKey("outbox_events.id"), nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempt_no", Integer, nullable=False),
    Column("next_attempt_at", UtcDateTime),
    Column("status_code", Integer),
    Column("error", Text),
    Column("recorded_at", UtcDateTime, nullable=False),
    Index("ix_outbox_states_outbox_id_id", "outbox_id", "id"),
)

# -- retention: archives, and what purge and erasure left in place of data (issue 7) -------

# One row per `labledger archive`: the leaf range [first_leaf, end_leaf) it holds and the
# signed checkpoint of size end_leaf that covers it. Files live outside the database.
archives = Table(
    "archives",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("first_leaf", BigInteger, nullable=False),
    Column("end_leaf", BigInteger, nullable=False),
    Column("checkpoint_note", Text, nullable=False),
    Column("manifest_sha256", LargeBinary(32), nullable=False),
    Column("location", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

# What a purge or an erasure took away, one row per entry and kind of removal:
#   what = 'row'      the whole row was purged; its leaf hash stays in log_entries
#   what = 'body'     the raw delivery body was dropped; body_sha256 stays on the row
#   what = 'personal' personal fields were erased; personal_sha256 is the leaf's commitment
# event_id is the audit event of the purge or erasure, whose details hold the SHA-256 of its
# tombstones (core/retention_rules.py), so `verify` notices a tombstone added behind its back.
tombstones = Table(
    "tombstones",
    metadata,
    Column("entry_type", String(16), nullable=False),
    Column("entry_id", BigInteger, nullable=False),
    Column("what", String(8), nullable=False),
    Column("event_id", BigInteger, nullable=False),
    Column("archive_id", BigInteger),
    Column("personal_sha256", LargeBinary(32)),
    PrimaryKeyConstraint("entry_type", "entry_id", "what"),
    Index("ix_tombstones_event_id", "event_id"),
)

# -- one body, one event; one key, one ledger (issue 21) ------------------------------------

# The first delivery of each signed body: a body is the event it reports, whatever delivery id
# it arrives under (contract invariant 9). No foreign key: the claim outlives a purged delivery,
# so a replay of a purged body is still refused.
delivery_bodies = Table(
    "delivery_bodies",
    metadata,
    Column("forge", String(16), nullable=False),
    Column("body_sha256", LargeBinary(32), nullable=False),
    Column("delivery_pk", BigInteger, nullable=False),
    PrimaryKeyConstraint("forge", "body_sha256"),
)

# The log name (checkpoint origin) this ledger was given at its first migration: a signing key
# of another name belongs to another ledger. One row; append-only like the rest.
ledger_origin = Table(
    "ledger_origin",
    metadata,
    Column("origin", Text, primary_key=True),
    Column("recorded_at", UtcDateTime, nullable=False),
)

# How far `labledger reconcile` has read each GitHub hook's deliveries (issue 24): the newest
# row per hook is its position. Rows are only ever added, so a run that fails halfway leaves the
# previous position in force; it is operational state, not ledger evidence.
reconcile_marks = Table(
    "reconcile_marks",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("hook", String(300), nullable=False),
    Column("last_delivery_id", BigInteger, nullable=False),
    Column("reconciled_at", UtcDateTime, nullable=False),
    Index("ix_reconcile_marks_hook_id", "hook", "id"),
)

# Every table the database itself keeps append-only (contract invariant 3). Sessions are in
# the list too: a deadline change is a new event, never an edit of the original record.
APPEND_ONLY_TABLES = (
    "lab_sessions",
    "deliveries",
    "pushes",
    "push_commits",
    "attempts",
    "audit_events",
    "log_entries",
    "merkle_nodes",
    "checkpoints",
    "verification_results",
    "session_changes",
    "outbox_events",
    "outbox_states",
    "archives",
    "tombstones",
    "delivery_bodies",
    "ledger_origin",
)
