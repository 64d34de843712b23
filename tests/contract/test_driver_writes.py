"""The ingest INSERTs run on the driver (storage/driver_writes.py) store what SQLAlchemy would."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from sqlalchemy import Connection

from labledger.core.errors import StoreUnavailable
from labledger.core.model import AuditEvent, Delivery
from labledger.storage import sql_writer
from labledger.storage.driver_writes import MAX_ROWS, DriverWriter, InsertShape
from tests.conftest import Ledger, _libpq
from tests.support import session_spec

PARIS = timezone(timedelta(hours=1))
AT = datetime(2026, 11, 25, 13, 0, 7, 123456, tzinfo=PARIS)

# Columns that hold the id of a row inserted in the same pass: PostgreSQL's sequences do not
# roll back, so they differ between the passes and are compared by what they point at.
ID_COLUMNS = {"id", "delivery_pk", "push_id", "attempt_id", "entry_id"}


def _rows(ids: dict[str, int], session_id: int) -> Iterator[tuple[InsertShape, dict[str, Any]]]:
    """One row per ingest shape, with the values that need converting: aware non-UTC times,
    unicode, NULLs, booleans, bytes and JSON. Lazily: a row names the ids of the rows before."""
    yield (
        sql_writer.DELIVERY,
        {
            "forge": "github",
            "delivery_id": "d-ü-1",
            "hook_id": None,
            "event": "push",
            "received_at": AT,
            "body_sha256": b"\x00\xff" * 16,
            "body_size": 3,
            "body_zlib": b"x\x9c\x00",
        },
    )
    yield (
        sql_writer.PUSH,
        {
            "delivery_pk": ids["deliveries"],
            "forge": "github",
            "repository_id": 2**40,
            "repository_full_name": "o/r",
            "ref": "refs/heads/ünï",
            "before_sha": "0" * 40,
            "after_sha": "a" * 40,
            "created": True,
            "deleted": False,
            "forced": True,
            "pusher_name": "Zoë",
            "pusher_email": None,
            "sender_login": "z",
            "sender_id": 7,
            "pushed_at": AT,
            "commit_count": 1,
            "commit_list_complete": True,
            "personal_salt": b"s" * 16,
        },
    )
    yield (
        sql_writer.PUSH_COMMITS,
        {"push_id": ids["pushes"], "position": 0, "commit_sha": "a" * 40, "is_distinct": False},
    )
    yield (
        sql_writer.ATTEMPTS,
        {
            "session_id": session_id,
            "commit_sha": "a" * 40,
            "tree_sha": None,
            "message": "fix 🧪\n\nSigned-off-by: Zoë",
            "author_name": "Zoë",
            "author_email": "z@example.edu",
            "author_username": None,
            "committer_name": "Z",
            "committer_email": "z@example.edu",
            "committer_username": "z",
            "claimed_timestamp": "2026-11-25T13:00:00+01:00",
            "is_distinct": True,
            "branch": "ünï",
            "changed_files": {"added": ["ä/b c.py"], "modified": [], "removed": ["\u202e"]},
            "push_id": ids["pushes"],
            "delivery_pk": ids["deliveries"],
            "pushed_at": None,
            "received_at": AT,
            "personal_salt": b"t" * 16,
        },
    )
    yield (
        sql_writer.VERIFICATION,
        {
            "attempt_id": ids["attempts"],
            "verifier": "ci",
            "run_id": "r-1",
            "status": "passed",
            "score_milli": None,
            "max_score_milli": 1000,
            "details": {"note": "ok ✓", "n": [1, 2.5, None, True]},
            "reported_at": AT,
            "actor": "ci",
        },
    )
    yield (
        sql_writer.AUDIT,
        {
            "occurred_at": AT,
            "actor": "labledger",
            "action": "delivery.recorded",
            "target_type": "delivery",
            "target_id": "d-ü-1",
            "details": {"forced": True},
        },
    )
    yield (sql_writer.LOG_QUEUE, {"entry_type": "attempt", "entry_id": ids["attempts"]})
    yield (
        sql_writer.OUTBOX,
        {
            "subscriber": "platform",
            "event_id": "evt_1",
            "event_type": "attempt.recorded",
            "payload": {"data": {"at": AT.isoformat()}},
            "created_at": AT,
        },
    )


Insert = Callable[[Connection, InsertShape, dict[str, Any]], int | None]


def _through_sqlalchemy(conn: Connection, shape: InsertShape, row: dict[str, Any]) -> int | None:
    if not shape.returning:
        conn.execute(shape.table.insert(), row)
        return None
    return int(conn.execute(shape.table.insert().returning(shape.table.c.id), row).scalar_one())


def _through_driver(conn: Connection, shape: InsertShape, row: dict[str, Any]) -> int | None:
    found = DriverWriter(conn.connection.driver_connection, conn.dialect).insert(shape, [row])
    return int(found[0][0]) if shape.returning else None


def _stored(ledger: Ledger, insert: Insert, session_id: int) -> dict[str, list[tuple[Any, ...]]]:
    """Every shape's row as the driver reads it back, id columns left out; rolled back."""
    stored: dict[str, list[tuple[Any, ...]]] = {}
    ids: dict[str, int] = {}
    with ledger.engine.connect() as conn:
        conn.begin()
        for shape, row in _rows(ids, session_id):
            name = shape.table.name
            new_id = insert(conn, shape, row)
            if new_id is not None:
                ids[name] = new_id
            columns = [c.name for c in shape.table.c if c.name not in ID_COLUMNS]
            if ledger.dialect == "postgresql":  # the stored text, not the driver's reading of it
                columns = [f"{c}::text" for c in columns]
            key, value = ("id", new_id) if new_id is not None else next(iter(row.items()))
            stored[name] = conn.exec_driver_sql(
                f"SELECT {', '.join(columns)} FROM {name} WHERE {key} = {value!r}"
            ).all()
        conn.rollback()
    return stored


