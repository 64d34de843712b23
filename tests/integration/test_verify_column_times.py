"""Times read column by column give the reference's leaves and own times whatever their
value, and a time no datetime can hold (PostgreSQL keeps years BC, past 9999 and infinities)
never checks out."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from labledger.storage.leaf_columns import driver_fetch
from labledger.storage.merkle_log import SqlLog
from labledger.storage.verification import verify_database
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


ODD_TIMES = ["0044-03-15 12:00:00+00 BC", "infinity", "-infinity", "10000-01-01 00:00:00+00"]
WHERE_TIMES = {  # a time where there was one, and where there was none
    "occurred_at": "UPDATE audit_events SET occurred_at = CAST(:t AS timestamptz)",
    "closes_at": "UPDATE lab_sessions SET closes_at = CAST(:t AS timestamptz)",
}


@pytest.mark.postgres
@pytest.mark.parametrize("column", sorted(WHERE_TIMES))
@pytest.mark.parametrize("moment", ODD_TIMES)
def test_a_time_no_datetime_holds_needs_a_closer_look(
    pg_ledger: Ledger, moment: str, column: str
) -> None:
    """On PostgreSQL a time BC, past year 9999 or infinite reads as no time at all: its chunk
    does not check out, and the one-by-one check (which reads such a time as sent) takes over
    and reports the row. (SQLite stores no such time that SQLAlchemy reads back: see
    tests/contract/test_verify_odd_stored_values.py for what it stores instead.)"""
    ledger = pg_ledger
    _odd_rows(ledger)
    assert SqlLog(ledger.engine).integrate(SIGNER) is not None
    with ledger.engine.connect() as conn:
        job = ChunkJob(conn.dialect, ((), ()), (), frozenset(), timedelta(0))
        fetch = driver_fetch(conn.connection.driver_connection)
        size = conn.exec_driver_sql("SELECT count(*) FROM log_entries").scalar_one()
        assert check_chunk(fetch, job, 0, size) is not None  # untouched, it checks out
    with superuser(ledger) as conn:
        assert conn.execute(text(WHERE_TIMES[column]), {"t": moment}).rowcount
    with ledger.engine.connect() as conn:
        fetch = driver_fetch(conn.connection.driver_connection)
        assert check_chunk(fetch, job, 0, size) is None
    report = verify_database(ledger.engine, SIGNER.verifier)
    assert report.problems
