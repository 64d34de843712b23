"""Times read column by column give the reference's leaves and own times whatever their
value, and a time no datetime can hold (PostgreSQL keeps years BC) never checks out."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text

from labledger.storage.leaf_columns import driver_fetch
from labledger.storage.merkle_log import SqlLog
from labledger.storage.verify_chunks import ChunkJob, check_chunk
from tests.conftest import Ledger
from tests.contract.test_tamper_evidence import superuser
from tests.integration.test_verify_speed_paths import _odd_rows
from tests.integration.test_verify_workers import _column_leaves, _row_leaves
from tests.support import SIGNER


def test_times_before_year_1000_without_microseconds_or_null_read_as_the_reference(
    ledger: Ledger,
) -> None:
    """A year below 1000, a whole second and a missing time: each gives the reference's leaf
    and own time, alone in its column or among plain times."""
    _odd_rows(ledger)
    with superuser(ledger) as conn:
        conn.execute(text("UPDATE attempts SET pushed_at = NULL"))
        conn.execute(
            text("UPDATE audit_events SET occurred_at = :t WHERE action = 'test.odd'"),
            {"t": "0999-01-02 03:04:05" + ("+00" if ledger.dialect == "postgresql" else "")},
        )
        if ledger.dialect == "postgresql":
            conn.execute(text("UPDATE lab_sessions SET created_at = '2026-01-02 03:04:05+07'"))
    assert _column_leaves(ledger) == _row_leaves(ledger)


def test_a_time_before_year_1_needs_a_closer_look(ledger: Ledger) -> None:
    """On PostgreSQL a time BC reads as no time at all: its chunk does not check out, and
    the one-by-one check (which reads it as the driver does) takes over."""
    _odd_rows(ledger)
    assert SqlLog(ledger.engine).integrate(SIGNER) is not None
    if ledger.dialect != "postgresql":
        return  # SQLite stores no time before year 1 that SQLAlchemy reads back
    with superuser(ledger) as conn:
        conn.execute(text("UPDATE audit_events SET occurred_at = '0044-03-15 12:00:00+00 BC'"))
    with ledger.engine.connect() as conn:
        conn.exec_driver_sql("SET TIME ZONE 'UTC'")
        job = ChunkJob(conn.dialect, ((), ()), (), frozenset(), timedelta(0))
        fetch = driver_fetch(conn.connection.driver_connection)
        size = conn.exec_driver_sql("SELECT count(*) FROM log_entries").scalar_one()
        assert check_chunk(fetch, job, 0, size) is None
