"""Throw-away SQLite files and PostgreSQL databases, every one removed again, even on failure."""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from labledger.core.model import AuditEvent, SessionSpec
from labledger.storage import migrate
from labledger.storage.engine import make_engine
from labledger.storage.sql_store import SqlStore

OPENS_AT = datetime(2025, 1, 1, tzinfo=UTC)
DUE_AT = datetime(2025, 12, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Database:
    dialect: str  # sqlite | postgresql
    url: str  # as labledger takes it: sqlite:///PATH or postgresql://...
    name: str


def with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


class Databases:
    """Creates databases under `scratch` (SQLite) or on the PostgreSQL at `pg_admin_url`."""

    def __init__(self, scratch: Path, pg_admin_url: str | None) -> None:
        self.scratch = scratch
        self.pg_admin_url = pg_admin_url
        self._made: list[Database] = []
        self._watcher: psycopg.Connection[tuple[object, ...]] | None = None

    def create(self, dialect: str, label: str) -> Database:
        name = f"bench_{label}_{uuid.uuid4().hex[:10]}"
        if dialect == "sqlite":
            folder = self.scratch / name
            folder.mkdir(parents=True)
            made = Database("sqlite", f"sqlite:///{folder / 'ledger.db'}", str(folder))
        else:
            self._admin(f'CREATE DATABASE "{name}"')
            made = Database("postgresql", with_database(self._pg(), name), name)
        self._made.append(made)
        return made

    def drop(self, database: Database) -> None:
        if database.dialect == "sqlite":
            shutil.rmtree(database.name, ignore_errors=True)
        else:
            self._admin(f'DROP DATABASE IF EXISTS "{database.name}" WITH (FORCE)')
        if database in self._made:
            self._made.remove(database)

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.close()
        for database in list(self._made):
            self.drop(database)

    def backend_pids(self, database: Database) -> list[int]:
        """PostgreSQL server processes serving `database` (for their CPU time)."""
        if database.dialect != "postgresql":
            return []
        if self._watcher is None or self._watcher.closed:
            self._watcher = psycopg.connect(
                self._pg(), autocommit=True
            )  # one, kept: no fork a call
        sql = "SELECT pid FROM pg_stat_activity WHERE datname = %s"
        return [int(str(row[0])) for row in self._watcher.execute(sql, (database.name,))]

    def server_version(self) -> str | None:
        if self.pg_admin_url is None:
            return None
        with psycopg.connect(self._pg(), autocommit=True) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else None

    def _pg(self) -> str:
        if self.pg_admin_url is None:
            raise RuntimeError("no PostgreSQL configured")
        return self.pg_admin_url

    def _admin(self, sql: str) -> None:
        with psycopg.connect(self._pg(), autocommit=True) as conn:
            conn.execute(sql)


def pg_reachable(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=5):
            return True
    except psycopg.OperationalError:
        return False


def migrate_ledger(database: Database) -> None:
    engine = make_engine(database.url)
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()


def session_spec(repo_id: int) -> SessionSpec:
    return SessionSpec(
        lab_id="lab-3",
        subject_id=f"student{repo_id}",
        forge="github",
        repository_id=repo_id,
        repository_full_name=f"student{repo_id}/lab-{repo_id}",
        opens_at=OPENS_AT,
        due_at=DUE_AT,
    )


def create_ledger_sessions(database: Database, repo_ids: list[int]) -> dict[int, int]:
    """One lab session per repository, through labledger's own store; repo id -> session id."""
    engine = make_engine(database.url)
    now = datetime.now(UTC)
    made = {}
    try:
        with SqlStore(engine).transaction() as tx:
            for repo_id in repo_ids:
                session = tx.insert_session(session_spec(repo_id), now)
                tx.append_audit(_session_audit(session.id, repo_id, now))
                made[repo_id] = session.id
    finally:
        engine.dispose()
    return made


def _session_audit(session_id: int, repo_id: int, now: datetime) -> AuditEvent:
    """The audit event the API writes with a session (`verify` checks the session against it)."""
    details: dict[str, object] = {"lab_id": session_spec(repo_id).lab_id, "repository_id": repo_id}
    return AuditEvent("bench", "session.created", "session", str(session_id), details, now)
