"""Invariant 7: changes made behind labledger's back are detected, on SQLite and PostgreSQL."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Connection, text

from labledger.core.merkle import verify_consistency
from labledger.core.receipt import verify_receipt
from labledger.core.verify import VerifyReport
from labledger.services.export import export_log, verify_export
from labledger.storage.merkle_log import SqlLog
from labledger.storage.tables import attempts, metadata
from labledger.storage.verification import verify_database
from tests.conftest import Ledger
from tests.contract.helpers import deliver
from tests.support import SIGNER, commit, push_payload, session_spec

KEY = SIGNER.verifier


def _grow(ledger: Ledger, pushes: int = 3, when: datetime | None = None) -> None:
    """Record some pushes and integrate them under a signed checkpoint."""
    for _ in range(pushes):
        deliver(ledger.store, push_payload([commit(), commit()]), received_at=when)
    assert SqlLog(ledger.engine).integrate(SIGNER, when or datetime.now(UTC)) is not None


@pytest.fixture
def grown(ledger: Ledger) -> Ledger:
    ledger.store.create_session(session_spec(), "test", datetime.now(UTC))
    _grow(ledger)
    _grow(ledger)
    return ledger


@contextmanager
def superuser(ledger: Ledger) -> Iterator[Connection]:
    """A connection that bypasses the append-only triggers, as a database owner could."""
    with ledger.engine.begin() as conn:
        if ledger.dialect == "sqlite":
            for (name,) in conn.execute(
                text("SELECT name FROM sqlite_master WHERE type='trigger'")
            ).all():
                conn.execute(text(f"DROP TRIGGER {name}"))
        else:
            for table in metadata.tables:
                conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER ALL"))
        yield conn


def _verify(ledger: Ledger, witnesses: list[tuple[str, str]] = ()) -> VerifyReport:  # type: ignore[assignment]
    return verify_database(ledger.engine, KEY, witnesses)


def _codes(report: VerifyReport) -> list[str]:
    return [p.code for p in report.problems]


def test_an_untouched_ledger_verifies(grown: Ledger) -> None:
    """Every leaf recomputes, every checkpoint's root rebuilds and its signature holds."""
    report = _verify(grown)
    assert report.ok, report.problems
    assert report.checkpoints == 2 and report.entries == grown.store.count_rows()["log_entries"]


def test_a_changed_field_names_the_entry(grown: Ledger) -> None:
    """Editing one attempt's message is reported at that attempt, with both hashes."""
    with superuser(grown) as conn:
        conn.execute(text("UPDATE attempts SET message = 'forged' WHERE id = 2"))
    report = _verify(grown)
    first = report.problems[0]
    assert (first.code, first.table, first.entry_id) == ("leaf_mismatch", "attempts", 2)
    assert first.expected != first.actual and first.leaf_index is not None


def test_a_changed_time_is_detected(grown: Ledger) -> None:
    """Moving an attempt's trusted push time earlier (to dodge a deadline) breaks its leaf."""
    with superuser(grown) as conn:
        conn.execute(text("UPDATE attempts SET pushed_at = received_at WHERE id = 3"))
        conn.execute(text("UPDATE pushes SET pushed_at = NULL"))
    assert {"leaf_mismatch"} <= set(_codes(_verify(grown)))


def test_a_deleted_attempt_is_detected(grown: Ledger) -> None:
    """Deleting an attempt leaves its leaf without a row."""
    with superuser(grown) as conn:
        conn.execute(text("DELETE FROM attempts WHERE id = 4"))
    first = _verify(grown).problems[0]
    assert (first.code, first.table, first.entry_id) == ("missing_row", "attempts", 4)


