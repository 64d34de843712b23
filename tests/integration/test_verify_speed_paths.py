"""The fast paths of `verify`, export, receipts and the integrator read and write what the plain
SQLAlchemy paths do, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from labledger.core.errors import StoreUnavailable
from labledger.core.leaves import leaf_bytes
from labledger.core.merkle import MerkleTree, verify_consistency, verify_inclusion
from labledger.core.model import NewVerification
from labledger.core.receipt import verify_receipt
from labledger.core.service import check_session_spec
from labledger.storage.leaf_rows import ENTRY_TABLES, all_entry_rows, entry_rows
from labledger.storage.merkle_log import SqlLog
from labledger.storage.tables import (
    attempts,
    audit_events,
    log_entries,
    log_queue,
    push_commits,
    tombstones,
)
from labledger.storage.verification import verify_database
from tests.conftest import Ledger
from tests.contract.helpers import deliver
from tests.leaf_reference import reference_leaf_bytes
from tests.support import SIGNER, commit, push_payload, session_spec

ODD_TEXT = 'é ✓ 𝄞 "quoted" back\\slash\nnew line \x01 \u2028'
NESTED = {
    "z": [1, -(2**62), None, True, {"ü": ["", ODD_TEXT]}],
    "a": {"deep": {"deeper": [[], {}]}, "big": 2**80},
}


def _odd_rows(ledger: Ledger) -> None:
    """Rows with odd unicode, None, big ints, nested JSON, times with and without microseconds."""
    now = datetime(2026, 11, 25, 9, 30, 0, 123456, tzinfo=UTC)
    session = ledger.store.create_session(session_spec(), "test", now)
    answer = deliver(ledger.store, push_payload([commit(), commit()]), received_at=now)
    attempt_id = answer.body["attempt_ids"][0]  # type: ignore[index]
    ledger.store.record_verification(
        NewVerification(attempt_id, "ci", ODD_TEXT, "passed", 2**40, None, NESTED, now, "test")
    )
    ledger.store.change_deadline(
        session.id, {"due_at": None}, ODD_TEXT, "test", now, check_session_spec
    )
    ledger.store.create_session(
        session_spec(lab_id=ODD_TEXT, repository_full_name=None, due_at=None), "test", now
    )
    odd = commit(message=ODD_TEXT, author={"name": ODD_TEXT, "email": None, "username": None})
    deliver(ledger.store, push_payload([odd, commit()]), received_at=now.replace(microsecond=0))
    with ledger.engine.begin() as conn:
        for event in [
            {
                "occurred_at": now.replace(microsecond=0),
                "actor": ODD_TEXT,
                "action": "test.odd",
                "target_type": "test",
                "target_id": "1",
                "details": NESTED,
            },
            {
                "occurred_at": now,
                "actor": "",
                "action": "test.empty",
                "target_type": "test",
                "target_id": "",
                "details": [],
            },
        ]:
            new_id = conn.execute(audit_events.insert().values(event)).inserted_primary_key[0]
            conn.execute(log_queue.insert().values(entry_type="audit", entry_id=new_id))


def _plain_rows(ledger: Ledger, kind: str) -> dict[int, dict[str, Any]]:
    """The rows as a SQLAlchemy select of the same columns reads them."""
    table = ENTRY_TABLES[kind]
    columns = [c for c in table.columns if c.name != "body_zlib"]
    with ledger.engine.connect() as conn:
        found = {r.id: dict(r._mapping) for r in conn.execute(select(*columns))}
        if kind == "push":
            for row in found.values():
                row["commits"] = []
            carried = select(push_commits).order_by(push_commits.c.push_id, push_commits.c.position)
            for c in conn.execute(carried):
                found[c.push_id]["commits"].append([c.commit_sha, c.is_distinct])
    return found


@pytest.fixture
def odd(ledger: Ledger) -> Ledger:
    _odd_rows(ledger)
    assert SqlLog(ledger.engine).integrate(SIGNER) is not None
    return ledger


def test_loaded_rows_equal_a_plain_select(odd: Ledger) -> None:
    """`entry_rows` and `all_entry_rows` hand back the values and types SQLAlchemy would."""
    with odd.engine.connect() as conn:
        for kind in ENTRY_TABLES:
            expected = _plain_rows(odd, kind)
            assert expected or kind == "session_change"
            streamed = list(all_entry_rows(conn, kind))
            assert [r["id"] for r in streamed] == sorted(expected)
            by_id = entry_rows(conn, kind, [*sorted(expected), 10**9])
            for row in streamed:
                plain = expected[row["id"]]
                assert row == plain == by_id[row["id"]]
                assert [type(v) for v in row.values()] == [type(v) for v in plain.values()]


def test_fast_leaves_equal_reference_leaves_on_stored_rows(odd: Ledger) -> None:
    """Every stored row, odd values included, encodes to the reference encoder's bytes."""
    with odd.engine.connect() as conn:
        for kind in ENTRY_TABLES:
            for row in all_entry_rows(conn, kind):
                assert leaf_bytes(kind, row) == reference_leaf_bytes(kind, row), (kind, row["id"])


