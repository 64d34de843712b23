"""The append-only DDL exactly as revisions 0001 to 0004 run it. Never edit this file.

A migration must produce the same schema whenever it runs, so the revisions import this frozen
copy, not storage/append_only.py (the schema as it is now, which later revisions may change).
A later revision that needs other DDL writes its own. 0004 replaces the function made here with
one that lets a declared maintenance transaction through.
"""

from __future__ import annotations

PG_FUNCTION = "labledger_refuse_change"

_PG_FUNCTION_DDL = f"""
CREATE OR REPLACE FUNCTION {PG_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'labledger: % on % is refused: the ledger is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$
"""


def trigger_names(dialect: str, table: str) -> tuple[str, ...]:
    if dialect == "postgresql":
        return (f"{table}_append_only", f"{table}_no_truncate")
    return (f"{table}_no_update", f"{table}_no_delete")


def create_statements(dialect: str, tables: tuple[str, ...]) -> list[str]:
    """DDL that makes `tables` refuse UPDATE, DELETE and TRUNCATE."""
    if dialect == "postgresql":
        return [_PG_FUNCTION_DDL.strip(), *(s for t in tables for s in _pg_triggers(t))]
    if dialect == "sqlite":
        # SQLite has no TRUNCATE; its truncate optimisation is off when a DELETE trigger exists.
        return [s for t in tables for s in _sqlite_triggers(t)]
    raise ValueError(f"unsupported database dialect {dialect!r}")


def drop_statements(dialect: str, tables: tuple[str, ...]) -> list[str]:
    on_table = dialect == "postgresql"
    drops = [
        f"DROP TRIGGER IF EXISTS {name}" + (f" ON {table}" if on_table else "")
        for table in tables
        for name in trigger_names(dialect, table)
    ]
    if on_table:
        drops.append(f"DROP FUNCTION IF EXISTS {PG_FUNCTION}()")
    return drops


def _pg_triggers(table: str) -> list[str]:
    row, truncate = trigger_names("postgresql", table)
    return [
        f"CREATE TRIGGER {row} BEFORE UPDATE OR DELETE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION {PG_FUNCTION}()",
        f"CREATE TRIGGER {truncate} BEFORE TRUNCATE ON {table} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {PG_FUNCTION}()",
        # ALWAYS: the triggers fire even under session_replication_role = replica.
        f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {row}",
        f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {truncate}",
    ]


def _sqlite_triggers(table: str) -> list[str]:
    update, delete = trigger_names("sqlite", table)
    refusal = (
        "SELECT RAISE(ABORT, 'labledger: {op} on {table} is refused: the ledger is append-only')"
    )
    return [
        f"CREATE TRIGGER {update} BEFORE UPDATE ON {table} BEGIN "
        + refusal.format(op="UPDATE", table=table)
        + "; END",
        f"CREATE TRIGGER {delete} BEFORE DELETE ON {table} BEGIN "
        + refusal.format(op="DELETE", table=table)
        + "; END",
    ]
