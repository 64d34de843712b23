"""A session's summary in a fixed number of statements, whatever its number of attempts.

Counts are aggregates and the two attempts a summary shows are each one ordered LIMIT 1 query,
so the database returns three rows, not the session's every attempt. The ordering columns
(trusted time, then id) are not indexed: the database still reads the session's attempts
through `ix_attempts_session_id_id`, but none of them crosses into Python.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, case, func, select

from labledger.core.grading import AttemptTally
from labledger.core.model import LabAttempt, LabSession
from labledger.storage.rows import attempt_from_row, attempt_query
from labledger.storage.tables import UtcDateTime, attempts

# invariant 5: lateness is judged by pushed_at, falling back to received_at.
TRUSTED_TIME: ColumnElement[datetime] = func.coalesce(
    attempts.c.pushed_at, attempts.c.received_at, type_=UtcDateTime
)


def session_tally(conn: Connection, session: LabSession) -> AttemptTally:
    due = session.spec.due_at
    total, late = _counts(conn, session.id, due)
    newest = _newest(conn, session.id, None)
    counting = newest if due is None or newest is None else _newest(conn, session.id, due)
    return AttemptTally(attempts=total, late_attempts=late, counting=counting, newest=newest)


def _counts(conn: Connection, session_id: int, due: datetime | None) -> tuple[int, int]:
    late: ColumnElement[Any] = (
        func.sum(case((due < TRUSTED_TIME, 1), else_=0)) if due is not None else func.sum(0)
    )
    row = conn.execute(select(func.count(), late).where(attempts.c.session_id == session_id)).one()
    return int(row[0]), int(row[1] or 0)


def _newest(conn: Connection, session_id: int, due: datetime | None) -> LabAttempt | None:
    """The newest attempt by trusted time (ties: ledger order), at or before `due` if given."""
    query = attempt_query().where(attempts.c.session_id == session_id)
    if due is not None:
        query = query.where(due >= TRUSTED_TIME)
    row = conn.execute(
        query.order_by(TRUSTED_TIME.desc(), attempts.c.id.desc()).limit(1)
    ).one_or_none()
    return None if row is None else attempt_from_row(row)