def test_verify_over_odd_rows_is_clean_and_sees_an_edit(odd: Ledger) -> None:
    """Odd rows verify; editing one of them is found as that row's leaf mismatch."""
    assert verify_database(odd.engine, SIGNER.verifier).ok
    with odd.engine.begin() as conn:
        if odd.dialect == "sqlite":
            for (name,) in conn.execute(
                text("SELECT name FROM sqlite_master WHERE type='trigger'")
            ).all():
                conn.execute(text(f"DROP TRIGGER {name}"))
        else:
            conn.execute(text("ALTER TABLE audit_events DISABLE TRIGGER ALL"))
        conn.execute(text("UPDATE audit_events SET actor = 'other' WHERE action = 'test.odd'"))
    report = verify_database(odd.engine, SIGNER.verifier)
    mismatches = [(p.table, p.entry_id) for p in report.problems if p.code == "leaf_mismatch"]
    assert len(mismatches) == 1 and mismatches[0][0] == "audit_events"


def test_receipts_and_proofs_match_a_tree_built_in_memory(ledger: Ledger) -> None:
    """Receipts, inclusion and consistency proofs read in one go equal the in-memory tree's."""
    merkle = SqlLog(ledger.engine)
    ledger.store.create_session(session_spec(), "test", datetime.now(UTC))
    sizes = []
    for _ in range(5):
        deliver(ledger.store, push_payload([commit(), commit(), commit()]))
        sizes.append(merkle.integrate(SIGNER).tree_size)  # type: ignore[union-attr]
    with ledger.engine.connect() as conn:
        rows = conn.execute(select(log_entries).order_by(log_entries.c.leaf_index)).all()
    tree = MerkleTree([bytes(r.leaf_hash) for r in rows])
    size = sizes[-1]
    for index in range(size):
        assert merkle.inclusion_proof(index, size) == tree.inclusion_proof(index, size)
    for old in range(size + 1):
        assert merkle.consistency_proof(old, size) == tree.consistency_proof(old, size)
        proof = merkle.consistency_proof(old, size)
        verify_consistency(old, size, tree.root(old), tree.root(size), proof)
    for r in rows:
        receipt = merkle.receipt(r.entry_type, r.entry_id)
        assert receipt.tree_size == size and receipt.leaf_index == r.leaf_index
        verify_inclusion(bytes(r.leaf_hash), r.leaf_index, size, list(receipt.proof), tree.root())
        verify_receipt(receipt, SIGNER.verifier)


def test_an_erased_row_is_loaded_with_the_commitment_its_erasure_kept(odd: Ledger) -> None:
    """Only the row named by a personal tombstone carries `personal_sha256`, in both loaders."""
    kept = bytes(range(32))
    with odd.engine.begin() as conn:
        erased, other = (
            conn.execute(select(attempts.c.id).order_by(attempts.c.id)).scalars().all()[:2]
        )
        conn.execute(
            tombstones.insert().values(
                entry_type="attempt", entry_id=erased, what="personal", event_id=1,
                personal_sha256=kept,
            )
        )  # fmt: skip
    with odd.engine.connect() as conn:
        by_id = entry_rows(conn, "attempt", [erased, other])
        streamed = {r["id"]: r for r in all_entry_rows(conn, "attempt")}
    for rows in (by_id, streamed):
        assert rows[erased]["personal_sha256"] == kept
        assert "personal_sha256" not in rows[other]


def test_driver_errors_surface_as_the_ledgers_own(ledger: Ledger) -> None:
    """A failing query in the driver-SQL paths is translated like any other (503, not 500)."""
    merkle = SqlLog(ledger.engine)
    ledger.store.create_session(session_spec(), "test", datetime.now(UTC))
    deliver(ledger.store, push_payload([commit(), commit(), commit()]))
    size = merkle.integrate(SIGNER).tree_size  # type: ignore[union-attr]
    with ledger.engine.begin() as conn:
        conn.execute(text("DROP TABLE merkle_nodes"))
    with pytest.raises((StoreUnavailable, DBAPIError)):
        merkle.inclusion_proof(0, size)
    deliver(ledger.store, push_payload([commit()]))
    with pytest.raises((StoreUnavailable, DBAPIError)):
        merkle.integrate(SIGNER)