def test_an_inserted_backdated_attempt_is_detected(grown: Ledger) -> None:
    """A row slipped in behind labledger is unlogged; queued to get logged, it is back-dated."""
    columns = [
        c.name for c in metadata.tables["attempts"].columns if c.name not in ("id", "commit_sha")
    ]
    names = ", ".join(columns)
    insert = (
        f"INSERT INTO attempts (commit_sha, {names}) SELECT '{'f' * 40}', {names} "
        "FROM attempts WHERE id = 1"
    )
    with superuser(grown) as conn:
        conn.execute(text(insert))
    report = _verify(grown)
    assert _codes(report) == ["unlogged_row"] and report.problems[0].table == "attempts"

    with superuser(grown) as conn:
        new_id = conn.execute(text("SELECT max(id) FROM attempts")).scalar_one()
        conn.execute(
            attempts.update()
            .where(attempts.c.id == new_id)
            .values(received_at=datetime(2020, 1, 1, tzinfo=UTC))
        )
        conn.execute(
            text(f"INSERT INTO log_queue (entry_type, entry_id) VALUES ('attempt', {new_id})")
        )
    SqlLog(grown.engine).integrate(SIGNER, datetime.now(UTC) + timedelta(hours=1))
    report = _verify(grown)
    assert "backdated" in _codes(report)
    assert next(p for p in report.problems if p.code == "backdated").entry_id == new_id


def test_swapped_entries_break_the_signed_root(grown: Ledger) -> None:
    """Reordering two log entries (hashes moved along) no longer rebuilds the signed root."""
    with superuser(grown) as conn:
        conn.execute(text("UPDATE log_entries SET leaf_index = -1 WHERE leaf_index = 3"))
        conn.execute(text("UPDATE log_entries SET leaf_index = 3 WHERE leaf_index = 4"))
        conn.execute(text("UPDATE log_entries SET leaf_index = 4 WHERE leaf_index = -1"))
    report = _verify(grown)
    assert "checkpoint_root" in _codes(report) and "leaf_mismatch" not in _codes(report)


def test_truncated_newest_entries_are_detected(grown: Ledger) -> None:
    """Removing the newest entries with their log rows leaves a checkpoint the log cannot reach."""
    with superuser(grown) as conn:
        size = conn.execute(text("SELECT count(*) FROM log_entries")).scalar_one()
        conn.execute(text(f"DELETE FROM log_entries WHERE leaf_index >= {size - 5}"))
        conn.execute(text("DELETE FROM audit_events WHERE id > 3"))
    assert "rewound" in _codes(_verify(grown))


def test_restoring_an_older_backup_is_caught_by_a_witness(grown: Ledger, tmp_path: Path) -> None:
    """A database rolled back to a backup agrees with itself; a saved checkpoint exposes it."""
    backup = _backup(grown, tmp_path)
    _grow(grown)
    witness = SqlLog(grown.engine).latest_checkpoint()
    assert witness is not None
    _restore(grown, backup)
    assert _verify(grown).ok  # the old copy agrees with itself ...
    report = _verify(grown, [("witness.note", witness.note)])
    assert _codes(report) == ["rewound"]  # ... but not with what was witnessed


def test_a_forged_checkpoint_is_rejected(grown: Ledger) -> None:
    """A checkpoint not signed by the log's key is reported, naming it."""
    from labledger.core.note import SignerKey

    other = SignerKey.generate(SIGNER.name)
    with superuser(grown) as conn:
        from labledger.core.checkpoint import sign_checkpoint

        forged = sign_checkpoint(SIGNER.name, 1, b"\0" * 32, other.private_key, SIGNER.name)
        conn.execute(
            text(
                "UPDATE checkpoints SET note = :n "
                "WHERE tree_size = (SELECT min(tree_size) FROM checkpoints)"
            ),
            {"n": forged},
        )
    assert "checkpoint_signature" in _codes(_verify(grown))


