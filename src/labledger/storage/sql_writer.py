"""Writing the ledger inside one open transaction (the core's LedgerWriter port)."""

from __future__ import annotations

import functools
import os
import zlib
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam
from sqlalchemy.dialects import postgresql, sqlite

from labledger.core.errors import NotFound
from labledger.core.model import (
    AuditEvent,
    DeadlineChange,
    Delivery,
    LabSession,
    NewAttempt,
    NewVerification,
    Push,
    SessionSpec,
)
from labledger.storage.rows import (
    session_from_row,
    session_query,
)
from labledger.storage.tables import (
    attempts,
    audit_events,
    deliveries,
    lab_sessions,
    log_queue,
    outbox_events,
    push_commits,
    pushes,
    session_changes,
    verification_results,
)


def _upsert_skip(table: Any, keys: list[str], *returned: str) -> Callable[[str], Any]:
    def build(dialect: str) -> Any:
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        columns = [table.c.id, *(table.c[name] for name in returned)]
        return insert(table).on_conflict_do_nothing(index_elements=keys).returning(*columns)

    return build


# The hot path's statements are built once per dialect and executed with parameters: building
# `insert().values(**literals)` per row made SQLAlchemy re-process every value and recompute its
# cache key on each call (43 % of the server's Python time in the benchmarks).
_BUILDERS: dict[str, Callable[[str], Any]] = {
    "delivery": _upsert_skip(deliveries, ["forge", "delivery_id"]),
    # Executed with a list of rows: one multi-row INSERT (SQLAlchemy's insertmanyvalues).
    "attempts": _upsert_skip(attempts, ["session_id", "commit_sha"], "session_id", "commit_sha"),
    "verification": _upsert_skip(verification_results, ["attempt_id", "verifier", "run_id"]),
    "push": lambda dialect: pushes.insert().returning(pushes.c.id),
    "audit": lambda dialect: audit_events.insert().returning(audit_events.c.id),
    "push_commits": lambda dialect: push_commits.insert(),
    "log_queue": lambda dialect: log_queue.insert(),
    "outbox": lambda dialect: outbox_events.insert(),
    "sessions_of_repository": lambda dialect: (
        session_query()
        .where(
            lab_sessions.c.forge == bindparam("forge"),
            lab_sessions.c.repository_id == bindparam("repository_id"),
        )
        .order_by(lab_sessions.c.id)
    ),
}


@functools.cache
def statement(dialect: str, name: str) -> Any:
    return _BUILDERS[name](dialect)


