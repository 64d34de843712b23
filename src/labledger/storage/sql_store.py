"""The ledger on SQLite or PostgreSQL through SQLAlchemy Core."""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Row, func, select, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import Select

from labledger.core.errors import NotFound, StoreUnavailable
from labledger.core.model import (
    Account,
    AttemptRecord,
    AuditEvent,
    ChangedFiles,
    Commit,
    Delivery,
    DeliveryReport,
    Identity,
    LabAttempt,
    LabSession,
    NewAttempt,
    Push,
    PushRecord,
    SessionSpec,
    StoredDelivery,
)
from labledger.storage.engine import WRITE_OPTION
from labledger.storage.tables import (
    attempts,
    audit_events,
    deliveries,
    lab_sessions,
    log_queue,
    metadata,
    push_commits,
    pushes,
)


@contextmanager
def translate_db_errors() -> Iterator[None]:
    """An unreachable or locked database is a retryable 503, never a half-written 500."""
    try:
        yield
    except sa_exc.OperationalError as exc:
        raise StoreUnavailable(str(exc.orig).strip().splitlines()[0]) from exc
    except sa_exc.DBAPIError as exc:
        if exc.connection_invalidated:
            raise StoreUnavailable("database connection lost") from exc
        raise


class SqlWriter:
    """A LedgerWriter bound to one open transaction."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._dialect = conn.dialect.name
        self._logged: list[dict[str, object]] = []

    def _log(self, entry_type: str, entry_id: int) -> None:
        self._logged.append({"entry_type": entry_type, "entry_id": entry_id})

    def flush_log_queue(self) -> None:
        """Queue every entry written in this transaction for the Merkle log, in the same commit."""
        if self._logged:
            self._conn.execute(log_queue.insert(), self._logged)
            self._logged = []

    def _insert(self, table: Any) -> Any:
        return (postgresql.insert if self._dialect == "postgresql" else sqlite.insert)(table)

    def insert_delivery(self, delivery: Delivery) -> int | None:
        stmt = (
            self._insert(deliveries)
            .values(
                forge=delivery.forge,
                delivery_id=delivery.delivery_id,
                hook_id=delivery.hook_id,
                event=delivery.event,
                received_at=delivery.received_at,
                body_sha256=delivery.body_sha256,
                body_size=len(delivery.body),
                body_zlib=zlib.compress(delivery.body, 6),
            )
            .on_conflict_do_nothing(index_elements=["forge", "delivery_id"])
            .returning(deliveries.c.id)
        )
        delivery_pk: int | None = self._conn.execute(stmt).scalar_one_or_none()
        if delivery_pk is not None:
            self._log("delivery", delivery_pk)
        return delivery_pk

    def insert_push(self, delivery_pk: int, forge: str, push: Push) -> int:
        push_id: int = self._conn.execute(
            pushes.insert()
            .values(
                delivery_pk=delivery_pk,
                forge=forge,
                repository_id=push.repository_id,
                repository_full_name=push.repository_full_name,
                ref=push.ref,
                before_sha=push.before,
                after_sha=push.after,
                created=push.created,
                deleted=push.deleted,
                forced=push.forced,
                pusher_name=push.pusher.name,
                pusher_email=push.pusher.email,
                sender_login=push.sender.login,
                sender_id=push.sender.id,
                pushed_at=push.pushed_at,
                commit_count=len(push.commits),
                commit_list_complete=push.commit_list_complete,
                personal_salt=os.urandom(16),
            )
            .returning(pushes.c.id)
        ).scalar_one()
        self._log("push", push_id)
        carried = push.carried_commits()
        if carried:
            self._conn.execute(
                push_commits.insert(),
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
            select(lab_sessions)
            .where(lab_sessions.c.forge == forge, lab_sessions.c.repository_id == repository_id)
            .order_by(lab_sessions.c.id)
        )
        return [session_from_row(r) for r in rows]

    def insert_attempt(self, attempt: NewAttempt) -> int | None:
        c = attempt.commit
        stmt = (
            self._insert(attempts)
            .values(
                session_id=attempt.session_id,
                commit_sha=c.sha,
                tree_sha=c.tree_sha,
                message=c.message,
                author_name=c.author.name,
                author_email=c.author.email,
                author_username=c.author.username,
                committer_name=c.committer.name,
                committer_email=c.committer.email,
                committer_username=c.committer.username,
                claimed_timestamp=c.timestamp,
                is_distinct=c.distinct,
                branch=attempt.branch,
                changed_files={
                    "added": list(c.files.added),
                    "modified": list(c.files.modified),
                    "removed": list(c.files.removed),
                },
                push_id=attempt.push_id,
                delivery_pk=attempt.delivery_pk,
                pushed_at=attempt.pushed_at,
                received_at=attempt.received_at,
                personal_salt=os.urandom(16),
            )
            .on_conflict_do_nothing(index_elements=["session_id", "commit_sha"])
            .returning(attempts.c.id)
        )
        attempt_id: int | None = self._conn.execute(stmt).scalar_one_or_none()
        if attempt_id is not None:
            self._log("attempt", attempt_id)
        return attempt_id

    def append_audit(self, event: AuditEvent) -> int:
        audit_id: int = self._conn.execute(
            audit_events.insert()
            .values(
                occurred_at=event.occurred_at,
                actor=event.actor,
                action=event.action,
                target_type=event.target_type,
                target_id=event.target_id,
                details=event.details,
            )
            .returning(audit_events.c.id)
        ).scalar_one()
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


class SqlStore:
    """A LedgerStore on SQLAlchemy Core. Reads are plain SELECTs; writes go through SqlWriter."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def transaction(self) -> Iterator[SqlWriter]:
        with translate_db_errors(), self.engine.connect() as conn:
            conn = conn.execution_options(**{WRITE_OPTION: True})
            with conn.begin():
                writer = SqlWriter(conn)
                yield writer
                writer.flush_log_queue()

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        with translate_db_errors(), self.engine.connect() as conn, conn.begin():
            yield conn

    def ping(self) -> None:
        with self._reading() as conn:
            conn.execute(text("SELECT 1"))

    def find_delivery(self, forge: str, delivery_id: str) -> StoredDelivery | None:
        with self._reading() as conn:
            row = conn.execute(
                select(deliveries).where(
                    deliveries.c.forge == forge, deliveries.c.delivery_id == delivery_id
                )
            ).one_or_none()
        return delivery_from_row(row) if row else None

    def delivery_products(self, delivery_pk: int) -> tuple[int | None, tuple[int, ...]]:
        with self._reading() as conn:
            push_id = conn.execute(
                select(pushes.c.id).where(pushes.c.delivery_pk == delivery_pk)
            ).scalar_one_or_none()
            ids = conn.execute(
                select(attempts.c.id)
                .where(attempts.c.delivery_pk == delivery_pk)
                .order_by(attempts.c.id)
            ).scalars()
            return push_id, tuple(ids)

    def raw_body(self, forge: str, delivery_id: str) -> bytes:
        with self._reading() as conn:
            blob = conn.execute(
                select(deliveries.c.body_zlib).where(
                    deliveries.c.forge == forge, deliveries.c.delivery_id == delivery_id
                )
            ).scalar_one_or_none()
        if blob is None:
            raise NotFound("delivery", delivery_id)
        return zlib.decompress(blob)

    # -- sessions -----------------------------------------------------------------------

    def get_session(self, session_id: int) -> LabSession:
        with self._reading() as conn:
            row = conn.execute(
                select(lab_sessions).where(lab_sessions.c.id == session_id)
            ).one_or_none()
        if row is None:
            raise NotFound("session", session_id)
        return session_from_row(row)

    def list_sessions(
        self, *, lab_id: str | None = None, after: int = 0, limit: int = 100
    ) -> list[LabSession]:
        query = select(lab_sessions).where(lab_sessions.c.id > after)
        if lab_id is not None:
            query = query.where(lab_sessions.c.lab_id == lab_id)
        with self._reading() as conn:
            rows = conn.execute(query.order_by(lab_sessions.c.id).limit(limit))
            return [session_from_row(r) for r in rows]

    # -- attempts -----------------------------------------------------------------------

    def session_attempts(
        self, session_id: int, *, after: int = 0, limit: int = 100
    ) -> list[LabAttempt]:
        query = _attempt_query().where(attempts.c.session_id == session_id, attempts.c.id > after)
        return self._attempts(query.order_by(attempts.c.id).limit(limit))

    def attempts_by_commit(self, commit_sha: str) -> list[LabAttempt]:
        query = _attempt_query().where(attempts.c.commit_sha == commit_sha)
        return self._attempts(query.order_by(attempts.c.id))

    def feed(self, *, after: int = 0, limit: int = 100) -> list[LabAttempt]:
        query = _attempt_query().where(attempts.c.id > after)
        return self._attempts(query.order_by(attempts.c.id).limit(limit))

    def _attempts(self, query: Select[Any]) -> list[LabAttempt]:
        with self._reading() as conn:
            return [attempt_from_row(r) for r in conn.execute(query)]

    def get_attempt(self, attempt_id: int) -> AttemptRecord:
        with self._reading() as conn:
            row = conn.execute(_attempt_query().where(attempts.c.id == attempt_id)).one_or_none()
            if row is None:
                raise NotFound("attempt", attempt_id)
            push = _push_record(conn, row.push_id)
            delivery = conn.execute(
                select(deliveries).where(deliveries.c.id == row.delivery_pk)
            ).one()
        return AttemptRecord(attempt_from_row(row), push, delivery_from_row(delivery))

    def delivery_report(self, forge: str, delivery_id: str) -> DeliveryReport:
        stored = self.find_delivery(forge, delivery_id)
        if stored is None:
            raise NotFound("delivery", delivery_id)
        with self._reading() as conn:
            push_id = conn.execute(
                select(pushes.c.id).where(pushes.c.delivery_pk == stored.id)
            ).scalar_one_or_none()
            push = _push_record(conn, push_id) if push_id is not None else None
        found = self._attempts(
            _attempt_query().where(attempts.c.delivery_pk == stored.id).order_by(attempts.c.id)
        )
        return DeliveryReport(stored, push, tuple(found))

    def create_session(self, spec: SessionSpec, actor: str, now: datetime) -> LabSession:
        with self.transaction() as tx:
            session = tx.insert_session(spec, now)
            tx.append_audit(
                AuditEvent(
                    actor=actor,
                    action="session.created",
                    target_type="session",
                    target_id=str(session.id),
                    details={"lab_id": spec.lab_id, "repository_id": spec.repository_id},
                    occurred_at=now,
                )
            )
        return session

    def count_rows(self) -> dict[str, int]:
        """Row counts per table, for tests, health and the CLI."""
        with self._reading() as conn:
            return {
                t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                for t in metadata.sorted_tables
            }


