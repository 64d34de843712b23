"""Shared fixtures: a migrated ledger on SQLite and on PostgreSQL for every contract test.

PostgreSQL tests need LABLEDGER_TEST_PG_URL (an admin URL; each test gets a throw-away
database cloned from a migrated template). Without it they skip, except under CI=true,
where a missing or unreachable PostgreSQL is an error.
"""

from __future__ import annotations

import os
import queue
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from labledger.storage import migrate
from labledger.storage.engine import make_engine
from labledger.storage.sql_store import SqlStore
from tests.support import SIGNER

PG_ENV = "LABLEDGER_TEST_PG_URL"


@dataclass
class Ledger:
    """A migrated, empty ledger database for one test."""

    dialect: str
    url: str
    engine: Engine
    store: SqlStore


def _pg_admin_url() -> str | None:
    url = os.environ.get(PG_ENV)
    if not url:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{PG_ENV} is not set: PostgreSQL tests must run in CI", pytrace=False)
        return None
    try:
        with psycopg.connect(_libpq(url), connect_timeout=5):
            pass
    except psycopg.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at {url} is unreachable in CI: {exc}", pytrace=False)
        return None
    return url


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


class PgDatabases:
    """Creates throw-away databases from one migrated template.

    PostgreSQL's CREATE DATABASE copies the template and its DROP DATABASE waits for a
    checkpoint, so neither runs inside a test: a maker thread keeps SPARE migrated databases
    ready, and a dropper thread drops what tests are done with while the next ones run."""

    SPARE = 2

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.template = f"labledger_tmpl_{uuid.uuid4().hex[:10]}"
        self._admin(f'CREATE DATABASE "{self.template}"')
        engine = make_engine(_with_database(admin_url, self.template))
        migrate.upgrade(engine, origin=SIGNER.name)
        engine.dispose()
        self._spares: queue.Queue[str] = queue.Queue(maxsize=self.SPARE)
        self._done: queue.Queue[str | None] = queue.Queue()
        self._stop = threading.Event()
        self._failure: BaseException | None = None
        self._maker = threading.Thread(target=self._make_spares, daemon=True)
        self._dropper = threading.Thread(target=self._drop_done, daemon=True)
        self._maker.start()
        self._dropper.start()

    def _admin(self, sql: str) -> None:
        with psycopg.connect(_libpq(self.admin_url), autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def _new(self, migrated: bool) -> str:
        name = f"labledger_t_{uuid.uuid4().hex[:12]}"
        template = f' TEMPLATE "{self.template}"' if migrated else ""
        self._admin(f'CREATE DATABASE "{name}"{template}')
        return _with_database(self.admin_url, name)

    def _make_spares(self) -> None:
        try:
            while not self._stop.is_set():
                url = self._new(migrated=True)
                while True:
                    try:
                        self._spares.put(url, timeout=0.2)
                        break
                    except queue.Full:
                        if self._stop.is_set():
                            self._done.put(url)
                            return
        except BaseException as exc:  # handed to the test that waits for a database
            self._failure = exc

    def _drop_done(self) -> None:
        while (url := self._done.get()) is not None:
            name = make_url(url).database
            try:
                self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except psycopg.Error as exc:  # reported by close(), at the end of the session
                self._failure = exc

    def create(self, migrated: bool = True) -> str:
        if not migrated:
            return self._new(migrated=False)
        while True:
            try:
                return self._spares.get(timeout=0.2)
            except queue.Empty:
                if self._failure is not None:
                    raise self._failure from None
                if not self._maker.is_alive():
                    return self._new(migrated=True)

    def drop(self, url: str) -> None:
        self._done.put(url)

    def close(self) -> None:
        self._stop.set()
        self._maker.join()
        while not self._spares.empty():
            self._done.put(self._spares.get())
        self._done.put(None)
        self._dropper.join()
        self._admin(f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)')
        if self._failure is not None:
            raise self._failure


@pytest.fixture(scope="session")
def pg_databases() -> Iterator[PgDatabases | None]:
    url = _pg_admin_url()
    if url is None:
        yield None
        return
    databases = PgDatabases(url)
    yield databases
    databases.close()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tmpl") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine, origin=SIGNER.name)
    engine.dispose()
    return path


def _sqlite_ledger(template: Path, tmp_path: Path) -> Ledger:
    path = tmp_path / "ledger.db"
    path.write_bytes(template.read_bytes())
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    return Ledger("sqlite", url, engine, SqlStore(engine))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def ledger(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    sqlite_template: Path,
    pg_databases: PgDatabases | None,
) -> Iterator[Ledger]:
    """A fresh, migrated ledger, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        made = _sqlite_ledger(sqlite_template, tmp_path)
        yield made
        made.engine.dispose()
        return
    yield from _pg_ledger(pg_databases)


def _pg_ledger(pg_databases: PgDatabases | None) -> Iterator[Ledger]:
    if pg_databases is None:
        pytest.skip(f"PostgreSQL not configured ({PG_ENV})")
    url = pg_databases.create()
    engine = make_engine(url)
    yield Ledger("postgresql", url, engine, SqlStore(engine))
    engine.dispose()
    pg_databases.drop(url)


@pytest.fixture
def sqlite_ledger(sqlite_template: Path, tmp_path: Path) -> Iterator[Ledger]:
    """A fresh, migrated ledger on SQLite only."""
    made = _sqlite_ledger(sqlite_template, tmp_path)
    yield made
    made.engine.dispose()


@pytest.fixture
def pg_ledger(pg_databases: PgDatabases | None) -> Iterator[Ledger]:
    """A fresh, migrated ledger on PostgreSQL only, for what only PostgreSQL has."""
    yield from _pg_ledger(pg_databases)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_database(
    request: pytest.FixtureRequest, tmp_path: Path, pg_databases: PgDatabases | None
) -> Iterator[str]:
    """The URL of an empty, unmigrated database on each dialect."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    if pg_databases is None:
        pytest.skip(f"PostgreSQL not configured ({PG_ENV})")
    url = pg_databases.create(migrated=False)
    yield url
    pg_databases.drop(url)


@pytest.fixture
def app_role(pg_ledger: Ledger) -> Iterator[str]:
    """A restricted login role made by `create_app_role` on a PostgreSQL ledger."""
    ledger = pg_ledger
    role = f"labledger_app_{uuid.uuid4().hex[:8]}"
    migrate.create_app_role(ledger.engine, role, password=None)
    yield make_url(ledger.url).set(username=role).render_as_string(hide_password=False)
    ledger.engine.dispose()
    with psycopg.connect(_libpq(ledger.url), autocommit=True) as conn:
        conn.execute(f'DROP OWNED BY "{role}"')  # type: ignore[arg-type]
        conn.execute(f'DROP ROLE "{role}"')  # type: ignore[arg-type]
