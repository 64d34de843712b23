"""Retention (issue 7): plan, archive, purge and erase keep the ledger verifiable, on both
databases; erased data is gone from rows, raw bodies, new exports and the database files."""

from __future__ import annotations

import gzip
import hashlib
import json
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, text
from sqlalchemy import exc as sa_exc

from labledger.cli import main
from labledger.config import Settings
from labledger.core.errors import ConfigError, FileRefused, MaintenanceRefused, RetentionRefused
from labledger.core.merkle import verify_consistency
from labledger.core.model import NewVerification
from labledger.core.receipt import Receipt, verify_receipt
from labledger.core.retention_rules import Windows
from labledger.core.service import check_session_spec
from labledger.http.app import create_app
from labledger.services.archive import verify_archive, write_archive
from labledger.services.export import export_log, verify_export
from labledger.storage.engine import make_engine
from labledger.storage.erasure import erase
from labledger.storage.merkle_log import SqlLog
from labledger.storage.retention import purge
from labledger.storage.retention_plan import plan_retention
from labledger.storage.sql_store import SqlStore
from labledger.storage.tables import (
    APPEND_ONLY_TABLES,
    attempts,
    audit_events,
    deliveries,
    metadata,
    outbox_events,
    outbox_states,
    pushes,
    tombstones,
)
from labledger.storage.verification import verify_database
from tests.conftest import Ledger
from tests.contract.helpers import deliver, fill_every_table
from tests.support import SECRET, SIGNER, TOKEN, commit, push_payload, session_spec

KEY = SIGNER.verifier
WINDOWS = Windows.of_days(records=1826, raw_bodies=90, audit=2557)
OLD_REPO, MIDDLE_REPO, NEW_REPO = 111, 222, 333
OLD_AT = datetime(2019, 5, 1, tzinfo=UTC)
MIDDLE_AT = datetime(2026, 5, 1, tzinfo=UTC)


def _person(payload: dict[str, Any], login: str, account: int, name: str) -> dict[str, Any]:
    email = f"{login}@example.edu"
    payload["sender"] = {"login": login, "id": account, "type": "User"}
    payload["pusher"] = {"name": login, "email": email}
    for c in payload["commits"]:
        c["author"] = c["committer"] = {"name": name, "email": email, "username": login}
    return payload


@dataclass
class Aged:
    """A ledger with three generations of work and a signed checkpoint after each."""

    ledger: Ledger
    old_attempts: list[int]
    middle_attempts: list[int]
    new_attempts: list[int]
    now: datetime


def _generation(
    ledger: Ledger, repo: int, subject: str, login: str, account: int, at: datetime | None
) -> list[int]:
    ids = []
    pushed = at or datetime.now(UTC)
    for n in range(2):
        payload = _person(
            push_payload(
                [commit(), commit()], repository_id=repo, pushed_at=int(pushed.timestamp())
            ),
            login,
            account,
            f"{login} Name",
        )
        answer = deliver(ledger.store, payload, received_at=at, delivery_id=f"{subject}-{n}")
        ids += answer.body["attempt_ids"]  # type: ignore[operator]
    return ids


@pytest.fixture
def aged(ledger: Ledger) -> Aged:
    return _age(ledger)


def _age(ledger: Ledger) -> Aged:
    log = SqlLog(ledger.engine)
    store = ledger.store
    closed = {
        "opens_at": datetime(2019, 1, 1, tzinfo=UTC),
        "due_at": datetime(2019, 5, 15, tzinfo=UTC),
        "closes_at": datetime(2019, 6, 1, tzinfo=UTC),
    }
    spec = session_spec(subject_id="old-student", repository_id=OLD_REPO, **closed)
    store.create_session(spec, "test", datetime(2019, 1, 1, tzinfo=UTC))
    old = _generation(ledger, OLD_REPO, "old-student", "olga", 501, OLD_AT)
    store.record_verification(
        NewVerification(old[0], "ci", "run-1", "passed", 1000, 1000, {}, OLD_AT, "test")
    )
    assert log.integrate(SIGNER, datetime(2019, 5, 3, tzinfo=UTC)) is not None

    middle = {
        "opens_at": datetime(2026, 3, 1, tzinfo=UTC),
        "due_at": datetime(2026, 5, 20, tzinfo=UTC),
        "closes_at": datetime(2026, 6, 1, tzinfo=UTC),
    }
    spec = session_spec(subject_id="mid-student", repository_id=MIDDLE_REPO, **middle)
    store.create_session(spec, "test", datetime(2026, 3, 1, tzinfo=UTC))
    mid = _generation(ledger, MIDDLE_REPO, "mid-student", "mira", 502, MIDDLE_AT)
    assert log.integrate(SIGNER, datetime(2026, 5, 2, tzinfo=UTC)) is not None

    now = datetime.now(UTC)
    current = {
        "opens_at": datetime(2026, 1, 1, tzinfo=UTC),
        "due_at": datetime(2027, 1, 1, tzinfo=UTC),
    }
    spec = session_spec(subject_id="new-student", repository_id=NEW_REPO, **current)
    store.create_session(spec, "test", now)
    new = _generation(ledger, NEW_REPO, "new-student", "ada", 777, None)
    store.record_verification(
        NewVerification(new[0], "ci", "run-2", "failed", 0, 1000, {}, now, "test")
    )
    assert log.integrate(SIGNER, now) is not None
    return Aged(ledger, old, mid, new, now)


