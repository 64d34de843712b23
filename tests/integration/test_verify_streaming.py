"""`verify` reads the log a batch of entries at a time: over many small batches a changed,
unlogged, back-dated or purged row is still found and named, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select, text

from labledger.core.verify import VerifyReport
from labledger.storage import verification
from labledger.storage.merkle_log import SqlLog
from labledger.storage.retention import purge
from labledger.storage.tables import attempts, log_entries, log_queue
from labledger.storage.verification import verify_database
from tests.conftest import Ledger
from tests.contract.helpers import deliver
from tests.contract.test_tamper_evidence import superuser
from tests.integration.test_retention import WINDOWS, _age, _archive
from tests.support import SIGNER, commit, push_payload, session_spec

KEY = SIGNER.verifier


@pytest.fixture(autouse=True)
def _small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verification, "BATCH", 4)


def grow(ledger: Ledger) -> None:
    """Three checkpoints over some thirty leaves."""
    ledger.store.create_session(session_spec(), "test", datetime.now(UTC))
    for _ in range(3):
        for _ in range(2):
            deliver(ledger.store, push_payload([commit(), commit(), commit()]))
        assert SqlLog(ledger.engine).integrate(SIGNER) is not None


def _verify(ledger: Ledger) -> VerifyReport:
    return verify_database(ledger.engine, KEY)


def test_an_intact_ledger_verifies_over_many_batches(ledger: Ledger) -> None:
    """Every entry and every checkpoint is checked however small the batches."""
    grow(ledger)
    report = _verify(ledger)
    assert report.ok and report.checkpoints == 3 and report.entries > 20
    assert report.tree_size == report.entries


def test_a_changed_row_in_a_later_batch_is_named(ledger: Ledger) -> None:
    """The report names the edited attempt with the logged and the recomputed leaf hash."""
    grow(ledger)
    with ledger.engine.connect() as conn:
        last = conn.execute(select(attempts.c.id).order_by(attempts.c.id.desc())).first()
        assert last is not None
        index = conn.execute(
            select(log_entries.c.leaf_index).where(
                log_entries.c.entry_type == "attempt", log_entries.c.entry_id == last.id
            )
        ).scalar_one()
    with superuser(ledger) as conn:
        conn.execute(attempts.update().where(attempts.c.id == last.id).values(message="edited"))
    report = _verify(ledger)
    first = report.problems[0]
    assert index >= 4
    assert (first.code, first.leaf_index, first.table, first.entry_id) == (
        "leaf_mismatch", index, "attempts", last.id
    )  # fmt: skip
    assert first.expected != first.actual and first.expected and first.actual


def test_unlogged_pending_and_backdated_rows_are_found(ledger: Ledger) -> None:
    """A row inserted behind labledger's back is named, a queued one counted as pending,
    and one dated before a checkpoint that does not hold it is reported as back-dated."""
    grow(ledger)
    deliver(ledger.store, push_payload([commit()]))  # queued, not yet integrated
    report = _verify(ledger)
    assert report.ok and report.pending > 0
    with superuser(ledger) as conn:
        conn.execute(text("DELETE FROM log_queue"))
    report = _verify(ledger)
    assert {p.code for p in report.problems} == {"unlogged_row"}

    with superuser(ledger) as conn:
        conn.execute(log_queue.delete())
    deliver(ledger.store, push_payload([commit()]), received_at=datetime(2020, 1, 1, tzinfo=UTC))
    SqlLog(ledger.engine).integrate(SIGNER)
    assert "backdated" in {p.code for p in _verify(ledger).problems}


def test_purged_rows_stand_for_their_logged_leaf(ledger: Ledger, tmp_path: Path) -> None:
    """Rows a vouched purge removed stand for their logged leaf, whatever batch holds them."""
    aged = _age(ledger)
    _archive(aged, tmp_path / "a1", before=datetime(2026, 7, 1, tzinfo=UTC))
    assert purge(ledger.engine, WINDOWS, aged.now, "test").event_id is not None
    SqlLog(ledger.engine).integrate(SIGNER)
    report = _verify(ledger)
    assert report.ok, report.problems[:3]


def test_a_checkpoint_signed_by_another_key_is_named(ledger: Ledger) -> None:
    """A checkpoint whose signature does not check out is named by its tree size."""
    from labledger.core.checkpoint import sign_checkpoint
    from labledger.core.note import SignerKey

    grow(ledger)
    assert _verify(ledger).ok
    other = SignerKey.generate(SIGNER.name)
    forged = sign_checkpoint(SIGNER.name, 1, b"\0" * 32, other.private_key, SIGNER.name)
    with superuser(ledger) as conn:
        conn.execute(
            text("UPDATE checkpoints SET note = :n WHERE tree_size = (SELECT min(tree_size) "
                 "FROM checkpoints)"),
            {"n": forged},
        )  # fmt: skip
    report = _verify(ledger)
    named = [p.detail for p in report.problems if p.code == "checkpoint_signature"]
    with ledger.engine.connect() as conn:
        first = conn.execute(text("SELECT min(tree_size) FROM checkpoints")).scalar_one()
    assert len(named) == 1 and named[0].startswith(f"checkpoint {first}: ")
