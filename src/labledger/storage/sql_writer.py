"""Writing the ledger inside one open transaction (the core's LedgerWriter port)."""

from __future__ import annotations

import hashlib
import os
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import Connection, Insert, Table, bindparam, func, select
from sqlalchemy.dialects import postgresql, sqlite

from labledger.core.errors import NotFound
from labledger.core.evidence import attempt_columns, carried_rows, push_row
from labledger.core.model import (
    AuditEvent,
    DeadlineChange,
    Delivery,
    LabSession,
    NewAttempt,
    NewVerification,
    Push,
    RecordedPush,
    SessionSpec,
)
from labledger.storage.outbox import new_event_id
from labledger.storage.rows import session_from_row, session_query
from labledger.storage.tables import (
    attempts,
    audit_events,
    deliveries,
    delivery_bodies,
    lab_sessions,
    log_queue,
    outbox_events,
    push_commits,
    pushes,
    session_changes,
    verification_results,
)

# zlib's default level.
BODY_ZLIB_LEVEL = 6
SALT_BYTES = 16


def _insert_new(dialect: str, table: Table, *keys: str) -> Insert:
    """INSERT ... ON CONFLICT (keys) DO NOTHING: the unique key decides, never a prior read."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(table).on_conflict_do_nothing(index_elements=list(keys))


# The ingest path's statements, built once (SQLAlchemy caches their compiled forms): built at
# each call, their construction and cache keys cost more than the rest of its Python work.
# Those whose conflict clause is the dialect's own exist once per dialect.
DIALECTS = ("sqlite", "postgresql")
NEW_DELIVERY = {
    d: _insert_new(d, deliveries, "forge", "delivery_id").returning(deliveries.c.id)
    for d in DIALECTS
}
BODY_CLAIM = {
    d: _insert_new(d, delivery_bodies, "forge", "body_sha256").returning(
        delivery_bodies.c.delivery_pk
    )
    for d in DIALECTS
}
NEW_ATTEMPTS = {
    d: _insert_new(d, attempts, "session_id", "commit_sha").returning(
        attempts.c.id, attempts.c.session_id, attempts.c.commit_sha
    )
    for d in DIALECTS
}
NEW_VERIFICATION = {
    d: _insert_new(d, verification_results, "attempt_id", "verifier", "run_id").returning(
        verification_results.c.id
    )
    for d in DIALECTS
}
NEW_PUSH = pushes.insert().returning(pushes.c.id)
NEW_AUDIT = audit_events.insert().returning(audit_events.c.id)


def salts(count: int) -> list[bytes]:
    """`count` fresh salts from one read of the system's random source."""
    pool = os.urandom(SALT_BYTES * count)
    return [pool[i : i + SALT_BYTES] for i in range(0, len(pool), SALT_BYTES)]


SESSIONS_OF_REPOSITORY = (
    session_query()
    .where(
        lab_sessions.c.forge == bindparam("forge"),
        lab_sessions.c.repository_id == bindparam("repository_id"),
    )
    .order_by(lab_sessions.c.id)
)


RECORDED_PUSHES = (
    select(
        pushes.c.id,
        pushes.c.delivery_pk,
        pushes.c.ref,
        pushes.c.pushed_at,
        deliveries.c.received_at,
        deliveries.c.body_zlib,
    )
    .join(deliveries, deliveries.c.id == pushes.c.delivery_pk)
    .where(
        pushes.c.forge == bindparam("forge"),
        pushes.c.repository_id == bindparam("repository_id"),
    )
    .order_by(pushes.c.id)
)


