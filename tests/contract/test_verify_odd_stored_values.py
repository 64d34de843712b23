"""A change behind labledger's back may store what labledger never writes: a time that is
not a time, text that is not UTF-8, a number where text belongs, JSON that does not parse
or holds a float. `verify` reports such a row as changed (`leaf_mismatch`, and the signed
roots above it no longer rebuild) and goes on with the rest; it never fails on one."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from labledger.core.errors import ExportRefused, UnreadableRows
from labledger.services.export import export_log
from labledger.storage.merkle_log import SqlLog
from tests.conftest import Ledger
from tests.contract.test_tamper_evidence import KEY, _codes, _grow, _verify, grown, superuser
from tests.support import session_spec

__all__ = ["grown"]  # the fixture

# (the change, the table of the row it changes: attempt 2 or push 1)
BOTH = [
    ("UPDATE attempts SET message = 42 WHERE id = 2", "attempts"),
    ("UPDATE attempts SET changed_files = '[1.5]' WHERE id = 2", "attempts"),
    ("UPDATE attempts SET changed_files = '{\"a\": 1e400}' WHERE id = 2", "attempts"),
    ("UPDATE attempts SET commit_sha = '' WHERE id = 2", "attempts"),
    ("UPDATE pushes SET sender_id = -sender_id WHERE id = 1", "pushes"),
]
SQLITE = [
    ("UPDATE attempts SET changed_files = '{\"added\": [' WHERE id = 2", "attempts"),
    ("UPDATE attempts SET changed_files = '[NaN]' WHERE id = 2", "attempts"),
    ("UPDATE attempts SET changed_files = X'7b7d' WHERE id = 2", "attempts"),
    ("UPDATE attempts SET received_at = 'not a time' WHERE id = 2", "attempts"),
    ("UPDATE attempts SET received_at = 20261125 WHERE id = 2", "attempts"),
    ("UPDATE attempts SET received_at = '2026-11-25' WHERE id = 2", "attempts"),
    ("UPDATE attempts SET message = X'ff00fe' WHERE id = 2", "attempts"),
    ("UPDATE attempts SET message = CAST(X'c328' AS TEXT) WHERE id = 2", "attempts"),
    ("UPDATE attempts SET personal_salt = 'salt' WHERE id = 2", "attempts"),
    ("UPDATE pushes SET commit_count = 'five' WHERE id = 1", "pushes"),
    ("UPDATE pushes SET sender_id = 1.5 WHERE id = 1", "pushes"),
    ("UPDATE pushes SET forced = 'no' WHERE id = 1", "pushes"),
    ("UPDATE deliveries SET body_sha256 = 'text' WHERE id = 1", "deliveries"),
]
POSTGRESQL = [
    ("UPDATE attempts SET received_at = 'infinity' WHERE id = 2", "attempts"),
    ("UPDATE attempts SET message = E'\\x01 \\u2028' WHERE id = 2", "attempts"),
]


def _grown(ledger: Ledger) -> Ledger:
    ledger.store.create_session(session_spec(), "test", datetime.now(UTC))
    _grow(ledger)
    _grow(ledger)
    return ledger


def _reported_not_fatal(ledger: Ledger, change: str, table: str) -> None:
    assert _verify(ledger).ok
    with superuser(ledger) as conn:
        assert conn.execute(text(change)).rowcount == 1
    report = _verify(ledger)
    changed = (table, 2 if table == "attempts" else 1)
    bodies = {"body_mismatch"} if table == "deliveries" else set()
    assert set(_codes(report)) == {"leaf_mismatch", "checkpoint_root", *bodies}, report.problems
    assert [(p.table, p.entry_id) for p in report.problems if p.code == "leaf_mismatch"] == [
        changed
    ]


@pytest.mark.parametrize(("change", "table"), BOTH, ids=[c for c, _ in BOTH])
def test_an_odd_stored_value_is_reported_not_fatal(grown: Ledger, change: str, table: str) -> None:
    _reported_not_fatal(grown, change, table)


@pytest.mark.parametrize(("change", "table"), SQLITE, ids=[c for c, _ in SQLITE])
def test_on_sqlite_any_stored_type_is_reported_not_fatal(
    sqlite_ledger: Ledger, change: str, table: str
) -> None:
    """SQLite stores any type in any column, and text that is not UTF-8."""
    _reported_not_fatal(_grown(sqlite_ledger), change, table)


@pytest.mark.postgres
@pytest.mark.parametrize(("change", "table"), POSTGRESQL, ids=[c for c, _ in POSTGRESQL])
def test_on_postgresql_a_time_no_datetime_holds_is_reported_not_fatal(
    pg_ledger: Ledger, change: str, table: str
) -> None:
    _reported_not_fatal(_grown(pg_ledger), change, table)


@pytest.mark.parametrize("body", ["'text'", "42", "X'00ff'"])
def test_on_sqlite_a_raw_body_that_is_no_compressed_bytes_is_a_body_mismatch(
    sqlite_ledger: Ledger, body: str
) -> None:
    """The raw body is not in the delivery's leaf (its recorded SHA-256 is): text, a number
    or bytes that do not inflate where it was are reported as that body's mismatch."""
    _body_mismatch(_grown(sqlite_ledger), body)


