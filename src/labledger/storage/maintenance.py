"""The one path through the append-only rules: retention's purge and erasure (issue 7).

PostgreSQL: the transaction declares itself maintenance (`SET LOCAL labledger.maintenance`),
which the trigger function of revision 0004 honours; the server's role still cannot UPDATE or
DELETE, because it holds only SELECT and INSERT. SQLite has no roles: the transaction drops
the triggers of the tables it changes and creates them again before it commits, so no other
connection ever sees them missing and a crash rolls both back.

Erased bytes must not linger: SQLite runs with `secure_delete` (freed space is zeroed) and
truncates its WAL afterwards; PostgreSQL rewrites the touched tables with `VACUUM FULL`,
since a plain VACUUM leaves dead tuples' bytes on the page.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import structlog
from sqlalchemy import Connection, Engine, text
from sqlalchemy import exc as sa_exc

from labledger.core.errors import MaintenanceRefused
from labledger.storage import append_only
from labledger.storage.engine import WRITE_OPTION
from labledger.storage.sql_store import translate_db_errors

log = structlog.get_logger("labledger.maintenance")
SNAPSHOT_WAIT_SECONDS = 30.0


@contextmanager
def maintenance(engine: Engine, tables: Sequence[str]) -> Iterator[Connection]:
    """One write transaction allowed to UPDATE and DELETE rows of `tables`."""
    dialect = engine.dialect.name
    with _privileged(), translate_db_errors(), engine.connect() as conn:
        conn = conn.execution_options(**{WRITE_OPTION: True})
        if dialect == "sqlite":
            _pragma(conn, "PRAGMA secure_delete = ON")
        with conn.begin():
            if dialect == "postgresql":
                conn.execute(text("SET LOCAL labledger.maintenance = 'on'"))
                yield conn
            else:
                for statement in append_only.drop_statements(dialect, tuple(tables)):
                    conn.exec_driver_sql(statement)
                yield conn
                for statement in append_only.create_statements(dialect, tuple(tables)):
                    conn.exec_driver_sql(statement)
        if dialect == "sqlite":
            _pragma(conn, "PRAGMA secure_delete = OFF")


@contextmanager
def _privileged() -> Iterator[None]:
    try:
        yield
    except sa_exc.ProgrammingError as exc:
        if "permission denied" not in str(exc.orig):
            raise
        raise MaintenanceRefused(
            f"{str(exc.orig).strip().splitlines()[0]}: purge and erase must run as the schema "
            "owner; set LABLEDGER_MAINTENANCE_DATABASE_URL to its connection (the server's "
            "role may only SELECT and INSERT)"
        ) from exc


def _pragma(conn: Connection, statement: str) -> None:
    # Straight to the driver: through SQLAlchemy the statement would open a transaction.
    conn.connection.driver_connection.execute(statement).close()  # type: ignore[union-attr]


def compact(engine: Engine, tables: Sequence[str]) -> None:
    """Leave no copy of removed or overwritten bytes in the database's own files."""
    if not tables:
        return
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            _wait_for_older_snapshots(conn)
            for table in tables:
                conn.exec_driver_sql(f"VACUUM FULL {table}")
        return
    with engine.connect() as conn:
        # Old page images may still sit in the WAL; fold it in and cut it to zero bytes.
        _pragma(conn, "PRAGMA wal_checkpoint(TRUNCATE)")


def _wait_for_older_snapshots(conn: Connection, timeout: float = SNAPSHOT_WAIT_SECONDS) -> None:
    """VACUUM FULL keeps a row version that an open transaction may still see. Wait (a while)
    until every transaction that began before the change committed has ended, so the rewrite
    drops the old versions; past the timeout, go on and say what is left to do."""
    horizon = int(conn.exec_driver_sql("SELECT pg_current_xact_id()::text").scalar_one())
    older = (
        "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
        "AND backend_xmin IS NOT NULL AND age(backend_xmin) > age(%(horizon)s::text::xid)"
    )
    deadline = time.monotonic() + timeout
    while conn.exec_driver_sql(older, {"horizon": str(horizon % 2**32)}).scalar_one():
        if time.monotonic() >= deadline:
            log.warning(
                "maintenance.compact_early",
                detail="a transaction older than the change is still open; old row versions "
                "may stay on disk until the next VACUUM FULL",
            )
            return
        time.sleep(0.1)