class SqlWriter:
    """A LedgerWriter bound to one open transaction."""

    def __init__(self, conn: Connection, subscribers: Sequence[str] = ()) -> None:
        self._conn = conn
        self._dialect = conn.dialect.name
        self._logged: list[dict[str, object]] = []
        self._subscribers = tuple(subscribers)
        self._outbox: list[dict[str, object]] = []
        # Notifications name the forge (and instance) of the push that carried an attempt.
        self._push_forges: dict[int, str] = {}

    def _log(self, entry_type: str, entry_id: int) -> None:
        self._logged.append({"entry_type": entry_type, "entry_id": entry_id})

    def _announce(
        self, event_type: str, event_id: str, at: datetime, data: dict[str, object]
    ) -> None:
        """One outbox row per subscriber, committed with the entry it announces (or not at all)."""
        if not self._subscribers:
            return
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

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Writes that stay or go together inside the transaction: if the block raises, its
        rows roll back, with the log entries and notifications they queued."""
        logged, outbox = len(self._logged), len(self._outbox)
        try:
            with self._conn.begin_nested():
                yield
        except BaseException:
            del self._logged[logged:], self._outbox[outbox:]
            raise

    def flush_log_queue(self) -> int:
        """Queue every entry written in this transaction for the Merkle log, in the same commit;
        how many entries that was."""
        queued = len(self._logged)
        if self._logged:
            self._conn.execute(log_queue.insert(), self._logged)
            self._logged = []
        if self._outbox:
            self._conn.execute(outbox_events.insert(), self._outbox)
            self._outbox = []
        return queued

    def insert_delivery(self, delivery: Delivery) -> int | None:
        row = {
            "forge": delivery.forge,
            "delivery_id": delivery.delivery_id,
            "hook_id": delivery.hook_id,
            "event": delivery.event,
            "received_at": delivery.received_at,
            "body_sha256": delivery.body_sha256,
            "body_size": len(delivery.body),
            "body_zlib": zlib.compress(delivery.body, BODY_ZLIB_LEVEL),
        }
        delivery_pk: int | None = self._conn.execute(
            NEW_DELIVERY[self._dialect], row
        ).scalar_one_or_none()
        if delivery_pk is None:
            return None
        self._log("delivery", delivery_pk)
        return delivery_pk

    def claim_body(self, delivery: Delivery, delivery_pk: int) -> bool:
        claim = {
            "forge": delivery.forge,
            "body_sha256": delivery.body_sha256,
            "delivery_pk": delivery_pk,
        }
        claimed = self._conn.execute(BODY_CLAIM[self._dialect], claim).scalar_one_or_none()
        return claimed is not None

    def insert_push(self, delivery_pk: int, forge: str, push: Push) -> int:
        row = {"delivery_pk": delivery_pk, "forge": forge, **push_row(push)}
        row["personal_salt"] = salts(1)[0]
        push_id: int = self._conn.execute(NEW_PUSH, row).scalar_one()
        self._log("push", push_id)
        self._push_forges[push_id] = forge
        carried = carried_rows(push)
        if carried:
            rows = [{"push_id": push_id, **c} for c in carried]
            self._conn.execute(push_commits.insert(), rows)
        return push_id

    def sessions_for_repository(self, forge: str, repository_id: int) -> list[LabSession]:
        rows = self._conn.execute(
            SESSIONS_OF_REPOSITORY, {"forge": forge, "repository_id": repository_id}
        )
        return [session_from_row(r) for r in rows]

    def guard_repository(self, forge: str, repository_id: int, *, exclusive: bool) -> None:
        # SQLite writers are serialized already (BEGIN IMMEDIATE). On PostgreSQL, READ
        # COMMITTED lets a push and a new session each miss the other's uncommitted row; a
        # transaction-scoped advisory lock (no privilege needed) orders them per repository.
        if self._conn.dialect.name != "postgresql":
            return
        digest = hashlib.sha256(f"labledger-repository:{forge}:{repository_id}".encode())
        key = int.from_bytes(digest.digest()[:8], "big", signed=True)
        kind = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
        self._conn.exec_driver_sql(f"SELECT {kind}(%s)", (key,))

    def recorded_pushes(self, forge: str, repository_id: int) -> list[RecordedPush]:
        rows = self._conn.execute(RECORDED_PUSHES, {"forge": forge, "repository_id": repository_id})
        return [
            RecordedPush(
                r.id, r.delivery_pk, r.ref, r.pushed_at, r.received_at,
                zlib.decompress(r.body_zlib) if r.body_zlib else b"",
            )
            for r in rows
        ]  # fmt: skip

    def insert_attempts(self, wanted: Sequence[NewAttempt]) -> list[int]:
        """One INSERT for the whole push; rows UNIQUE(session_id, commit_sha) already holds are
        skipped and return nothing, so the new ids are matched back by that key."""
        if not wanted:
            return []
        rows = [
            {**attempt_columns(a), "personal_salt": salt}
            for a, salt in zip(wanted, salts(len(wanted)), strict=True)
        ]
        found = self._conn.execute(NEW_ATTEMPTS[self._dialect], rows)
        by_key = {(session_id, sha): attempt_id for attempt_id, session_id, sha in found}
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
        if not self._subscribers:  # the usual case: spare the event's making
            return
        self._announce(
            "attempt.recorded",
            new_event_id("attempt", attempt_id),
            attempt.received_at,
            {
                "attempt_id": attempt_id,
                "session_id": attempt.session_id,
                "forge": self._push_forges.get(attempt.push_id),
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
        result_id: int | None = self._conn.execute(
            NEW_VERIFICATION[self._dialect], row
        ).scalar_one_or_none()
        if result_id is not None:
            self._log("verification", result_id)
            self._announce(
                "verification.recorded",
                new_event_id("verification", result_id),
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
        audit_id: int = self._conn.execute(NEW_AUDIT, row).scalar_one()
        self._log("audit", audit_id)
        return audit_id

    def lab_sessions_on_repository(self, spec: SessionSpec) -> list[int]:
        """Ids of `spec`'s lab's sessions on its repository. On PostgreSQL it first takes a
        transaction lock on (lab, repository): two creations at once would each miss the
        other's uncommitted row (SQLite's one writer at a time needs no lock)."""
        if self._conn.dialect.name == "postgresql":
            key = f"{spec.lab_id}\x1f{spec.forge}\x1f{spec.repository_id}"
            self._conn.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(key, 0))))
        c = lab_sessions.c
        found = self._conn.execute(
            select(c.id).where(
                c.forge == spec.forge,
                c.repository_id == spec.repository_id,
                c.lab_id == spec.lab_id,
            )
        )
        return list(found.scalars())

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
