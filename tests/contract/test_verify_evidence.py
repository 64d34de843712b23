"""Issue 21 item 4: `verify` re-derives rows from their evidence, so that a row appended by
the application's own database role (it may INSERT, and queue for the log) is reported even
though it is logged and signed. On SQLite and, through the real app role, PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Connection, Engine, select, text
from sqlalchemy.engine import make_url

from labledger.core.retention_rules import Windows
from labledger.core.service import check_session_spec
from labledger.core.verify import VerifyReport
from labledger.services.archive import write_archive
from labledger.storage import migrate
from labledger.storage.engine import make_engine
from labledger.storage.merkle_log import SqlLog
from labledger.storage.retention import purge
from labledger.storage.tables import attempts, deliveries, lab_sessions, pushes, session_changes
from labledger.storage.verification import verify_database
from tests.conftest import Ledger, _libpq
from tests.contract.helpers import deliver
from tests.contract.test_tamper_evidence import superuser
from tests.support import SIGNER, commit, push_payload, session_spec

KEY = SIGNER.verifier


@pytest.fixture
def attacker(ledger: Ledger) -> Iterator[Engine]:
    """The database as the server's own role sees it: on PostgreSQL the restricted app role
    (SELECT and INSERT only), on SQLite the file itself."""
    if ledger.dialect == "sqlite":
        yield ledger.engine
        return
    role = f"labledger_app_{uuid.uuid4().hex[:8]}"
    migrate.create_app_role(ledger.engine, role, password=None)
    engine = make_engine(make_url(ledger.url).set(username=role).render_as_string(False))
    yield engine
    engine.dispose()
    ledger.engine.dispose()
    with psycopg.connect(_libpq(ledger.url), autocommit=True) as conn:
        conn.execute(f'DROP OWNED BY "{role}"')  # type: ignore[arg-type]
        conn.execute(f'DROP ROLE "{role}"')  # type: ignore[arg-type]


@pytest.fixture
def recorded(ledger: Ledger) -> Ledger:
    """A session, a deadline change through the API and two pushes, logged and signed."""
    now = datetime.now(UTC)
    session = ledger.store.create_session(session_spec(), "teacher", now)
    ledger.store.change_deadline(
        session.id,
        {"due_at": now + timedelta(days=9)},
        "illness",
        "teacher",
        now,
        check_session_spec,
    )
    for _ in range(2):
        deliver(ledger.store, push_payload([commit(), commit()]))
    _integrate(ledger)
    return ledger


def _integrate(ledger: Ledger, later: timedelta = timedelta(0)) -> None:
    assert SqlLog(ledger.engine).integrate(SIGNER, datetime.now(UTC) + later) is not None


def _append(engine: Engine, kind: str, table: Any, row: dict[str, Any]) -> int:
    """INSERT one row and queue it for the log, as the app role may."""
    with engine.begin() as conn:
        new_id: int = conn.execute(table.insert().values(row).returning(table.c.id)).scalar_one()
        conn.execute(
            text("INSERT INTO log_queue (entry_type, entry_id) VALUES (:kind, :id)"),
            {"kind": kind, "id": new_id},
        )
    return new_id


def _one(conn: Connection, table: Any) -> dict[str, Any]:
    row = conn.execute(select(table).order_by(table.c.id.desc()).limit(1)).one()
    return {k: v for k, v in row._mapping.items() if k != "id"}


def _found(report: VerifyReport) -> list[tuple[str, str | None, int | None]]:
    return [(p.code, p.table, p.entry_id) for p in report.problems]


def test_a_ledger_written_through_the_api_is_derived_from_its_evidence(recorded: Ledger) -> None:
    """Sessions, deadline changes, pushes and attempts made by labledger all re-derive."""
    report = verify_database(recorded.engine, KEY)
    assert report.ok, report.problems
    assert report.limitations == []


def test_forged_deadline_change_by_app_role_is_reported(recorded: Ledger, attacker: Engine) -> None:
    """A deadline change inserted and queued by the app role, without the API's audit event,
    is logged and signed, and still reported as unaudited."""
    with recorded.engine.connect() as conn:
        session_id = conn.execute(select(lab_sessions.c.id)).scalar_one()
    now = datetime.now(UTC)
    row = {
        "session_id": session_id,
        "due_at": now + timedelta(days=30),
        "closes_at": None,
        "reason": "extension",
        "actor": "teacher",
        "changed_at": now,
    }
    forged = _append(attacker, "session_change", session_changes, row)
    _integrate(recorded)
    report = verify_database(recorded.engine, KEY)
    assert _found(report) == [("session_change_unaudited", "session_changes", forged)]


def test_forged_session_by_app_role_is_reported(recorded: Ledger, attacker: Engine) -> None:
    """A session inserted and queued by the app role, without `session.created`, is reported."""
    with recorded.engine.connect() as conn:
        row = _one(conn, lab_sessions)
    row["subject_id"] = "someone-else"
    forged = _append(attacker, "session", lab_sessions, row)
    _integrate(recorded)
    report = verify_database(recorded.engine, KEY)
    assert _found(report) == [("session_unaudited", "lab_sessions", forged)]


def test_push_row_not_matching_its_raw_body_is_reported(recorded: Ledger, attacker: Engine) -> None:
    """A genuine signed body stored again with a push row that says another time and
    repository than the body does is reported as not derived from that body."""
    with recorded.engine.connect() as conn:
        delivery = _one(conn, deliveries)
        push = _one(conn, pushes)
    delivery["delivery_id"] = "forged-" + uuid.uuid4().hex
    push["delivery_pk"] = _append(attacker, "delivery", deliveries, delivery)
    push["pushed_at"] = push["pushed_at"] - timedelta(hours=2)
    push["repository_id"] += 1
    forged = _append(attacker, "push", pushes, push)
    _integrate(recorded)
    report = verify_database(recorded.engine, KEY)
    assert ("push_not_derived", "pushes", forged) in _found(report)
    wrong = next(p for p in report.problems if p.code == "push_not_derived").actual or ""
    assert "pushed_at" in wrong and "repository_id" in wrong


def test_attempt_without_its_push_commit_is_reported(recorded: Ledger, attacker: Engine) -> None:
    """An attempt for a commit its push never carried, appended by the app role, is reported."""
    with recorded.engine.connect() as conn:
        row = _one(conn, attempts)
    row["commit_sha"] = "f" * 40
    forged = _append(attacker, "attempt", attempts, row)
    _integrate(recorded)
    report = verify_database(recorded.engine, KEY)
    assert _found(report) == [("attempt_not_derived", "attempts", forged)]
    assert report.problems[0].actual == "commit_sha"


def test_verify_after_raw_body_retention_says_check_was_limited(
    ledger: Ledger, tmp_path: Path
) -> None:
    """Once retention dropped the raw bodies, verify still passes, checks attempts against
    their push rows, and says how many pushes it could not re-derive."""
    now = datetime.now(UTC)
    old = now - timedelta(days=200)  # past the raw bodies' window, not the records'
    ledger.store.create_session(session_spec(opens_at=old - timedelta(days=1)), "teacher", old)
    for _ in range(2):
        payload = push_payload([commit()], pushed_at=int(old.timestamp()))
        deliver(ledger.store, payload, received_at=old)
    assert SqlLog(ledger.engine).integrate(SIGNER, old + timedelta(days=1)) is not None
    write_archive(ledger.engine, tmp_path / "archive", KEY, before=now, actor="test", now=now)
    windows = Windows.of_days(records=1826, raw_bodies=90, audit=2557)
    assert purge(ledger.engine, windows, now, "test").bodies_dropped == 2
    report = verify_database(ledger.engine, KEY)
    assert report.ok, report.problems
    assert [(x.code, x.count) for x in report.limitations] == [("bodies_gone", 2)]


def test_history_rewritten_and_resigned_with_the_key_is_caught_only_by_a_witness(
    recorded: Ledger,
) -> None:
    """With the database and the signing key, a session handed to another student and the whole
    log re-signed verifies on its own; a checkpoint witnessed before the rewrite exposes it."""
    witness = SqlLog(recorded.engine).latest_checkpoint()
    assert witness is not None
    with superuser(recorded) as conn:
        order = conn.execute(
            text("SELECT entry_type, entry_id FROM log_entries ORDER BY leaf_index")
        ).all()
        conn.execute(text("UPDATE lab_sessions SET subject_id = 'another-student'"))
        for table in ("log_entries", "merkle_nodes", "checkpoints"):
            conn.execute(text(f"DELETE FROM {table}"))
        for kind, entry_id in order:
            conn.execute(
                text("INSERT INTO log_queue (entry_type, entry_id) VALUES (:k, :i)"),
                {"k": kind, "i": entry_id},
            )
    _integrate(recorded, later=timedelta(seconds=2))  # in another second than the witness's
    assert verify_database(recorded.engine, KEY).ok  # re-signed: it agrees with itself ...
    report = verify_database(recorded.engine, KEY, [("witness.note", witness.note)])
    assert [p.code for p in report.problems] == ["checkpoint_root"]  # ... not with the witness
