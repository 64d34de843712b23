"""`verify` checks every raw body, logged or queued: a body changed or not inflating is named
wherever its row is, on SQLite and PostgreSQL."""

from __future__ import annotations

import zlib

from sqlalchemy import func, select

from labledger.core.verify import VerifyReport
from labledger.storage.merkle_log import SqlLog
from labledger.storage.tables import deliveries
from labledger.storage.verification import verify_database
from tests.conftest import Ledger
from tests.contract.helpers import deliver
from tests.contract.test_tamper_evidence import superuser
from tests.integration.test_verify_streaming import grow as _grow
from tests.support import SIGNER, commit, push_payload

KEY = SIGNER.verifier


def _verify(ledger: Ledger, bodies: bool = True) -> VerifyReport:
    return verify_database(ledger.engine, KEY, check_bodies=bodies)


def _set_body(ledger: Ledger, delivery_pk: int, stored: bytes) -> None:
    with superuser(ledger) as conn:
        conn.execute(
            deliveries.update().where(deliveries.c.id == delivery_pk).values(body_zlib=stored)
        )


def _named(report: VerifyReport) -> list[tuple[str, str | None, int | None]]:
    return [(p.code, p.table, p.entry_id) for p in report.problems]


def _first_delivery(ledger: Ledger) -> int:
    with ledger.engine.connect() as conn:
        return int(conn.execute(select(func.min(deliveries.c.id))).scalar_one())


def test_a_changed_body_of_a_logged_delivery_is_named(ledger: Ledger) -> None:
    """Other bytes under the same recorded SHA-256: one body_mismatch, with both hashes; with
    bodies skipped the ledger verifies."""
    _grow(ledger)
    assert _verify(ledger).ok
    victim = _first_delivery(ledger)
    _set_body(ledger, victim, zlib.compress(b'{"forged": true}'))
    report = _verify(ledger)
    assert _named(report) == [("body_mismatch", "deliveries", victim)]
    assert report.problems[0].expected != report.problems[0].actual
    assert _verify(ledger, bodies=False).ok


def test_bytes_that_do_not_inflate_are_a_mismatch(ledger: Ledger) -> None:
    """A stored body that is no zlib stream at all is reported, not a crash of verify."""
    _grow(ledger)
    victim = _first_delivery(ledger)
    _set_body(ledger, victim, b"not zlib at all")
    report = _verify(ledger)
    assert _named(report) == [("body_mismatch", "deliveries", victim)]
    assert report.problems[0].actual is None and "inflate" in report.problems[0].detail


def test_a_delivery_not_yet_logged_has_its_body_checked_too(ledger: Ledger) -> None:
    """A queued delivery is in no log entry yet: its body is checked all the same."""
    _grow(ledger)
    deliver(ledger.store, push_payload([commit()]))  # queued, not yet integrated
    with ledger.engine.connect() as conn:
        queued = int(conn.execute(select(func.max(deliveries.c.id))).scalar_one())
    report = _verify(ledger)
    assert report.ok and report.pending > 0
    _set_body(ledger, queued, zlib.compress(b"{}"))
    report = _verify(ledger)
    assert _named(report) == [("body_mismatch", "deliveries", queued)] and report.pending > 0
    assert SqlLog(ledger.engine).integrate(SIGNER) is not None
    assert _named(_verify(ledger)) == [("body_mismatch", "deliveries", queued)]
