"""`labledger migrate --app-role`: the restricted PostgreSQL role, made from the CLI."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from labledger.cli import main
from labledger.storage.engine import make_engine
from labledger.storage.sql_store import SqlStore
from tests.conftest import Ledger, _libpq
from tests.support import session_spec

PASSWORD = "app-role-password-9f8e7d6c5b4a"


@pytest.fixture
def role_name(pg_ledger: Ledger) -> Iterator[str]:
    """A fresh role name, dropped (with what it was granted) after the test."""
    role = f"labledger_app_{uuid.uuid4().hex[:8]}"
    yield role
    pg_ledger.engine.dispose()
    with psycopg.connect(_libpq(pg_ledger.url), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
            conn.execute(f'DROP OWNED BY "{role}"')  # type: ignore[arg-type]
            conn.execute(f'DROP ROLE "{role}"')  # type: ignore[arg-type]


def _migrate(ledger: Ledger, monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setenv("LABLEDGER_DATABASE_URL", ledger.url)
    monkeypatch.setenv("APP_PW", PASSWORD)
    for name in ("LABLEDGER_CONFIG", "LABLEDGER_API_TOKENS"):
        monkeypatch.delenv(name, raising=False)
    return main(["migrate", *args])


def test_migrate_creates_app_role(
    pg_ledger: Ledger,
    role_name: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`migrate --app-role NAME --app-password-env VAR` makes a login role with a hashed
    password that can record, and prints the password nowhere."""
    assert (
        _migrate(pg_ledger, monkeypatch, "--app-role", role_name, "--app-password-env", "APP_PW")
        == 0
    )
    shown = capsys.readouterr()
    assert PASSWORD not in shown.out + shown.err
    with pg_ledger.engine.connect() as conn:
        stored = conn.execute(
            text("SELECT rolpassword FROM pg_authid WHERE rolname = :r"), {"r": role_name}
        ).scalar_one()
    assert stored.startswith("SCRAM-SHA-256$") and PASSWORD not in stored
    url = make_url(pg_ledger.url).set(username=role_name, password=PASSWORD)
    engine = make_engine(url.render_as_string(hide_password=False))
    store = SqlStore(engine)
    assert store.create_session(session_spec(), "test", datetime.now(UTC)).id == 1
    engine.dispose()


def test_app_role_on_sqlite_is_refused_in_one_line(
    sqlite_ledger: Ledger, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--app-role` on SQLite exits 2 with one line saying it needs PostgreSQL."""
    assert _migrate(sqlite_ledger, monkeypatch, "--app-role", "app") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "needs PostgreSQL" in err
