"""`verify` reads a kind's rows a batch of ids at a time (`ROW_BATCH`): with batches far
smaller than a chunk's run of rows, every leaf hash, own time and missing row comes out as
one read of all of them gives, in log order, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from labledger.storage import verify_chunks
from labledger.storage.leaf_columns import driver_fetch, kind_plan
from labledger.storage.merkle_log import SqlLog
from labledger.storage.tables import attempts
from labledger.storage.verification import verify_database
from tests.conftest import Ledger
from tests.contract.helpers import deliver
from tests.contract.test_tamper_evidence import superuser
from tests.support import SIGNER, commit, push_payload, session_spec


@pytest.fixture
def grown(ledger: Ledger) -> Ledger:
    """Sixteen attempts in four pushes, all logged."""
    ledger.store.create_session(session_spec(), "test", datetime.now(UTC))
    for _ in range(4):
        deliver(ledger.store, push_payload([commit() for _ in range(4)]))
    assert SqlLog(ledger.engine).integrate(SIGNER) is not None
    return ledger


def _attempt_ids(ledger: Ledger) -> list[int]:
    with ledger.engine.connect() as conn:
        return list(conn.execute(select(attempts.c.id).order_by(attempts.c.id)).scalars())


def _recompute(
    ledger: Ledger, wanted: list[int]
) -> tuple[list[bytes | None], list[datetime | None]]:
    plan = kind_plan(ledger.engine.dialect, "attempt")
    raw = ledger.engine.raw_connection()
    try:
        hashes, moments = verify_chunks._recompute(
            driver_fetch(raw.driver_connection), plan, wanted, plan.has_json
        )
        return list(hashes), list(moments)
    finally:
        raw.close()


def test_batches_give_what_one_read_gives(grown: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows in log order, out of order, with ids missing before, between and after batches:
    the same hash and time for each wanted id, None where no row is."""
    ids = _attempt_ids(grown)
    assert len(ids) == 16
    missing = [ids[0] - 1, ids[-1] + 1, ids[-1] + 3]
    cases = [ids, ids[::-1], [ids[5], *missing, *ids[::3], ids[1]], ids[2:3]]
    whole = {repr(case): _recompute(grown, case) for case in cases}
    monkeypatch.setattr(verify_chunks, "ROW_BATCH", 3)
    for case in cases:
        hashes, moments = _recompute(grown, case)
        assert (hashes, moments) == whole[repr(case)]
        assert len(hashes) == len(case)
        assert [h is None for h in hashes] == [i in missing for i in case]
        assert all(m is not None for m, i in zip(moments, case, strict=True) if i not in missing)
    assert len(set(whole[repr(ids)][0])) == 16  # sixteen different leaves


@pytest.mark.parametrize("processes", [1, 2])
def test_small_batches_verify_and_find_an_edit_past_the_first(
    grown: Ledger, monkeypatch: pytest.MonkeyPatch, processes: int
) -> None:
    """With two ids a batch (workers forked with the setting too), the ledger verifies as it
    does with the default, and an attempt edited in a later batch is the one row named."""
    before = verify_database(grown.engine, SIGNER.verifier, processes=processes, chunk_height=3)
    monkeypatch.setattr(verify_chunks, "ROW_BATCH", 2)
    report = verify_database(grown.engine, SIGNER.verifier, processes=processes, chunk_height=3)
    assert report.ok and (report.entries, report.root) == (before.entries, before.root)
    edited = _attempt_ids(grown)[-2]
    with superuser(grown) as conn:
        conn.execute(attempts.update().where(attempts.c.id == edited).values(message="edited"))
    report = verify_database(grown.engine, SIGNER.verifier, processes=processes, chunk_height=3)
    named = [(p.table, p.entry_id) for p in report.problems if p.code == "leaf_mismatch"]
    assert named == [("attempts", edited)]  # the checkpoints over it fail as well