def test_a_raw_body_that_does_not_inflate_is_a_body_mismatch(grown: Ledger) -> None:
    _body_mismatch(grown, "X'00ff'" if grown.dialect == "sqlite" else "'\\x00ff'")


def _body_mismatch(ledger: Ledger, body: str) -> None:
    with superuser(ledger) as conn:
        conn.execute(text(f"UPDATE deliveries SET body_zlib = {body} WHERE id = 1"))
    report = _verify(ledger)
    assert [(p.code, p.table, p.entry_id) for p in report.problems] == [
        ("body_mismatch", "deliveries", 1)
    ]


@pytest.mark.parametrize(
    "change",
    [
        "UPDATE attempts SET message = CAST(X'c328' AS TEXT) WHERE id = 2",
        "UPDATE attempts SET received_at = 'not a time' WHERE id = 2",
        "UPDATE attempts SET changed_files = '[1.5]' WHERE id = 2",
    ],
)
def test_an_export_of_an_odd_stored_value_is_refused_with_a_clear_error(
    sqlite_ledger: Ledger, tmp_path: Path, change: str
) -> None:
    """`export` writes leaves from rows: one it cannot write stops it with an error naming
    the table and pointing at `verify`, not with a driver's traceback."""
    ledger = _grown(sqlite_ledger)
    export_log(ledger.engine, tmp_path / "before", KEY)  # the same ledger exports untouched
    with superuser(ledger) as conn:
        conn.execute(text(change))
    with pytest.raises(ExportRefused, match=r"attempts rows 1-[0-9]+: .* run `labledger verify`"):
        export_log(ledger.engine, tmp_path / "after", KEY)
    assert not (tmp_path / "after").exists()  # nothing half-written


@pytest.mark.parametrize(
    "change",
    [
        "UPDATE attempts SET message = CAST(X'c328' AS TEXT) WHERE id = 2",
        "UPDATE attempts SET received_at = 'not a time' WHERE id = 2",
        "UPDATE attempts SET changed_files = '[1.5]' WHERE id = 2",
    ],
)
def test_a_receipt_for_a_row_labledger_cannot_read_is_refused_with_a_clear_error(
    sqlite_ledger: Ledger, change: str
) -> None:
    """Receipts, exports, archives and erasures read rows as labledger's readers do: one they
    refuse stops them with an error naming the table and pointing at `verify`."""
    ledger = _grown(sqlite_ledger)
    assert SqlLog(ledger.engine).receipt("attempt", 2).leaf_index >= 0
    with superuser(ledger) as conn:
        conn.execute(text(change))
    with pytest.raises(UnreadableRows, match=r"attempts rows 2-2: .* run `labledger verify`"):
        SqlLog(ledger.engine).receipt("attempt", 2)