class SqlWriter:
    """A LedgerWriter bound to one open transaction."""

    def __init__(self, conn: Connection, subscribers: Sequence[str] = ()) -> None:
        self._conn = conn
        self._dialect = conn.dialect.name
        self._logged: list[dict[str, object]] = []
        self._subscribers = tuple(subscribers)
        self._outbox: list[dict[str, object]] = []

    def _log(self, entry_type: str, entry_id: int) -> None:
        self._logged.append({"entry_type": entry_type, "entry_id": entry_id})

    def _announce(
        self, event_type: str, event_id: str, at: datetime, data: dict[str, object]
    ) -> None:
        """One outbox row per subscriber, committed with the entry it announces (or not at all)."""
        envelope = {"type": event_type, "timestamp": at.isoformat(), "data": data}
        self._outbox.extend(
            {
                "subscriber": name,
                "event_id": event_id,
                "event_type": event_type,
                "payload": envelope,
                "created_at": at,
            }
            for name in self._subscribers
        )

    def flush_log_queue(self) -> None:
        """Queue every entry written in this transaction for the Merkle log, in the same commit."""
        if self._logged:
            self._conn.execute(statement(self._dialect, "log_queue"), self._logged)
            self._logged = []
        if self._outbox:
            self._conn.execute(statement(self._dialect, "outbox"), self._outbox)
            self._outbox = []

    def insert_delivery(self, delivery: Delivery) -> int | None:
        row = {
            "forge": delivery.forge,
            "delivery_id": delivery.delivery_id,
            "hook_id": delivery.hook_id,
            "event": delivery.event,
            "received_at": delivery.received_at,
            "body_sha256": delivery.body_sha256,
            "body_size": len(delivery.body),
            "body_zlib": zlib.compress(delivery.body, 6),
        }
        stmt = statement(self._dialect, "delivery")
        delivery_pk: int | None = self._conn.execute(stmt, row).scalar_one_or_none()
        if delivery_pk is not None:
            self._log("delivery", delivery_pk)
        return delivery_pk

    def insert_push(self, delivery_pk: int, forge: str, push: Push) -> int:
        row = {
            "delivery_pk": delivery_pk,
            "forge": forge,
            "repository_id": push.repository_id,
            "repository_full_name": push.repository_full_name,
            "ref": push.ref,
            "before_sha": push.before,
            "after_sha": push.after,
            "created": push.created,
            "deleted": push.deleted,
            "forced": push.forced,
            "pusher_name": push.pusher.name,
            "pusher_email": push.pusher.email,
            "sender_login": push.sender.login,
            "sender_id": push.sender.id,
            "pushed_at": push.pushed_at,
            "commit_count": len(push.commits),
            "commit_list_complete": push.commit_list_complete,
            "personal_salt": os.urandom(16),
        }
        push_id: int = self._conn.execute(statement(self._dialect, "push"), row).scalar_one()
        self._log("push", push_id)
        carried = push.carried_commits()
        if carried:
            self._conn.execute(
                statement(self._dialect, "push_commits"),
                [
                    {
                        "push_id": push_id,
                        "position": i,
                        "commit_sha": c.sha,
                        "is_distinct": c.distinct,
                    }
                    for i, c in enumerate(carried)
                ],
            )
        return push_id

    def sessions_for_repository(self, forge: str, repository_id: int) -> list[LabSession]:
        rows = self._conn.execute(
            statement(self._dialect, "sessions_of_repository"),
            {"forge": forge, "repository_id": repository_id},
        )
        return [session_from_row(r) for r in rows]

    def insert_attempts(self, wanted: Sequence[NewAttempt]) -> list[int]:
        """One multi-row INSERT for the whole push; rows UNIQUE(session_id, commit_sha) already
        holds are skipped and return nothing, so the new ids are matched back by that key."""
        if not wanted:
            return []
        rows = [_attempt_row(a) for a in wanted]
        stmt = statement(self._dialect, "attempts")
        found = self._conn.execute(stmt, rows).all()
        by_key = {(r.session_id, r.commit_sha): r.id for r in found}
        new: list[tuple[int, NewAttempt]] = []
        for a in wanted:  # pop: a commit listed twice in one push is one attempt
            attempt_id = by_key.pop((a.session_id, a.commit.sha), None)
            if attempt_id is not None:
                new.append((attempt_id, a))
        new.sort(key=lambda pair: pair[0])  # ledger order
        for attempt_id, attempt in new:
            self._log("attempt", attempt_id)
            self._announce_attempt(attempt_id, attempt)
        return [attempt_id for attempt_id, _ in new]

    def _announce_attempt(self, attempt_id: int, attempt: NewAttempt) -> None:
        self._announce(
            "attempt.recorded",
            f"evt_attempt_{attempt_id}",
            attempt.received_at,
            {
                "attempt_id": attempt_id,
                "session_id": attempt.session_id,
                "commit_sha": attempt.commit.sha,
                "branch": attempt.branch,
                "pushed_at": attempt.pushed_at.isoformat() if attempt.pushed_at else None,
                "received_at": attempt.received_at.isoformat(),
            },
        )

    def insert_verification(self, v: NewVerification) -> int | None:
        """None when UNIQUE(attempt_id, verifier, run_id) already holds a result."""
        row = {
            "attempt_id": v.attempt_id,
            "verifier": v.verifier,
            "run_id": v.run_id,
            "status": v.status,
            "score_milli": v.score_milli,
            "max_score_milli": v.max_score_milli,
            "details": v.details,
            "reported_at": v.reported_at,
            "actor": v.actor,
        }
        stmt = statement(self._dialect, "verification")
        result_id: int | None = self._conn.execute(stmt, row).scalar_one_or_none()
        if result_id is not None:
            self._log("verification", result_id)
            self._announce(
                "verification.recorded",
                f"evt_verification_{result_id}",
                v.reported_at,
                {
                    "verification_id": result_id,
                    "attempt_id": v.attempt_id,
                    "verifier": v.verifier,
                    "run_id": v.run_id,
                    "status": v.status,
                    "score_milli": v.score_milli,
                    "max_score_milli": v.max_score_milli,
                },
            )
        return result_id

    def insert_deadline_change(self, change: DeadlineChange) -> int:
        change_id: int = self._conn.execute(
            session_changes.insert()
            .values(
                session_id=change.session_id,
                due_at=change.due_at,
                closes_at=change.closes_at,
                reason=change.reason,
                actor=change.actor,
                changed_at=change.changed_at,
            )
            .returning(session_changes.c.id)
        ).scalar_one()
        self._log("session_change", change_id)
        return change_id

    def get_session(self, session_id: int) -> LabSession:
        row = self._conn.execute(
            session_query().where(lab_sessions.c.id == session_id)
        ).one_or_none()
        if row is None:
            raise NotFound("session", session_id)
        return session_from_row(row)

    def append_audit(self, event: AuditEvent) -> int:
        row = {
            "occurred_at": event.occurred_at,
            "actor": event.actor,
            "action": event.action,
            "target_type": event.target_type,
            "target_id": event.target_id,
            "details": event.details,
        }
        audit_id: int = self._conn.execute(statement(self._dialect, "audit"), row).scalar_one()
        self._log("audit", audit_id)
        return audit_id

    def insert_session(self, spec: SessionSpec, created_at: datetime) -> LabSession:
        row = self._conn.execute(
            lab_sessions.insert()
            .values(
                lab_id=spec.lab_id,
                subject_id=spec.subject_id,
                forge=spec.forge,
                repository_id=spec.repository_id,
                repository_full_name=spec.repository_full_name,
                branch_glob=spec.branch_glob,
                opens_at=spec.opens_at,
                due_at=spec.due_at,
                closes_at=spec.closes_at,
                created_at=created_at,
            )
            .returning(*lab_sessions.c)
        ).one()
        self._log("session", row.id)
        return session_from_row(row)


def _attempt_row(attempt: NewAttempt) -> dict[str, object]:
    c = attempt.commit
    return {
        "session_id": attempt.session_id,
        "commit_sha": c.sha,
        "tree_sha": c.tree_sha,
        "message": c.message,
        "author_name": c.author.name,
        "author_email": c.author.email,
        "author_username": c.author.username,
        "committer_name": c.committer.name,
        "committer_email": c.committer.email,
        "committer_username": c.committer.username,
        "claimed_timestamp": c.timestamp,
        "is_distinct": c.distinct,
        "branch": attempt.branch,
        "changed_files": {
            "added": list(c.files.added),
            "modified": list(c.files.modified),
            "removed": list(c.files.removed),
        },
        "push_id": attempt.push_id,
        "delivery_pk": attempt.delivery_pk,
        "pushed_at": attempt.pushed_at,
        "received_at": attempt.received_at,
        "personal_salt": os.urandom(16),
    }
