"""Alembic migrations yield exactly the models' schema, triggers included, on both dialects."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from labledger.storage import append_only, migrate
from labledger.storage.engine import make_engine
from labledger.storage.tables import APPEND_ONLY_TABLES, metadata


def _triggers(engine: object) -> dict[str, str]:
    with engine.connect() as conn:  # type: ignore[attr-defined]
        if conn.dialect.name == "sqlite":
            rows = conn.execute(text("SELECT name, 'A' FROM sqlite_master WHERE type = 'trigger'"))
        else:
            rows = conn.execute(
                text("SELECT tgname, tgenabled FROM pg_trigger WHERE NOT tgisinternal")
            )
        return {name: enabled for name, enabled in rows}


def _expected_triggers(dialect: str) -> dict[str, str]:
    return {n: "A" for t in APPEND_ONLY_TABLES for n in append_only.trigger_names(dialect, t)}


def test_upgrade_head_yields_the_models_schema(empty_database: str) -> None:
    """After `upgrade head`, autogenerate finds no difference and every trigger exists."""
    engine = make_engine(empty_database)
    migrate.upgrade(engine)
    with engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), metadata
        )
    assert diff == []
    # 'A': PostgreSQL fires these triggers ALWAYS, even under session_replication_role=replica
    assert _triggers(engine) == _expected_triggers(engine.dialect.name)
    assert migrate.is_up_to_date(engine)
    engine.dispose()


def test_downgrade_and_upgrade_round_trip(empty_database: str) -> None:
    """Downgrading to base removes every table and trigger; upgrading again restores them."""
    engine = make_engine(empty_database)
    migrate.upgrade(engine)
    migrate.downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    assert _triggers(engine) == {}
    migrate.upgrade(engine)
    assert set(inspect(engine).get_table_names()) == {*metadata.tables, "alembic_version"}
    assert _triggers(engine) == _expected_triggers(engine.dialect.name)
    engine.dispose()


def test_downgrading_one_revision_keeps_the_older_triggers(empty_database: str) -> None:
    """Stepping back from the Merkle log revision leaves 0001's tables append-only."""
    engine = make_engine(empty_database)
    migrate.upgrade(engine)
    migrate.downgrade(engine, "0001")
    first = ("lab_sessions", "deliveries", "pushes", "push_commits", "attempts", "audit_events")
    dialect = engine.dialect.name
    assert _triggers(engine) == {
        n: "A" for t in first for n in append_only.trigger_names(dialect, t)
    }
    migrate.upgrade(engine)
    assert _triggers(engine) == _expected_triggers(dialect)
    engine.dispose()


def test_the_runtime_append_only_ddl_is_what_the_migrations_made(empty_database: str) -> None:
    """storage/append_only.py (used at run time, e.g. by maintenance on SQLite) describes the
    schema the frozen migrations produce: the same trigger text, the same PostgreSQL function."""
    engine = make_engine(empty_database)
    migrate.upgrade(engine)
    dialect = engine.dialect.name
    runtime = append_only.create_statements(dialect, APPEND_ONLY_TABLES)
    with engine.connect() as conn:
        if dialect == "sqlite":
            rows = conn.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"))
            stored = {name: sql for name, sql in rows}
            made = {s.split()[2]: s for s in runtime}
            assert made == stored
        else:
            body = conn.execute(
                text("SELECT prosrc FROM pg_proc WHERE proname = :name"),
                {"name": append_only.PG_FUNCTION},
            ).scalar_one()
            function = next(s for s in runtime if s.startswith("CREATE OR REPLACE FUNCTION"))
            assert function.split("$$")[1] == body
            assert "labledger.maintenance" in body
    engine.dispose()