def _attempt_query() -> Select[Any]:
    return select(
        attempts,
        pushes.c.sender_login,
        pushes.c.sender_id,
        pushes.c.pusher_name,
        pushes.c.pusher_email,
        deliveries.c.delivery_id,
    ).select_from(
        attempts.join(pushes, pushes.c.id == attempts.c.push_id).join(
            deliveries, deliveries.c.id == attempts.c.delivery_pk
        )
    )


def _push_record(conn: Connection, push_id: int) -> PushRecord:
    row = conn.execute(
        select(pushes, deliveries.c.delivery_id, deliveries.c.received_at)
        .select_from(pushes.join(deliveries, deliveries.c.id == pushes.c.delivery_pk))
        .where(pushes.c.id == push_id)
    ).one()
    shas = conn.execute(
        select(push_commits.c.commit_sha)
        .where(push_commits.c.push_id == push_id)
        .order_by(push_commits.c.position)
    ).scalars()
    return PushRecord(
        id=row.id,
        delivery_id=row.delivery_id,
        forge=row.forge,
        repository_id=row.repository_id,
        repository_full_name=row.repository_full_name,
        ref=row.ref,
        before=row.before_sha,
        after=row.after_sha,
        created=row.created,
        deleted=row.deleted,
        forced=row.forced,
        pusher=Identity(row.pusher_name, row.pusher_email),
        sender=Account(row.sender_login, row.sender_id),
        pushed_at=row.pushed_at,
        received_at=row.received_at,
        commit_shas=tuple(shas),
        commit_list_complete=row.commit_list_complete,
    )


