"""The sessions of a repository read on the driver (storage/driver_reads.py) are the sessions
SQLAlchemy's own execution of the same statement reads, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from labledger.storage.rows import session_from_row
from labledger.storage.sql_writer import SESSIONS_OF_REPOSITORY
from tests.conftest import Ledger
from tests.support import REPO_ID, session_spec

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
TOKYO = timezone(timedelta(hours=9))


def test_sessions_read_on_the_driver_equal_those_read_through_sqlalchemy(ledger: Ledger) -> None:
    store = ledger.store
    plain = store.create_session(session_spec(lab_id="lab-ü"), "test", NOW)
    closing = store.create_session(
        session_spec(
            subject_id="student-✓",
            branch_glob="lab/*",
            opens_at=datetime(2026, 1, 1, 9, 30, 0, 250000, tzinfo=TOKYO),
            closes_at=datetime(2027, 1, 1, tzinfo=UTC),
        ),
        "test",
        NOW,
    )
    store.change_deadline(
        closing.id,
        {"due_at": datetime(2026, 12, 24, 23, 59, 59, 999999, tzinfo=TOKYO), "closes_at": None},
        "extension",
        "test",
        NOW,
        lambda spec: None,
    )
    store.change_deadline(
        closing.id, {"due_at": NOW + timedelta(days=40)}, "again", "test", NOW, lambda spec: None
    )
    store.create_session(session_spec(repository_id=REPO_ID + 1), "test", NOW)  # not this repo

    with store.transaction() as tx:
        on_driver = tx.sessions_for_repository("github", REPO_ID)
        through_sqlalchemy = [
            session_from_row(row)
            for row in tx._conn.execute(
                SESSIONS_OF_REPOSITORY, {"forge": "github", "repository_id": REPO_ID}
            )
        ]
    assert on_driver == through_sqlalchemy
    assert [s.id for s in on_driver] == [plain.id, closing.id]
    changed = on_driver[1]
    assert changed.deadline_changes == 2 and changed.spec.closes_at is None
    assert changed.spec.due_at == NOW + timedelta(days=40)
    assert changed.spec.opens_at == datetime(2026, 1, 1, 0, 30, 0, 250000, tzinfo=UTC)
    assert all(s.spec.opens_at.tzinfo is UTC for s in on_driver)
