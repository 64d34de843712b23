"""`verify` in worker processes, a few leaves a chunk: the same report as in one process, and
a changed, unlogged or back-dated row in any worker's chunk is found and named, on SQLite and
PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text

from labledger.core.leaf_batches import leaf_bytes_columns
from labledger.core.leaves import reference_leaf_bytes
from labledger.core.verify import VerifyReport
from labledger.core.verify_chunks import backdate_floors
from labledger.storage.leaf_columns import driver_fetch, kind_plan
from labledger.storage.leaf_rows import ENTRY_TABLES, TIME_COLUMN, all_entry_rows
from labledger.storage.merkle_log import SqlLog
from labledger.storage.retention import purge
from labledger.storage.tables import attempts, log_entries, log_queue
from labledger.storage.verification import verify_database
from labledger.storage.verify_chunks import ChunkJob
from labledger.storage.verify_workers import ChunkWorkers
from tests.conftest import Ledger
from tests.contract.helpers import deliver
from tests.contract.test_tamper_evidence import superuser
from tests.integration.test_retention import WINDOWS, _age, _archive
from tests.integration.test_verify_speed_paths import _odd_rows
from tests.support import SIGNER, commit, push_payload, session_spec

KEY = SIGNER.verifier
HEIGHT = 2  # four leaves a chunk


def _grow(ledger: Ledger) -> None:
    """Three checkpoints over some thirty leaves."""
    ledger.store.create_session(session_spec(), "test", datetime.now(UTC))
    for _ in range(3):
        for _ in range(2):
            deliver(ledger.store, push_payload([commit(), commit(), commit()]))
        assert SqlLog(ledger.engine).integrate(SIGNER) is not None


def _in_workers(ledger: Ledger) -> VerifyReport:
    return verify_database(ledger.engine, KEY, processes=2, chunk_height=HEIGHT)


def _alone(ledger: Ledger) -> VerifyReport:
    return verify_database(ledger.engine, KEY, processes=1)


def _same(a: VerifyReport, b: VerifyReport) -> None:
    assert (a.entries, a.checkpoints, a.tree_size, a.root, a.pending, a.problems) == (
        b.entries, b.checkpoints, b.tree_size, b.root, b.pending, b.problems
    )  # fmt: skip


def test_workers_verify_an_intact_ledger_as_one_process_does(ledger: Ledger) -> None:
    """Many small chunks over two workers rebuild the same tree and check every checkpoint."""
    _grow(ledger)
    report = _in_workers(ledger)
    assert report.ok and report.checkpoints == 3 and report.entries > 4 << HEIGHT
    _same(report, _alone(ledger))


def test_a_worker_finds_a_changed_row_in_its_chunk(ledger: Ledger) -> None:
    """The chunk holding a changed attempt does not check out in its worker, the others do,
    and the report names the entry with the logged and the recomputed leaf hash."""
    _grow(ledger)
    with ledger.engine.connect() as conn:
        last = conn.execute(select(attempts.c.id).order_by(attempts.c.id.desc())).first()
        assert last is not None
        index = conn.execute(
            select(log_entries.c.leaf_index).where(
                log_entries.c.entry_type == "attempt", log_entries.c.entry_id == last.id
            )
        ).scalar_one()
        size = conn.execute(select(log_entries.c.leaf_index)).all()
    with superuser(ledger) as conn:
        conn.execute(attempts.update().where(attempts.c.id == last.id).values(message="edited"))
    job = ChunkJob(ledger.engine.dialect, backdate_floors([], timedelta()), (), frozenset(),
                   timedelta(), HEIGHT)  # fmt: skip
    chunks = job.chunks(len(size))
    workers = ChunkWorkers(ledger.engine, 2)
    try:
        checked = list(workers.check(job, chunks, None))
    finally:
        workers.close()
    bad = [start for (start, end), chunk in zip(chunks, checked, strict=True) if chunk is None]
    assert bad == [index >> HEIGHT << HEIGHT] and index >= 1 << HEIGHT

    report = _in_workers(ledger)
    first = report.problems[0]
    assert (first.code, first.leaf_index, first.table, first.entry_id) == (
        "leaf_mismatch", index, "attempts", last.id
    )  # fmt: skip
    assert first.expected != first.actual and first.expected and first.actual
    _same(report, _alone(ledger))


def test_unlogged_pending_and_backdated_rows_are_found_with_workers(ledger: Ledger) -> None:
    """A row inserted behind labledger's back is named, a queued one counted as pending,
    and one dated before a checkpoint that does not hold it is reported as back-dated."""
    _grow(ledger)
    deliver(ledger.store, push_payload([commit()]))  # queued, not yet integrated
    report = _in_workers(ledger)
    assert report.ok and report.pending > 0
    with superuser(ledger) as conn:
        conn.execute(text("DELETE FROM log_queue"))
    report = _in_workers(ledger)
    assert {p.code for p in report.problems} == {"unlogged_row"}
    _same(report, _alone(ledger))

    with superuser(ledger) as conn:
        conn.execute(log_queue.delete())
    deliver(ledger.store, push_payload([commit()]), received_at=datetime(2020, 1, 1, tzinfo=UTC))
    SqlLog(ledger.engine).integrate(SIGNER)
    report = _in_workers(ledger)
    assert "backdated" in {p.code for p in report.problems}
    _same(report, _alone(ledger))


def test_purged_rows_verify_in_workers(ledger: Ledger, tmp_path: Path) -> None:
    """Rows a vouched purge removed stand for their logged leaf in a worker's chunk too."""
    aged = _age(ledger)
    _archive(aged, tmp_path / "a1", before=datetime(2026, 7, 1, tzinfo=UTC))
    assert purge(ledger.engine, WINDOWS, aged.now, "test").event_id is not None
    SqlLog(ledger.engine).integrate(SIGNER)
    report = _in_workers(ledger)
    assert report.ok, report.problems[:3]
    _same(report, _alone(ledger))


