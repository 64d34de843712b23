"""The notification outbox in SQL: due events, their append-only delivery states, dead letters.

`outbox_events` is written by the ledger's own transactions (`SqlWriter._announce`); here the
dispatcher reads what is due and appends one `outbox_states` row per outcome. An event's state
is its newest state row; no row means "new". Nothing is updated or deleted, so the app role
needs only SELECT and INSERT, and the history of every delivery attempt stays readable.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, or_, select

from labledger.core.errors import NotFound
from labledger.storage.engine import WRITE_OPTION, writer_lock
from labledger.storage.sql_store import translate_db_errors
from labledger.storage.tables import outbox_events, outbox_states

# Any constant works; it names "the dispatcher" among PostgreSQL advisory locks.
DISPATCHER_LOCK = 0x4C414244  # "LABD"


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    id: int
    subscriber: str
    event_id: str
    event_type: str
    payload: dict[str, Any]
    created_at: datetime
    state: str  # new | retry | replay | delivered | dead
    attempts: int  # delivery attempts since the event was created or last replayed
    next_attempt_at: datetime | None
    last_error: str | None


class SqlOutbox:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def _conn(self, write: bool = False) -> Iterator[Connection]:
        lock = writer_lock(self.engine) if write else nullcontext()
        with lock, translate_db_errors(), self.engine.connect() as conn:
            if write:
                conn = conn.execution_options(**{WRITE_OPTION: True})
            with conn.begin():
                yield conn

    def due(self, now: datetime, limit: int = 100) -> list[OutboxEvent]:
        """Events never tried, or waiting for a retry or replay whose time has come."""
        query = _with_state().where(
            or_(
                outbox_states.c.id.is_(None),
                and_(
                    outbox_states.c.state.in_(["retry", "replay"]),
                    outbox_states.c.next_attempt_at <= now,
                ),
            )
        )
        with self._conn() as conn:
            rows = conn.execute(query.order_by(outbox_events.c.id).limit(limit))
            return [_event(r) for r in rows]

    def in_state(self, state: str, limit: int = 1000) -> list[OutboxEvent]:
        with self._conn() as conn:
            rows = conn.execute(
                _with_state()
                .where(outbox_states.c.state == state)
                .order_by(outbox_events.c.id)
                .limit(limit)
            )
            return [_event(r) for r in rows]

    def get(self, outbox_id: int) -> OutboxEvent:
        with self._conn() as conn:
            row = conn.execute(_with_state().where(outbox_events.c.id == outbox_id)).one_or_none()
        if row is None:
            raise NotFound("outbox event", outbox_id)
        return _event(row)

    def append_state(
        self,
        outbox_id: int,
        state: str,
        attempt_no: int,
        now: datetime,
        *,
        next_attempt_at: datetime | None = None,
        status_code: int | None = None,
        error: str | None = None,
    ) -> None:
        with self._conn(write=True) as conn:
            conn.execute(
                outbox_states.insert().values(
                    outbox_id=outbox_id,
                    state=state,
                    attempt_no=attempt_no,
                    next_attempt_at=next_attempt_at,
                    status_code=status_code,
                    error=error[:2000] if error else None,
                    recorded_at=now,
                )
            )

    def history(self, outbox_id: int) -> list[dict[str, Any]]:
        with self._conn() as conn:
            rows = conn.execute(
                select(outbox_states)
                .where(outbox_states.c.outbox_id == outbox_id)
                .order_by(outbox_states.c.id)
            )
            return [dict(r._mapping) for r in rows]

    @contextmanager
    def exclusive(self) -> Iterator[bool]:
        """One dispatcher at a time per database; the others skip the round.

        Without it two `serve` processes would both send each due event; the receiver would
        still see one webhook-id, but twice. A lock held while sending keeps duplicates to the
        crash-and-retry case: a session-level advisory lock on PostgreSQL; on SQLite an
        advisory lock on a file beside the database, which the system releases when its
        process ends however it ends.
        """
        if self.engine.dialect.name != "postgresql":
            with _file_lock(self.engine.url.database) as got:
                yield got
            return
        with translate_db_errors(), self.engine.connect() as conn:
            got = bool(conn.execute(select(func.pg_try_advisory_lock(DISPATCHER_LOCK))).scalar())
            conn.commit()
            try:
                yield got
            finally:
                if got:
                    conn.execute(select(func.pg_advisory_unlock(DISPATCHER_LOCK)))
                    conn.commit()


@contextmanager
def _file_lock(database: str | None) -> Iterator[bool]:
    if not database or database == ":memory:":
        yield True  # a private database: no other process can dispatch from it
        return
    with open(f"{database}.dispatch-lock", "ab") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _with_state() -> Any:
    newest = (
        select(outbox_states.c.outbox_id, func.max(outbox_states.c.id).label("state_id"))
        .group_by(outbox_states.c.outbox_id)
        .subquery()
    )
    return select(
        outbox_events,
        outbox_states.c.id.label("state_row"),
        outbox_states.c.state,
        outbox_states.c.attempt_no,
        outbox_states.c.next_attempt_at,
        outbox_states.c.error,
    ).select_from(
        outbox_events.outerjoin(newest, newest.c.outbox_id == outbox_events.c.id).outerjoin(
            outbox_states, outbox_states.c.id == newest.c.state_id
        )
    )


def _event(row: Any) -> OutboxEvent:
    return OutboxEvent(
        id=row.id,
        subscriber=row.subscriber,
        event_id=row.event_id,
        event_type=row.event_type,
        payload=row.payload,
        created_at=row.created_at,
        state=row.state or "new",
        attempts=row.attempt_no or 0,
        next_attempt_at=row.next_attempt_at,
        last_error=row.error,
    )
