"""A change behind labledger's back may store what labledger never writes: a time that is
not a time, text that is not UTF-8, a number where text belongs, JSON that does not parse
or holds a float. `verify` reports such a row as changed (`leaf_mismatch`, and the signed
roots above it no longer rebuild) and goes on with the rest; it never fails on one."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tests.conftest import Ledger
from tests.contract.test_tamper_evidence import _codes, _verify, grown, superuser

__all__ = ["grown"]  # the fixture

# (only on this dialect, or None for both; the change; the table of the row it changes)
CHANGES = [
    (None, "UPDATE attempts SET message = 42 WHERE id = 2", "attempts"),
    (None, "UPDATE attempts SET changed_files = '[1.5]' WHERE id = 2", "attempts"),
    (None, "UPDATE attempts SET changed_files = '{\"a\": 1e400}' WHERE id = 2", "attempts"),
    (None, "UPDATE attempts SET commit_sha = '' WHERE id = 2", "attempts"),
    (None, "UPDATE pushes SET sender_id = -sender_id WHERE id = 1", "pushes"),
    ("sqlite", "UPDATE attempts SET changed_files = '{\"added\": [' WHERE id = 2", "attempts"),
    ("sqlite", "UPDATE attempts SET changed_files = '[NaN]' WHERE id = 2", "attempts"),
    ("sqlite", "UPDATE attempts SET changed_files = X'7b7d' WHERE id = 2", "attempts"),
    ("sqlite", "UPDATE attempts SET received_at = 'not a time' WHERE id = 2", "attempts"),
    ("sqlite", "UPDATE attempts SET received_at = 20261125 WHERE id = 2", "attempts"),
    ("sqlite", "UPDATE attempts SET received_at = '2026-11-25' WHERE id = 2", "attempts"),
    ("sqlite", "UPDATE attempts SET message = X'ff00fe' WHERE id = 2", "attempts"),
    ("sqlite", "UPDATE attempts SET message = CAST(X'c328' AS TEXT) WHERE id = 2", "attempts"),
    ("sqlite", "UPDATE attempts SET personal_salt = 'salt' WHERE id = 2", "attempts"),
    ("sqlite", "UPDATE pushes SET commit_count = 'five' WHERE id = 1", "pushes"),
    ("sqlite", "UPDATE pushes SET sender_id = 1.5 WHERE id = 1", "pushes"),
    ("sqlite", "UPDATE pushes SET forced = 'no' WHERE id = 1", "pushes"),
    ("sqlite", "UPDATE deliveries SET body_sha256 = 'text' WHERE id = 1", "deliveries"),
    ("postgresql", "UPDATE attempts SET received_at = 'infinity' WHERE id = 2", "attempts"),
    ("postgresql", "UPDATE attempts SET message = E'\\x01 \\u2028' WHERE id = 2", "attempts"),
]


@pytest.mark.parametrize(("only", "change", "table"), CHANGES, ids=[c for _, c, _ in CHANGES])
def test_an_odd_stored_value_is_reported_not_fatal(
    grown: Ledger, only: str | None, change: str, table: str
) -> None:
    if only not in (None, grown.dialect):
        pytest.skip(f"{only} only")
    assert _verify(grown).ok
    with superuser(grown) as conn:
        assert conn.execute(text(change)).rowcount == 1
    report = _verify(grown)
    changed = (table, 2 if table == "attempts" else 1)
    bodies = {"body_mismatch"} if table == "deliveries" else set()
    assert set(_codes(report)) == {"leaf_mismatch", "checkpoint_root", *bodies}, report.problems
    assert [(p.table, p.entry_id) for p in report.problems if p.code == "leaf_mismatch"] == [
        changed
    ]


@pytest.mark.parametrize("body", ["'text'", "42", "X'00ff'"])
def test_a_raw_body_that_is_no_compressed_bytes_is_a_body_mismatch(
    grown: Ledger, body: str
) -> None:
    """The raw body is not in the delivery's leaf (its recorded SHA-256 is): text, a number
    or bytes that do not inflate where it was are reported as that body's mismatch."""
    if grown.dialect != "sqlite" and body != "X'00ff'":
        pytest.skip("PostgreSQL stores only bytes there")
    if grown.dialect == "postgresql":
        body = "'\\x00ff'"
    with superuser(grown) as conn:
        conn.execute(text(f"UPDATE deliveries SET body_zlib = {body} WHERE id = 1"))
    report = _verify(grown)
    assert [(p.code, p.table, p.entry_id) for p in report.problems] == [
        ("body_mismatch", "deliveries", 1)
    ]
