"""Retention under random histories (hypothesis), on SQLite and PostgreSQL: whatever mix of
pushes, results, deadline changes, archives, purges and erasures happens, the ledger verifies,
every purged row is in an archive, every archive verifies offline, and receipts stay valid."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from labledger.core.errors import RetentionRefused
from labledger.core.model import NewVerification
from labledger.core.receipt import Receipt, verify_receipt
from labledger.core.retention_rules import Windows
from labledger.core.service import check_session_spec
from labledger.services.archive import verify_archive, write_archive
from labledger.storage.engine import make_engine
from labledger.storage.erasure import erase
from labledger.storage.merkle_log import SqlLog
from labledger.storage.retention import purge
from labledger.storage.sql_store import SqlStore
from labledger.storage.tables import archives, attempts, audit_events, log_entries, tombstones
from labledger.storage.verification import verify_database
from tests.conftest import PgDatabases
from tests.contract.helpers import deliver
from tests.support import SIGNER, commit, push_payload, session_spec

KEY = SIGNER.verifier
WINDOWS = Windows.of_days(records=365, raw_bodies=30, audit=400)
SUBJECTS = ("s0", "s1", "s2")
# Weighted towards the steps that make purges possible: data, then archives, then time.
STEPS = (
    "push",
    "push",
    "push",
    "result",
    "extend",
    "integrate",
    "archive",
    "archive",
    "purge",
    "purge",
    "erase",
)


@dataclass
class History:
    engine: Any
    store: SqlStore
    folder: Path
    clock: datetime = datetime(2015, 1, 1, tzinfo=UTC)
    sessions: dict[str, int] = field(default_factory=dict)
    receipts: list[Receipt] = field(default_factory=list)
    archives: list[Path] = field(default_factory=list)

    @property
    def log(self) -> SqlLog:
        return SqlLog(self.engine)

    def integrate(self) -> None:
        self.log.integrate(SIGNER, self.clock)

    def verified(self) -> None:
        report = verify_database(self.engine, KEY)
        assert report.ok, report.problems[:3]


def _push(h: History, subject: str, commits: int) -> None:
    if subject not in h.sessions:
        spec = session_spec(
            subject_id=subject,
            repository_id=500 + SUBJECTS.index(subject),
            opens_at=h.clock - timedelta(days=1),
            due_at=h.clock + timedelta(days=30),
            closes_at=h.clock + timedelta(days=60),
        )
        h.sessions[subject] = h.store.create_session(spec, "test", h.clock).id
    payload = push_payload(
        [commit() for _ in range(commits)],
        repository_id=500 + SUBJECTS.index(subject),
        pushed_at=int(h.clock.timestamp()),
    )
    deliver(h.store, payload, received_at=h.clock, delivery_id=str(uuid.uuid4()))


def _step(h: History, step: str, data: st.DataObject) -> None:
    if step == "push":
        _push(h, data.draw(st.sampled_from(SUBJECTS)), data.draw(st.integers(1, 3)))
    elif step == "result":
        with h.engine.connect() as conn:
            ids = list(conn.execute(select(attempts.c.id)).scalars())
        if ids:
            report = NewVerification(
                data.draw(st.sampled_from(ids)),
                "ci",
                str(uuid.uuid4()),
                "passed",
                1,
                1,
                {},
                h.clock,
                "t",
            )
            h.store.record_verification(report)
    elif step == "extend" and h.sessions:
        session_id = h.sessions[data.draw(st.sampled_from(sorted(h.sessions)))]
        closes = h.clock + timedelta(days=data.draw(st.integers(0, 300)))
        change = {"due_at": None, "closes_at": closes}
        h.store.change_deadline(session_id, change, "extension", "t", h.clock, check_session_spec)
    elif step == "integrate":
        h.integrate()
        _take_receipt(h, data)
    elif step == "archive":
        h.integrate()
        folder = h.folder / f"archive-{len(h.archives)}"
        try:
            write_archive(
                h.engine, folder, KEY, before=h.clock + timedelta(seconds=1), actor="t", now=h.clock
            )
            h.archives.append(folder)
        except RetentionRefused as exc:
            assert "nothing to archive" in str(exc)
    elif step == "purge":
        result = purge(h.engine, WINDOWS, h.clock, "t")
        event("purge removed rows" if result.removed else "purge removed nothing")
        h.integrate()
        h.verified()
    elif step == "erase":
        h.integrate()
        subject = data.draw(st.sampled_from(SUBJECTS))
        erased = erase(h.engine, subject_id=subject, reason="r", actor="t", now=h.clock)
        event("erase blanked rows" if erased.event_id else "erase found nothing")
        h.integrate()
        h.verified()


def _take_receipt(h: History, data: st.DataObject) -> None:
    with h.engine.connect() as conn:
        ids = list(
            conn.execute(
                select(log_entries.c.entry_id).where(log_entries.c.entry_type == "attempt")
            ).scalars()
        )
        present = set(conn.execute(select(attempts.c.id)).scalars())
    ids = [i for i in ids if i in present]
    if ids:
        h.receipts.append(h.log.receipt("attempt", data.draw(st.sampled_from(ids))))


def _check(h: History) -> None:
    h.integrate()
    h.verified()
    for receipt in h.receipts:  # issued before later purges and erasures: still valid
        verify_receipt(receipt, KEY)
    for folder in h.archives:
        report = verify_archive(folder, KEY)
        assert report.ok, report.problems[:3]
    with h.engine.connect() as conn:
        held = [(a.first_leaf, a.end_leaf, a.id) for a in conn.execute(select(archives))]
        purged = conn.execute(
            select(tombstones.c.archive_id, log_entries.c.leaf_index)
            .join(
                log_entries,
                (log_entries.c.entry_type == tombstones.c.entry_type)
                & (log_entries.c.entry_id == tombstones.c.entry_id),
            )
            .join(audit_events, audit_events.c.id == tombstones.c.event_id)
            .where(audit_events.c.action == "purge")
        ).all()
    for archive_id, leaf in purged:  # nothing a purge removed is missing from its archive
        assert any(lo <= leaf < hi and a == archive_id for lo, hi, a in held), (archive_id, leaf)


@pytest.mark.parametrize(
    "dialect", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_random_histories_stay_verifiable(
    dialect: str,
    data: st.DataObject,
    tmp_path: Path,
    sqlite_template: Path,
    pg_databases: PgDatabases | None,
) -> None:
    """Any history of ledger work and retention steps leaves a ledger that verifies."""
    folder = tmp_path / uuid.uuid4().hex
    folder.mkdir()
    if dialect == "sqlite":
        path = folder / "ledger.db"
        path.write_bytes(sqlite_template.read_bytes())
        url = f"sqlite:///{path}"
    else:
        if pg_databases is None:
            pytest.skip("PostgreSQL not configured")
        url = pg_databases.create()
    engine = make_engine(url)
    try:
        h = History(engine, SqlStore(engine), folder)
        for step in data.draw(st.lists(st.sampled_from(STEPS), min_size=6, max_size=24)):
            h.clock += timedelta(days=data.draw(st.integers(0, 300)), minutes=1)
            _step(h, step, data)
        _check(h)
    finally:
        engine.dispose()
        if dialect == "postgresql" and pg_databases is not None:
            pg_databases.drop(url)
