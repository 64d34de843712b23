"""Verification results and deadline changes: append-only, idempotent, in the Merkle log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import text

from labledger.core.errors import InvalidRequest, NotFound
from labledger.core.model import NewVerification
from labledger.core.service import check_session_spec
from labledger.services.export import export_log, verify_export
from labledger.storage.merkle_log import SqlLog
from labledger.storage.verification import verify_database
from tests.conftest import Ledger
from tests.contract.helpers import deliver
from tests.support import SIGNER, commit, push_payload, session_spec

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
DUE = datetime.fromtimestamp(1_764_000_000, UTC)


def _report(attempt_id: int, run_id: str = "run-1", status: str = "passed") -> NewVerification:
    return NewVerification(attempt_id, "ci", run_id, status, 7500, 10000, {"tests": 12}, NOW, "t")


def _one_attempt(ledger: Ledger, pushed_at: int = 1_764_000_000) -> tuple[int, int]:
    session = ledger.store.create_session(session_spec(), "test", NOW)
    answer = deliver(ledger.store, push_payload([commit()], pushed_at=pushed_at))
    return session.id, answer.body["attempt_ids"][0]  # type: ignore[index,return-value]


def test_a_result_is_recorded_once_per_run(ledger: Ledger) -> None:
    """The same (attempt, verifier, run_id) twice yields one row; the repeat gets the first."""
    _, attempt_id = _one_attempt(ledger)
    first, created = ledger.store.record_verification(_report(attempt_id))
    again, created_again = ledger.store.record_verification(_report(attempt_id))
    assert created and not created_again and again.id == first.id
    assert again.report.same_report(first.report) and again.report.score_milli == 7500
    other, _ = ledger.store.record_verification(_report(attempt_id, "run-1", "failed"))
    assert other.id == first.id and not other.report.same_report(_report(attempt_id, "x", "failed"))
    assert ledger.store.count_rows()["verification_results"] == 1


def test_results_need_an_existing_attempt(ledger: Ledger) -> None:
    """A result for an unknown attempt is refused before anything is written."""
    with pytest.raises(NotFound):
        ledger.store.record_verification(_report(999))
    assert ledger.store.count_rows()["verification_results"] == 0


def test_results_are_append_only(ledger: Ledger) -> None:
    """The database refuses to edit or delete a result."""
    _, attempt_id = _one_attempt(ledger)
    ledger.store.record_verification(_report(attempt_id))
    for sql in (
        "UPDATE verification_results SET status = 'failed'",
        "DELETE FROM verification_results",
    ):
        with ledger.engine.connect() as conn, pytest.raises(sa_exc.DBAPIError, match="append-only"):
            conn.execute(text(sql))


def test_an_extension_changes_late_without_rewriting_attempts(ledger: Ledger) -> None:
    """Moving due_at appends a change: `late` follows it, the attempt rows stay byte for byte."""
    session_id, _ = _one_attempt(ledger, pushed_at=1_764_000_060)  # a minute late
    session = ledger.store.get_session(session_id)
    (attempt,) = ledger.store.session_attempts(session_id)
    assert session.is_late(attempt.trusted_time)
    with ledger.engine.connect() as conn:
        before = conn.execute(text("SELECT * FROM attempts")).all()
    extended = ledger.store.change_deadline(
        session_id, {"due_at": DUE + timedelta(days=1)}, "illness", "admin", NOW, check_session_spec
    )
    assert not extended.is_late(attempt.trusted_time)
    assert extended.original_due_at == DUE and extended.deadline_changes == 1
    with ledger.engine.connect() as conn:
        assert conn.execute(text("SELECT * FROM attempts")).all() == before
        lab = conn.execute(text("SELECT due_at FROM lab_sessions")).scalar_one()
    assert lab is not None  # the original row is untouched
    again = ledger.store.change_deadline(
        session_id, {"due_at": DUE - timedelta(days=1)}, "typo", "admin", NOW, check_session_spec
    )
    assert again.deadline_changes == 2 and again.is_late(attempt.trusted_time)
    assert ledger.store.count_rows()["session_changes"] == 2


def test_an_impossible_extension_is_refused(ledger: Ledger) -> None:
    """A due date after closes_at is refused and nothing is appended."""
    session = ledger.store.create_session(
        session_spec(closes_at=DUE + timedelta(days=1)), "test", NOW
    )
    with pytest.raises(InvalidRequest):
        ledger.store.change_deadline(
            session.id, {"due_at": DUE + timedelta(days=2)}, "x", "admin", NOW, check_session_spec
        )
    assert ledger.store.count_rows()["session_changes"] == 0


def test_an_extended_closing_time_admits_later_pushes(ledger: Ledger) -> None:
    """Sessions are matched with their effective closes_at when a push is recorded."""
    session = ledger.store.create_session(session_spec(closes_at=DUE), "test", NOW)
    late = push_payload([commit()], pushed_at=1_764_000_000 + 3600)
    assert deliver(ledger.store, late).body["attempt_ids"] == []
    ledger.store.change_deadline(
        session.id, {"closes_at": DUE + timedelta(days=1)}, "x", "admin", NOW, check_session_spec
    )
    late_again = push_payload([commit()], pushed_at=1_764_000_000 + 3600)
    assert len(deliver(ledger.store, late_again).body["attempt_ids"]) == 1  # type: ignore[arg-type]


def test_new_entries_are_logged_and_verify(ledger: Ledger, tmp_path: Path) -> None:
    """Results and deadline changes become leaves; `verify` recomputes them, and detects edits."""
    session_id, attempt_id = _one_attempt(ledger)
    ledger.store.record_verification(_report(attempt_id))
    ledger.store.change_deadline(session_id, {"due_at": None}, "x", "a", NOW, check_session_spec)
    SqlLog(ledger.engine).integrate(SIGNER, NOW)
    report = verify_database(ledger.engine, SIGNER.verifier)
    assert report.ok and report.pending == 0, report.problems
    with ledger.engine.connect() as conn:
        kinds = set(conn.execute(text("SELECT entry_type FROM log_entries")).scalars())
    assert {"verification", "session_change"} <= kinds
    receipt = SqlLog(ledger.engine).entry("verification", 1)
    assert receipt is not None and b"\nverification\n" in receipt[1]
    export_log(ledger.engine, tmp_path / "export", SIGNER.verifier)
    assert verify_export(tmp_path / "export", SIGNER.verifier).ok


def test_an_edited_result_is_detected(ledger: Ledger) -> None:
    """A result changed behind labledger's back (triggers off, as a superuser) fails verify."""
    _, attempt_id = _one_attempt(ledger)
    ledger.store.record_verification(_report(attempt_id, status="failed"))
    SqlLog(ledger.engine).integrate(SIGNER, NOW)
    disable = (
        "DROP TRIGGER verification_results_no_update"
        if ledger.dialect == "sqlite"
        else "ALTER TABLE verification_results DISABLE TRIGGER ALL"
    )
    with ledger.engine.begin() as conn:
        conn.execute(text(disable))
        conn.execute(text("UPDATE verification_results SET status = 'passed'"))
    report = verify_database(ledger.engine, SIGNER.verifier)
    assert [p.code for p in report.problems][:1] == ["leaf_mismatch"]
    assert report.problems[0].table == "verification_results"


def test_racing_reports_of_one_run_make_one_row(ledger: Ledger) -> None:
    """Eight concurrent reports of one run: the unique key decides, all get the same result."""
    from concurrent.futures import ThreadPoolExecutor

    _, attempt_id = _one_attempt(ledger)
    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(lambda _: ledger.store.record_verification(_report(attempt_id)), range(8))
        )
    assert len({result.id for result, _ in answers}) == 1
    assert sum(created for _, created in answers) == 1
    assert ledger.store.count_rows()["verification_results"] == 1
    with ledger.engine.connect() as conn:
        queued = conn.execute(
            text("SELECT count(*) FROM log_queue WHERE entry_type = 'verification'")
        ).scalar_one()
    assert queued == 1