def test_driver_inserts_store_the_same_values_as_sqlalchemy(ledger: Ledger) -> None:
    """Each ingest INSERT run on the driver stores the values SQLAlchemy's own execution
    stores: times converted to UTC the same way, JSON and booleans encoded the same way."""
    session_id = ledger.store.create_session(session_spec(), "test", AT).id
    through_sqlalchemy = _stored(ledger, _through_sqlalchemy, session_id)
    through_driver = _stored(ledger, _through_driver, session_id)
    assert through_driver == through_sqlalchemy
    assert all(len(rows) == 1 for rows in through_driver.values())


def test_more_rows_than_one_statement_holds_are_all_inserted(ledger: Ledger) -> None:
    """A list longer than MAX_ROWS goes in several statements, and every id comes back."""
    count = MAX_ROWS * 2 + 3
    with ledger.engine.connect() as conn, conn.begin():
        writer = DriverWriter(conn.connection.driver_connection, conn.dialect)
        rows = [{"entry_type": "attempt", "entry_id": n} for n in range(count)]
        writer.insert(sql_writer.LOG_QUEUE, rows)
        stored = conn.exec_driver_sql("SELECT entry_id FROM log_queue ORDER BY id").scalars()
        assert list(stored) == list(range(count))


def test_a_conflicting_row_is_skipped_and_returns_nothing(ledger: Ledger) -> None:
    """ON CONFLICT DO NOTHING: the second insert of a delivery key returns no id."""
    row = next(_rows({}, 0))[1]
    with ledger.engine.connect() as conn, conn.begin():
        writer = DriverWriter(conn.connection.driver_connection, conn.dialect)
        first = writer.insert_one(sql_writer.DELIVERY, row)
        again = writer.insert_one(sql_writer.DELIVERY, {**row, "body_size": 4})
    assert first is not None and again is None


@pytest.mark.parametrize("rows", [1, 2, MAX_ROWS])
def test_compiled_statement_has_a_parameter_for_every_column_of_every_row(
    ledger: Ledger, rows: int
) -> None:
    """A compiled INSERT binds each (row, column) once, so no value is dropped or repeated."""
    sql = sql_writer.ATTEMPTS.sql(ledger.engine.dialect, rows)
    width = len(sql_writer.ATTEMPTS.columns)
    if ledger.dialect == "postgresql":
        numbers = [int(n) for n in re.findall(r"\$(\d+)::", sql)]
        assert numbers == list(range(1, rows * width + 1))
    else:
        assert sql.count("?") == rows * width


def test_a_connection_lost_between_driver_inserts_is_a_503_that_stores_nothing(
    pg_ledger: Ledger,
) -> None:
    """The driver's own error for a lost connection becomes StoreUnavailable, the
    transaction leaves no row, and the next transaction gets a working connection."""
    delivery = Delivery("github", "lost-1", None, "push", b"{}", b"\0" * 32, AT)
    with pytest.raises(StoreUnavailable), pg_ledger.store.transaction() as tx:
        assert tx.insert_delivery(delivery) is not None
        pid = tx._conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        with psycopg.connect(_libpq(pg_ledger.url), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        tx.append_audit(AuditEvent("test", "lost", "delivery", "lost-1", {}, AT))
    assert pg_ledger.store.find_delivery("github", "lost-1") is None
    with pg_ledger.store.transaction() as tx:
        assert tx.insert_delivery(delivery) is not None
    assert pg_ledger.store.find_delivery("github", "lost-1") is not None


def test_a_full_sqlite_database_is_a_503_that_stores_nothing(sqlite_ledger: Ledger) -> None:
    """SQLite's "database or disk is full", raised by the driver in an INSERT, is a retryable
    StoreUnavailable like any other operational error, and the delivery is not stored."""
    delivery = Delivery("github", "full-1", None, "push", os.urandom(400_000), b"\0" * 32, AT)
    with pytest.raises(StoreUnavailable, match="full"), sqlite_ledger.store.transaction() as tx:
        pages = tx._conn.exec_driver_sql("PRAGMA page_count").scalar_one()
        tx._conn.exec_driver_sql(f"PRAGMA max_page_count = {pages + 2}")
        tx.insert_delivery(delivery)
    assert sqlite_ledger.store.find_delivery("github", "full-1") is None


@pytest.mark.parametrize(
    "shape",
    [
        sql_writer.DELIVERY,
        sql_writer.PUSH,
        sql_writer.PUSH_COMMITS,
        sql_writer.ATTEMPTS,
        sql_writer.VERIFICATION,
        sql_writer.AUDIT,
        sql_writer.LOG_QUEUE,
        sql_writer.OUTBOX,
    ],
    ids=lambda shape: shape.table.name,
)
def test_every_ingest_insert_writes_every_column_but_the_id(shape: InsertShape) -> None:
    """A column added to a table and not to its INSERT would be left NULL without a word."""
    assert set(shape.columns) == {c.name for c in shape.table.c if c.name != "id"}
