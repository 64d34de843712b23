"""Guarantees the database itself enforces: append-only, uniqueness, atomicity, races."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from sqlalchemy import Connection, text
from sqlalchemy import exc as sa_exc

from labledger.core.model import NewAttempt
from labledger.storage.merkle_log import SqlLog
from labledger.storage.sql_store import SqlStore, SqlWriter
from labledger.storage.tables import APPEND_ONLY_TABLES, metadata
from tests.conftest import Ledger
from tests.contract.helpers import deliver, fill_every_table, ledger_counts
from tests.support import SIGNER, commit, push_payload, session_spec

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _fill(ledger: Ledger) -> None:
    """Rows in every table, the Merkle log's included."""
    fill_every_table(ledger.store, NOW)
    assert SqlLog(ledger.engine).integrate(SIGNER, NOW) is not None


def _refused(ledger: Ledger, sql: str, *, replica: bool = False) -> str:
    with ledger.engine.connect() as conn:
        if replica:
            conn.execute(text("SET session_replication_role = replica"))
        with pytest.raises(sa_exc.DBAPIError) as caught:
            conn.execute(text(sql))
        conn.rollback()
    return str(caught.value.orig)


@pytest.mark.parametrize("table", APPEND_ONLY_TABLES)
def test_update_and_delete_are_refused_by_the_database(ledger: Ledger, table: str) -> None:
    """Raw UPDATE and DELETE on every ledger table fail inside the database, whoever sends them."""
    _fill(ledger)
    column = next(iter(metadata.tables[table].columns)).name
    assert "append-only" in _refused(ledger, f"UPDATE {table} SET {column} = {column}")
    assert "append-only" in _refused(ledger, f"DELETE FROM {table}")
    assert ledger.store.count_rows()[table] > 0


@pytest.mark.parametrize("table", APPEND_ONLY_TABLES)
def test_truncate_and_replica_mode_are_refused_on_postgresql(pg_ledger: Ledger, table: str) -> None:
    """TRUNCATE is refused, and the triggers fire even with session_replication_role = replica."""
    ledger = pg_ledger
    _fill(ledger)
    assert "append-only" in _refused(ledger, f"TRUNCATE {table} CASCADE")
    assert "append-only" in _refused(ledger, f"DELETE FROM {table}", replica=True)
    assert ledger.store.count_rows()[table] > 0


def _copy_row_sql(table: str) -> str:
    columns = ", ".join(c.name for c in metadata.tables[table].columns if c.name != "id")
    return f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {table}"


@pytest.mark.parametrize(
    ("table", "constraint"),
    [
        ("attempts", "uq_attempts_session_id_commit_sha"),
        ("deliveries", "uq_deliveries_forge_delivery_id"),
    ],
)
def test_uniqueness_is_a_database_constraint(ledger: Ledger, table: str, constraint: str) -> None:
    """A raw duplicate insert, bypassing labledger, is rejected by the unique key itself."""
    _fill(ledger)
    with ledger.engine.connect() as conn, pytest.raises(sa_exc.IntegrityError):
        conn.execute(text(_copy_row_sql(table)))
    assert constraint in {c.name for c in metadata.tables[table].constraints}


class CrashingStore(SqlStore):
    """Fails after some rows of a delivery are written, as a crash would."""

    def new_writer(self, conn: Connection) -> SqlWriter:
        writer = super().new_writer(conn)
        original = writer.insert_attempts

        def insert_then_crash(attempts: Sequence[NewAttempt]) -> list[int]:
            original(attempts)
            raise RuntimeError("simulated crash after the attempts are written")

        writer.insert_attempts = insert_then_crash  # type: ignore[method-assign]
        return writer


def test_a_failed_delivery_leaves_nothing_and_a_redelivery_completes_it(ledger: Ledger) -> None:
    """One delivery's rows commit together: a failure midway leaves none, the retry records all."""
    ledger.store.create_session(session_spec(), "test", NOW)
    empty = ledger.store.count_rows()
    payload = push_payload([commit(), commit(), commit()])
    with pytest.raises(RuntimeError):
        deliver(CrashingStore(ledger.engine), payload, delivery_id="d-crash")
    assert ledger.store.count_rows() == empty
    answer = deliver(ledger.store, payload, delivery_id="d-crash")
    assert answer.outcome == "recorded" and len(answer.body["attempt_ids"]) == 3  # type: ignore[arg-type]


def _race(count: int, action: object) -> list[object]:
    barrier = threading.Barrier(count)
    results: list[object] = [None] * count

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = action()  # type: ignore[operator]
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_concurrent_copies_of_one_delivery_record_one_set_of_rows(ledger: Ledger) -> None:
    """Twenty simultaneous copies of one event: one records, the rest are duplicates, same ids."""
    ledger.store.create_session(session_spec(), "test", NOW)
    payload = push_payload([commit(), commit()])
    answers = _race(20, lambda: deliver(ledger.store, payload, delivery_id="d-race"))
    outcomes = sorted(getattr(a, "outcome", repr(a)) for a in answers)
    assert outcomes == ["duplicate"] * 19 + ["recorded"]
    assert len({tuple(a.body["attempt_ids"]) for a in answers}) == 1  # type: ignore[union-attr]
    counts = ledger_counts(ledger.store)
    assert (counts["deliveries"], counts["pushes"], counts["attempts"]) == (1, 1, 2)


def test_concurrent_pushes_of_one_commit_record_one_attempt(ledger: Ledger) -> None:
    """The same commit pushed to ten branches at once still yields one attempt per session."""
    session = ledger.store.create_session(session_spec(), "test", NOW)
    shared = commit()
    answers = _race(
        10,
        lambda: deliver(
            ledger.store, push_payload([shared], ref=f"refs/heads/b{uuid.uuid4().hex}")
        ),
    )
    assert all(getattr(a, "outcome", None) == "recorded" for a in answers), answers
    assert len(ledger.store.session_attempts(session.id)) == 1
    assert ledger_counts(ledger.store)["pushes"] == 10