def session_from_row(row: Row[Any]) -> LabSession:
    spec = SessionSpec(
        lab_id=row.lab_id,
        subject_id=row.subject_id,
        forge=row.forge,
        repository_id=row.repository_id,
        repository_full_name=row.repository_full_name,
        opens_at=row.opens_at,
        branch_glob=row.branch_glob,
        due_at=row.due_at,
        closes_at=row.closes_at,
    )
    return LabSession(id=row.id, spec=spec, created_at=row.created_at)


def delivery_from_row(row: Row[Any]) -> StoredDelivery:
    return StoredDelivery(
        id=row.id,
        forge=row.forge,
        delivery_id=row.delivery_id,
        hook_id=row.hook_id,
        event=row.event,
        body_sha256=bytes(row.body_sha256),
        received_at=row.received_at,
    )


def attempt_from_row(row: Row[Any]) -> LabAttempt:
    files = row.changed_files
    commit = Commit(
        sha=row.commit_sha,
        tree_sha=row.tree_sha,
        message=row.message,
        author=Identity(row.author_name, row.author_email, row.author_username),
        committer=Identity(row.committer_name, row.committer_email, row.committer_username),
        timestamp=row.claimed_timestamp,
        distinct=row.is_distinct,
        files=ChangedFiles(
            tuple(files["added"]), tuple(files["modified"]), tuple(files["removed"])
        ),
    )
    return LabAttempt(
        id=row.id,
        session_id=row.session_id,
        commit=commit,
        branch=row.branch,
        sender=Account(row.sender_login, row.sender_id),
        pusher=Identity(row.pusher_name, row.pusher_email),
        pushed_at=row.pushed_at,
        received_at=row.received_at,
        push_id=row.push_id,
        delivery_id=row.delivery_id,
    )
