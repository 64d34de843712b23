"""The restricted PostgreSQL application role: SELECT and INSERT only."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import text

from labledger.storage.engine import make_engine
from labledger.storage.merkle_log import SqlLog
from labledger.storage.sql_store import SqlStore
from labledger.storage.tables import APPEND_ONLY_TABLES, metadata
from tests.conftest import Ledger
from tests.contract.helpers import deliver, fill_every_table
from tests.support import SIGNER, commit, push_payload, session_spec

NOW = datetime(2026, 11, 25, tzinfo=UTC)


def test_the_app_role_can_record_and_read(pg_ledger: Ledger, app_role: str) -> None:
    """Everything the server does works as the restricted role."""
    engine = make_engine(app_role)
    store = SqlStore(engine)
    session = store.create_session(session_spec(), "test", NOW)
    answer = deliver(store, push_payload([commit(), commit()]))
    assert answer.outcome == "recorded"
    assert len(store.session_attempts(session.id)) == 2
    assert deliver(store, push_payload([commit()]), delivery_id="x").outcome == "recorded"
    assert (
        deliver(store, push_payload([commit()]), delivery_id="x", hook_id="other").outcome
        == "duplicate"
    )
    checkpoint = SqlLog(engine).integrate(SIGNER, NOW)  # the integrator runs inside `serve`
    assert checkpoint is not None and checkpoint.tree_size == store.count_rows()["log_entries"]
    engine.dispose()


@pytest.mark.parametrize("table", APPEND_ONLY_TABLES)
def test_the_app_role_cannot_change_or_drop_ledger_tables(
    pg_ledger: Ledger, app_role: str, table: str
) -> None:
    """As the app role, UPDATE, DELETE, TRUNCATE, ALTER and DROP fail for lack of privilege."""
    ledger = pg_ledger
    fill_every_table(ledger.store, NOW)
    SqlLog(ledger.engine).integrate(SIGNER, NOW)
    column = next(iter(metadata.tables[table].columns)).name
    engine = make_engine(app_role)
    for sql in (
        f"UPDATE {table} SET {column} = {column}",
        f"DELETE FROM {table}",
        f"TRUNCATE {table} CASCADE",
        f"ALTER TABLE {table} DISABLE TRIGGER ALL",
        f"DROP TABLE {table} CASCADE",
    ):
        with engine.connect() as conn:
            with pytest.raises(sa_exc.ProgrammingError) as caught:
                conn.execute(text(sql))
            conn.rollback()
        assert "permission denied" in str(caught.value.orig) or "must be owner" in str(
            caught.value.orig
        ), sql
    engine.dispose()
    assert ledger.store.count_rows()[table] > 0


def test_the_app_role_can_grade_extend_and_dispatch(pg_ledger: Ledger, app_role: str) -> None:
    """Results, deadline changes, the outbox and the dispatcher need no more than SELECT, INSERT."""
    from pydantic import SecretStr

    from labledger.config import Subscriber
    from labledger.core.model import NewVerification
    from labledger.core.service import check_session_spec
    from labledger.services.notify import Dispatcher, SendResult
    from labledger.storage.outbox import SqlOutbox

    engine = make_engine(app_role)
    store = SqlStore(engine, ("grader",))
    session = store.create_session(session_spec(), "test", NOW)
    (attempt_id,) = deliver(store, push_payload([commit()])).body["attempt_ids"]  # type: ignore[misc]
    store.record_verification(
        NewVerification(attempt_id, "ci", "r", "passed", None, None, {}, NOW, "t")
    )
    store.change_deadline(session.id, {"due_at": None}, "x", "t", NOW, check_session_spec)
    secret = SecretStr("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    subscriber = Subscriber(name="grader", url="http://127.0.0.1:9/h", secret=secret)
    dispatcher = Dispatcher(
        SqlOutbox(engine), (subscriber,), send=lambda *a: SendResult(True, 204, None)
    )
    assert dispatcher.run_once().delivered == 2
    engine.dispose()