def _archive(aged: Aged, directory: Path, before: datetime) -> dict[str, Any]:
    return write_archive(
        aged.ledger.engine, directory, KEY, before=before, actor="test", now=datetime.now(UTC)
    )


def _table_dump(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    with engine.connect() as conn:
        return {
            name: [dict(r._mapping) for r in conn.execute(select(table))]
            for name, table in metadata.tables.items()
        }


def _ok(ledger: Ledger) -> None:
    report = verify_database(ledger.engine, KEY)
    assert report.ok, report.problems[:3]


# -- plan and archive ----------------------------------------------------------------------


def test_the_plan_counts_what_is_past_its_window_and_what_an_archive_covers(
    aged: Aged, tmp_path: Path
) -> None:
    """The plan counts rows past their window, and only archived ones as purgeable."""
    with aged.ledger.engine.connect() as conn:
        before = plan_retention(conn, WINDOWS, aged.now)
    attempts_plan = before.tables["attempts"]
    assert (attempts_plan.expired, attempts_plan.purgeable) == (4, 0)
    assert attempts_plan.waiting_for_archive == 4
    assert before.raw_bodies.expired == 4  # 2 old deliveries and 2 of the middle generation

    _archive(aged, tmp_path / "a1", before=datetime(2026, 7, 1, tzinfo=UTC))
    with aged.ledger.engine.connect() as conn:
        after = plan_retention(conn, WINDOWS, aged.now)
    assert after.tables["attempts"].purgeable == 4
    assert after.tables["verification_results"].purgeable == 1
    assert after.tables["pushes"].purgeable == 2
    assert after.tables["deliveries"].purgeable == 2
    assert after.raw_bodies.purgeable == 2  # the middle generation's: their records stay
    assert sorted(after.purge["attempt"]) == sorted(aged.old_attempts)


def test_archives_follow_each_other_and_verify_offline(aged: Aged, tmp_path: Path) -> None:
    """Each archive starts where the last ended, and each verifies offline on its own."""
    first = _archive(aged, tmp_path / "a1", before=datetime(2020, 1, 1, tzinfo=UTC))
    second = _archive(aged, tmp_path / "a2", before=datetime(2026, 7, 1, tzinfo=UTC))
    assert first["first_leaf"] == 0 and second["first_leaf"] == first["end_leaf"]
    assert first["entries"]["attempts"] == 4 and second["entries"]["attempts"] == 4
    for folder in ("a1", "a2"):
        report = verify_archive(tmp_path / folder, KEY)
        assert report.ok, report.problems
    with pytest.raises(RetentionRefused, match="nothing to archive"):
        _archive(aged, tmp_path / "a3", before=datetime(2026, 7, 1, tzinfo=UTC))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(FileRefused, match="not an empty folder"):
        _archive(aged, tmp_path / "full", before=datetime(2030, 1, 1, tzinfo=UTC))


def _rewrite_entries(folder: Path, change: Any) -> None:
    """Edit an archive's entries and fix its manifest's file hash, as a careful forger would."""
    path = folder / "entries.jsonl.gz"
    lines = [json.loads(x) for x in gzip.decompress(path.read_bytes()).decode().splitlines()]
    lines = change(lines)
    path.write_bytes(gzip.compress("".join(json.dumps(x) + "\n" for x in lines).encode()))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["entries.jsonl.gz"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_an_edited_or_shortened_archive_does_not_verify(aged: Aged, tmp_path: Path) -> None:
    """An archive whose rows were edited or cut short, or whose files changed, fails to verify."""
    _archive(aged, tmp_path / "a1", before=datetime(2020, 1, 1, tzinfo=UTC))

    def edit(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for line in lines:
            if line["kind"] == "attempt":
                line["row"]["message"] = "a better commit message"
                break
        return lines

    _rewrite_entries(tmp_path / "a1", edit)
    codes = {p.code for p in verify_archive(tmp_path / "a1", KEY).problems}
    assert "checkpoint_root" in codes

    _archive(aged, tmp_path / "a2", before=datetime(2026, 7, 1, tzinfo=UTC))
    _rewrite_entries(tmp_path / "a2", lambda lines: lines[:-1])
    codes = {p.code for p in verify_archive(tmp_path / "a2", KEY).problems}
    assert "manifest" in codes or "rewound" in codes

    # Without fixing the manifest, any change to a file is named.
    _archive(aged, tmp_path / "a3", before=datetime(2030, 1, 1, tzinfo=UTC))
    with (tmp_path / "a3" / "checkpoints.jsonl").open("a") as out:
        out.write("\n")
    codes = {p.code for p in verify_archive(tmp_path / "a3", KEY).problems}
    assert "manifest" in codes


# -- purge ---------------------------------------------------------------------------------


def test_purge_removes_only_what_is_archived_and_past_its_window(
    aged: Aged, tmp_path: Path
) -> None:
    """Purge removes archived, expired rows; verify, old receipts and new exports still hold."""
    ledger = aged.ledger
    assert purge(ledger.engine, WINDOWS, aged.now, "test").event_id is None  # nothing archived
    assert ledger.store.count_rows()["tombstones"] == 0

    log = SqlLog(ledger.engine)
    old_receipt = log.receipt("attempt", aged.old_attempts[0])
    new_receipt = log.receipt("attempt", aged.new_attempts[0])
    checkpoint_before = log.latest_checkpoint()
    assert checkpoint_before is not None
    kept = {a: ledger.store.get_attempt(a) for a in aged.middle_attempts + aged.new_attempts}

    manifest = _archive(aged, tmp_path / "a1", before=datetime(2026, 7, 1, tzinfo=UTC))
    result = purge(ledger.engine, WINDOWS, aged.now, "test")
    audits_removed = result.removed.pop("audit_events")
    assert result.removed == {
        "verification_results": 1,
        "attempts": 4,
        "pushes": 2,
        "deliveries": 2,
    }
    with ledger.engine.connect() as conn:  # the 2019 audit events are past their 7 years
        oldest = conn.execute(select(func.min(audit_events.c.occurred_at))).scalar_one()
    assert audits_removed > 0 and oldest > aged.now - WINDOWS.audit
    assert result.bodies_dropped == 2
    assert purge(ledger.engine, WINDOWS, aged.now, "test").event_id is None  # done once

    with ledger.engine.connect() as conn:
        left = set(conn.execute(select(attempts.c.id)).scalars())
        bodies = {r.id: bytes(r.body_zlib) for r in conn.execute(select(deliveries))}
        stones = conn.execute(select(tombstones)).all()
    assert left == set(aged.middle_attempts + aged.new_attempts)
    assert sum(1 for b in bodies.values() if b == b"") == 2  # middle bodies; records kept
    assert len(stones) == 4 + 1 + 2 + 2 + 2 + audits_removed
    assert {s.archive_id for s in stones} == {manifest["archive_id"]}
    for attempt_id, record in kept.items():  # what stays is unchanged
        assert ledger.store.get_attempt(attempt_id) == record

    _ok(ledger)
    assert log.integrate(SIGNER) is not None  # the purge's own audit event enters the log
    _ok(ledger)
    # Receipts issued before the purge still verify, and the tree only grew.
    for receipt in (old_receipt, new_receipt):
        verify_receipt(Receipt.from_json(receipt.to_json()), KEY)
    latest = log.latest_checkpoint()
    assert latest is not None and latest.tree_size > checkpoint_before.tree_size
    proof = log.consistency_proof(checkpoint_before.tree_size, latest.tree_size)
    verify_consistency(
        checkpoint_before.tree_size,
        latest.tree_size,
        checkpoint_before.root_hash,
        latest.root_hash,
        proof,
    )
    fresh = log.receipt("attempt", aged.new_attempts[0])
    verify_receipt(fresh, KEY)
    # A new export still verifies offline: purged entries stand as their leaf hashes.
    export_log(ledger.engine, tmp_path / "export", KEY)
    exported = verify_export(tmp_path / "export", KEY)
    assert exported.ok and exported.tree_size == latest.tree_size, exported.problems[:3]
    # The archive holds what was purged, and still verifies on its own.
    assert verify_archive(tmp_path / "a1", KEY).ok


def test_a_purged_attempt_answers_archived_over_http(aged: Aged, tmp_path: Path) -> None:
    """A purged attempt and its proof answer 410 `archived` with the archive's id."""
    ledger = aged.ledger
    manifest = _archive(aged, tmp_path / "a1", before=datetime(2026, 7, 1, tzinfo=UTC))
    purge(ledger.engine, WINDOWS, aged.now, "test")
    settings = Settings.model_validate({"github_webhook_secret": SECRET, "api_tokens": TOKEN})
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(create_app(settings, ledger.store, SIGNER)) as client:
        for path in (
            f"/api/v1/attempts/{aged.old_attempts[0]}",
            f"/api/v1/attempts/{aged.old_attempts[0]}/proof",
        ):
            answer = client.get(path, headers=auth)
            assert answer.status_code == 410, answer.text
            assert answer.json()["error"] == "archived"
            assert answer.json()["archive_id"] == manifest["archive_id"]
        assert (
            client.get(f"/api/v1/attempts/{aged.new_attempts[0]}", headers=auth).status_code == 200
        )
        assert client.get("/api/v1/attempts/999999", headers=auth).status_code == 404


def test_a_tombstone_forged_behind_labledgers_back_is_detected(aged: Aged, tmp_path: Path) -> None:
    """A row deleted by hand and tombstoned under a real purge is reported by verify."""
    ledger = aged.ledger
    _archive(aged, tmp_path / "a1", before=datetime(2026, 7, 1, tzinfo=UTC))
    event_id = purge(ledger.engine, WINDOWS, aged.now, "test").event_id
    victim = aged.new_attempts[-1]
    # A superuser deletes a current attempt and files a tombstone under the real purge.
    with ledger.engine.begin() as conn:
        if ledger.dialect == "postgresql":
            conn.execute(text("SET LOCAL labledger.maintenance = 'on'"))
        else:
            conn.execute(text("DROP TRIGGER attempts_no_delete"))
        conn.execute(attempts.delete().where(attempts.c.id == victim))
        conn.execute(
            tombstones.insert().values(
                entry_type="attempt", entry_id=victim, what="row", event_id=event_id
            )
        )
    problems = verify_database(ledger.engine, KEY).problems
    assert any(p.code == "tombstone" and p.entry_id == event_id for p in problems), problems
    assert any(p.code == "missing_row" and p.entry_id == victim for p in problems), problems


def test_the_servers_role_cannot_use_the_maintenance_path(pg_ledger: Ledger, app_role: str) -> None:
    """PostgreSQL: declaring maintenance is not enough without the owner's privileges, and the
    owner is refused without declaring it."""
    fill_every_table(pg_ledger.store, datetime.now(UTC))
    app = make_engine(app_role)
    try:
        with (
            app.connect() as conn,
            pytest.raises(sa_exc.ProgrammingError, match="permission denied"),
        ):
            conn.execute(text("SET labledger.maintenance = 'on'"))
            conn.execute(text("DELETE FROM attempts"))
    finally:
        app.dispose()
    with pg_ledger.engine.connect() as conn, pytest.raises(sa_exc.DBAPIError, match="append-only"):
        conn.execute(text("DELETE FROM attempts"))
    with pg_ledger.engine.connect() as conn, pytest.raises(sa_exc.DBAPIError, match="append-only"):
        conn.execute(text("SET labledger.maintenance = 'on'"))
        conn.execute(text("TRUNCATE attempts CASCADE"))
    assert pg_ledger.store.count_rows()["attempts"] > 0


def test_the_append_only_rules_stand_again_after_a_purge(aged: Aged, tmp_path: Path) -> None:
    """After a purge, the append-only triggers refuse deletions again."""
    ledger = aged.ledger
    _archive(aged, tmp_path / "a1", before=datetime(2026, 7, 1, tzinfo=UTC))
    purge(ledger.engine, WINDOWS, aged.now, "test")
    for table in ("attempts", "pushes", "push_commits", "deliveries", "audit_events"):
        with ledger.engine.connect() as conn, pytest.raises(sa_exc.DBAPIError, match="append-only"):
            conn.execute(text(f"DELETE FROM {table}"))
    if ledger.dialect == "sqlite":
        with ledger.engine.connect() as conn:
            names = set(
                conn.execute(
                    text("SELECT name FROM sqlite_master WHERE type = 'trigger'")
                ).scalars()
            )
        assert {f"{t}_no_delete" for t in APPEND_ONLY_TABLES} <= names


# -- erasure -------------------------------------------------------------------------------

ERASED_COLUMNS = {
    "attempts": {
        "author_name",
        "author_email",
        "author_username",
        "committer_name",
        "committer_email",
        "committer_username",
        "personal_salt",
    },
    "pushes": {"pusher_name", "pusher_email", "sender_login", "personal_salt"},
    "deliveries": {"body_zlib"},
}


def _erase_new_student(aged: Aged, **who: Any) -> None:
    SqlLog(aged.ledger.engine).integrate(SIGNER)
    target = who or {"subject_id": "new-student"}
    result = erase(
        aged.ledger.engine, reason="request 42", actor="test", now=datetime.now(UTC), **target
    )
    assert (result.attempts, result.pushes, result.raw_bodies) == (4, 2, 2)


@pytest.mark.parametrize("who", [{"subject_id": "new-student"}, {"account": ("github", 777)}])
def test_erasure_blanks_personal_fields_and_nothing_else(aged: Aged, who: dict[str, Any]) -> None:
    """Erasure blanks personal fields and raw bodies; every other byte stays and verify passes."""
    ledger = aged.ledger
    SqlLog(ledger.engine).integrate(SIGNER)
    before = _table_dump(ledger.engine)
    _erase_new_student(aged, **who)
    after = _table_dump(ledger.engine)

    erased_ids = {"attempts": set(aged.new_attempts)}
    with ledger.engine.connect() as conn:
        erased_ids["pushes"] = set(
            conn.execute(
                select(attempts.c.push_id).where(attempts.c.id.in_(aged.new_attempts))
            ).scalars()
        )
        erased_ids["deliveries"] = set(
            conn.execute(
                select(pushes.c.delivery_pk).where(pushes.c.id.in_(erased_ids["pushes"]))
            ).scalars()
        )
    for name, rows in before.items():
        if name in ("log_queue",):
            continue
        now_rows = after[name][: len(rows)]
        assert len(after[name]) >= len(rows), name
        for old, new in zip(rows, now_rows, strict=True):
            if name in ERASED_COLUMNS and old["id"] in erased_ids[name]:
                for column in ERASED_COLUMNS[name]:
                    assert new[column] in (None, "", b""), (name, column)
                old = {k: v for k, v in old.items() if k not in ERASED_COLUMNS[name]}
                new = {k: v for k, v in new.items() if k not in ERASED_COLUMNS[name]}
            assert new == old, name  # byte for byte, every other column of every other row
    _ok(ledger)
    assert SqlLog(ledger.engine).integrate(SIGNER) is not None  # the erasure's audit event
    _ok(ledger)
    verify_receipt(SqlLog(ledger.engine).receipt("attempt", aged.new_attempts[0]), KEY)


def test_erased_data_is_absent_from_new_exports_and_archives(aged: Aged, tmp_path: Path) -> None:
    """New exports and archives made after an erasure hold none of the erased data."""
    _erase_new_student(aged)
    SqlLog(aged.ledger.engine).integrate(SIGNER)
    export_log(aged.ledger.engine, tmp_path / "export", KEY)
    _archive(aged, tmp_path / "archive", before=datetime(2100, 1, 1, tzinfo=UTC))
    assert verify_archive(tmp_path / "archive", KEY).ok
    exported = b"".join(p.read_bytes() for p in (tmp_path / "export").iterdir())
    archived = gzip.decompress((tmp_path / "archive" / "entries.jsonl.gz").read_bytes())
    for blob in (exported, archived):
        assert b"ada@example.edu" not in blob and b"ada Name" not in blob
    # ...while a person who was not erased is still readable in the archive.
    assert b"mira@example.edu" in archived


@pytest.mark.parametrize(
    "change",
    [{"author_name": "Someone Else"}, {"changed_files": [1.5]}],  # a float: no leaf holds one
    ids=["author", "float"],
)
def test_erasure_refuses_a_row_that_no_longer_matches_its_leaf(
    aged: Aged, change: dict[str, Any]
) -> None:
    """Erasure refuses to launder a row that was tampered with, and changes nothing."""
    ledger = aged.ledger
    with ledger.engine.begin() as conn:
        if ledger.dialect == "postgresql":
            conn.execute(text("SET LOCAL labledger.maintenance = 'on'"))
        else:
            conn.execute(text("DROP TRIGGER attempts_no_update"))
        conn.execute(
            attempts.update().where(attempts.c.id == aged.new_attempts[0]).values(**change)
        )
    with pytest.raises(RetentionRefused, match="no longer matches its logged leaf"):
        erase(
            ledger.engine, subject_id="new-student", reason="r", actor="test", now=datetime.now(UTC)
        )
    with ledger.engine.connect() as conn:
        assert conn.execute(select(tombstones)).first() is None  # nothing was done


def test_erasure_needs_exactly_one_person_and_a_reason(aged: Aged) -> None:
    """Erasure needs exactly one person and a reason; an unknown person erases nothing."""
    engine = aged.ledger.engine
    now = datetime.now(UTC)
    with pytest.raises(RetentionRefused, match="exactly one"):
        erase(engine, reason="r", actor="t", now=now)
    with pytest.raises(RetentionRefused, match="reason"):
        erase(engine, subject_id="new-student", reason=" ", actor="t", now=now)
    assert erase(engine, subject_id="nobody", reason="r", actor="t", now=now).event_id is None


def test_erased_bytes_are_gone_from_the_sqlite_files(sqlite_ledger: Ledger) -> None:
    """Not only the rows: SQLite's free pages and WAL hold no copy of what was erased."""
    ledger = sqlite_ledger
    ledger.store.create_session(session_spec(subject_id="s1"), "test", datetime.now(UTC))
    payload = _person(push_payload([commit(), commit()]), "zed", 900, "Zed Unique-Name")
    deliver(ledger.store, payload)
    with ledger.engine.connect() as conn:
        body = bytes(conn.execute(select(deliveries.c.body_zlib)).scalar_one())
    assert zlib.decompress(body)
    path = Path(ledger.engine.url.database or "")
    files = [path, Path(f"{path}-wal")]

    def on_disk() -> bytes:
        return b"".join(f.read_bytes() for f in files if f.exists())

    assert b"zed@example.edu" in on_disk() and body[:64] in on_disk()
    SqlLog(ledger.engine).integrate(SIGNER)
    erase(ledger.engine, subject_id="s1", reason="r", actor="test", now=datetime.now(UTC))
    ledger.engine.dispose()
    raw = on_disk()
    assert b"zed@example.edu" not in raw
    assert b"Zed Unique-Name" not in raw
    assert body[:64] not in raw


def test_erased_bytes_are_gone_from_postgresql_pages(pg_ledger: Ledger) -> None:
    """PostgreSQL: after erasure no heap or TOAST page of the touched tables holds the bytes."""
    ledger = pg_ledger
    ledger.store.create_session(session_spec(subject_id="s1"), "test", datetime.now(UTC))
    payload = _person(push_payload([commit(), commit()]), "zed", 900, "Zed Unique-Name")
    deliver(ledger.store, payload)

    def pages() -> bytes:
        with ledger.engine.begin() as conn:
            conn.execute(text("CREATE EXTENSION IF NOT EXISTS pageinspect"))
            found = []
            for table in ("attempts", "pushes", "deliveries"):
                relations = [table]
                toast = conn.execute(
                    text(
                        "SELECT reltoastrelid::regclass::text FROM pg_class "
                        "WHERE relname = :t AND reltoastrelid <> 0"
                    ),
                    {"t": table},
                ).scalar_one_or_none()
                relations += [toast] if toast else []
                for rel in relations:
                    count = conn.execute(
                        text(f"SELECT pg_relation_size('{rel}') / 8192")
                    ).scalar_one()
                    for page in range(int(count)):
                        found.append(
                            bytes(
                                conn.execute(
                                    text(f"SELECT get_raw_page('{rel}', {page})")
                                ).scalar_one()
                            )
                        )
            return b"".join(found)

    assert b"zed@example.edu" in pages()
    SqlLog(ledger.engine).integrate(SIGNER)
    erase(ledger.engine, subject_id="s1", reason="r", actor="test", now=datetime.now(UTC))
    raw = pages()
    assert b"zed@example.edu" not in raw and b"Zed Unique-Name" not in raw


def test_a_raw_body_emptied_behind_labledgers_back_is_reported(aged: Aged) -> None:
    """A raw body emptied without a purge or erasure is reported as body_missing."""
    ledger = aged.ledger
    with ledger.engine.begin() as conn:
        if ledger.dialect == "postgresql":
            conn.execute(text("SET LOCAL labledger.maintenance = 'on'"))
        else:
            conn.execute(text("DROP TRIGGER deliveries_no_update"))
        victim = conn.execute(select(func.max(deliveries.c.id))).scalar_one()
        conn.execute(deliveries.update().where(deliveries.c.id == victim).values(body_zlib=b""))
    problems = verify_database(ledger.engine, KEY).problems
    assert [(p.code, p.entry_id) for p in problems] == [("body_missing", victim)]


# -- the command line ----------------------------------------------------------------------


@pytest.fixture
def cli_env(aged: Aged, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Aged:
    for name in ("LABLEDGER_CONFIG", "LABLEDGER_API_TOKENS", "LABLEDGER_MAINTENANCE_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    key_file = tmp_path / "signing.key"
    key_file.write_text(SIGNER.encode() + "\n")
    (tmp_path / "public.key").write_text(KEY.encode() + "\n")
    monkeypatch.setenv("LABLEDGER_DATABASE_URL", aged.ledger.url)
    monkeypatch.setenv("LABLEDGER_SIGNING_KEY_FILE", str(key_file))
    return aged


def _run(capsys: pytest.CaptureFixture[str], *argv: str, code: int = 0) -> str:
    capsys.readouterr()
    assert main(list(argv)) == code
    return capsys.readouterr().out


def test_the_retention_verbs_from_the_command_line(
    cli_env: Aged, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """plan, archive, verify --export, purge and erase work from the command line."""
    plan = json.loads(_run(capsys, "retention", "plan", "--json"))
    assert plan["tables"]["attempts"] == {"past_window": 4, "purgeable": 0, "not_archived": 4}
    assert "nothing to purge" in _run(capsys, "purge")

    out = _run(capsys, "archive", "--before", "2026-07-01T00:00:00Z", "--to", str(tmp_path / "a1"))
    assert "archive 1: leaves [0, " in out
    key = str(tmp_path / "public.key")
    assert "intact" in _run(capsys, "verify", "--export", str(tmp_path / "a1"), "--public-key", key)
    out = _run(capsys, "purge")
    assert "1 verification_results, 4 attempts, 2 pushes, 2 deliveries" in out
    assert "dropped 2 raw bodies" in out
    out = _run(capsys, "erase", "--subject", "new-student", "--reason", "request 42")
    assert "erased personal fields of 4 attempts and 2 pushes, and 2 raw bodies" in out
    assert "intact" in _run(capsys, "verify")
    assert "nothing to erase" in _run(capsys, "erase", "--account", "github:777", "--reason", "r")
    _run(capsys, "erase", "--account", "777", "--reason", "r", code=2)
    _run(capsys, "erase", "--reason", "r", code=2)


def test_retention_settings_are_checked_at_start() -> None:
    """Retention windows that cannot hold together are refused when settings load."""
    with pytest.raises(ConfigError, match="RAW_BODIES_DAYS must not exceed"):
        Settings.from_env({"LABLEDGER_RETENTION_RAW_BODIES_DAYS": "4000"})
    with pytest.raises(ConfigError, match="AUDIT_DAYS must not be shorter"):
        Settings.from_env({"LABLEDGER_RETENTION_AUDIT_DAYS": "30"})
    with pytest.raises(ConfigError, match="LABLEDGER_RETENTION_RECORDS_DAYS"):
        Settings.from_env({"LABLEDGER_RETENTION_RECORDS_DAYS": "0"})
    settings = Settings.from_env({"LABLEDGER_RETENTION_RECORDS_DAYS": "1000"})
    assert (settings.retention_records_days, settings.retention_raw_bodies_days) == (1000, 90)


def test_every_read_route_still_answers_after_purge_and_erasure(aged: Aged, tmp_path: Path) -> None:
    """Sessions, pages, summaries, the feed and CSV reports over a purged and erased ledger."""
    ledger = aged.ledger
    _archive(aged, tmp_path / "a1", before=datetime(2026, 7, 1, tzinfo=UTC))
    purge(ledger.engine, WINDOWS, aged.now, "test")
    _erase_new_student(aged)
    SqlLog(ledger.engine).integrate(SIGNER)
    settings = Settings.model_validate({"github_webhook_secret": SECRET, "api_tokens": TOKEN})
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(create_app(settings, ledger.store, SIGNER)) as client:
        sessions = client.get("/api/v1/sessions", headers=auth).json()["items"]
        assert len(sessions) == 3
        paths = [
            "/api/v1/feed?limit=500",
            "/api/v1/labs/lab-1/summary",
            "/api/v1/labs/lab-1/summary?format=csv",
        ]
        for s in sessions:
            paths += [f"/api/v1/sessions/{s['id']}/attempts", f"/api/v1/sessions/{s['id']}/summary"]
        paths += [f"/api/v1/attempts/{a}" for a in aged.new_attempts + aged.middle_attempts]
        paths += [f"/api/v1/attempts/{a}/proof" for a in aged.new_attempts]
        paths += ["/api/v1/deliveries/new-student-0", "/api/v1/deliveries/mid-student-1"]
        for path in paths:
            answer = client.get(path, headers=auth)
            assert answer.status_code == 200, (path, answer.text)
            assert "ada@example.edu" not in answer.text, path
        erased = client.get(f"/api/v1/attempts/{aged.new_attempts[0]}", headers=auth).json()
        assert erased["attempt"]["commit_sha"] and erased["attempt"]["author"]["email"] is None
        feed = client.get("/api/v1/feed?limit=500", headers=auth).json()["items"]
        assert not {i.get("attempt_id") for i in feed} & set(aged.old_attempts)
        assert client.get("/api/v1/deliveries/old-student-0", headers=auth).status_code == 404


def test_purge_through_the_servers_role_is_refused_with_a_clear_message(
    pg_ledger: Ledger, app_role: str, tmp_path: Path
) -> None:
    """Purge and erase through the server's role fail with the setting to fix, changing nothing."""
    aged = _age(pg_ledger)
    _archive(aged, tmp_path / "a1", before=datetime(2026, 7, 1, tzinfo=UTC))
    before = pg_ledger.store.count_rows()
    server_role = make_engine(app_role)
    try:
        with pytest.raises(MaintenanceRefused, match="LABLEDGER_MAINTENANCE_DATABASE_URL"):
            purge(server_role, WINDOWS, aged.now, "test")
        with pytest.raises(MaintenanceRefused, match="schema owner"):
            erase(server_role, subject_id="new-student", reason="r", actor="t", now=aged.now)
    finally:
        server_role.dispose()
    assert pg_ledger.store.count_rows() == before  # nothing partial
    counted: list[int] = []
    result = purge(pg_ledger.engine, WINDOWS, aged.now, "test", progress=counted.append)
    assert sum(counted) == sum(result.removed.values()) + result.bodies_dropped


def test_a_deadline_extension_moves_the_window(aged: Aged) -> None:
    """Windows count from the *effective* close: an extension keeps the records longer."""
    store = aged.ledger.store
    old_session = store.get_attempt(aged.old_attempts[0]).attempt.session_id
    store.change_deadline(
        old_session,
        {"closes_at": datetime(2022, 6, 1, tzinfo=UTC)},
        "appeal granted",
        "test",
        datetime(2019, 5, 20, tzinfo=UTC),
        check_session_spec,
    )
    with aged.ledger.engine.connect() as conn:
        plan = plan_retention(conn, WINDOWS, aged.now)
        later = plan_retention(conn, WINDOWS, datetime(2027, 6, 2, tzinfo=UTC))
    assert plan.tables["attempts"].expired == 0  # 2022-06-01 + 1826 days is 2027-06-01
    assert later.tables["attempts"].expired == 4


def test_a_purge_that_fails_midway_leaves_nothing_changed(aged: Aged, tmp_path: Path) -> None:
    """A purge that fails midway changes nothing and leaves the triggers standing."""
    ledger = aged.ledger
    _archive(aged, tmp_path / "a1", before=datetime(2026, 7, 1, tzinfo=UTC))
    before = _table_dump(ledger.engine)

    def crash(removed: int) -> None:  # after the first chunk of deletions
        raise RuntimeError("simulated crash during purge")

    with pytest.raises(RuntimeError, match="simulated crash"):
        purge(ledger.engine, WINDOWS, aged.now, "test", progress=crash)
    assert _table_dump(ledger.engine) == before
    with ledger.engine.connect() as conn, pytest.raises(sa_exc.DBAPIError, match="append-only"):
        conn.execute(text("DELETE FROM attempts"))
    _ok(ledger)


def test_the_maintenance_connection_setting_is_what_purge_uses(
    pg_ledger: Ledger,
    app_role: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`purge` runs on LABLEDGER_MAINTENANCE_DATABASE_URL: the server's role there is refused."""
    aged = _age(pg_ledger)
    _archive(aged, tmp_path / "a1", before=datetime(2026, 7, 1, tzinfo=UTC))
    key_file = tmp_path / "signing.key"
    key_file.write_text(SIGNER.encode() + "\n")
    monkeypatch.setenv("LABLEDGER_DATABASE_URL", pg_ledger.url)
    monkeypatch.setenv("LABLEDGER_SIGNING_KEY_FILE", str(key_file))
    monkeypatch.setenv("LABLEDGER_MAINTENANCE_DATABASE_URL", app_role)
    assert main(["purge"]) == 1
    assert "LABLEDGER_MAINTENANCE_DATABASE_URL" in capsys.readouterr().err
    monkeypatch.setenv("LABLEDGER_MAINTENANCE_DATABASE_URL", pg_ledger.url)
    assert main(["purge"]) == 0
    assert "purged" in capsys.readouterr().out


def test_finished_notifications_go_with_the_records_window(ledger: Ledger) -> None:
    """Delivered or dead notifications past the window are purged; a pending one is kept."""
    announcing = SqlStore(ledger.engine, ("platform",))
    closed = {
        "due_at": datetime(2019, 5, 15, tzinfo=UTC),
        "closes_at": datetime(2019, 6, 1, tzinfo=UTC),
    }
    spec = session_spec(subject_id="s", opens_at=datetime(2019, 1, 1, tzinfo=UTC), **closed)
    announcing.create_session(spec, "test", datetime(2019, 1, 1, tzinfo=UTC))
    payload = push_payload([commit(), commit(), commit()], pushed_at=int(OLD_AT.timestamp()))
    deliver(announcing, payload, received_at=OLD_AT)
    current = session_spec(subject_id="t", repository_id=NEW_REPO, due_at=None)
    announcing.create_session(current, "test", datetime.now(UTC))
    deliver(announcing, push_payload([commit()], repository_id=NEW_REPO, pushed_at=None))
    with ledger.engine.begin() as conn:
        ids = list(conn.execute(select(outbox_events.c.id).order_by(outbox_events.c.id)).scalars())
        assert len(ids) == 4
        for outbox_id, state in zip(ids, ("delivered", "dead", None, "delivered"), strict=True):
            if state is not None:
                conn.execute(
                    outbox_states.insert().values(
                        outbox_id=outbox_id, state=state, attempt_no=1, recorded_at=OLD_AT
                    )
                )
    now = datetime.now(UTC)
    with ledger.engine.connect() as conn:
        plan = plan_retention(conn, WINDOWS, now)
    assert (plan.tables["outbox_events"].expired, plan.tables["outbox_events"].purgeable) == (3, 2)
    result = purge(ledger.engine, WINDOWS, now, "test")  # nothing archived: only the outbox
    assert result.removed == {"outbox_events": 2}
    with ledger.engine.connect() as conn:
        assert list(conn.execute(select(outbox_events.c.id)).scalars()) == ids[2:]
        assert conn.execute(select(func.count()).select_from(outbox_states)).scalar_one() == 1
    SqlLog(ledger.engine).integrate(SIGNER)
    _ok(ledger)


def test_ids_of_purged_rows_are_never_given_again(ledger: Ledger, tmp_path: Path) -> None:
    """After the newest rows are purged, new rows get new ids: an id names one entry forever."""
    log = SqlLog(ledger.engine)
    closed = {
        "due_at": datetime(2019, 5, 15, tzinfo=UTC),
        "closes_at": datetime(2019, 6, 1, tzinfo=UTC),
    }
    spec = session_spec(
        subject_id="o", repository_id=OLD_REPO, opens_at=datetime(2019, 1, 1, tzinfo=UTC), **closed
    )
    ledger.store.create_session(spec, "test", datetime(2019, 1, 1, tzinfo=UTC))
    old = _generation(ledger, OLD_REPO, "o", "olga", 501, OLD_AT)
    assert log.integrate(SIGNER, datetime(2019, 5, 3, tzinfo=UTC)) is not None
    write_archive(
        ledger.engine,
        tmp_path / "a",
        KEY,
        before=datetime(2020, 1, 1, tzinfo=UTC),
        actor="t",
        now=datetime.now(UTC),
    )
    purge(ledger.engine, WINDOWS, datetime.now(UTC), "test")

    now = datetime.now(UTC)
    current = session_spec(
        subject_id="n",
        repository_id=NEW_REPO,
        opens_at=datetime(2026, 1, 1, tzinfo=UTC),
        due_at=None,
    )
    ledger.store.create_session(current, "test", now)
    new = _generation(ledger, NEW_REPO, "n", "ada", 777, None)
    assert log.integrate(SIGNER, now) is not None  # no (kind, id) is logged twice
    assert min(new) > max(old)
    _ok(ledger)
