"""The ingest path's INSERTs, written once per table and number of rows, run on the DBAPI cursor.

Each webhook runs half a dozen INSERTs. Through `Connection.execute` every one of them paid
about 67 µs of SQLAlchemy's own work (an execution context, parameter processing, a result
object) on top of the driver's. Here a statement is a plain multi-row INSERT written from the
table's SQLAlchemy definition and kept; its values go through the bind processors of the
column types SQLAlchemy would apply (UtcDateTime, JSON, Boolean...), so the rows stored are
the same, byte for byte (a contract test compares them with rows written through SQLAlchemy).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Dialect, Table

Row = Mapping[str, Any]

# Rows a multi-row INSERT carries at most: SQLite binds at most 32,766 values a statement, and
# an attempt row binds 19. Longer lists go in several statements.
MAX_ROWS = 256


@dataclass(frozen=True, slots=True)
class Binder:
    """Turns rows into the values the driver is given: each column through the bind processor
    of its type that SQLAlchemy would apply, in the order of the shape's columns."""

    columns: tuple[str, ...]
    binds: tuple[Callable[[Any], Any] | None, ...]

    def values(self, row: Row) -> tuple[Any, ...]:
        return tuple(
            row[column] if bind is None else bind(row[column])
            for column, bind in zip(self.columns, self.binds, strict=True)
        )


def compile_insert(
    dialect: Dialect,
    table: Table,
    columns: Sequence[str],
    rows: int = 1,
    conflict_keys: Sequence[str] = (),
    returning: Sequence[str] = (),
) -> str:
    """INSERT INTO table (columns) VALUES (...) x rows [ON CONFLICT DO NOTHING] [RETURNING],
    with positional parameters: `?` for sqlite3; `$n::type` for psycopg's raw cursor, which
    sends the statement as written (its default cursor parses every statement of more than
    50 parameters again at each execution to rewrite `%s`)."""
    quote = dialect.identifier_preparer.quote
    if dialect.name == "postgresql":
        casts = [f"::{table.c[c].type.compile(dialect=dialect)}" for c in columns]
        groups = [
            ", ".join(f"${n * len(columns) + k + 1}{cast}" for k, cast in enumerate(casts))
            for n in range(rows)
        ]
    else:
        groups = [", ".join("?" * len(columns))] * rows
    sql = f"INSERT INTO {quote(table.name)} ({', '.join(map(quote, columns))}) VALUES "
    sql += ", ".join(f"({group})" for group in groups)
    if conflict_keys:
        sql += f" ON CONFLICT ({', '.join(map(quote, conflict_keys))}) DO NOTHING"
    if returning:
        sql += f" RETURNING {', '.join(map(quote, returning))}"
    return sql


@dataclass(frozen=True, slots=True)
class InsertShape:
    """What an INSERT of some rows into a table looks like, whatever their number."""

    table: Table
    columns: tuple[str, ...]
    conflict_keys: tuple[str, ...] = ()
    returning: tuple[str, ...] = ()

    def sql(self, dialect: Dialect, rows: int) -> str:
        return _compiled(self, dialect, rows)

    def binder(self, dialect: Dialect) -> Binder:
        return _binder(self, dialect)


# A server has one dialect and meets a handful of row counts; the bound keeps pushes of
# unusual sizes (and tests' many engines) from growing it.
@functools.lru_cache(maxsize=64)
def _compiled(shape: InsertShape, dialect: Dialect, rows: int) -> str:
    return compile_insert(
        dialect, shape.table, shape.columns, rows, shape.conflict_keys, shape.returning
    )


@functools.lru_cache(maxsize=64)
def _binder(shape: InsertShape, dialect: Dialect) -> Binder:
    table = shape.table
    binds = [table.c[c].type.dialect_impl(dialect).bind_processor(dialect) for c in shape.columns]
    return Binder(shape.columns, tuple(binds))


class DriverWriter:
    """Executes InsertShapes on one DBAPI connection, inside a transaction begun elsewhere."""

    def __init__(self, dbapi_connection: Any, dialect: Dialect) -> None:
        if dialect.name == "postgresql":  # `$n` parameters, sent as written
            self._cursor = dialect.loaded_dbapi.RawCursor(dbapi_connection)
        else:
            self._cursor = dbapi_connection.cursor()
        self._dialect = dialect

    def insert(self, shape: InsertShape, rows: Sequence[Row]) -> list[tuple[Any, ...]]:
        """Insert `rows`; the RETURNING rows of those inserted (none for conflicts skipped)."""
        binder = shape.binder(self._dialect)
        return self.insert_values(shape, [binder.values(row) for row in rows])

    def insert_values(
        self, shape: InsertShape, rows: Sequence[Sequence[Any]]
    ) -> list[tuple[Any, ...]]:
        """`insert` for rows already bound (Binder.values): the driver's values, in column order."""
        returned: list[tuple[Any, ...]] = []
        for start in range(0, len(rows), MAX_ROWS):
            part = rows[start : start + MAX_ROWS]
            parameters = [value for row in part for value in row]
            self._cursor.execute(shape.sql(self._dialect, len(part)), parameters)
            if shape.returning:
                returned.extend(self._cursor.fetchall())
        return returned

    def insert_one(self, shape: InsertShape, row: Row) -> tuple[Any, ...] | None:
        """Insert one row; its RETURNING row, or None when a conflict skipped it."""
        found = self.insert(shape, [row])
        return found[0] if found else None
