"""Schema migrations (Alembic) and the restricted PostgreSQL application role."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, inspect, text

from labledger.core.errors import LedgerOriginUnknown
from labledger.storage.engine import WRITE_OPTION
from labledger.storage.tables import APPEND_ONLY_TABLES

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
_REVISION_LINE = re.compile(r'^(revision|down_revision)\b[^=\n]*=\s*"?(\w+)"?', re.MULTILINE)

# Alembic is imported by the functions that migrate, not here: every CLI verb checks that the
# database is up to date, and importing Alembic would cost more than the rest of a verb's start.


def alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(engine: Engine, revision: str = "head", origin: str | None = None) -> None:
    """`origin`: the log name a new ledger is given (default: a random one); a ledger that
    already has one keeps it."""
    from alembic import command

    _run(engine, lambda cfg: command.upgrade(cfg, revision), origin)


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    _run(engine, lambda cfg: command.downgrade(cfg, revision))


def _run(engine: Engine, action: object, origin: str | None = None) -> None:
    config = alembic_config()
    config.attributes["origin"] = origin
    with engine.connect() as conn:
        conn = conn.execution_options(**{WRITE_OPTION: True})
        config.attributes["connection"] = conn
        action(config)  # type: ignore[operator]
        conn.commit()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def newest_revision() -> str | None:
    """head_revision without Alembic: the one revision no version file names as its parent."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in (MIGRATIONS / "versions").glob("*.py"):
        for key, value in _REVISION_LINE.findall(script.read_text(encoding="utf-8")):
            (revisions if key == "revision" else parents).add(value)
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def is_up_to_date(engine: Engine) -> bool:
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return False
        stored = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    return stored == [newest_revision()]


def ledger_origin(engine: Engine) -> str:
    """The origin recorded at the first migration; several rows mean someone added one."""
    with engine.connect() as conn:
        found = conn.execute(text("SELECT origin FROM ledger_origin")).scalars().all()
    if len(found) != 1:
        raise LedgerOriginUnknown(len(found))
    return str(found[0])


def key_refusal(engine: Engine, key_name: str) -> str | None:
    """Why a signing key named `key_name` may not sign this ledger (None: it may): one key,
    one ledger, so that two ledgers' checkpoints can never be mistaken for one another."""
    origin = ledger_origin(engine)
    if key_name == origin:
        return None
    return (
        f"the key {key_name!r} belongs to another ledger; this ledger's origin is "
        f"{origin!r}: point LABLEDGER_SIGNING_KEY_FILE at a new file and run "
        "`labledger keys init` to make this ledger's key"
    )


def create_app_role(engine: Engine, role: str, password: str | None) -> None:
    """Create (or re-grant) a PostgreSQL login role that may only SELECT and INSERT.

    The server runs as this role, so even a bug in labledger cannot UPDATE, DELETE or
    TRUNCATE the ledger: the database refuses twice, by privilege and by trigger.
    """
    if engine.dialect.name != "postgresql":
        raise ValueError("an application role exists only on PostgreSQL")
    quoted = engine.dialect.identifier_preparer.quote(role)
    with engine.begin() as conn:
        exists = conn.execute(
            text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}
        ).first()
        if not exists:
            conn.execute(text(f"CREATE ROLE {quoted} LOGIN"))
        if password is not None:
            # DDL takes no bound parameters; the SCRAM verifier made here (as `psql \password`
            # makes it) is all the statement holds, so neither the server's log nor an error
            # message can show the password itself.
            verifier = _scram_verifier(conn, role, password)
            # exec_driver_sql: text() would read the verifier's `:salt` as a bind parameter
            conn.exec_driver_sql(f"ALTER ROLE {quoted} PASSWORD '{verifier}'")
        database = conn.execute(text("SELECT current_database()")).scalar_one()
        db_quoted = engine.dialect.identifier_preparer.quote(database)
        conn.execute(text(f"GRANT CONNECT ON DATABASE {db_quoted} TO {quoted}"))
        conn.execute(text(f"GRANT USAGE ON SCHEMA public TO {quoted}"))
        tables = ", ".join(APPEND_ONLY_TABLES)
        conn.execute(text(f"REVOKE ALL ON {tables}, log_queue, alembic_version FROM {quoted}"))
        conn.execute(text(f"GRANT SELECT, INSERT ON {tables} TO {quoted}"))
        # The queue of entries awaiting the Merkle log is work, not ledger: the integrator
        # (running as this role inside `serve`) deletes what it has integrated.
        conn.execute(text(f"GRANT SELECT, INSERT, DELETE ON log_queue TO {quoted}"))
        conn.execute(text(f"GRANT SELECT ON alembic_version TO {quoted}"))
        # `serve` reconciles on a schedule as this role: it records how far it has read.
        conn.execute(text(f"GRANT SELECT, INSERT ON reconcile_marks TO {quoted}"))
        conn.execute(text(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {quoted}"))


def _scram_verifier(conn: Connection, role: str, password: str) -> str:
    """The password as PostgreSQL stores it, hashed by libpq with the server's algorithm."""
    pgconn = conn.connection.dbapi_connection.pgconn  # type: ignore[union-attr]
    made = str(pgconn.encrypt_password(password.encode(), role.encode(), None).decode("ascii"))
    if "'" in made or "\\" in made:  # never: base64, digits, `$` and `:`; checked, not assumed
        raise ValueError("unexpected characters in the password verifier")
    return made
