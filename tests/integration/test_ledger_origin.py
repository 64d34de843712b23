"""One key, one ledger: the origin is recorded at the first migration (issue 21 item 7)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from labledger.cli import main
from labledger.storage import migrate
from labledger.storage.engine import make_engine
from tests.conftest import PgDatabases
from tests.support import SECRET, SIGNER, TOKEN


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_database(
    request: pytest.FixtureRequest, tmp_path: Path, pg_databases: PgDatabases | None
) -> Iterator[str]:
    """An empty database that no labledger has migrated yet."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'new.db'}"
        return
    if pg_databases is None:
        pytest.skip("PostgreSQL not configured (LABLEDGER_TEST_PG_URL)")
    url = pg_databases.create(migrated=False)
    yield url
    pg_databases.drop(url)


def _origin(url: str) -> str:
    engine = make_engine(url)
    try:
        return migrate.ledger_origin(engine)
    finally:
        engine.dispose()


def _env(monkeypatch: pytest.MonkeyPatch, url: str, key_file: Path) -> None:
    for name in ("LABLEDGER_CONFIG", "LABLEDGER_GITHUB_WEBHOOK_SECRETS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LABLEDGER_DATABASE_URL", url)
    monkeypatch.setenv("LABLEDGER_SIGNING_KEY_FILE", str(key_file))
    monkeypatch.setenv("LABLEDGER_GITHUB_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("LABLEDGER_API_TOKENS", TOKEN)


def _must_not_serve(*args: object, **kwargs: object) -> None:
    raise AssertionError("serve started with the key of another ledger")


def test_key_of_another_ledger_is_refused(
    empty_database: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """serve, integrate and verify refuse the key of another ledger and say how to make one."""
    other_ledgers_key = tmp_path / "old.key"
    other_ledgers_key.write_text(SIGNER.encode() + "\n", encoding="utf-8")
    _env(monkeypatch, empty_database, other_ledgers_key)
    monkeypatch.setattr(uvicorn, "run", _must_not_serve)
    assert main(["migrate"]) == 0
    for verb in (["serve"], ["integrate"], ["verify"]):
        capsys.readouterr()
        assert main(verb) == 2, verb
        err = capsys.readouterr().err
        assert "belongs to another ledger" in err and "labledger keys init" in err, err
        assert len(err.strip().splitlines()) == 1, err
    _env(monkeypatch, empty_database, tmp_path / "new.key")
    assert main(["keys", "init"]) == 0
    assert main(["integrate"]) == 0
    assert main(["verify"]) == 0


def test_default_origin_does_not_depend_on_host_name(
    empty_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new ledger's origin names neither the host nor another ledger, so two never share it."""
    _env(monkeypatch, empty_database, tmp_path / "unused.key")
    assert main(["migrate"]) == 0
    second = f"sqlite:///{tmp_path / 'second.db'}"
    migrate.upgrade(make_engine(second))
    first_origin, second_origin = _origin(empty_database), _origin(second)
    assert first_origin != second_origin
    for host in (os.uname().nodename, socket.gethostname()):
        assert host not in first_origin and host not in second_origin
    assert main(["migrate"]) == 0
    assert _origin(empty_database) == first_origin  # a migrated ledger keeps its origin