def test_receipts_and_consistency_proofs_verify(grown: Ledger) -> None:
    """A receipt for an attempt checks against the key alone; checkpoints are consistent."""
    log = SqlLog(grown.engine)
    receipt = log.receipt("attempt", 5)
    checkpoint = verify_receipt(receipt, KEY)
    assert checkpoint.size == receipt.tree_size
    first, second = log.checkpoints()
    proof = log.consistency_proof(first.tree_size, second.tree_size)
    verify_consistency(first.tree_size, second.tree_size, first.root_hash, second.root_hash, proof)


def test_one_large_round_stores_every_entry_and_node(ledger: Ledger) -> None:
    """A round larger than one statement takes (SQLite writes at most 256 rows per INSERT and
    500 ids per DELETE) still logs every entry, leaves the queue empty, stores every
    completed subtree, and every attempt's receipt verifies."""
    ledger.store.create_session(session_spec(), "test", datetime.now(UTC))
    for _ in range(50):  # 50 pushes of 20 commits: over a thousand entries, not a round number
        deliver(ledger.store, push_payload([commit() for _ in range(20)]))
    log = SqlLog(ledger.engine)
    checkpoint = log.integrate(SIGNER)
    assert checkpoint is not None and checkpoint.tree_size > 1000
    size = checkpoint.tree_size
    with ledger.engine.connect() as conn:
        counts = [
            conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
            for table in ("log_entries", "log_queue", "merkle_nodes")
        ]
    # Growing from an empty tree to `size` leaves completes size - popcount(size) subtrees.
    assert counts == [size, 0, size - bin(size).count("1")]
    for attempt in range(1, 501):
        assert verify_receipt(log.receipt("attempt", attempt), KEY).size == size
    assert _verify(ledger).ok


def test_an_export_verifies_offline_and_detects_edits(grown: Ledger, tmp_path: Path) -> None:
    """An export verifies with only the key; an edited entry in it is caught."""
    out = tmp_path / "export"
    manifest = export_log(grown.engine, out, KEY)
    assert verify_export(out, KEY).ok
    assert manifest["tree_size"] == grown.store.count_rows()["log_entries"]
    lines = (out / "entries.jsonl").read_text().splitlines()
    import base64
    import json

    at = next(i for i, x in enumerate(lines) if json.loads(x)["table"] == "attempts")
    line = json.loads(lines[at])
    edited = base64.b64decode(line["leaf"]).replace(b"work on lab", b"work on LAB")
    line["leaf"] = base64.b64encode(edited).decode()
    lines[at] = json.dumps(line)
    (out / "entries.jsonl").write_text("\n".join(lines) + "\n")
    assert {"manifest", "checkpoint_root"} <= set(_codes(verify_export(out, KEY)))


def _backup(ledger: Ledger, tmp_path: Path) -> object:
    if ledger.dialect == "sqlite":
        path = Path(ledger.engine.url.database or "")
        ledger.engine.dispose()
        copy = tmp_path / "backup.db"
        shutil.copy(path, copy)
        return copy
    with ledger.engine.connect() as conn:
        tables = list(metadata.tables)
        return {
            t: [dict(r._mapping) for r in conn.execute(text(f"SELECT * FROM {t}"))] for t in tables
        }


def _restore(ledger: Ledger, backup: object) -> None:
    if ledger.dialect == "sqlite":
        ledger.engine.dispose()
        shutil.copy(backup, Path(ledger.engine.url.database or ""))  # type: ignore[arg-type]
        return
    rows: dict[str, list[dict[str, object]]] = backup  # type: ignore[assignment]
    with superuser(ledger) as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(text(f"DELETE FROM {table.name}"))
        for table in metadata.sorted_tables:
            if rows[table.name]:
                conn.execute(table.insert(), rows[table.name])


def test_checkpoint_times_never_go_back(grown: Ledger) -> None:
    """An integrator whose clock lags (it waited for the lock) signs no earlier than the last."""
    log = SqlLog(grown.engine)
    latest = log.latest_checkpoint()
    assert latest is not None
    deliver(grown.store, push_payload([commit()]))
    lagging = log.integrate(SIGNER, latest.created_at - timedelta(hours=1))
    assert lagging is not None and lagging.created_at == latest.created_at
    assert _verify(grown).ok


