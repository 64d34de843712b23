"""Ledgers written before issue 21 (by b55e98c; tests/fixtures/ledgers/make_ledgers.py)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from labledger.cli import main
from labledger.storage import migrate
from labledger.storage.engine import make_engine
from labledger.storage.sql_store import SqlStore
from tests.conftest import PgDatabases
from tests.contract.helpers import deliver
from tests.support import SIGNER, body_of, commit, push_payload

LEDGERS = Path(__file__).parent.parent / "fixtures" / "ledgers"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def old_ledger(
    request: pytest.FixtureRequest, tmp_path: Path, pg_databases: PgDatabases | None
) -> Iterator[str]:
    """A copy of the ledger b55e98c wrote, on SQLite or restored from its pg_dump."""
    if request.param == "sqlite":
        copy = tmp_path / "old.sqlite"
        shutil.copyfile(LEDGERS / "b55e98c.sqlite", copy)
        yield f"sqlite:///{copy}"
        return
    if pg_databases is None:
        pytest.skip("PostgreSQL not configured (LABLEDGER_TEST_PG_URL)")
    url = pg_databases.create(migrated=False)
    libpq = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    subprocess.run(
        ["psql", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(LEDGERS / "b55e98c.pg.sql"), libpq],
        check=True,
        capture_output=True,
    )
    yield url
    pg_databases.drop(url)


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(list(argv))
    return code, capsys.readouterr().out


def test_ledger_written_before_this_round_upgrades_and_verifies(
    old_ledger: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`migrate` upgrades an old ledger, which keeps its origin, verifies intact, and whose
    receipts (issued before its purge and erasure) still verify."""
    monkeypatch.setenv("LABLEDGER_DATABASE_URL", old_ledger)
    monkeypatch.setenv("LABLEDGER_SIGNING_KEY_FILE", str(LEDGERS / "b55e98c.key"))
    assert _cli(capsys, "migrate")[0] == 0
    engine = make_engine(old_ledger)
    assert migrate.ledger_origin(engine) == SIGNER.name
    engine.dispose()
    code, out = _cli(capsys, "verify")
    # Retention ran on this ledger, so verify may say what it could not re-derive ("limited:").
    lines = out.splitlines()
    assert (code, lines[-1].startswith("intact:")) == (0, True), out
    assert all(line.startswith("limited: ") for line in lines[:-1]), out
    dialect = make_url(old_ledger).get_backend_name()
    receipts = sorted((LEDGERS / "receipts").glob(f"{dialect}-attempt-*.json"))
    assert len(receipts) == 8
    for receipt in receipts:
        public_key = str(LEDGERS / "b55e98c.pub")
        code, out = _cli(capsys, "verify-receipt", str(receipt), "--public-key", public_key)
        assert (receipt.name, code) == (receipt.name, 0), out


def test_old_ledger_with_a_replayed_body_upgrades_and_refuses_a_third_copy(
    old_ledger: str,
) -> None:
    """An old ledger holding one body under two delivery ids migrates; the body stays claimed."""
    engine = make_engine(old_ledger)
    migrate.upgrade(engine)
    store = SqlStore(engine)
    counts = store.count_rows()
    assert counts["delivery_bodies"] < counts["deliveries"]
    answer = deliver(store, body_of(push_payload([commit("replayed")])))
    assert answer.outcome == "duplicate"
    engine.dispose()
