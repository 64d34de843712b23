"""The naive stack's storage: the same facts in plain tables, with none of the ledger's guarantees.

No unique keys (a redelivery is stored again), no append-only triggers, no hash of the body,
no list of carried commits, no audit log. It keeps what any product needs to answer its own
reads: a session lookup by repository and indexes for the attempt listings.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Connection,
    DateTime,
    Engine,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    func,
    select,
)

from bench.databases import DUE_AT, OPENS_AT

metadata = MetaData()
Id = Integer  # INTEGER PRIMARY KEY auto-increments on SQLite, SERIAL on PostgreSQL

sessions = Table(
    "naive_sessions",
    metadata,
    Column("id", Id, primary_key=True),
    Column("repository_id", Integer, nullable=False),
    Column("subject_id", Text, nullable=False),
    Column("opens_at", DateTime(timezone=True), nullable=False),
    Column("due_at", DateTime(timezone=True)),
    Index("ix_naive_sessions_repository_id", "repository_id"),
)
deliveries = Table(
    "naive_deliveries",
    metadata,
    Column("id", Id, primary_key=True),
    Column("delivery_id", Text, nullable=False),
    Column("event", Text, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("body", LargeBinary, nullable=False),
    Index("ix_naive_deliveries_delivery_id", "delivery_id"),
)
pushes = Table(
    "naive_pushes",
    metadata,
    Column("id", Id, primary_key=True),
    Column("delivery_pk", Integer, nullable=False),
    Column("repository_id", Integer, nullable=False),
    Column("ref", Text, nullable=False),
    Column("before_sha", Text, nullable=False),
    Column("after_sha", Text, nullable=False),
    Column("forced", Boolean, nullable=False),
    Column("sender_login", Text, nullable=False),
    Column("pushed_at", DateTime(timezone=True)),
)
attempts = Table(
    "naive_attempts",
    metadata,
    Column("id", Id, primary_key=True),
    Column("session_id", Integer, nullable=False),
    Column("commit_sha", Text, nullable=False),
    Column("tree_sha", Text),
    Column("message", Text, nullable=False),
    Column("author_name", Text),
    Column("author_email", Text),
    Column("committer_name", Text),
    Column("committer_email", Text),
    Column("claimed_timestamp", Text),
    Column("branch", Text, nullable=False),
    Column("changed_files", JSON, nullable=False),
    Column("push_id", Integer, nullable=False),
    Column("pushed_at", DateTime(timezone=True)),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Index("ix_naive_attempts_session_id", "session_id"),
    Index("ix_naive_attempts_commit_sha", "commit_sha"),
)


def create_schema(engine: Engine, repo_ids: list[int]) -> None:
    metadata.create_all(engine)
    rows = [
        {"repository_id": r, "subject_id": f"student{r}", "opens_at": OPENS_AT, "due_at": DUE_AT}
        for r in repo_ids
    ]
    with engine.begin() as conn:
        conn.execute(sessions.insert(), rows)


def record(conn: Connection, delivery_id: str, body: bytes, payload: dict[str, Any]) -> list[int]:
    """Insert the delivery, its push and one attempt per (session, commit), row by row."""
    now = datetime.now(UTC)
    delivery_pk = conn.execute(
        deliveries.insert().returning(deliveries.c.id),
        {"delivery_id": delivery_id, "event": "push", "received_at": now, "body": body},
    ).scalar_one()
    pushed_at = datetime.fromtimestamp(payload["repository"]["pushed_at"], UTC)
    push_id = conn.execute(
        pushes.insert().returning(pushes.c.id), _push_row(payload, delivery_pk, pushed_at)
    ).scalar_one()
    repo = payload["repository"]["id"]
    found = conn.execute(select(sessions.c.id).where(sessions.c.repository_id == repo))
    branch = payload["ref"].removeprefix("refs/heads/")
    made = []
    for session_id in found.scalars().all():
        for commit in payload["commits"]:
            row = _attempt_row(commit, session_id, branch, push_id, pushed_at, now)
            made.append(conn.execute(attempts.insert().returning(attempts.c.id), row).scalar_one())
    return made


def _push_row(payload: dict[str, Any], delivery_pk: int, pushed_at: datetime) -> dict[str, Any]:
    return {
        "delivery_pk": delivery_pk,
        "repository_id": payload["repository"]["id"],
        "ref": payload["ref"],
        "before_sha": payload["before"],
        "after_sha": payload["after"],
        "forced": payload["forced"],
        "sender_login": payload["sender"]["login"],
        "pushed_at": pushed_at,
    }


def _attempt_row(
    commit: dict[str, Any], session_id: int, branch: str, push_id: int, pushed_at: datetime,
    now: datetime,
) -> dict[str, Any]:  # fmt: skip
    files = {key: commit[key] for key in ("added", "modified", "removed")}
    return {
        "session_id": session_id, "commit_sha": commit["id"], "tree_sha": commit["tree_id"],
        "message": commit["message"], "author_name": commit["author"]["name"],
        "author_email": commit["author"]["email"], "committer_name": commit["committer"]["name"],
        "committer_email": commit["committer"]["email"], "claimed_timestamp": commit["timestamp"],
        "branch": branch, "changed_files": files, "push_id": push_id, "pushed_at": pushed_at,
        "received_at": now,
    }  # fmt: skip


def count_deliveries(engine: Engine, delivery_id: str) -> int:
    query = select(func.count()).where(deliveries.c.delivery_id == delivery_id)
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def count_attempts(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(attempts)).scalar_one())