def test_an_integrator_that_read_before_another_signed_gives_way(grown: Ledger) -> None:
    """Integration reads and hashes without the lock, then appends under it. If another
    integrator signed a checkpoint in between, the first one's batch is stale: it must log
    nothing rather than log entries twice or out of place."""
    from labledger.storage import merkle_log

    log = SqlLog(grown.engine)
    deliver(grown.store, push_payload([commit(), commit()]))
    with grown.engine.connect() as conn, conn.begin():
        stale = merkle_log._read_batch(conn, 100)
    assert stale is not None and stale.entries
    deliver(grown.store, push_payload([commit()]))
    winner = log.integrate(SIGNER)  # logs the stale batch's entries and the newer ones
    assert winner is not None and winner.tree_size == stale.base_size + len(stale.entries) + 4
    with grown.engine.begin() as conn:
        assert merkle_log._append_batch(conn, SIGNER, None, stale) is None
    latest = log.latest_checkpoint()
    assert latest is not None and latest.tree_size == winner.tree_size
    report = _verify(grown)
    assert report.ok and report.pending == 0 and report.entries == winner.tree_size


def test_on_sqlite_the_integrator_queues_behind_this_process_s_writers(
    sqlite_ledger: Ledger,
) -> None:
    """The integrator appends under the same in-process writer lock as ingest, so a writer
    never waits for it in SQLite's busy handler (nor it for a writer)."""
    import threading

    from labledger.storage.engine import writer_lock

    ledger = sqlite_ledger
    ledger.store.create_session(session_spec(), "test", datetime.now(UTC))
    deliver(ledger.store, push_payload([commit()]))
    done: list[object] = []
    integrator = threading.Thread(
        target=lambda: done.append(SqlLog(ledger.engine).integrate(SIGNER))
    )
    with writer_lock(ledger.engine):
        integrator.start()
        integrator.join(timeout=1.0)
        assert integrator.is_alive() and not done  # waiting for the lock this thread holds
    integrator.join(timeout=30)
    assert done and done[0] is not None


def test_on_sqlite_a_background_round_gives_way_to_another_process_s_write_lock(
    sqlite_ledger: Ledger,
) -> None:
    """While another connection holds SQLite's write lock, a background integration round
    is refused at once (StoreUnavailable) instead of waiting out the busy timeout with this
    process's webhooks queued behind it; its connection keeps the full busy timeout for the
    writers that use it next, and the next round integrates."""
    import sqlite3
    import threading

    from labledger.core.errors import StoreUnavailable
    from labledger.storage.engine import SQLITE_BUSY_MS, SQLITE_BUSY_TIMEOUT_S

    ledger = sqlite_ledger
    ledger.store.create_session(session_spec(), "test", datetime.now(UTC))
    deliver(ledger.store, push_payload([commit()]))
    log = SqlLog(ledger.engine)
    other = sqlite3.connect(
        ledger.engine.url.database or "", isolation_level=None, check_same_thread=False
    )
    other.execute("BEGIN IMMEDIATE")
    # Released within the busy timeout: a round that waited it out would succeed. Late in
    # it, so that a round slowed by a loaded machine still meets the lock held.
    release = threading.Timer(SQLITE_BUSY_TIMEOUT_S * 0.8, other.execute, ("ROLLBACK",))
    release.start()
    try:
        with pytest.raises(StoreUnavailable, match="locked"):
            log.integrate(SIGNER, background=True)
        with ledger.engine.connect() as conn:  # the pool's one connection, used by the round
            timeout = conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one()
    finally:
        release.join()
        other.close()
    assert timeout == SQLITE_BUSY_MS
    assert log.integrate(SIGNER, background=True) is not None