def _column_leaves(ledger: Ledger) -> dict[str, tuple[list[bytes], list[object]]]:
    """Every kind's leaves and own times as the column reader finds them."""
    found = {}
    with ledger.engine.connect() as conn:
        fetch = driver_fetch(conn.connection.driver_connection)
        for kind in ENTRY_TABLES:
            read = kind_plan(conn.dialect, kind).fetch(fetch, None, (0, 10**9))
            found[kind] = (
                leaf_bytes_columns(kind, read.columns, len(read.ids)),
                list(read.moments),
            )
    return found


def _row_leaves(ledger: Ledger) -> dict[str, tuple[list[bytes], list[object]]]:
    """The same from rows as SQLAlchemy reads them, through the reference encoder."""
    found = {}
    with ledger.engine.connect() as conn:
        for kind in ENTRY_TABLES:
            rows = list(all_entry_rows(conn, kind))
            times = [row[TIME_COLUMN[kind]] if kind in TIME_COLUMN else None for row in rows]
            found[kind] = ([reference_leaf_bytes(kind, row) for row in rows], times)
    return found


def test_columns_read_give_the_reference_leaves_of_odd_rows(ledger: Ledger) -> None:
    """Odd values, JSON stored in any spelling and times stored in other text forms give the
    reference encoder's leaves and the rows' own times when read column by column."""
    _odd_rows(ledger)
    assert _column_leaves(ledger) == _row_leaves(ledger)
    with superuser(ledger) as conn:
        if ledger.dialect == "sqlite":
            conn.execute(text("UPDATE audit_events SET occurred_at = '2026-01-02 03:04:05'"))
            conn.execute(text("UPDATE attempts SET received_at = '2026-01-02T03:04:05.5+01:00'"))
        conn.execute(text('UPDATE audit_events SET details = \'{ "b" : [1, "\\u00e9"], "a": {}}\''))
    assert _column_leaves(ledger) == _row_leaves(ledger)


def test_workers_check_the_checkpoints_signatures_and_name_a_forged_one(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With enough checkpoints their signatures are checked in the workers: the report is the
    one a single process gives, and a checkpoint signed by another key is still named."""
    from labledger.core.checkpoint import sign_checkpoint
    from labledger.core.note import SignerKey
    from labledger.storage import verify_workers

    shared: list[int] = []
    in_parent = ChunkWorkers.open_notes

    def counting(self: ChunkWorkers, notes: list[tuple[str, str]], key: object) -> object:
        shared.append(len(notes))
        return in_parent(self, notes, key)  # type: ignore[arg-type]

    monkeypatch.setattr(verify_workers, "NOTES_WORTH_SHARING", 2)
    monkeypatch.setattr(ChunkWorkers, "open_notes", counting)
    _grow(ledger)
    report = _in_workers(ledger)
    assert shared == [3] and report.ok and report.checkpoints == 3
    _same(report, _alone(ledger))
    other = SignerKey.generate(SIGNER.name)
    forged = sign_checkpoint(SIGNER.name, 1, b"\0" * 32, other.private_key, SIGNER.name)
    with superuser(ledger) as conn:
        conn.execute(
            text("UPDATE checkpoints SET note = :n WHERE tree_size = (SELECT min(tree_size) "
                 "FROM checkpoints)"),
            {"n": forged},
        )  # fmt: skip
    report = _in_workers(ledger)
    assert shared == [3, 3]
    named = [p.detail for p in report.problems if p.code == "checkpoint_signature"]
    with ledger.engine.connect() as conn:
        first = conn.execute(text("SELECT min(tree_size) FROM checkpoints")).scalar_one()
    assert len(named) == 1 and named[0].startswith(f"checkpoint {first}: ")
    _same(report, _alone(ledger))
